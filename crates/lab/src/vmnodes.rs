//! Lab clusters of node VMs: `maguey lab up --vm-nodes N --dir DIR`.
//!
//! The nodes are QEMU VMs of the testbed (`maguey-testbed`: real LVM, DRBD 8.4, nested KVM)
//! in a private network namespace with a bridge, node `i` (1-based) at `10.77.S.i`, named
//! `nodeI` like the process lab's nodes. Each VM gets the volume group `xenvg` on its disk
//! and runs the real `magueyd` (packed into the image) with its state in `/var/lib/maguey`
//! (ext4 on a second disk, `/dev/vdb`, so that it survives a power cycle) and its log in
//! `/var/log/magueyd.log` (memory). The lab's tiny guest and its `lab-tiny` OS are packed
//! too, and the cluster's `kvm` hvparams point at them: `instance add -H kvm -o lab-tiny`
//! runs a nested guest with KVM inside a node; instance NICs go to a `br0` in each node.
//!
//! The cluster is initialised on the host (the same `init_cluster` as `maguey cluster init`)
//! into a scratch directory whose files are then copied into node 1 before its `magueyd`
//! starts; the other nodes join with one-time tokens. The host keeps what the CLI needs in
//! `DIR/client` (`admin.pem`, `admin.key`, `ca.pem`, `ssconf.json`: `MAGUEY_DIR`), and reaches
//! the nodes through a veth pair from the root namespace to the testbed's bridge (root side
//! `10.77.S.253/24`). `DIR/vmlab.json` records the VMs, the namespace and the veth, so that
//! `lab env` and `lab down` work from another process.

use crate::Lab;
use anyhow::{bail, Context, Result};
use maguey_client::api::JoinTokenRequest;
use maguey_client::MasterClient;
use maguey_ops::query::Resource;
use maguey_testbed::{netns_exists, pid_alive, sh_quote, Testbed, TestbedConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The file in the lab directory that marks a VM lab.
pub const VM_FILE: &str = "vmlab.json";
/// `magueyd`'s state directory inside a node VM.
pub const NODE_STATE_DIR: &str = "/var/lib/maguey";
/// `magueyd`'s log inside a node VM.
pub const NODE_LOG: &str = "/var/log/magueyd.log";
/// The last byte of the root namespace's address on the node network.
pub const HOST_SIDE_BYTE: u8 = 253;
/// Where the tiny guest's kernel and initrd are in the nodes.
pub const NODE_GUEST_KERNEL: &str = "/usr/share/maguey/guest/vmlinuz";
pub const NODE_GUEST_INITRD: &str = "/usr/share/maguey/guest/initrd.img";
/// QEMU in the nodes.
pub const NODE_QEMU: &str = "/usr/bin/qemu-system-x86_64";

/// What `lab up --vm-nodes` records in `DIR/vmlab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmLabState {
    pub cluster_name: String,
    pub port: u16,
    /// Number of node VMs.
    pub nodes: usize,
    /// The testbed's directory (`DIR/tb`: disks, sockets, console logs, `testbed.json`).
    pub testbed_dir: PathBuf,
    /// The testbed's network namespace.
    pub netns: String,
    /// Third byte of the node network `10.77.S.0/24`.
    pub subnet: u8,
    /// Root-namespace end of the veth pair to the testbed's bridge.
    pub veth: String,
    /// Its address (`10.77.S.253`, `/24`).
    pub host_ip: String,
    /// What the CLI needs to reach the master (`MAGUEY_DIR`).
    pub client_dir: PathBuf,
    #[serde(default)]
    pub timings: VmTimings,
    /// The master's watcher interval in seconds (`magueyd --watcher-interval`); `None`: the
    /// daemon's default. Tests set 0 (no periodic pass) unless they test the watcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher_interval: Option<u64>,
}

/// Wall-clock seconds of a VM lab's bring-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VmTimings {
    /// Building the base image (0 when cached; measured by the testbed).
    pub image_build_seconds: f64,
    /// From `Testbed::up` to every agent answering (image from cache, initrd, boot).
    pub boot_seconds: f64,
    /// `xenvg` on every node.
    pub vg_seconds: f64,
    /// Cluster init, master start, joins, until every node is online.
    pub cluster_seconds: f64,
    pub total_seconds: f64,
}

impl VmLabState {
    /// The flags every `magueyd` of this lab gets.
    pub fn daemon_args(&self) -> Vec<String> {
        match self.watcher_interval {
            Some(s) => vec!["--watcher-interval".into(), s.to_string()],
            None => Vec::new(),
        }
    }

    fn path(dir: &Path) -> PathBuf {
        dir.join(VM_FILE)
    }
    pub fn load(dir: &Path) -> Result<Self> {
        let p = Self::path(dir);
        let s = std::fs::read_to_string(&p)
            .with_context(|| format!("no VM lab in {} ({})", dir.display(), p.display()))?;
        serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
    }
    fn save(&self, dir: &Path) -> Result<()> {
        let p = Self::path(dir);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    }
    /// Address of node `n` (1-based).
    pub fn node_ip(&self, n: usize) -> String {
        format!("10.77.{}.{n}", self.subnet)
    }
    /// The master's URL.
    pub fn master_url(&self) -> String {
        format!("https://{}:{}", self.node_ip(1), self.port)
    }
}

/// Whether `dir` holds a VM lab (`DIR/vmlab.json`).
pub fn is_vm_lab(dir: &Path) -> bool {
    VmLabState::path(dir).is_file()
}

/// How to bring a VM lab up.
#[derive(Debug, Clone)]
pub struct VmOptions {
    pub nodes: usize,
    pub dir: PathBuf,
    pub port: u16,
    pub cluster_name: String,
    /// RAM per node VM (MiB).
    pub memory_mib: u32,
    /// Size of each node's data disk (`/dev/vda`, the PV of `xenvg`), GiB.
    pub disk_gib: u64,
    /// The `magueyd` packed into the nodes; default [`crate::magueyd_path`].
    pub magueyd: Option<PathBuf>,
    /// The VMs die with the thread that started them (tests); `lab up` leaves them running.
    pub kill_with_parent: bool,
    /// More files for the node image.
    pub extra_files: Vec<maguey_testbed::ExtraFile>,
    /// Size of each node's state disk (`/dev/vdb`, ext4 on `/var/lib/maguey`), MiB: the
    /// node's `magueyd` state and `file` disks survive a power cycle (what was fsync'd).
    pub state_disk_mib: u64,
    /// Pack the lab's tiny guest (cached, built from Debian packages) and its `lab-tiny` OS,
    /// and point the cluster's `kvm` hvparams at it: `instance add -H kvm -o lab-tiny` boots
    /// a nested guest with KVM inside a node.
    pub kvm_guest: bool,
    /// The master's watcher interval in seconds; `None`: the daemon's default.
    pub watcher_interval: Option<u64>,
}

impl VmOptions {
    pub fn new(nodes: usize, dir: impl Into<PathBuf>) -> VmOptions {
        VmOptions {
            nodes,
            dir: dir.into(),
            port: maguey_model::DEFAULT_RPC_PORT,
            cluster_name: "maguey-lab".into(),
            memory_mib: 1536,
            disk_gib: 4,
            magueyd: None,
            kill_with_parent: true,
            extra_files: Vec::new(),
            state_disk_mib: 2048,
            kvm_guest: true,
            watcher_interval: None,
        }
    }
}

/// `maguey lab up --vm-nodes N`: boots the VMs, forms the cluster, leaves them running.
/// On a directory whose VM lab runs already, only checks that its master answers.
pub async fn up(o: &crate::UpOptions) -> Result<Lab> {
    // `lab up --dir DIR` of an existing VM lab: as many nodes as it had.
    let nodes = match (o.vm_nodes, VmLabState::load(&o.dir)) {
        (0, Ok(st)) => st.nodes,
        (n, _) => n,
    };
    let mut v = VmOptions::new(nodes, &o.dir);
    v.port = o.port;
    v.cluster_name = o.cluster_name.clone();
    v.kill_with_parent = false;
    tokio::task::spawn_blocking(move || -> Result<Lab> {
        let (lab, tb) = up_blocking(&v)?;
        if let Some(tb) = tb {
            tb.detach();
            if let Ok(st) = VmLabState::load(&v.dir) {
                let t = &st.timings;
                eprintln!(
                    "node VMs: image {:.1} s, boot {:.1} s, xenvg {:.1} s, cluster {:.1} s, in all {:.1} s",
                    t.image_build_seconds,
                    t.boot_seconds,
                    t.vg_seconds,
                    t.cluster_seconds,
                    t.total_seconds
                );
            }
        }
        Ok(lab)
    })
    .await
    .context("the VM lab thread failed")?
}

/// Brings a VM lab up from the calling thread (with `kill_with_parent`, the VMs die with this
/// thread). Returns the lab and the testbed, which tears everything down when dropped (call
/// [`Testbed::detach`] to leave it running); `None` when the lab was running already.
///
/// Call it from a plain thread (a `#[test]`) or `spawn_blocking`, not from async code: it
/// runs its own tokio runtime.
pub fn up_blocking(o: &VmOptions) -> Result<(Lab, Option<Testbed>)> {
    if o.nodes == 0 || o.nodes > 100 {
        bail!("--vm-nodes must be between 1 and 100");
    }
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let dir = o.dir.canonicalize()?;
    if is_vm_lab(&dir) {
        let st = VmLabState::load(&dir)?;
        if testbed_running(&st) {
            let lab = Lab::load(&dir)?;
            let rt = runtime()?;
            rt.block_on(async {
                let c = MasterClient::from_state_dir(&st.client_dir)?;
                crate::wait_for_master(&c, Duration::from_secs(30)).await
            })?;
            return Ok((lab, None));
        }
        // What a crashed or stopped VM lab left behind.
        down(&dir)?;
    } else if dir.join("lab.json").exists() {
        bail!(
            "{} holds a lab of processes; use another --dir for node VMs",
            dir.display()
        );
    }
    let magueyd = match &o.magueyd {
        Some(m) => m.clone(),
        None => crate::magueyd_path(),
    };
    if !magueyd.is_file() {
        bail!(
            "no magueyd binary at {} (build it, or set MAGUEY_MAGUEYD)",
            magueyd.display()
        );
    }
    let t0 = Instant::now();
    let tag = tag_of(&dir);
    let subnet = pick_subnet(&tag)?;
    let st = VmLabState {
        cluster_name: o.cluster_name.clone(),
        port: o.port,
        nodes: o.nodes,
        testbed_dir: dir.join("tb"),
        netns: format!("mvm{tag}"),
        subnet,
        veth: format!("mvm{tag}h"),
        host_ip: format!("10.77.{subnet}.{HOST_SIDE_BYTE}"),
        client_dir: dir.join("client"),
        timings: VmTimings::default(),
        watcher_interval: o.watcher_interval,
    };
    // Recorded first, so that `lab down` cleans up after a killed `lab up`.
    st.save(&dir)?;
    match bring_up(o, &dir, st, &magueyd, t0) {
        Ok((lab, tb)) => Ok((lab, Some(tb))),
        Err(e) => {
            let _ = down(&dir);
            Err(e)
        }
    }
}

fn bring_up(
    o: &VmOptions,
    dir: &Path,
    mut st: VmLabState,
    magueyd: &Path,
    t0: Instant,
) -> Result<(Lab, Testbed)> {
    let mut cfg = TestbedConfig::new(o.nodes, &st.testbed_dir);
    cfg.memory_mib = o.memory_mib;
    cfg.disk_gib = o.disk_gib;
    cfg.netns_name = Some(st.netns.clone());
    cfg.subnet = st.subnet;
    cfg.magueyd = Some(magueyd.to_path_buf());
    cfg.extra_files = o.extra_files.clone();
    cfg.state_disk_mib = o.state_disk_mib;
    // The `noop` OS (as in the process lab) and the tiny guest's `lab-tiny`, in every node's
    // OS search path.
    let os_dir = dir.join("os");
    maguey_node::os::write_noop_os(&os_dir)
        .with_context(|| format!("writing the noop OS into {}", os_dir.display()))?;
    if o.kvm_guest {
        crate::guest::write_lab_tiny_os(&os_dir)?;
        let g = crate::guest::ensure().context("building the tiny guest")?;
        for (src, dest) in [
            (&g.kernel, NODE_GUEST_KERNEL),
            (&g.initrd, NODE_GUEST_INITRD),
        ] {
            cfg.extra_files.push(maguey_testbed::ExtraFile {
                src: src.clone(),
                dest: dest.into(),
            });
        }
    }
    for f in files_under(&os_dir)? {
        cfg.extra_files.push(maguey_testbed::ExtraFile {
            src: os_dir.join(&f),
            dest: format!("/etc/maguey/os/{}", f.display()),
        });
    }
    cfg.kill_with_parent = o.kill_with_parent;
    cfg.first_node_number = 1;
    let tb = Testbed::up(cfg).context("booting the node VMs")?;
    st.timings.image_build_seconds = tb.timings().image_build_seconds;
    st.timings.boot_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    tb.setup_vg().context("creating xenvg on the nodes")?;
    if o.state_disk_mib > 0 {
        for (i, (code, out)) in tb
            .run_all(&format!(
                "set -e\nmkfs.ext4 -q -F -L maguey /dev/vdb\nmkdir -p {NODE_STATE_DIR}\nmount /dev/vdb {NODE_STATE_DIR}\n"
            ))?
            .into_iter()
            .enumerate()
        {
            if code != 0 {
                bail!("node{}: making the state disk failed ({code}): {out}", i + 1);
            }
        }
    }
    st.timings.vg_seconds = t1.elapsed().as_secs_f64();
    add_veth(&st)?;

    let t2 = Instant::now();
    let lab = form_cluster(dir, &st, &tb, o.kvm_guest)?;
    st.timings.cluster_seconds = t2.elapsed().as_secs_f64();
    st.timings.total_seconds = t0.elapsed().as_secs_f64();
    st.save(dir)?;
    Ok((lab, tb))
}

/// A short tag unique to the lab directory (names of the namespace and veth).
fn tag_of(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// A third byte S such that nothing in the root namespace uses `10.77.S.0/24` yet.
fn pick_subnet(tag: &str) -> Result<u8> {
    let mut used = String::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show"][..],
    ] {
        let o = Command::new("ip")
            .args(args)
            .output()
            .context("running ip (iproute2)")?;
        used.push_str(&String::from_utf8_lossy(&o.stdout));
        used.push('\n');
    }
    let start = u32::from_str_radix(tag, 16).unwrap_or(0) % 200;
    (0..200)
        .map(|k| (1 + (start + k) % 200) as u8)
        .find(|s| !used.contains(&format!("10.77.{s}.")))
        .context("no free 10.77.S.0/24 subnet in the root namespace")
}

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The veth pair from the root namespace to the testbed's bridge: the host's CLI reaches the
/// nodes directly, on their own network (deleting the namespace deletes the pair too).
fn add_veth(st: &VmLabState) -> Result<()> {
    let peer = format!("{}n", &st.veth[..st.veth.len() - 1]);
    if link_exists(&st.veth) {
        ip(&["link", "del", "dev", &st.veth])?;
    }
    ip(&[
        "link", "add", &st.veth, "type", "veth", "peer", "name", &peer, "netns", &st.netns,
    ])?;
    ip(&[
        "-n",
        &st.netns,
        "link",
        "set",
        &peer,
        "master",
        maguey_testbed::BRIDGE,
    ])?;
    ip(&["-n", &st.netns, "link", "set", &peer, "up"])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/24", st.host_ip),
        "dev",
        &st.veth,
    ])?;
    ip(&["link", "set", &st.veth, "up"])?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// The cluster's `kvm` hvparams that boot the tiny guest packed into the nodes (given to
/// `cluster init` as `-H kvm:...` would).
fn kvm_hvparams() -> maguey_model::Params {
    let s = |v: &str| serde_json::Value::from(v);
    maguey_model::Params::from([
        ("kvm_path".to_string(), s(NODE_QEMU)),
        ("kernel_path".to_string(), s(NODE_GUEST_KERNEL)),
        ("initrd_path".to_string(), s(NODE_GUEST_INITRD)),
        ("kernel_args".to_string(), s("ro quiet")),
        ("root_path".to_string(), s("/dev/vda")),
    ])
}

/// The script that starts `magueyd ARGS` in the background on a node: its state disk mounted
/// (after a power cycle), a `br0` for its instances' NICs (the default link), then magueyd in
/// its own session.
fn start_script(args: &[String]) -> String {
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    format!(
        "set -e
mkdir -p {NODE_STATE_DIR} /var/log
if [ -b /dev/vdb ] && ! grep -q ' {NODE_STATE_DIR} ' /proc/mounts; then
  mount /dev/vdb {NODE_STATE_DIR}
fi
if [ ! -e /sys/class/net/br0 ]; then
  ip link add br0 type bridge
  ip link set br0 up
fi
cd /
setsid /usr/sbin/magueyd --state-dir {NODE_STATE_DIR} {} </dev/null >>{NODE_LOG} 2>&1 &
echo $!
",
        args.join(" ")
    )
}

/// Starts `magueyd` on node `n` (1-based) of a running testbed, with extra `args` (none for
/// a node that has its state already).
pub fn start_daemon(tb: &Testbed, n: usize, args: &[String]) -> Result<()> {
    let i = n.checked_sub(1).context("nodes are numbered from 1")?;
    tb.run_ok(i, &start_script(args))
        .with_context(|| format!("starting magueyd on node{n}"))?;
    Ok(())
}

/// Waits (up to `timeout`) until node `n`'s `magueyd` listens on `port`: a started daemon
/// needs a moment (more under load) before it answers, and a job sent meanwhile fails.
pub fn wait_daemon_listening(tb: &Testbed, n: usize, port: u16, timeout: Duration) -> Result<()> {
    let i = n.checked_sub(1).context("nodes are numbered from 1")?;
    let tenths = timeout.as_millis() / 100;
    let script = format!(
        "i=0; while [ $i -lt {tenths} ]; do
  ss -Hltn 2>/dev/null | grep -q ':{port} ' && exit 0
  sleep 0.1; i=$((i+1))
done
exit 1"
    );
    let (code, _) = tb.run(i, &script)?;
    if code != 0 {
        bail!(
            "magueyd on node{n} is not listening on port {port} after {timeout:?}: {}",
            node_log_tail(tb, n)
        );
    }
    Ok(())
}

/// Every regular file under `root`, as paths relative to it.
fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path().strip_prefix(root)?.to_path_buf());
            }
        }
    }
    Ok(out)
}

fn form_cluster(dir: &Path, st: &VmLabState, tb: &Testbed, kvm_guest: bool) -> Result<Lab> {
    // The master's state, made on the host and copied into node 1.
    let init_dir = dir.join("init");
    if init_dir.exists() {
        std::fs::remove_dir_all(&init_dir)?;
    }
    let master_ip: std::net::IpAddr = st.node_ip(1).parse()?;
    maguey_bootstrap::init::init_cluster(&maguey_bootstrap::init::InitParams {
        state_dir: init_dir.clone(),
        cluster_name: st.cluster_name.clone(),
        node_name: "node1".into(),
        primary_ip: master_ip,
        secondary_ip: Some(master_ip),
        port: st.port,
        // Relative: under each node's state directory.
        file_storage_dir: "file-storage".into(),
        // Each VM has its own (there is no NFS between them).
        shared_file_storage_dir: "/srv/maguey/shared-file-storage".into(),
        enabled_hypervisors: vec![
            maguey_model::Hypervisor::Kvm,
            maguey_model::Hypervisor::Fake,
        ],
        enabled_disk_templates: maguey_model::DiskTemplate::ALL.to_vec(),
        hvparams: {
            let mut kvm = if kvm_guest {
                kvm_hvparams()
            } else {
                Default::default()
            };
            // QEMU runs as the node image's `maguey-qemu` (testbed init.sh) with the whole
            // sandbox, whatever users the host that initialises the cluster has.
            kvm.insert("security_model".into(), "user".into());
            kvm.insert("security_domain".into(), "maguey-qemu".into());
            std::collections::BTreeMap::from([(maguey_model::Hypervisor::Kvm, kvm)])
        },
        mac_prefix: "aa:00:00".into(),
        beparams: Default::default(),
        nicparams: Default::default(),
        fake_memory_mib: None,
        fake_cpus: None,
    })
    .context("initialising the cluster")?;
    crate::rapi_user(dir, &init_dir)?;
    for rel in files_under(&init_dir)? {
        let dest = format!("{NODE_STATE_DIR}/{}", rel.display());
        tb.put_file(0, &init_dir.join(&rel), &dest)
            .with_context(|| format!("copying {} into node1", rel.display()))?;
    }
    // The client side: the admin certificate and the ssconf (for the master's address).
    if st.client_dir.exists() {
        std::fs::remove_dir_all(&st.client_dir)?;
    }
    std::fs::create_dir_all(&st.client_dir)?;
    for f in ["admin.pem", "admin.key", "ca.pem", "ssconf.json"] {
        std::fs::copy(init_dir.join(f), st.client_dir.join(f))
            .with_context(|| format!("copying {f} to {}", st.client_dir.display()))?;
    }
    std::fs::remove_dir_all(&init_dir)?;
    start_daemon(tb, 1, &st.daemon_args())?;

    let rt = runtime()?;
    let c = rt.block_on(async {
        let c = MasterClient::from_state_dir(&st.client_dir)?;
        crate::wait_for_master(&c, Duration::from_secs(120))
            .await
            .map(|()| c)
    });
    let c = c.map_err(|e| e.context(node_log_tail(tb, 1)))?;
    for n in 2..=st.nodes {
        let name = format!("node{n}");
        let ip = st.node_ip(n);
        let t = rt.block_on(c.join_token(&JoinTokenRequest {
            node_name: name.clone(),
            primary_ip: ip.clone(),
            secondary_ip: Some(ip.clone()),
            group: None,
            room: None,
            witness: false,
        }))?;
        start_daemon(
            tb,
            n,
            &[
                "--join".into(),
                t.master_url.clone(),
                "--token".into(),
                t.token,
                "--node-name".into(),
                name,
                "--listen".into(),
                format!("{ip}:{}", st.port),
            ]
            .into_iter()
            .chain(st.daemon_args())
            .collect::<Vec<_>>(),
        )?;
    }
    let names: Vec<String> = (1..=st.nodes).map(|n| format!("node{n}")).collect();
    rt.block_on(wait_online(&c, &names, Duration::from_secs(240)))
        .map_err(|e| {
            let logs: Vec<String> = (1..=st.nodes).map(|n| node_log_tail(tb, n)).collect();
            e.context(logs.join("\n"))
        })?;

    // Like a freshly installed node: what the join wrote is on the disk before any power cut
    // (magueyd writes daemon.json and the certificates without fsync).
    tb.run_all("sync")?;

    let lab: Lab = serde_json::from_value(serde_json::json!({
        "cluster_name": st.cluster_name,
        "port": st.port,
        "nodes": (1..=st.nodes).map(|n| serde_json::json!({
            "name": format!("node{n}"),
            "ip": st.node_ip(n),
            // The master's entry holds what the CLI needs (MAGUEY_DIR); the others have no
            // state on the host.
            "dir": if n == 1 { st.client_dir.clone() } else { dir.join(format!("node{n}")) },
        })).collect::<Vec<_>>(),
    }))?;
    std::fs::write(dir.join("lab.json"), serde_json::to_vec_pretty(&lab)?)?;
    Ok(lab)
}

/// The last lines of node `n`'s magueyd log, for error messages.
pub fn node_log_tail(tb: &Testbed, n: usize) -> String {
    let out = n
        .checked_sub(1)
        .and_then(|i| {
            tb.diag(
                i,
                &format!("tail -n 30 {NODE_LOG}"),
                Duration::from_secs(10),
            )
            .ok()
        })
        .map(|o| o.out)
        .unwrap_or_else(|| "(unreadable)".into());
    format!("--- node{n}:{NODE_LOG} ---\n{out}")
}

/// Waits until the master lists every node of `names`, none of them offline.
async fn wait_online(c: &MasterClient, names: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = c
            .query(
                Resource::Node,
                vec![],
                vec!["name".into(), "offline".into()],
            )
            .await?;
        let online: Vec<&str> = r
            .rows
            .iter()
            .filter(|row| row.get(1).and_then(|v| v.as_bool()) == Some(false))
            .filter_map(|row| row.first()?.as_str())
            .collect();
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !online.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nodes not online in time: {}", missing.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn testbed_running(st: &VmLabState) -> bool {
    Testbed::attach(&st.testbed_dir)
        .map(|tb| (0..tb.nodes()).any(|i| tb.pid(i).is_some_and(pid_alive)))
        .unwrap_or(false)
}

/// The `export` lines of a VM lab: `MAGUEY_DIR` (the client directory), `MAGUEY_LAB_DIR`
/// and the Remote API's URL, user, password and CA.
pub fn env(dir: &Path) -> Result<String> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no lab in {}", dir.display()))?;
    let st = VmLabState::load(&dir)?;
    let mut out = format!(
        "export MAGUEY_DIR={}\nexport MAGUEY_LAB_DIR={}\n",
        st.client_dir.display(),
        dir.display()
    );
    if let Ok(c) = crate::RapiCredentials::load(&dir) {
        out.push_str(&format!(
            "export MAGUEY_RAPI_URL=https://{}:{}\nexport MAGUEY_RAPI_USER={}\nexport MAGUEY_RAPI_PASSWORD={}\nexport MAGUEY_RAPI_CA={}\n",
            st.node_ip(1),
            maguey_rapi::DEFAULT_PORT,
            c.user,
            c.password,
            st.client_dir.join("ca.pem").display()
        ));
    }
    Ok(out)
}

/// `lab down` of a VM lab: kills the VMs, deletes the namespace and the veth, removes the
/// lab's files (the nodes' state lived in the VMs). Returns how many VMs were running.
pub fn down(dir: &Path) -> Result<usize> {
    let st = VmLabState::load(dir)?;
    let mut running = 0;
    if st.testbed_dir.join("testbed.json").exists() {
        let tb = Testbed::attach(&st.testbed_dir)?;
        running = (0..tb.nodes())
            .filter(|&i| tb.pid(i).is_some_and(pid_alive))
            .count();
        tb.down().context("stopping the node VMs")?;
    }
    if netns_exists(&st.netns) {
        ip(&["netns", "del", &st.netns])?;
    }
    if link_exists(&st.veth) {
        if let Err(e) = ip(&["link", "del", "dev", &st.veth]) {
            // Deleting the namespace deletes the veth pair too, a moment later: a link that
            // vanished in between is what we wanted (`lab down` failed at random on it).
            if link_exists(&st.veth) {
                return Err(e);
            }
        }
    }
    for d in [&st.client_dir, &dir.join("init"), &dir.join("os")] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    for f in ["lab.json", "rapi.json", VM_FILE] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_script_quotes_arguments() {
        let s = start_script(&["--token".into(), "a'b".into()]);
        assert!(s.contains("--state-dir /var/lib/maguey '--token' 'a'\\''b' </dev/null"));
        assert!(s.contains(">>/var/log/magueyd.log 2>&1 &"));
    }

    #[test]
    fn tags_and_addresses() {
        let t = tag_of(Path::new("/tmp/x"));
        assert_eq!(t.len(), 8);
        // Interface names fit in 15 bytes.
        assert!(format!("mvm{t}h").len() <= 15);
        let st = VmLabState {
            cluster_name: "c".into(),
            port: 1811,
            nodes: 2,
            testbed_dir: "/d/tb".into(),
            netns: format!("mvm{t}"),
            subnet: 9,
            veth: format!("mvm{t}h"),
            host_ip: "10.77.9.253".into(),
            client_dir: "/d/client".into(),
            timings: VmTimings::default(),
            watcher_interval: None,
        };
        assert_eq!(st.node_ip(2), "10.77.9.2");
        assert_eq!(st.master_url(), "https://10.77.9.1:1811");
    }
}
