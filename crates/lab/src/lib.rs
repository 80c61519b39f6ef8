//! Lab clusters: N real `magueyd` processes on one machine, each node with its own state
//! directory and its own address, started by `maguey lab up`.
//!
//! Run as root, each node is a separate host: its own network namespace, joined by a veth
//! pair to a bridge in the root namespace, with its own address (10.A.B.i), its own
//! `magueyd` and its own QEMU processes and VM bridge `br0`. Otherwise every node listens on
//! its own loopback address (127.A.B.i) in the one namespace.
//!
//! `lab up` on a directory that already holds a lab restarts the daemons that are not running.
//! `maguey-test-infra`'s `TestLab` and `VmLab` drive the same machinery from integration tests.

pub mod faults;
pub mod guest;
pub mod vmnodes;

use anyhow::{bail, Context, Result};
use maguey_client::api::JoinTokenRequest;
use maguey_client::MasterClient;
use maguey_model::{DiskTemplate, Hypervisor};
use maguey_ops::query::Resource;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `maguey lab up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpOptions {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Directory holding the lab's node state directories.
    #[arg(long)]
    pub dir: PathBuf,
    /// First three bytes of the nodes' loopback addresses; node i gets PREFIX.i.
    #[arg(long, default_value = "127.0.0")]
    pub address_prefix: String,
    /// Node daemon port.
    #[arg(long, default_value_t = maguey_model::DEFAULT_RPC_PORT)]
    pub port: u16,
    /// Memory (MiB) each node's fake hypervisor reports.
    #[arg(long, default_value_t = 4096)]
    pub node_memory: u64,
    /// CPUs each node reports.
    #[arg(long, default_value_t = 4)]
    pub node_cpus: u32,
    /// Each node in its own network namespace: `auto` (when run as root), `on`, `off`. With
    /// namespaces a 127.A.B prefix becomes 10.A.B (10.99.B for 127.0.B).
    #[arg(long, value_enum, default_value_t = NetnsMode::Auto)]
    pub netns: NetnsMode,
    /// Cluster name.
    #[arg(long, default_value = "maguey-lab")]
    pub cluster_name: String,
    /// Also enable the `kvm` hypervisor: builds the tiny guest (Debian packages, cached), points
    /// the cluster's kvm hvparams at it and registers the `lab-tiny` OS on every node.
    #[arg(long)]
    pub kvm: bool,
    /// Nodes as QEMU VMs (real LVM, DRBD, nested KVM; see `vmnodes`) instead of processes:
    /// how many. 0: a lab of processes.
    #[arg(long, default_value_t = 0)]
    pub vm_nodes: usize,
    /// Replicate the config with Raft among the master candidates (`cluster init
    /// --replicated`): the master moves when it dies (docs/replication.md).
    #[arg(long)]
    pub replicated: bool,
    /// With --replicated: the last node joins as a witness (votes for the master, never
    /// leads, runs no instances; its magueyd runs with --witness).
    #[arg(long, requires = "replicated")]
    pub witness: bool,
}

/// Whether lab nodes get their own network namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetnsMode {
    Auto,
    On,
    Off,
}

/// What `lab up` records in `DIR/lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub cluster_name: String,
    pub port: u16,
    pub nodes: Vec<LabNode>,
    /// The bridge the lab made for its VMs' NICs (kvm labs run as root), removed by `down`.
    #[serde(default)]
    pub bridge: Option<String>,
    /// With network namespaces: the root namespace's bridge joining the nodes, and its
    /// address (`/24`).
    #[serde(default)]
    pub host_bridge: Option<String>,
    #[serde(default)]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    /// The node's network namespace, when it has one.
    #[serde(default)]
    pub netns: Option<String>,
}

impl Lab {
    fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }
    pub fn load(dir: &Path) -> Result<Self> {
        let p = Self::path(dir);
        let s = std::fs::read_to_string(&p)
            .with_context(|| format!("no lab in {} ({})", dir.display(), p.display()))?;
        serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
    }
    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::write(Self::path(dir), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
    /// The master's state directory (the first node).
    pub fn master_dir(&self) -> Option<&Path> {
        self.nodes.first().map(|n| n.dir.as_path())
    }
}

pub use maguey_bootstrap::{magueyd_path, spawn_daemon, spawn_daemon_in};

/// Polls until the master answers, or fails after `timeout`.
pub async fn wait_for_master(c: &MasterClient, timeout: Duration) -> Result<()> {
    c.wait_for_master(timeout)
        .await
        .map_err(|e| anyhow::anyhow!("the master at {} did not answer: {e}", c.base_url()))
}

fn pid_of(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("magueyd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) magueyd process.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name: "PID (comm) S ...".
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("magueyd"))
        .unwrap_or(false)
}

/// Starts a lab (or restarts the stopped daemons of an existing one).
pub async fn up(o: &UpOptions) -> Result<Lab> {
    if o.vm_nodes > 0 || vmnodes::is_vm_lab(&o.dir) {
        return vmnodes::up(o).await;
    }
    if o.nodes == 0 || o.nodes > 250 {
        bail!("--nodes must be between 1 and 250");
    }
    let octets: Vec<&str> = o.address_prefix.split('.').collect();
    if octets.len() != 3 || octets.iter().any(|x| x.parse::<u8>().is_err()) {
        bail!("--address-prefix must be three bytes, e.g. 127.0.0");
    }
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let dir = o.dir.canonicalize()?;
    if Lab::path(&dir).exists() {
        return restart(&dir).await;
    }
    let netns = match o.netns {
        NetnsMode::On => true,
        NetnsMode::Off => false,
        NetnsMode::Auto => is_root() && Path::new("/run").exists(),
    };
    let prefix = if netns {
        netns_prefix(&o.address_prefix)
    } else {
        o.address_prefix.clone()
    };
    let tag = bridge_name(&dir)[3..].to_string();
    let lab = Lab {
        cluster_name: o.cluster_name.clone(),
        port: o.port,
        nodes: (1..=o.nodes)
            .map(|i| LabNode {
                name: format!("node{i}"),
                ip: format!("{prefix}.{i}"),
                dir: dir.join(format!("node{i}")),
                netns: netns.then(|| format!("mgl{tag}-{i}")),
            })
            .collect(),
        bridge: None,
        host_bridge: netns.then(|| format!("mgh{tag}")),
        host_ip: netns.then(|| format!("{prefix}.254")),
    };
    let mut lab = lab;
    for n in &lab.nodes {
        if n.dir.join("daemon.json").exists() {
            bail!(
                "{} already holds a node; use another --dir",
                n.dir.display()
            );
        }
        std::fs::create_dir_all(n.dir.join("os"))?;
        maguey_node::os::write_noop_os(&n.dir.join("os"))?;
        if o.kvm {
            guest::write_lab_tiny_os(&n.dir.join("os"))?;
        }
    }
    let tiny = if o.kvm {
        Some(tokio::task::spawn_blocking(guest::ensure).await??)
    } else {
        None
    };
    if let Some(g) = &tiny {
        // The nodes' host path policy (docs/security.md): the guest kernel's cache (under
        // root's home) and the lab directory (test images) are allowed.
        let mut policy = String::from("# maguey lab: directories kvm parameters may name\n");
        for d in [g.kernel.parent(), g.initrd.parent(), Some(dir.as_path())]
            .into_iter()
            .flatten()
        {
            policy.push_str(&format!("dir {}\n", d.display()));
        }
        for n in &lab.nodes {
            std::fs::write(
                n.dir.join(maguey_node::hostpaths::HYPERVISOR_PATHS_FILE),
                &policy,
            )?;
        }
    }
    ensure_network(&lab)?;
    // VM NICs are taps in a bridge: a kvm lab run as root makes one for its nodes (with
    // namespaces, each node has its own `br0`, the default link).
    let mut nicparams = maguey_model::Params::new();
    if o.kvm && is_root() && !netns {
        let br = bridge_name(&dir);
        make_bridge(&br)?;
        nicparams.insert("link".into(), serde_json::json!(br));
        lab.bridge = Some(br);
    }
    let first = &lab.nodes[0];
    maguey_bootstrap::init::init_cluster(&maguey_bootstrap::init::InitParams {
        state_dir: first.dir.clone(),
        cluster_name: o.cluster_name.clone(),
        node_name: first.name.clone(),
        primary_ip: first.ip.parse()?,
        secondary_ip: None,
        port: o.port,
        file_storage_dir: "file-storage".into(),
        // Every lab node is on this machine: one directory is the "NFS share".
        shared_file_storage_dir: dir.join("shared").display().to_string(),
        enabled_hypervisors: if o.kvm {
            vec![Hypervisor::Fake, Hypervisor::Kvm]
        } else {
            vec![Hypervisor::Fake]
        },
        enabled_disk_templates: vec![
            DiskTemplate::File,
            DiskTemplate::Sharedfile,
            DiskTemplate::Diskless,
        ],
        // The tiny guest's kernel and initramfs, as `cluster init -H kvm:...` sets them.
        hvparams: tiny
            .iter()
            .map(|g| (Hypervisor::Kvm, guest::kvm_hvparams(g)))
            .collect(),
        mac_prefix: "aa:00:00".into(),
        beparams: Default::default(),
        nicparams: nicparams.clone(),
        fake_memory_mib: Some(o.node_memory),
        fake_cpus: Some(o.node_cpus),
    })?;
    if o.replicated {
        maguey_bootstrap::files::mark_replicated(&first.dir)?;
    }
    lab.save(&dir)?;
    rapi_user(&dir, &first.dir)?;
    spawn_daemon_in(first.netns.as_deref(), &first.dir, &[])?;
    let c = MasterClient::from_state_dir(&first.dir)?;
    wait_for_master(&c, Duration::from_secs(30)).await?;
    let last = lab.nodes.len() - 1;
    for (i, n) in lab.nodes.iter().enumerate().skip(1) {
        let witness = o.witness && i == last;
        let t = c
            .join_token(&JoinTokenRequest {
                node_name: n.name.clone(),
                primary_ip: n.ip.clone(),
                secondary_ip: None,
                group: None,
                room: None,
                witness,
            })
            .await?;
        let mut args: Vec<String> = vec![
            "--join".into(),
            t.master_url.clone(),
            "--token".into(),
            t.token,
            "--node-name".into(),
            n.name.clone(),
            "--listen".into(),
            format!("{}:{}", n.ip, o.port),
            "--fake-memory".into(),
            o.node_memory.to_string(),
            "--fake-cpus".into(),
            o.node_cpus.to_string(),
        ];
        if witness {
            args.push("--witness".into());
        }
        spawn_daemon_in(n.netns.as_deref(), &n.dir, &args)?;
    }
    wait_for_nodes(&c, &lab, Duration::from_secs(90)).await?;
    Ok(lab)
}

async fn wait_for_nodes(c: &MasterClient, lab: &Lab, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = c.query(Resource::Node, vec![], vec!["name".into()]).await?;
        let have: Vec<String> = r
            .rows
            .iter()
            .filter_map(|row| row.first()?.as_str().map(String::from))
            .collect();
        let missing: Vec<&str> = lab
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| !have.iter().any(|h| h == n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "nodes did not join in time: {} (see their magueyd.log)",
                missing.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn restart(dir: &Path) -> Result<Lab> {
    let lab = Lab::load(dir)?;
    if let Some(m) = lab.master_dir() {
        rapi_user(dir, m)?;
    }
    // Also brings the links of cut nodes back up (`lab heal`).
    ensure_network(&lab)?;
    let mut started = Vec::new();
    for (i, n) in lab.nodes.iter().enumerate() {
        if !n.dir.join("daemon.json").exists() {
            continue;
        }
        if pid_of(&n.dir).is_some_and(alive) {
            continue;
        }
        spawn_daemon_in(n.netns.as_deref(), &n.dir, &[])?;
        started.push(i + 1);
    }
    let master = lab.master_dir().context("the lab has no nodes")?;
    let c = MasterClient::from_state_dir(master)?;
    wait_for_master(&c, Duration::from_secs(30)).await?;
    // Nodes killed (`lab kill`) and started again answer before `lab up` returns.
    faults::wait_listening(&lab, &started, Duration::from_secs(30)).await?;
    Ok(lab)
}

/// The `export` lines that point the CLI at the lab.
pub fn env(dir: &Path) -> Result<String> {
    if vmnodes::is_vm_lab(dir) {
        return vmnodes::env(dir);
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no lab in {}", dir.display()))?;
    let lab = Lab::load(&dir)?;
    let master = lab.master_dir().context("the lab has no nodes")?;
    let mut out = format!(
        "export MAGUEY_DIR={}\nexport MAGUEY_LAB_DIR={}\n",
        master.display(),
        dir.display()
    );
    if let (Ok(c), Some(first)) = (RapiCredentials::load(&dir), lab.nodes.first()) {
        out.push_str(&format!(
            "export MAGUEY_RAPI_URL=https://{}:{}\nexport MAGUEY_RAPI_USER={}\nexport MAGUEY_RAPI_PASSWORD={}\nexport MAGUEY_RAPI_CA={}\n",
            first.ip,
            maguey_rapi::DEFAULT_PORT,
            c.user,
            c.password,
            master.join("ca.pem").display()
        ));
    }
    Ok(out)
}

/// The lab's Remote API write user, kept in `DIR/rapi.json` (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RapiCredentials {
    pub user: String,
    pub password: String,
}

impl RapiCredentials {
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("rapi.json");
        let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
    }
}

/// Creates the lab's RAPI write user (once): a random password in `DIR/rapi.json` and its
/// `{HA1}` hash in the master's users file.
pub fn rapi_user(dir: &Path, master_dir: &Path) -> Result<RapiCredentials> {
    use rand::distributions::{Alphanumeric, DistString};
    use std::os::unix::fs::PermissionsExt;
    let creds = match RapiCredentials::load(dir) {
        Ok(c) => c,
        Err(_) => {
            let c = RapiCredentials {
                user: "maguey".into(),
                password: Alphanumeric.sample_string(&mut rand::thread_rng(), 24),
            };
            let p = dir.join("rapi.json");
            std::fs::write(&p, serde_json::to_vec_pretty(&c)?)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            c
        }
    };
    let users = maguey_rapi::default_users_file(master_dir);
    if !users.exists() {
        std::fs::create_dir_all(users.parent().context("users file path")?)?;
        std::fs::write(
            &users,
            format!(
                "# Ganeti RAPI users: user password [read|write|read,write]\n{} {} write\n",
                creds.user,
                maguey_rapi::auth::ha1(&creds.user, &creds.password)
            ),
        )?;
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(creds)
}

/// Stops every daemon of the lab (SIGTERM, then SIGKILL after 5 s). Returns how many ran.
pub fn down(dir: &Path) -> Result<usize> {
    if vmnodes::is_vm_lab(dir) {
        return vmnodes::down(dir);
    }
    let lab = Lab::load(dir)?;
    let pids: Vec<i32> = lab
        .nodes
        .iter()
        .filter_map(|n| pid_of(&n.dir))
        .filter(|p| alive(*p))
        .collect();
    for &p in &pids {
        // SAFETY: plain kill(2) on a pid read from the lab's own pidfile.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in &pids {
        if alive(p) {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    // QEMU processes outlive their magueyd by design; a lab takes its VMs down with it.
    for n in &lab.nodes {
        maguey_node::hypervisor::kvm::kill_all(&n.dir);
    }
    if let Some(br) = &lab.bridge {
        let _ = ip(&["link", "del", "dev", br]);
    }
    remove_network(&lab);
    Ok(pids.len())
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `ip ARGS` (iproute2); an error carries its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let o = std::process::Command::new("ip")
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

/// A bridge name unique to the lab directory (at most 15 characters).
fn bridge_name(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    format!("mgl{:08x}", h.finish() as u32)
}

fn make_bridge(name: &str) -> Result<()> {
    if !Path::new("/sys/class/net").join(name).exists() {
        ip(&["link", "add", "name", name, "type", "bridge"])?;
    }
    ip(&["link", "set", "dev", name, "up"])
}

/// The 10.A.B prefix a namespaced lab uses for `--address-prefix` 127.A.B (10.99.B for
/// 127.0.B, the default, to stay clear of common 10.0.x networks); other prefixes as given.
pub fn netns_prefix(prefix: &str) -> String {
    match prefix.split('.').collect::<Vec<_>>().as_slice() {
        ["127", "0", c] => format!("10.99.{c}"),
        ["127", b, c] => format!("10.{b}.{c}"),
        _ => prefix.to_string(),
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// The host end of node `i`'s veth pair.
fn veth_name(lab: &Lab, i: usize) -> Option<String> {
    let br = lab.host_bridge.as_deref()?;
    Some(format!("mgv{}-{i}", &br[3..]))
}

/// Makes the lab's network (idempotent): with namespaces, a bridge in the root namespace
/// holding the host's address, and per node a namespace with `lo`, `eth0` (a veth pair
/// whose other end is on the bridge) and `br0` for its VMs.
pub fn ensure_network(lab: &Lab) -> Result<()> {
    let (Some(br), Some(host_ip)) = (&lab.host_bridge, &lab.host_ip) else {
        return Ok(());
    };
    make_bridge(br)?;
    let cidr = format!("{host_ip}/24");
    let has_ip = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", br])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&cidr))
        .unwrap_or(false);
    if !has_ip {
        ip(&["addr", "add", &cidr, "dev", br])?;
    }
    for (i, n) in lab.nodes.iter().enumerate() {
        let Some(ns) = &n.netns else { continue };
        let host_end = veth_name(lab, i + 1).context("no host bridge")?;
        if !netns_exists(ns) {
            ip(&["netns", "add", ns])?;
        }
        let inside = |args: &[&str]| -> Result<()> {
            let mut v = vec!["netns", "exec", ns.as_str(), "ip"];
            v.extend_from_slice(args);
            ip(&v)
        };
        inside(&["link", "set", "lo", "up"])?;
        if !link_exists(&host_end) {
            let peer = format!("{host_end}p");
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &peer, "netns", ns,
            ])?;
            inside(&["link", "set", &peer, "name", "eth0"])?;
            inside(&["addr", "add", &format!("{}/24", n.ip), "dev", "eth0"])?;
        }
        ip(&["link", "set", &host_end, "master", br, "up"])?;
        inside(&["link", "set", "eth0", "up"])?;
        // The node's own bridge for its VMs' taps (Ganeti's default NIC link is br0).
        let _ = inside(&["link", "add", "name", "br0", "type", "bridge"]);
        inside(&["link", "set", "br0", "up"])?;
    }
    Ok(())
}

/// Removes what [`ensure_network`] made (the veth pairs go with their namespaces).
fn remove_network(lab: &Lab) {
    for n in &lab.nodes {
        if let Some(ns) = &n.netns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
    if let Some(br) = &lab.host_bridge {
        let _ = ip(&["link", "del", "dev", br]);
    }
}

/// Cuts node `i` (1-based) off the lab's network (`ip link set ... down` on its veth), or
/// brings it back: the node keeps running, unreachable, like a host whose cable was pulled.
pub fn set_node_link(dir: &Path, i: usize, up: bool) -> Result<()> {
    let lab = Lab::load(dir)?;
    let host_end = veth_name(&lab, i).context("the lab has no network namespaces")?;
    let state = if up { "up" } else { "down" };
    ip(&["link", "set", "dev", &host_end, state])
}

/// Kills node `i`'s daemon and its VMs at once (SIGKILL), like a host losing power.
pub fn kill_node(dir: &Path, i: usize) -> Result<()> {
    let lab = Lab::load(dir)?;
    let n = lab.nodes.get(i.wrapping_sub(1)).context("no such node")?;
    if let Some(p) = pid_of(&n.dir).filter(|p| alive(*p)) {
        // SAFETY: kill(2) on the lab's own daemon.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    maguey_node::hypervisor::kvm::kill_all(&n.dir);
    Ok(())
}
