//! What a node daemon executes: the [`NodeRuntime`] answers every [`NodeRequest`] using a
//! hypervisor (`fake`, `kvm`), block storage (`file`, `sharedfile`, `plain`, `drbd`) and
//! Ganeti OS definitions.
//!
//! The API is typed: [`api::dispatch`] maps each request to a function of its subject that
//! returns the request's [`NodeReply`] or a [`NodeError`]; [`NodeRuntime::handle`] is the one
//! place that turns them into the JSON of the wire. Every external program runs through the
//! command runner of [`exec`].

pub mod api;
pub mod blockcopy;
pub mod error;
pub mod exec;
pub mod fence;
pub mod hooks;
pub mod hostpaths;
pub mod hypervisor;
pub mod image;
pub mod image_network;
pub mod image_safety;
pub mod master_ip;
pub mod migration;
pub mod network;
pub mod oplocks;
pub mod os;
pub mod ports;
pub mod qmp;
mod state;
pub mod storage;

pub use error::{ErrorKind, NodeError, NodeResult};
pub use state::{boot_id, read_ssconf, write_atomic, write_atomic_private};

use hypervisor::fake::FakeHypervisor;
use hypervisor::kvm::KvmHypervisor;
use hypervisor::Hypervisor;
use maguey_rpc::{NodeReply, NodeRequest, RpcReply};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storage::StorageContext;

/// File name of the ssconf in the state directory.
pub const SSCONF_FILE: &str = "ssconf.json";
/// Files removed when the node leaves the cluster.
pub const CLUSTER_FILES: &[&str] = &[
    "node.pem",
    "node.key",
    "ca.pem",
    "ca.key",
    SSCONF_FILE,
    "admin.pem",
    "admin.key",
    "joined-master.json",
    fence::TERM_FILE,
    // A master candidate's replica of the config (docs/replication.md).
    "raft.redb",
    "raft-id.json",
];
/// Most console output one `instance_console` answer carries.
pub const MAX_CONSOLE_BYTES: u64 = 1 << 20;
/// Longest `TestDelay` accepted (seconds).
pub const MAX_TEST_DELAY: f64 = 86_400.0;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Where the node keeps its certificates, ssconf, run state, logs and (relative) file
    /// storage directory.
    pub state_dir: PathBuf,
    pub node_name: String,
    /// Memory the `fake` hypervisor reports (MiB); `None`: the host's.
    pub fake_memory_mib: Option<u64>,
    /// CPU count reported in node info; `None`: the host's.
    pub fake_cpus: Option<u32>,
    /// Directories searched for OS definitions, in order.
    pub os_search_path: Vec<PathBuf>,
}

impl NodeConfig {
    /// `state_dir/os`, Maguey's `/etc/maguey/os`, Ganeti's `/srv/ganeti/os`,
    /// `/usr/share/ganeti/os`, `/usr/local/lib/ganeti/os`, then `/usr/share/maguey/os`.
    pub fn default_os_search_path(state_dir: &Path) -> Vec<PathBuf> {
        vec![
            state_dir.join("os"),
            PathBuf::from("/etc/maguey/os"),
            PathBuf::from("/srv/ganeti/os"),
            PathBuf::from("/usr/share/ganeti/os"),
            PathBuf::from("/usr/local/lib/ganeti/os"),
            PathBuf::from("/usr/share/maguey/os"),
        ]
    }
}

/// Executes node requests. Cheap to share behind an `Arc` (or to clone: clones share the
/// hypervisors and the locks); all methods take `&self`.
#[derive(Clone)]
pub struct NodeRuntime {
    cfg: NodeConfig,
    fake: Arc<FakeHypervisor>,
    kvm: Arc<KvmHypervisor>,
    os_timeout: Duration,
    /// Runs storage and OS commands; `None`: the real [`exec::SystemRunner`].
    storage_runner: Option<Arc<dyn storage::runner::CommandRunner>>,
    /// Where hook scripts live; `None`: `state_dir/hooks`.
    hooks_dir: Option<PathBuf>,
    /// Ports of migration targets and NBD exports (magueyd.toml); default: ephemeral.
    ports: ports::PortRanges,
    /// The node's own locks on the instances and disks requests change ([`oplocks`]).
    oplocks: Arc<oplocks::OpLocks>,
    /// How long a request waits for such a lock ([`oplocks::LOCK_WAIT`]).
    lock_wait: Duration,
    /// A witness of a replicated cluster: it refuses every request that would change an
    /// instance or a disk (it has no hypervisor or storage).
    witness: bool,
}

impl NodeRuntime {
    /// Creates the state directory and the hypervisors' state.
    pub fn new(cfg: NodeConfig) -> NodeResult<Self> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
            NodeError::io(format!("cannot create {}: {e}", cfg.state_dir.display()))
        })?;
        let fake = FakeHypervisor::new(&cfg.state_dir, &cfg.node_name, cfg.fake_memory_mib)?;
        let kvm = KvmHypervisor::new(&cfg.state_dir, &cfg.node_name)?;
        // `accel=auto` asks whether KVM really runs guests here (a probe of up to 3 s): ask
        // now, in the background, so the first start or incoming migration does not wait.
        if Path::new("/dev/kvm").exists() {
            std::thread::spawn(hypervisor::kvm::kvm_can_run);
        }
        Ok(NodeRuntime {
            cfg,
            fake: Arc::new(fake),
            kvm: Arc::new(kvm),
            os_timeout: os::DEFAULT_OS_TIMEOUT,
            storage_runner: None,
            hooks_dir: None,
            ports: ports::PortRanges::default(),
            oplocks: Arc::default(),
            lock_wait: oplocks::LOCK_WAIT,
            witness: false,
        })
    }

    /// Makes this node a witness: requests changing instances or disks are refused.
    pub fn set_witness(&mut self, witness: bool) {
        self.witness = witness;
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// How long a request waits for the node's lock of an instance or disk that another one
    /// holds (default [`oplocks::LOCK_WAIT`]).
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = wait;
    }

    /// How long OS scripts may run (default [`os::DEFAULT_OS_TIMEOUT`]).
    pub fn set_os_timeout(&mut self, timeout: Duration) {
        self.os_timeout = timeout;
    }

    /// Runs the commands of this runtime's storage and OS requests (LVM, DRBD, OS scripts,
    /// `qemu-img`, `xorriso`) through `runner` (tests: a [`exec::ScriptedRunner`] checks the
    /// exact argv the master's operations cause). QEMU and `ip` run through the system runner.
    pub fn set_storage_runner(&mut self, runner: Arc<dyn storage::runner::CommandRunner>) {
        self.storage_runner = Some(runner);
    }

    /// Takes hook scripts from `dir` (Ganeti: `/etc/ganeti/hooks`) instead of
    /// `state_dir/hooks`.
    /// Port ranges for migration targets and NBD exports (`None`: ephemeral ports).
    pub fn set_port_ranges(&mut self, ranges: ports::PortRanges) {
        self.ports = ranges;
    }

    pub fn port_ranges(&self) -> ports::PortRanges {
        self.ports
    }

    /// Starts every QEMU in its own systemd scope under `maguey.slice` (when magueyd runs as
    /// a systemd service), so that stopping or restarting the daemon never touches a VM.
    pub fn set_systemd_scopes(&self, on: bool) {
        self.kvm.set_systemd_scopes(on);
    }

    /// Host shutdown: ACPI power-down of every running kvm instance ([`KvmHypervisor`]'s
    /// `power_down_all`).
    pub async fn power_down_guests(
        &self,
        timeout: Duration,
    ) -> NodeResult<Vec<hypervisor::kvm::PoweredDown>> {
        self.kvm.power_down_all(timeout).await
    }

    pub fn set_hooks_dir(&mut self, dir: PathBuf) {
        self.hooks_dir = Some(dir);
    }

    /// The directory of hook scripts (`<hpath>-<pre|post>.d/` under it).
    pub fn hooks_dir(&self) -> PathBuf {
        self.hooks_dir
            .clone()
            .unwrap_or_else(|| self.cfg.state_dir.join("hooks"))
    }

    /// The hypervisor called `name`.
    pub fn hypervisor(&self, name: &str) -> NodeResult<&dyn Hypervisor> {
        match name {
            "fake" => Ok(self.fake.as_ref()),
            "kvm" => Ok(self.kvm.as_ref()),
            other => Err(NodeError::bad_request(format!(
                "unknown hypervisor '{other}'"
            ))),
        }
    }

    /// The unix socket of a running instance's interactive serial console (kvm), for the
    /// daemon to proxy to `maguey instance console`.
    pub fn serial_socket(&self, name: &str, hypervisor: &str) -> NodeResult<PathBuf> {
        self.hypervisor(hypervisor)?.serial_socket(name)
    }

    /// The storage context of one request: the volume group, this node's uuid and the
    /// secondary IPs come from the master's ssconf.
    fn storage_ctx(&self, file_storage_dir: &str) -> StorageContext {
        let ctx =
            StorageContext::for_node(&self.cfg.state_dir, file_storage_dir, &self.cfg.node_name);
        match &self.storage_runner {
            Some(r) => ctx.with_runner(r.clone()),
            None => ctx,
        }
    }

    /// Runs a blocking operation (storage, file system) off the async threads.
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> NodeResult<T> + Send + 'static,
    ) -> NodeResult<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| NodeError::internal(format!("storage task failed: {e}")))?
    }

    /// Executes one request: its typed reply, or why it failed. `LeaveCluster` only removes
    /// the cluster files: the daemon exits after replying.
    /// A request that changes an instance or a disk holds the node's lock on it until its
    /// work ends, also when the caller stopped waiting ([`oplocks`]).
    pub async fn execute(&self, req: NodeRequest) -> NodeResult<NodeReply> {
        let keys = oplocks::keys(&req);
        if self.witness && !keys.is_empty() {
            return Err(NodeError::internal(format!(
                "node {} is a witness: it runs no instances and holds no disks ({} refused)",
                self.cfg.node_name,
                req.procedure()
            )));
        }
        if keys.is_empty() {
            return api::dispatch(self, req).await;
        }
        let held = self
            .oplocks
            .acquire(&keys, req.procedure(), self.lock_wait)
            .await?;
        let rt = self.clone();
        tokio::spawn(async move {
            let _held = held;
            api::dispatch(&rt, req).await
        })
        .await
        .map_err(|e| NodeError::internal(format!("the request's task failed: {e}")))?
    }

    /// Executes one request and encodes its reply as the JSON documented on each
    /// [`NodeRequest`] variant: the one place where typed replies become the wire's JSON.
    pub async fn handle(&self, req: NodeRequest) -> NodeResult<Value> {
        self.execute(req)
            .await?
            .to_json()
            .map_err(|e| NodeError::internal(format!("cannot encode the answer: {e}")))
    }

    /// Executes one request for the RPC server: the reply sent back to the master (an
    /// error is its message).
    pub async fn rpc_reply(&self, req: NodeRequest) -> RpcReply {
        match self.handle(req).await {
            Ok(v) => RpcReply::Ok(v),
            Err(e) => RpcReply::Error(e.to_string()),
        }
    }
}
