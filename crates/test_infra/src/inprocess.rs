//! A cluster in one process: N node runtimes (`fake` hypervisor, `file` storage under a
//! temporary directory), a transport that routes each node RPC to the runtime at its address
//! through the same JSON the daemons exchange, a config store initialised like `cluster init`
//! followed by `node add`s, and a job queue running the real [`Executor`].
//!
//! No root, no daemons, no sockets (but for the free-port probe of a migration target), no
//! LVM or DRBD: every LVM/DRBD command of the node runtimes fails ([`NoLvmRunner`]).
//!
//! ```text
//! let c = InProcessCluster::new(2).await;
//! let run = c.run(json!({"OP_ID": "OP_TEST_DELAY", "duration": 0})).await;
//! assert!(run.result.is_ok(), "{run}");
//! ```

mod transport;

pub use transport::{answer_node_request, InProcessTransport};

use maguey_config::{Command, ConfigStore};
use maguey_jobs::{JobQueue, OpContext, OpError, OpExecutor};
use maguey_model::{ConfigData, Job, OpCode};
use maguey_node::storage::runner::{Cmd, CmdOutput, CommandRunner};
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_ops::{Executor, Master};
use maguey_rpc::RpcClient;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cluster's node daemon port (never bound: the transport routes by address).
pub const RPC_PORT: u16 = 11811;
/// The file storage directory, relative: under each node's state directory.
pub const FILE_STORAGE_DIR: &str = "file-storage";
/// The OS definition the harness installs on every node besides Maguey's `noop`: it records
/// each call in the node's [`TestNode::os_calls`] and writes `created NAME` at the start of
/// disk 0.
pub const TEST_OS: &str = "recorder";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails every LVM/DRBD command: in-process nodes have neither (and must not touch the
/// host's). Other programs (OS scripts, `qemu-img`) run for real.
#[derive(Debug, Default)]
pub struct NoLvmRunner {
    system: maguey_node::exec::SystemRunner,
    /// A recorded `/proc/drbd` the node reads instead of the host's, when the file exists
    /// (`NODE_DIR/proc-drbd`, written by a test): DRBD status reads see that module state.
    proc_drbd: Option<PathBuf>,
}

/// Programs of LVM and DRBD (by file name).
const LVM_DRBD_PROGRAMS: &[&str] = &[
    "lvm",
    "lvs",
    "vgs",
    "pvs",
    "lvcreate",
    "lvremove",
    "lvchange",
    "lvresize",
    "lvextend",
    "lvrename",
    "vgcreate",
    "pvcreate",
    "drbdsetup",
    "drbdadm",
    "drbdmeta",
];

fn is_lvm_or_drbd(cmd: &Cmd) -> bool {
    cmd.argv().first().is_some_and(|p| {
        let name = p.rsplit('/').next().unwrap_or(p);
        LVM_DRBD_PROGRAMS.contains(&name)
    })
}

fn no_lvm(cmd: &Cmd) -> CmdOutput {
    CmdOutput::fail(
        127,
        &format!(
            "{}: no LVM or DRBD on in-process test nodes",
            cmd.argv().join(" ")
        ),
    )
}

impl CommandRunner for NoLvmRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, maguey_node::exec::ExecError> {
        if is_lvm_or_drbd(cmd) {
            return Ok(no_lvm(cmd));
        }
        self.system.run(cmd)
    }

    fn run_async<'a>(
        &'a self,
        cmd: &'a Cmd,
    ) -> maguey_node::exec::BoxFuture<'a, Result<CmdOutput, maguey_node::exec::ExecError>> {
        if is_lvm_or_drbd(cmd) {
            return Box::pin(async move { Ok(no_lvm(cmd)) });
        }
        self.system.run_async(cmd)
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        if let Some(recorded) = self.proc_drbd.as_ref().filter(|p| p.exists()) {
            if path == Path::new("/proc/drbd") {
                return std::fs::read_to_string(recorded);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: not on in-process test nodes", path.display()),
        ))
    }
}

/// One in-process node.
pub struct TestNode {
    pub name: String,
    pub ip: String,
    /// `ip:port` as the master addresses it.
    pub addr: String,
    /// Its state directory.
    pub dir: PathBuf,
    pub runtime: Arc<NodeRuntime>,
}

impl TestNode {
    /// Instances the `fake` hypervisor runs here (its run files), sorted.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("run").join("fake"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|f| f.strip_suffix(".json"))
                            .filter(|f| !f.starts_with('.'))
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The `fake` hypervisor's run file of `instance` here, if it runs.
    pub fn run_file(&self, instance: &str) -> Option<Value> {
        let path = self
            .dir
            .join("run")
            .join("fake")
            .join(format!("{instance}.json"));
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The file storage directory (`file` disks).
    pub fn file_storage(&self) -> PathBuf {
        self.dir.join(FILE_STORAGE_DIR)
    }

    /// Every regular file under the file storage directory, relative to it, sorted.
    pub fn files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.display().to_string());
                }
            }
        }
        let root = self.file_storage();
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// Calls of the [`TEST_OS`] scripts here: `create NAME`, `reinstall NAME`,
    /// `rename OLD NEW`, in order.
    pub fn os_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("os-calls.log"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The ssconf the master last wrote here.
    pub fn ssconf(&self) -> Option<maguey_model::Ssconf> {
        maguey_node::read_ssconf(&self.dir)
    }
}

/// What one opcode did.
pub struct OpRun {
    /// The executor's own result (a refusal is [`OpError::Prereq`]).
    pub result: Result<Value, OpError>,
    /// The opcode's job log messages.
    pub log: Vec<String>,
    pub job: Job,
}

impl OpRun {
    /// The result; panics with the job log when the opcode failed.
    #[track_caller]
    pub fn ok(self) -> Value {
        match self.result {
            Ok(v) => v,
            Err(e) => panic!("opcode failed: {e:?}\nlog:\n{}", self.log.join("\n")),
        }
    }

    /// The refusal message; panics unless the opcode was refused by its checks.
    #[track_caller]
    pub fn refused(self) -> String {
        match self.result {
            Err(OpError::Prereq(m)) => m,
            other => panic!(
                "expected a refusal, got {other:?}\nlog:\n{}",
                self.log.join("\n")
            ),
        }
    }

    /// The error message of a failure while executing; panics otherwise.
    #[track_caller]
    pub fn failed(self) -> String {
        match self.result {
            Err(OpError::Exec(m)) => m,
            other => panic!(
                "expected an execution error, got {other:?}\nlog:\n{}",
                self.log.join("\n")
            ),
        }
    }
}

impl fmt::Display for OpRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "result: {:?}", self.result)?;
        for l in &self.log {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

type Outcomes = Mutex<HashMap<(u64, usize), Result<Value, OpError>>>;

/// The real executor, with each opcode's `Result` kept (the queue keeps only the message).
struct Recording {
    inner: Executor,
    outcomes: Arc<Outcomes>,
}

impl OpExecutor for Recording {
    fn execute<'a>(
        &'a self,
        op: &'a OpCode,
        ctx: &'a OpContext,
    ) -> Pin<Box<dyn Future<Output = Result<Value, OpError>> + Send + 'a>> {
        Box::pin(async move {
            let r = self.inner.execute(op, ctx).await;
            lock(&self.outcomes).insert((ctx.job_id(), ctx.op_index()), r.clone());
            r
        })
    }
}

/// How to build an [`InProcessCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// Memory of each node's `fake` hypervisor (MiB).
    pub memory_mib: u64,
    pub cpus: u32,
    pub enabled_disk_templates: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 2,
            memory_mib: 4096,
            cpus: 4,
            enabled_disk_templates: ["file", "sharedfile", "diskless", "plain", "drbd"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// A cluster of in-process nodes with its master. Node `i` (0-based) is `node{i+1}` at
/// `127.0.80.{i+1}`; node 0 is the master.
pub struct InProcessCluster {
    pub nodes: Vec<TestNode>,
    pub transport: Arc<InProcessTransport>,
    pub master: Arc<Master>,
    pub queue: Arc<JobQueue>,
    /// `sharedfile` disks, one directory for every node.
    pub shared_dir: PathBuf,
    outcomes: Arc<Outcomes>,
    /// The master's config store (`master.config` is it, behind the seam).
    store: Arc<ConfigStore>,
    _dir: tempfile::TempDir,
}

fn write_script(path: &Path, body: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Writes [`TEST_OS`] under `os_dir`, recording its calls in `log`.
fn write_test_os(os_dir: &Path, log: &Path) -> std::io::Result<()> {
    let dir = os_dir.join(TEST_OS);
    std::fs::create_dir_all(&dir)?;
    let log = log.display();
    let create = format!(
        "#!/bin/sh\nset -e\nif [ \"$INSTANCE_REINSTALL\" = 1 ]; then what=reinstall; else what=create; fi\n\
         echo \"$what $INSTANCE_NAME\" >> '{log}'\n\
         if [ \"${{DISK_COUNT:-0}}\" -gt 0 ]; then\n\
         printf 'created %s\\n' \"$INSTANCE_NAME\" | dd of=\"$DISK_0_PATH\" conv=notrunc 2>/dev/null\n\
         fi\n"
    );
    write_script(&dir.join("create"), &create)?;
    write_script(
        &dir.join("rename"),
        &format!("#!/bin/sh\necho \"rename $OLD_INSTANCE_NAME $INSTANCE_NAME\" >> '{log}'\n"),
    )?;
    for s in ["import", "export", "verify"] {
        write_script(&dir.join(s), "#!/bin/sh\nexit 0\n")?;
    }
    std::fs::write(dir.join("ganeti_api_version"), "20\n")?;
    Ok(())
}

pub(crate) fn start_node(
    root: &Path,
    index: usize,
    memory_mib: u64,
    cpus: u32,
) -> Result<TestNode, String> {
    let name = format!("node{}", index + 1);
    let ip = format!("127.0.80.{}", index + 1);
    let dir = root.join(&name);
    let os_dir = dir.join("os");
    std::fs::create_dir_all(&os_dir).map_err(|e| e.to_string())?;
    maguey_node::os::write_noop_os(&os_dir).map_err(|e| e.to_string())?;
    write_test_os(&os_dir, &dir.join("os-calls.log")).map_err(|e| e.to_string())?;
    let mut runtime = NodeRuntime::new(NodeConfig {
        state_dir: dir.clone(),
        node_name: name.clone(),
        fake_memory_mib: Some(memory_mib),
        fake_cpus: Some(cpus),
        os_search_path: vec![os_dir],
    })
    .map_err(|e| e.to_string())?;
    runtime.set_os_timeout(Duration::from_secs(20));
    runtime.set_storage_runner(Arc::new(NoLvmRunner {
        proc_drbd: Some(dir.join("proc-drbd")),
        ..Default::default()
    }));
    Ok(TestNode {
        addr: format!("{ip}:{RPC_PORT}"),
        name,
        ip,
        dir,
        runtime: Arc::new(runtime),
    })
}

impl InProcessCluster {
    /// `nodes` nodes with the [`ClusterOptions`] defaults.
    pub async fn new(nodes: usize) -> Self {
        Self::with(ClusterOptions {
            nodes,
            ..Default::default()
        })
        .await
    }

    /// Builds the cluster: the first node as by `cluster init`, the others by `OP_NODE_ADD`
    /// jobs. Panics on any failure (a broken fixture).
    pub async fn with(o: ClusterOptions) -> Self {
        assert!(o.nodes >= 1, "a cluster has at least one node");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let shared_dir = dir.path().join("shared");
        std::fs::create_dir_all(&shared_dir).expect("the shared directory");
        let transport = InProcessTransport::new();
        let mut nodes = Vec::new();
        for i in 0..o.nodes {
            let n = start_node(dir.path(), i, o.memory_mib, o.cpus).expect("a node runtime");
            transport.add_node(&n.addr, n.runtime.clone());
            nodes.push(n);
        }
        let config =
            Arc::new(ConfigStore::open(&dir.path().join("config.redb")).expect("a config store"));
        config
            .apply(init_command(&nodes[0], &o, &shared_dir))
            .expect("the initial config");
        let cluster_cfg = config.snapshot().cluster.clone();
        let rpc = RpcClient::with_transport(transport.clone(), Duration::from_secs(60))
            .expect("an RPC client")
            .with_fence(maguey_rpc::Fence::new(
                &cluster_cfg.uuid,
                cluster_cfg.fence_term(),
            ));
        let master = Arc::new(Master {
            config: config.clone(),
            rpc,
            node_name: nodes[0].name.clone(),
            destroy: Arc::new(tokio::sync::Notify::new()),
        });
        let queue = JobQueue::open(&dir.path().join("jobs.redb"), 20).expect("a job queue");
        let outcomes = Arc::new(Outcomes::default());
        queue.start(Arc::new(Recording {
            inner: Executor {
                master: master.clone(),
            },
            outcomes: outcomes.clone(),
        }));
        if let Some((name, e)) = master.distribute_ssconf().await.into_iter().next() {
            panic!("ssconf to {name}: {e}");
        }
        let cluster = InProcessCluster {
            nodes,
            transport,
            master,
            queue,
            shared_dir,
            outcomes,
            store: config,
            _dir: dir,
        };
        for n in &cluster.nodes[1..] {
            cluster
                .run(json!({"OP_ID": "OP_NODE_ADD", "node_name": n.name, "primary_ip": n.ip}))
                .await
                .ok();
        }
        cluster
    }

    /// The config now.
    pub fn config(&self) -> Arc<ConfigData> {
        self.master.config.snapshot()
    }

    /// Applies a config command directly (fixtures: records the units did not make).
    pub fn apply(&self, cmd: Command) -> Result<u64, maguey_config::ConfigError> {
        self.store.apply(cmd)
    }

    /// The config's serial number.
    pub fn serial(&self) -> u64 {
        self.config().serial_no
    }

    /// The node called `name`.
    #[track_caller]
    pub fn node(&self, name: &str) -> &TestNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no test node {name}"))
    }

    /// The name of the node with config uuid `uuid`.
    #[track_caller]
    pub fn node_name(&self, uuid: &str) -> String {
        self.config()
            .nodes
            .get(uuid)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| panic!("no node {uuid} in the config"))
    }

    /// The instance `name` as the config holds it, in its JSON form (`None`: not there).
    pub fn instance(&self, name: &str) -> Option<Value> {
        let cfg = self.config();
        cfg.instance_by_name(name)
            .and_then(|i| serde_json::to_value(i).ok())
    }

    /// The name of the primary node of instance `name`.
    #[track_caller]
    pub fn primary_of(&self, name: &str) -> String {
        let cfg = self.config();
        let inst = cfg
            .instance_by_name(name)
            .unwrap_or_else(|| panic!("no instance {name}"));
        self.node_name(&inst.primary_node)
    }

    /// The node `name` as the config holds it, in its JSON form.
    pub fn node_config(&self, name: &str) -> Option<Value> {
        let cfg = self.config();
        cfg.node_by_name(name)
            .and_then(|n| serde_json::to_value(n).ok())
    }

    /// What a refused opcode must leave alone, per node: name, running instances, files.
    pub fn node_states(&self) -> Vec<(String, Vec<String>, Vec<String>)> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.running(), n.files()))
            .collect();
        let mut shared = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.shared_dir) {
            for e in entries.flatten() {
                let sub = e.path();
                match std::fs::read_dir(&sub) {
                    Ok(files) => {
                        shared.extend(files.flatten().map(|f| f.path().display().to_string()))
                    }
                    Err(_) => shared.push(sub.display().to_string()),
                }
            }
        }
        shared.sort();
        out.push(("shared".into(), Vec::new(), shared));
        out
    }

    /// The image file of disk `index` of instance `name` on node `node` (`sharedfile`: in
    /// the shared directory, whatever the node).
    #[track_caller]
    pub fn disk_file(&self, name: &str, index: usize, node: &str) -> PathBuf {
        let cfg = self.config();
        let inst = cfg
            .instance_by_name(name)
            .unwrap_or_else(|| panic!("no instance {name}"));
        match &inst.disks[index].logical_id {
            maguey_model::LogicalId::File { path, .. } => self.node(node).file_storage().join(path),
            maguey_model::LogicalId::Sharedfile { path, .. } => self.shared_dir.join(path),
            other => panic!("disk {index} of {name} is no file: {other:?}"),
        }
    }

    /// Runs `ops` (Ganeti JSON opcodes) as one job and waits for it; the outcome of each.
    pub async fn run_job(&self, ops: Vec<Value>) -> Vec<OpRun> {
        let ops: Vec<OpCode> = ops
            .into_iter()
            .map(|v| {
                serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad opcode {v}: {e}"))
            })
            .collect();
        let n = ops.len();
        let id = self.queue.submit(ops, 0).expect("job submitted");
        let job = self.wait(id).await;
        (0..n)
            .map(|i| {
                let result = lock(&self.outcomes)
                    .remove(&(id, i))
                    .unwrap_or_else(|| Err(OpError::Exec(job.opresult[i].to_string())));
                OpRun {
                    result,
                    log: job.oplog[i].iter().map(|l| l.message.clone()).collect(),
                    job: job.clone(),
                }
            })
            .collect()
    }

    /// Runs one opcode (Ganeti JSON, e.g. `json!({"OP_ID": "OP_TEST_DELAY", ...})`) as a job
    /// through the [`Executor`] and waits for it.
    pub async fn run(&self, op: Value) -> OpRun {
        self.run_job(vec![op])
            .await
            .pop()
            .expect("one opcode, one outcome")
    }

    /// Waits until job `id` is finalized (at most a minute) and returns it.
    pub async fn wait(&self, id: u64) -> Job {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(job) = self.queue.get(id) {
                if job.status.is_finalized() {
                    return job;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not finish within a minute: {:?}",
                self.queue.get(id)
            );
            self.queue
                .wait_for_change(id, None, u64::MAX, Duration::from_millis(200))
                .await;
        }
    }

    /// Every job the queue holds (child jobs included), oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        self.queue.list(true)
    }

    /// Creates instance `name` on `pnode` (`snode` for mirrored templates) with the
    /// [`TEST_OS`], one 64 MiB disk (none for `diskless`), 128 MiB of memory, started.
    pub async fn create_instance(&self, name: &str, template: &str, pnode: &str) -> Value {
        self.create_instance_sized(name, template, pnode, 64).await
    }

    /// [`create_instance`](Self::create_instance) with a disk of `disk_mib` MiB.
    pub async fn create_instance_sized(
        &self,
        name: &str,
        template: &str,
        pnode: &str,
        disk_mib: u64,
    ) -> Value {
        let disks: Vec<Value> = if template == "diskless" {
            Vec::new()
        } else {
            vec![json!({ "size": disk_mib })]
        };
        self.run(json!({
            "OP_ID": "OP_INSTANCE_CREATE",
            "instance_name": name,
            "disk_template": template,
            "disks": disks,
            "pnode": pnode,
            "os_type": TEST_OS,
            "beparams": {"maxmem": 128, "minmem": 128, "vcpus": 1},
        }))
        .await
        .ok()
    }
}

/// The `InitCluster` command `cluster init` would apply for `first` (built from JSON, the
/// config's own format).
fn init_command(first: &TestNode, o: &ClusterOptions, shared_dir: &Path) -> Command {
    let ts = maguey_model::now();
    let group_uuid = maguey_model::new_uuid();
    let node_uuid = maguey_model::new_uuid();
    let group = json!({
        "uuid": group_uuid, "name": "default", "alloc_policy": "preferred",
        "ndparams": {}, "beparams": {}, "hvparams": {}, "nicparams": {}, "tags": [],
        "serial_no": 1, "ctime": ts, "mtime": ts,
    });
    let node = json!({
        "uuid": node_uuid, "name": first.name, "primary_ip": first.ip,
        "secondary_ip": first.ip, "group": group_uuid, "master_candidate": true,
        "master_capable": true, "vm_capable": true, "drained": false, "offline": false,
        "ndparams": {}, "tags": [], "serial_no": 1, "ctime": ts, "mtime": ts,
    });
    let cluster = json!({
        "uuid": maguey_model::new_uuid(), "cluster_name": "cluster.test",
        "master_node": node_uuid, "rpc_port": RPC_PORT, "mac_prefix": "aa:00:00",
        "file_storage_dir": FILE_STORAGE_DIR,
        "shared_file_storage_dir": shared_dir.display().to_string(),
        "vg_name": maguey_model::DEFAULT_VG_NAME, "reserved_lvs": [],
        "enabled_hypervisors": ["fake"],
        "enabled_disk_templates": o.enabled_disk_templates,
        "default_iallocator": "", "candidate_pool_size": 10, "hvparams": {},
        "beparams": {"default": {}}, "nicparams": {"default": {}}, "ndparams": {},
        "osparams": {}, "ca_fingerprint": "", "tags": [],
        "serial_no": 1, "ctime": ts, "mtime": ts,
    });
    Command::InitCluster {
        cluster: serde_json::from_value(cluster).expect("a cluster object"),
        group: serde_json::from_value(group).expect("a node group object"),
        master: serde_json::from_value(node).expect("a node object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_lvm_on_test_nodes() {
        let out = NoLvmRunner::default()
            .run(&Cmd::new("lvs", &["--reportformat", "json"]))
            .unwrap();
        assert!(!out.success());
        assert!(NoLvmRunner::default()
            .read_file(Path::new("/proc/drbd"))
            .is_err());
    }
}
