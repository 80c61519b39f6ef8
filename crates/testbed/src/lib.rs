//! A testbed of node VMs for tests that need real LVM, DRBD 8.4 and (nested) KVM.
//!
//! [`Testbed::up`] builds (or takes from the cache) an initramfs-only node image made of Debian
//! packages ([`image`]), creates a private network namespace holding a bridge (the host side,
//! `10.77.S.254`) and one tap per node, boots the node VMs in parallel under QEMU TCG
//! (`-cpu max`, which exposes SVM, so `kvm_amd` works inside the nodes) and waits for each
//! node's command agent. Nodes get static addresses `10.77.S.(i+1)` and hostnames `nodeI`.
//!
//! Host processes reach the nodes from inside the namespace: [`Testbed::netns_command`] wraps
//! a program in `ip netns exec`. Scripts run inside a node through [`Testbed::run`] (a
//! virtio-serial agent, no network needed); a second port ([`Testbed::diag`]) stays free for
//! looking inside while a long command runs.
//!
//! Dropping a [`Testbed`] made by `up` kills every VM and deletes the namespace. The state is
//! kept in `DIR/testbed.json`, so another process can [`Testbed::attach`] to it (the
//! `maguey-testbed` binary does).

pub mod agent;
pub mod cpio;
pub mod debian;
pub mod elf;
pub mod image;
pub mod install_doc;
mod nodes;

pub use nodes::sh_quote;

pub use agent::Output;
pub use image::{BaseImage, ExtraFile};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The volume group [`Testbed::setup_vg`] creates on every node (Ganeti's default name).
pub const VG_NAME: &str = "xenvg";
/// Default timeout of [`Testbed::run`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const STATE_FILE: &str = "testbed.json";
/// The bridge in the testbed's namespace that holds the nodes' taps (and `10.77.S.254`).
pub const BRIDGE: &str = "br0";

/// How to build a testbed.
#[derive(Debug, Clone)]
pub struct TestbedConfig {
    /// Number of node VMs.
    pub nodes: usize,
    /// Working directory: disks, sockets, console logs, pid files, the initrd, the state file.
    /// Keep it short: QEMU's unix socket paths must fit in 107 bytes.
    pub dir: PathBuf,
    /// RAM per node VM (MiB).
    pub memory_mib: u32,
    /// Size of each node's sparse data disk, `/dev/vda` (GiB).
    pub disk_gib: u64,
    /// Network namespace name; default `mtb-PID-N` (must not exist yet). Default names of
    /// dead processes are deleted by later `up` calls.
    pub netns_name: Option<String>,
    /// Third octet of the node network `10.77.S.0/24`.
    pub subnet: u8,
    /// The `magueyd` binary to put at `/usr/sbin/magueyd` in the nodes, if any.
    pub magueyd: Option<PathBuf>,
    /// More files for the node image.
    pub extra_files: Vec<ExtraFile>,
    /// Cache of debs and base images; default [`image::cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// How long a node may take from QEMU start to a working agent.
    pub boot_timeout: Duration,
    /// The QEMU binary on the host; default `qemu-system-x86_64`.
    pub qemu: Option<String>,
    /// Kill the VMs when the thread that started them dies (`PR_SET_PDEATHSIG`), so a test
    /// process killed by a CI timeout leaves no QEMU behind. Default true; the
    /// `maguey-testbed up` command, whose VMs outlive it, sets it to false.
    pub kill_with_parent: bool,
    /// Number in the first node's name: node `i` is `node{i + first_node_number}` (its
    /// hostname and its `/etc/hosts` name). Default 0; the lab uses 1 (`node1`, `node2`, like
    /// its cluster's node names).
    pub first_node_number: usize,
    /// Size of a second sparse disk per node, `/dev/vdb` (MiB; 0: none): for what must survive
    /// a power cycle besides the volume group (the lab keeps `magueyd`'s state there).
    pub state_disk_mib: u64,
    /// `Some(suite)`: the nodes are real Debian systems of that release (systemd, udev, the
    /// release's cloud kernel; [`debian`]) booted from overlays of a cached root disk, and
    /// `magueyd` and [`TestbedConfig::extra_files`] go on a read-only payload disk mounted at
    /// [`debian::PAYLOAD_DIR`] (`dest` is the path under it) instead of the initramfs.
    /// Default `None`: the initramfs-only nodes.
    pub debian: Option<String>,
}

impl TestbedConfig {
    /// `nodes` nodes in `dir`, with 1536 MiB and a 4 GiB disk each, and the `magueyd` found
    /// by [`find_magueyd`].
    pub fn new(nodes: usize, dir: impl Into<PathBuf>) -> TestbedConfig {
        TestbedConfig {
            nodes,
            dir: dir.into(),
            memory_mib: 1536,
            disk_gib: 4,
            netns_name: None,
            subnet: 0,
            magueyd: find_magueyd(),
            extra_files: Vec::new(),
            cache_dir: None,
            boot_timeout: Duration::from_secs(180),
            qemu: None,
            kill_with_parent: true,
            first_node_number: 0,
            state_disk_mib: 0,
            debian: None,
        }
    }
}

/// `$MAGUEYD` if set, else a `magueyd` next to the running executable or one or two
/// directories up (`target/debug/magueyd` seen from a test binary in `target/debug/deps`).
pub fn find_magueyd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MAGUEYD") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("magueyd"))
        .find(|p| p.is_file())
}

/// Wall-clock timings of a testbed's bring-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Building the base image (0 when it came from the cache).
    pub image_build_seconds: f64,
    /// Preparing the initrd with the overlay, network and disks.
    pub prepare_seconds: f64,
    /// From starting the first QEMU to every agent answering.
    pub boot_seconds: f64,
    /// Per node: from its QEMU start to its agent answering.
    pub node_boot_seconds: Vec<f64>,
}

/// One node VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub tap: String,
    /// QEMU's pid while the VM runs.
    pub pid: Option<i32>,
    pub disk: PathBuf,
    pub console_log: PathBuf,
    pub agent_socket: PathBuf,
    pub diag_socket: PathBuf,
    pub monitor_socket: PathBuf,
    pub pidfile: PathBuf,
    /// QEMU's own stdout and stderr.
    pub qemu_log: PathBuf,
    /// The second disk, `/dev/vdb`, if any ([`TestbedConfig::state_disk_mib`]).
    #[serde(default)]
    pub state_disk: Option<PathBuf>,
    /// Debian nodes: the node's root disk (a qcow2 overlay of the cached image).
    #[serde(default)]
    pub root_disk: Option<PathBuf>,
}

/// What `DIR/testbed.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub dir: PathBuf,
    pub netns: String,
    pub subnet: u8,
    pub memory_mib: u32,
    pub qemu: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub nodes: Vec<NodeState>,
    pub timings: Timings,
    /// Debian nodes: the read-only payload disk every node gets.
    #[serde(default)]
    pub payload: Option<PathBuf>,
}

/// A running testbed.
pub struct Testbed {
    state: State,
    agents: Vec<Mutex<Option<agent::Conn>>>,
    diags: Vec<Mutex<Option<agent::Conn>>>,
    /// Whether dropping this value tears the testbed down.
    owned: bool,
    boot_timeout: Duration,
    kill_with_parent: bool,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// True if `ip netns list` shows `name`.
pub fn netns_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name))
        })
        .unwrap_or(false)
}

/// True if `pid` is a live (not zombie) process.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

fn cmdline_mentions(pid: i32, needle: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let needle = needle.to_string_lossy();
            String::from_utf8_lossy(&c).contains(needle.as_ref())
        })
        .unwrap_or(false)
}

fn kill_hard(pid: i32) {
    // SAFETY: kill(2) with a pid we started (checked through its command line by the caller).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    // Reap it if it is our child (it is not when another process started it); otherwise
    // wait until it is dead.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: non-blocking waitpid on one pid.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || (r < 0 && !pid_alive(pid)) || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Deletes namespaces named like the default `mtb-PID-N` whose process is gone (a test process
/// killed before its teardown; its VMs died with it through `PR_SET_PDEATHSIG`).
fn sweep_stale_netns() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = l.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("mtb-") else {
            continue;
        };
        let Some((pid, seq)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), true) = (
            pid.parse::<i32>(),
            !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()),
        ) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

static NETNS_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Testbed {
    /// Builds the image if needed, creates the network, boots every node and waits for their
    /// agents.
    pub fn up(cfg: TestbedConfig) -> Result<Testbed> {
        if cfg.nodes == 0 || cfg.nodes > 200 {
            bail!("between 1 and 200 nodes, please");
        }
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let dir = std::fs::canonicalize(&cfg.dir)?;
        if dir.to_string_lossy().contains(',') {
            bail!("the testbed directory must not contain a comma (QEMU option syntax)");
        }
        if dir.join(STATE_FILE).exists() {
            if let Ok(old) = Testbed::attach(&dir) {
                if old.state.nodes.iter().any(|n| n.pid.is_some_and(pid_alive))
                    || netns_exists(&old.state.netns)
                {
                    bail!(
                        "a testbed is still running in {} (maguey-testbed down --dir ...)",
                        dir.display()
                    );
                }
            }
        }
        sweep_stale_netns();
        let netns = cfg.netns_name.clone().unwrap_or_else(|| {
            format!(
                "mtb-{}-{}",
                std::process::id(),
                NETNS_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        });
        if netns_exists(&netns) {
            bail!("the network namespace {netns} exists already");
        }
        let cache = cfg.cache_dir.clone().unwrap_or_else(image::cache_dir);
        let mut extra = cfg.extra_files.clone();
        if let Some(m) = &cfg.magueyd {
            extra.push(ExtraFile {
                src: m.clone(),
                dest: "/usr/sbin/magueyd".into(),
            });
        }
        let initrd = dir.join("initrd.img");
        let (kernel, build_seconds, debian_root, t1) = match &cfg.debian {
            None => {
                let base = image::ensure_base(&cache).context("building the node image")?;
                let t1 = Instant::now();
                image::write_initrd(&base, &extra, &initrd).context("writing the node initrd")?;
                (base.kernel, base.build_seconds, None, t1)
            }
            Some(suite) => {
                let img = debian::ensure_debian(&cache, suite)
                    .context("building the Debian node image")?;
                let t1 = Instant::now();
                std::fs::copy(&img.initrd, &initrd).context("copying the Debian initrd")?;
                debian::payload(&extra, &dir.join("payload.img"))?;
                (img.kernel, img.build_seconds, Some(img.root), t1)
            }
        };

        let nodes: Vec<NodeState> = (0..cfg.nodes)
            .map(|i| {
                let f = |suffix: &str| dir.join(format!("node{i}.{suffix}"));
                NodeState {
                    name: format!("node{}", i + cfg.first_node_number),
                    ip: Ipv4Addr::new(10, 77, cfg.subnet, (i + 1) as u8),
                    mac: format!("52:54:00:77:{:02x}:{:02x}", cfg.subnet, i + 1),
                    tap: format!("tap{i}"),
                    pid: None,
                    disk: f("disk"),
                    console_log: f("console.log"),
                    agent_socket: f("agent.sock"),
                    diag_socket: f("diag.sock"),
                    monitor_socket: f("monitor.sock"),
                    pidfile: f("pid"),
                    qemu_log: f("qemu.log"),
                    state_disk: (cfg.state_disk_mib > 0).then(|| f("state")),
                    root_disk: debian_root.as_ref().map(|_| f("root")),
                }
            })
            .collect();
        for n in &nodes {
            let len = n
                .monitor_socket
                .as_os_str()
                .len()
                .max(n.agent_socket.as_os_str().len());
            if len > 107 {
                bail!(
                    "{} is too long for a unix socket path: use a shorter --dir",
                    n.monitor_socket.display()
                );
            }
        }
        let mut tb = Testbed {
            agents: nodes.iter().map(|_| Mutex::new(None)).collect(),
            diags: nodes.iter().map(|_| Mutex::new(None)).collect(),
            state: State {
                dir: dir.clone(),
                netns: netns.clone(),
                subnet: cfg.subnet,
                memory_mib: cfg.memory_mib,
                qemu: cfg
                    .qemu
                    .clone()
                    .unwrap_or_else(|| "qemu-system-x86_64".into()),
                kernel,
                initrd,
                nodes,
                timings: Timings {
                    image_build_seconds: build_seconds,
                    ..Timings::default()
                },
                payload: debian_root.as_ref().map(|_| dir.join("payload.img")),
            },
            owned: true,
            boot_timeout: cfg.boot_timeout,
            kill_with_parent: cfg.kill_with_parent,
        };
        // From here on, dropping `tb` (on any error) removes what was made.
        ip(&["netns", "add", &netns])?;
        tb.save()?;
        let ns = netns.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
        let host = format!("{}/24", tb.host_ip());
        ip(&["-n", ns, "addr", "add", &host, "dev", BRIDGE])?;
        ip(&["-n", ns, "link", "set", BRIDGE, "up"])?;
        for n in &tb.state.nodes {
            ip(&["-n", ns, "tuntap", "add", "dev", &n.tap, "mode", "tap"])?;
            ip(&["-n", ns, "link", "set", &n.tap, "master", BRIDGE])?;
            ip(&["-n", ns, "link", "set", &n.tap, "up"])?;
            // A fresh, sparse disk.
            let f = std::fs::File::create(&n.disk)?;
            f.set_len(cfg.disk_gib << 30)?;
            if let Some(sd) = &n.state_disk {
                std::fs::File::create(sd)?.set_len(cfg.state_disk_mib << 20)?;
            }
            if let (Some(rd), Some(base)) = (&n.root_disk, &debian_root) {
                debian::overlay(base, rd)?;
            }
            let _ = std::fs::remove_file(&n.console_log);
        }
        tb.state.timings.prepare_seconds = t1.elapsed().as_secs_f64();

        let t2 = Instant::now();
        for i in 0..tb.state.nodes.len() {
            tb.start_qemu(i)?;
        }
        tb.save()?;
        let waits: Vec<Result<f64>> = std::thread::scope(|s| {
            let tb = &tb;
            let hs: Vec<_> = (0..tb.state.nodes.len())
                .map(|i| s.spawn(move || tb.wait_agent(i, t2)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("wait thread panicked")))
                })
                .collect()
        });
        let mut per_node = Vec::new();
        for (i, w) in waits.into_iter().enumerate() {
            per_node.push(w.with_context(|| {
                format!(
                    "node {i} did not come up (console log: {})",
                    tb.state.nodes[i].console_log.display()
                )
            })?);
        }
        tb.state.timings.boot_seconds = t2.elapsed().as_secs_f64();
        tb.state.timings.node_boot_seconds = per_node;
        tb.save()?;
        Ok(tb)
    }

    /// Attaches to a testbed another process started in `dir` (dropping the result leaves it
    /// running; [`Testbed::down`] stops it).
    pub fn attach(dir: &Path) -> Result<Testbed> {
        let p = dir.join(STATE_FILE);
        let s = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let state: State =
            serde_json::from_slice(&s).with_context(|| format!("parsing {}", p.display()))?;
        Ok(Testbed {
            agents: state.nodes.iter().map(|_| Mutex::new(None)).collect(),
            diags: state.nodes.iter().map(|_| Mutex::new(None)).collect(),
            state,
            owned: false,
            boot_timeout: Duration::from_secs(180),
            kill_with_parent: false,
        })
    }

    /// Leaves the testbed running when this value is dropped.
    pub fn detach(mut self) {
        self.owned = false;
    }

    /// Kills every VM and deletes the network namespace.
    pub fn down(mut self) -> Result<()> {
        self.owned = false;
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        self.keep_artifacts();
        for i in 0..self.state.nodes.len() {
            self.kill_node(i);
        }
        let mut result = Ok(());
        if netns_exists(&self.state.netns) {
            result = ip(&["netns", "del", &self.state.netns]);
        }
        for n in &self.state.nodes {
            for p in [
                &n.agent_socket,
                &n.diag_socket,
                &n.monitor_socket,
                &n.pidfile,
            ] {
                let _ = std::fs::remove_file(p);
            }
            let _ = std::fs::remove_file(&n.disk);
            if let Some(sd) = &n.state_disk {
                let _ = std::fs::remove_file(sd);
            }
            if let Some(rd) = &n.root_disk {
                let _ = std::fs::remove_file(rd);
            }
        }
        if let Some(p) = &self.state.payload {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.state.initrd);
        let _ = self.save();
        result
    }

    /// Copies the console and QEMU logs to `$MAGUEY_TESTBED_ARTIFACTS/NETNS/` when that is
    /// set; prints the end of each console log when the thread is panicking (a failing test).
    fn keep_artifacts(&self) {
        if let Some(a) = std::env::var_os("MAGUEY_TESTBED_ARTIFACTS") {
            let to = PathBuf::from(a).join(&self.state.netns);
            if std::fs::create_dir_all(&to).is_ok() {
                for n in &self.state.nodes {
                    for f in [&n.console_log, &n.qemu_log] {
                        if let Some(name) = f.file_name() {
                            let _ = std::fs::copy(f, to.join(name));
                        }
                    }
                }
            }
        }
        if std::thread::panicking() {
            for n in &self.state.nodes {
                let log = std::fs::read_to_string(&n.console_log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!(
                    "---- {} console ({}), last lines ----\n{tail}",
                    n.name,
                    n.console_log.display()
                );
            }
        }
    }

    fn save(&self) -> Result<()> {
        let p = self.state.dir.join(STATE_FILE);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.state)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    }

    fn start_qemu(&mut self, i: usize) -> Result<()> {
        let n = &self.state.nodes[i];
        let hosts: Vec<String> = self
            .state
            .nodes
            .iter()
            .map(|m| format!("{}={}", m.name, m.ip))
            .chain(std::iter::once(format!("host={}", self.host_ip())))
            .collect();
        let mut append = format!(
            "console=ttyS0 panic=-1 quiet maguey.ip={}/24 maguey.hostname={} maguey.hosts={}",
            n.ip,
            n.name,
            hosts.join(",")
        );
        if n.root_disk.is_some() {
            append = format!("{} {append}", debian::ROOT_CMDLINE);
        }
        let _ = std::fs::remove_file(&n.pidfile);
        let _ = std::fs::remove_file(&n.agent_socket);
        let _ = std::fs::remove_file(&n.diag_socket);
        let _ = std::fs::remove_file(&n.monitor_socket);
        let mem = self.state.memory_mib.to_string();
        let chardev =
            |id: &str, p: &Path| format!("socket,id={id},path={},server=on,wait=off", p.display());
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.state.netns.clone(),
            self.state.qemu.clone(),
            "-name".into(),
            format!("maguey-testbed-{}", n.name),
            "-accel".into(),
            "tcg".into(),
            "-cpu".into(),
            "max".into(),
            "-smp".into(),
            "1".into(),
            "-m".into(),
            mem,
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-vga".into(),
            "none".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            self.state.kernel.to_string_lossy().into_owned(),
            "-initrd".into(),
            self.state.initrd.to_string_lossy().into_owned(),
            "-append".into(),
            append,
            "-chardev".into(),
            format!("file,id=console,path={},append=on", n.console_log.display()),
            "-serial".into(),
            "chardev:console".into(),
            "-drive".into(),
            format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                n.disk.display()
            ),
        ];
        if let Some(sd) = &n.state_disk {
            args.push("-drive".into());
            args.push(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                sd.display()
            ));
        }
        if let Some(rd) = &n.root_disk {
            args.push("-drive".into());
            args.push(format!(
                "file={},format=qcow2,if=virtio,cache=unsafe",
                rd.display()
            ));
        }
        if let (Some(p), true) = (&self.state.payload, n.root_disk.is_some()) {
            args.push("-drive".into());
            args.push(format!(
                "file={},format=raw,if=virtio,readonly=on",
                p.display()
            ));
        }
        args.extend([
            "-netdev".into(),
            format!("tap,id=net0,ifname={},script=no,downscript=no", n.tap),
            "-device".into(),
            format!("virtio-net-pci,netdev=net0,mac={}", n.mac),
            "-device".into(),
            "virtio-rng-pci".into(),
            "-device".into(),
            "virtio-serial-pci".into(),
            "-chardev".into(),
            chardev("agent", &n.agent_socket),
            "-device".into(),
            "virtserialport,chardev=agent,name=maguey.agent".into(),
            "-chardev".into(),
            chardev("diag", &n.diag_socket),
            "-device".into(),
            "virtserialport,chardev=diag,name=maguey.diag".into(),
            "-monitor".into(),
            format!("unix:{},server=on,wait=off", n.monitor_socket.display()),
            "-pidfile".into(),
            n.pidfile.to_string_lossy().into_owned(),
        ]);
        // Not `-daemonize`: QEMU stays our child (in its own process group), so killing it
        // can reap it here instead of leaving a zombie to an init that may not reap.
        // `ip netns exec` execs QEMU: the child's pid is QEMU's.
        let log = std::fs::File::create(&n.qemu_log)?;
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("ip");
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if self.kill_with_parent {
            // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died before prctl.
                    if libc::getppid() == 1 {
                        return Err(std::io::Error::other("the parent exited"));
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().context("starting QEMU")?;
        let pid = i32::try_from(child.id())?;
        self.state.nodes[i].pid = Some(pid);
        if let Ok(mut a) = self.agents[i].lock() {
            *a = None;
        }
        if let Ok(mut d) = self.diags[i].lock() {
            *d = None;
        }
        Ok(())
    }

    /// Waits until node `i`'s agent answers; returns the seconds since `since`.
    fn wait_agent(&self, i: usize, since: Instant) -> Result<f64> {
        let n = &self.state.nodes[i];
        let deadline = since + self.boot_timeout;
        let conn = loop {
            if !n.pid.is_some_and(pid_alive) {
                bail!(
                    "QEMU exited: {}",
                    std::fs::read_to_string(&n.qemu_log)
                        .unwrap_or_default()
                        .trim()
                );
            }
            let mut conn = match agent::Conn::connect(&n.agent_socket) {
                Ok(c) => c,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            // The request waits in QEMU until the node's agent opens its port. A connection
            // QEMU resets while the guest sets its port up (seen on a loaded machine) is
            // opened again, until the deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.run("echo ready", left.saturating_sub(Duration::from_secs(30))) {
                Ok(out) if out.code == 0 && out.out == "ready\n" => break conn,
                Ok(out) => bail!("unexpected agent answer {out:?}"),
                Err(e) if Instant::now() > deadline || !connection_lost(&e) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        if let Ok(mut a) = self.agents[i].lock() {
            *a = Some(conn);
        }
        Ok(since.elapsed().as_secs_f64())
    }
}

/// Whether `e` says the agent's connection was reset or closed (not a timeout).
fn connection_lost(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe))
    }) || format!("{e:#}").contains("connection closed")
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.teardown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/a b/c"), "'/a b/c'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn config_defaults() {
        let c = TestbedConfig::new(2, "/tmp/x");
        assert_eq!((c.nodes, c.memory_mib, c.disk_gib), (2, 1536, 4));
        assert!(c.kill_with_parent);
    }
}
