//! What a node daemon executes: the [`NodeRuntime`] answers every [`NodeRequest`] using a
//! hypervisor (`fake`, `kvm`), block storage (`file`; `sharedfile`, `plain`, `drbd`
//! later) and Ganeti OS definitions.

pub mod blockcopy;
pub mod hypervisor;
pub mod image;
pub mod migration;
pub mod network;
pub mod os;
pub mod qmp;
pub mod storage;

use hypervisor::fake::FakeHypervisor;
use hypervisor::kvm::KvmHypervisor;
use hypervisor::{Hypervisor, RebootKind};
use maguey_model::Ssconf;
use maguey_rpc::{DrbdRole, DrbdSyncProgress, NodeInfo, NodeRequest, VersionInfo};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storage::StorageContext;

/// File name of the ssconf in the state directory.
pub const SSCONF_FILE: &str = "ssconf.json";
/// Files removed when the node leaves the cluster.
pub const CLUSTER_FILES: &[&str] = &["node.pem", "node.key", "ca.pem", "ca.key", SSCONF_FILE];
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

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A TCP port free on `address` right now (for a migration target to listen on).
fn free_port(address: &str) -> Result<u16, String> {
    let l = std::net::TcpListener::bind((address, 0))
        .map_err(|e| format!("cannot find a free port on {address}: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on {address}: {e}"))
}

/// The ssconf last written by the master, if any (and readable).
pub fn read_ssconf(state_dir: &Path) -> Option<Ssconf> {
    let bytes = std::fs::read(state_dir.join(SSCONF_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The node's boot id (changes at every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn json<T: Serialize>(v: T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| format!("cannot encode the answer: {e}"))
}

/// Ganeti's `blockdev_grow`: with `backingstore` the storage grows by `amount` MiB (`plain`:
/// lvextend; `drbd`: this node's data LV; `file`/`sharedfile`: the image); without it, only a
/// `drbd` device takes its new size (`drbdsetup resize` to the disk's size + `amount`).
fn blockdev_grow(
    ctx: &StorageContext,
    disk: &maguey_model::Disk,
    amount: u64,
    backingstore: bool,
) -> Result<(), String> {
    if amount == 0 {
        return Err(format!("disk {}: nothing to grow (0 MiB)", disk.iv_name));
    }
    let new_size = disk
        .size
        .checked_add(amount)
        .ok_or_else(|| format!("disk {}: new size is too large", disk.iv_name))?;
    match (disk.dev_type.as_str(), backingstore) {
        ("plain", true) => storage::lvm::LvmStorage.grow(ctx, disk, amount),
        ("drbd", true) => storage::drbd::drbd_grow_backing(ctx, disk, amount)
            .map_err(|e| format!("disk {}: {e}", disk.iv_name)),
        ("drbd", false) => storage::drbd::drbd_resize(ctx, disk, new_size)
            .map_err(|e| format!("disk {}: {e}", disk.iv_name)),
        ("file" | "sharedfile", true) => storage::file::FileStorage.grow(ctx, disk, amount),
        ("plain" | "file" | "sharedfile", false) => Ok(()),
        (other, _) => Err(format!("disks of type '{other}' cannot grow")),
    }
}

/// An error setting up the node runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

/// Executes node requests. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct NodeRuntime {
    cfg: NodeConfig,
    fake: Arc<FakeHypervisor>,
    kvm: Arc<KvmHypervisor>,
    os_timeout: Duration,
    /// Runs LVM/DRBD commands; `None`: the real [`storage::runner::SystemRunner`].
    storage_runner: Option<Arc<dyn storage::runner::CommandRunner>>,
}

impl NodeRuntime {
    /// Creates the state directory and the hypervisors' state.
    pub fn new(cfg: NodeConfig) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| NodeError(format!("cannot create {}: {e}", cfg.state_dir.display())))?;
        let fake = FakeHypervisor::new(&cfg.state_dir, &cfg.node_name, cfg.fake_memory_mib)
            .map_err(NodeError)?;
        let kvm = KvmHypervisor::new(&cfg.state_dir, &cfg.node_name).map_err(NodeError)?;
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
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// How long OS scripts may run (default [`os::DEFAULT_OS_TIMEOUT`]).
    pub fn set_os_timeout(&mut self, timeout: Duration) {
        self.os_timeout = timeout;
    }

    /// Runs every LVM/DRBD command of this runtime's storage requests through `runner`
    /// (tests: a [`storage::runner::ScriptedRunner`] checks the exact argv the master's
    /// operations cause).
    pub fn set_storage_runner(&mut self, runner: Arc<dyn storage::runner::CommandRunner>) {
        self.storage_runner = Some(runner);
    }

    /// The hypervisor called `name`.
    pub fn hypervisor(&self, name: &str) -> Result<&dyn Hypervisor, String> {
        match name {
            "fake" => Ok(self.fake.as_ref()),
            "kvm" => Ok(self.kvm.as_ref()),
            other => Err(format!("unknown hypervisor '{other}'")),
        }
    }

    /// The unix socket of a running instance's interactive serial console (kvm), for the
    /// daemon to proxy to `maguey instance console`.
    pub fn serial_socket(&self, name: &str, hypervisor: &str) -> Result<PathBuf, String> {
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

    /// Runs `f` on every disk of a DRBD request, off the async threads.
    async fn drbd_each(
        &self,
        disks: Vec<maguey_model::Disk>,
        owner: Option<String>,
        f: fn(&StorageContext, &maguey_model::Disk) -> Result<(), storage::runner::StorageError>,
    ) -> Result<Value, String> {
        let mut ctx = self.storage_ctx("");
        if let Some(o) = owner {
            ctx = ctx.with_owner(&o);
        }
        Self::blocking(move || {
            for d in &disks {
                f(&ctx, d).map_err(|e| format!("disk {}: {e}", d.iv_name))?;
            }
            Ok(())
        })
        .await?;
        Ok(Value::Null)
    }

    /// Runs a blocking storage operation off the async threads.
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| format!("storage task failed: {e}"))?
    }

    /// Executes one request; the answer is the JSON documented on each [`NodeRequest`]
    /// variant. `LeaveCluster` only removes the cluster files: the daemon exits after replying.
    pub async fn handle(&self, req: NodeRequest) -> Result<Value, String> {
        match req {
            NodeRequest::Version => json(VersionInfo {
                version: maguey_model::VERSION.to_string(),
                protocol: maguey_model::PROTOCOL_VERSION,
                node_name: self.cfg.node_name.clone(),
            }),
            NodeRequest::NodeInfo {
                file_storage_dir,
                hypervisor,
            } => {
                let mem = self.hypervisor(&hypervisor)?.node_memory().await?;
                let ctx = self.storage_ctx(&file_storage_dir);
                let (file, vg) = Self::blocking(move || {
                    let file = storage::BlockStorage::info(&storage::file::FileStorage, &ctx)?;
                    // The cluster's volume group, when this node has it (a node without LVM
                    // simply has no `lvm-vg` storage).
                    let vg = match ctx.vg_name {
                        Some(_) => storage::BlockStorage::info(&storage::lvm::LvmStorage, &ctx)
                            .map_err(|e| tracing::debug!("no lvm-vg storage: {e}"))
                            .ok(),
                        None => None,
                    };
                    Ok((file, vg))
                })
                .await?;
                let cpu_count = self.cfg.fake_cpus.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get() as u32)
                        .unwrap_or(1)
                });
                json(NodeInfo {
                    name: self.cfg.node_name.clone(),
                    cpu_count,
                    memory_total: mem.total,
                    memory_free: mem.free,
                    memory_dom0: mem.dom0,
                    storage: std::iter::once(file).chain(vg).collect(),
                    bootid: boot_id(),
                })
            }
            NodeRequest::WriteSsconf { ssconf } => {
                let data = serde_json::to_vec_pretty(&ssconf).map_err(|e| e.to_string())?;
                let path = self.cfg.state_dir.join(SSCONF_FILE);
                Self::blocking(move || write_atomic(&path, &data)).await?;
                Ok(Value::Null)
            }
            NodeRequest::BlockdevCreate {
                disk,
                instance_name,
                file_storage_dir,
            } => {
                let ctx = self
                    .storage_ctx(&file_storage_dir)
                    .with_owner(&instance_name);
                let info =
                    Self::blocking(move || storage::for_disk(&disk)?.create(&ctx, &disk)).await?;
                json(info)
            }
            NodeRequest::BlockdevRemove {
                disk,
                file_storage_dir,
            } => {
                let ctx = self.storage_ctx(&file_storage_dir);
                Self::blocking(move || storage::for_disk(&disk)?.remove(&ctx, &disk)).await?;
                Ok(Value::Null)
            }
            NodeRequest::BlockdevFind {
                disk,
                file_storage_dir,
            } => {
                let ctx = self.storage_ctx(&file_storage_dir);
                let info =
                    Self::blocking(move || storage::for_disk(&disk)?.find(&ctx, &disk)).await?;
                json(info)
            }
            NodeRequest::FileStorageList { file_storage_dir } => {
                let ctx = self.storage_ctx(&file_storage_dir);
                let list = Self::blocking(move || {
                    storage::BlockStorage::list(&storage::file::FileStorage, &ctx)
                })
                .await?;
                json(list)
            }
            NodeRequest::NodeVolumes => {
                let ctx = self.storage_ctx("");
                let mut lvs: Vec<String> = Self::blocking(move || {
                    Ok(storage::lvm::list_all(ctx.runner())?
                        .iter()
                        .map(storage::lvm::LvInfo::full_name)
                        .collect())
                })
                .await?;
                lvs.sort();
                json(lvs)
            }
            NodeRequest::InstanceStart { instance } => {
                self.hypervisor(&instance.hypervisor)?
                    .start(&instance)
                    .await?;
                Ok(Value::Null)
            }
            NodeRequest::InstanceShutdown {
                name,
                hypervisor,
                timeout,
            } => {
                self.hypervisor(&hypervisor)?
                    .stop(&name, Duration::from_secs(timeout))
                    .await?;
                Ok(Value::Null)
            }
            NodeRequest::InstanceReboot {
                instance,
                reboot_type,
                shutdown_timeout,
            } => {
                let kind: RebootKind = reboot_type.parse()?;
                self.hypervisor(&instance.hypervisor)?
                    .reboot(&instance, kind, Duration::from_secs(shutdown_timeout))
                    .await?;
                Ok(Value::Null)
            }
            NodeRequest::InstanceList { hypervisor } => {
                json(self.hypervisor(&hypervisor)?.list().await?)
            }
            NodeRequest::InstanceInfo { name, hypervisor } => {
                json(self.hypervisor(&hypervisor)?.info(&name).await?)
            }
            NodeRequest::AllInstancesInfo { hypervisor } => {
                json(self.hypervisor(&hypervisor)?.all_info().await?)
            }
            NodeRequest::InstanceBalloonMemory {
                name,
                hypervisor,
                memory,
            } => {
                self.hypervisor(&hypervisor)?.balloon(&name, memory).await?;
                Ok(Value::Null)
            }
            NodeRequest::AcceptInstance {
                instance,
                address,
                port,
                nbd_port,
            } => {
                let port = match port {
                    0 => free_port(&address)?,
                    p => p,
                };
                let nbd_port = match nbd_port {
                    Some(0) => Some(free_port(&address)?),
                    other => other,
                };
                self.hypervisor(&instance.hypervisor)?
                    .accept_instance(&instance, &address, port, nbd_port)
                    .await?;
                json(maguey_rpc::AcceptedPorts { port, nbd_port })
            }
            NodeRequest::InstanceMigrationProgress { name, hypervisor } => {
                let progress = match hypervisor.as_str() {
                    "kvm" => migration::kvm_progress(&self.kvm.paths(&name)?.qmp).await,
                    _ => {
                        self.hypervisor(&hypervisor)?;
                        None
                    }
                };
                json(progress)
            }
            NodeRequest::BlockdevRead {
                disk,
                file_storage_dir,
                offset,
                length,
            } => {
                let ctx = self.storage_ctx(&file_storage_dir);
                json(Self::blocking(move || blockcopy::read(&ctx, &disk, offset, length)).await?)
            }
            NodeRequest::BlockdevWrite {
                disk,
                file_storage_dir,
                offset,
                chunk,
            } => {
                let ctx = self.storage_ctx(&file_storage_dir);
                Self::blocking(move || blockcopy::write(&ctx, &disk, offset, &chunk)).await?;
                Ok(Value::Null)
            }
            NodeRequest::BlockdevGrow {
                disk,
                file_storage_dir,
                amount,
                backingstore,
            } => {
                let ctx = self.storage_ctx(&file_storage_dir);
                Self::blocking(move || blockdev_grow(&ctx, &disk, amount, backingstore)).await?;
                Ok(Value::Null)
            }
            NodeRequest::InstanceResizeDisk {
                name,
                hypervisor,
                disk_index,
                size,
            } => {
                self.hypervisor(&hypervisor)?
                    .resize_disk(&name, disk_index, size)
                    .await?;
                Ok(Value::Null)
            }
            NodeRequest::InstanceMigrate {
                name,
                hypervisor,
                target,
                port,
                bandwidth,
                downtime,
                nbd_port,
            } => json(
                self.hypervisor(&hypervisor)?
                    .migrate(&name, &target, port, bandwidth, downtime, nbd_port)
                    .await?,
            ),
            NodeRequest::FinalizeMigrationDst { instance, success } => {
                self.hypervisor(&instance.hypervisor)?
                    .finalize_migration_dst(&instance, success)
                    .await?;
                Ok(Value::Null)
            }
            NodeRequest::FinalizeMigrationSrc {
                name,
                hypervisor,
                success,
            } => {
                self.hypervisor(&hypervisor)?
                    .finalize_migration_src(&name, success)
                    .await?;
                Ok(Value::Null)
            }
            NodeRequest::InstanceConsole {
                name,
                hypervisor,
                max_bytes,
            } => json(
                self.hypervisor(&hypervisor)?
                    .console_log(&name, max_bytes.min(MAX_CONSOLE_BYTES))
                    .await?,
            ),
            NodeRequest::DrbdAssemble {
                disks,
                instance_name,
                role,
            } => {
                use storage::drbd::{drbd_attach_net, NetRole};
                match role {
                    DrbdRole::Secondary => {
                        self.drbd_each(disks, Some(instance_name), |c, d| {
                            drbd_attach_net(c, d, NetRole::Secondary)
                        })
                        .await
                    }
                    DrbdRole::Primary => {
                        self.drbd_each(disks, Some(instance_name), |c, d| {
                            drbd_attach_net(c, d, NetRole::Primary)
                        })
                        .await
                    }
                    DrbdRole::DualPrimary => {
                        self.drbd_each(disks, Some(instance_name), |c, d| {
                            drbd_attach_net(c, d, NetRole::DualPrimary)
                        })
                        .await
                    }
                }
            }
            NodeRequest::DrbdSetRole {
                disks,
                primary,
                force,
            } => {
                use storage::drbd::{drbd_set_primary, drbd_set_secondary};
                match (primary, force) {
                    (true, true) => {
                        self.drbd_each(disks, None, |c, d| drbd_set_primary(c, d, true))
                            .await
                    }
                    (true, false) => {
                        self.drbd_each(disks, None, |c, d| drbd_set_primary(c, d, false))
                            .await
                    }
                    (false, _) => self.drbd_each(disks, None, drbd_set_secondary).await,
                }
            }
            NodeRequest::DrbdSetDualPrimary { disks, enable } => {
                use storage::drbd::{drbd_disable_dual_primary, drbd_enable_dual_primary};
                let f = if enable {
                    drbd_enable_dual_primary
                } else {
                    drbd_disable_dual_primary
                };
                self.drbd_each(disks, None, f).await
            }
            NodeRequest::DrbdShutdown { disks } => {
                self.drbd_each(disks, None, storage::drbd::drbd_shutdown)
                    .await
            }
            NodeRequest::DrbdReconnectDiscard {
                disks,
                instance_name,
            } => {
                self.drbd_each(
                    disks,
                    Some(instance_name),
                    storage::drbd::drbd_reconnect_discard_my_data,
                )
                .await
            }
            NodeRequest::DrbdReplaceStorage {
                disks,
                instance_name,
                suffix,
            } => {
                let ctx = self.storage_ctx("").with_owner(&instance_name);
                json(
                    Self::blocking(move || {
                        let mut aside = Vec::new();
                        for d in &disks {
                            aside.extend(
                                storage::drbd::drbd_replace_backing(&ctx, d, &suffix)
                                    .map_err(|e| format!("disk {}: {e}", d.iv_name))?,
                            );
                        }
                        Ok(aside)
                    })
                    .await?,
                )
            }
            NodeRequest::DrbdDisconnect { disks } => {
                self.drbd_each(disks, None, storage::drbd::drbd_disconnect_forget)
                    .await
            }
            NodeRequest::DrbdNodeCheck { usermode_helper } => {
                let ctx = self.storage_ctx("");
                json(
                    Self::blocking(move || {
                        let version = storage::drbd::drbd_version(&ctx)
                            .ok()
                            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.point));
                        let helper_error = storage::drbd::drbd_check_helper(&ctx, &usermode_helper)
                            .err()
                            .map(|e| e.to_string());
                        Ok(maguey_rpc::DrbdNodeCheck {
                            version,
                            helper_error,
                        })
                    })
                    .await?,
                )
            }
            NodeRequest::DrbdStatus { disks } => {
                let ctx = self.storage_ctx("");
                json(
                    Self::blocking(move || {
                        let mut out = Vec::with_capacity(disks.len());
                        for d in &disks {
                            let st = storage::drbd::drbd_status(&ctx, d)
                                .map_err(|e| format!("disk {}: {e}", d.iv_name))?;
                            out.push(st.as_ref().map(storage::drbd::rpc_status));
                        }
                        Ok(out)
                    })
                    .await?,
                )
            }
            NodeRequest::DrbdSyncProgress { disks } => {
                let ctx = self.storage_ctx("");
                let p =
                    Self::blocking(move || Ok(storage::drbd::drbd_sync_progress(&ctx, &disks)?))
                        .await?;
                json(DrbdSyncProgress {
                    all_done: p.all_done,
                    min_percent: p.min_percent,
                    max_eta_secs: p.max_eta_secs,
                })
            }
            NodeRequest::OsValidate { install } => {
                let (name, _) = os::split_os_name(&install.os);
                if os::is_builtin(name) {
                    // The image provider checks its parameters when it runs.
                    return json("");
                }
                let ctx = self.storage_ctx(&install.file_storage_dir);
                let log_dir = self.cfg.state_dir.join("log").join("os");
                let def = os::find_os(&self.cfg.os_search_path, name, &self.cfg.node_name)?;
                json(os::run_verify(&def, &install, &ctx, &log_dir, self.os_timeout).await?)
            }
            NodeRequest::InstanceOsRename { install, old_name } => {
                let (name, _) = os::split_os_name(&install.os);
                if os::is_builtin(name) {
                    // The image provider keeps nothing that names the instance.
                    return json("");
                }
                let ctx = self.storage_ctx(&install.file_storage_dir);
                let log_dir = self.cfg.state_dir.join("log").join("os");
                let def = os::find_os(&self.cfg.os_search_path, name, &self.cfg.node_name)?;
                json(
                    os::run_rename(&def, &install, &old_name, &ctx, &log_dir, self.os_timeout)
                        .await?,
                )
            }
            NodeRequest::InstanceOsAdd { install, reinstall } => {
                let (name, _) = os::split_os_name(&install.os);
                let ctx = self.storage_ctx(&install.file_storage_dir);
                let log_dir = self.cfg.state_dir.join("log").join("os");
                if os::is_builtin(name) {
                    // The `image` provider answers an `image::ImageInstallOutput` object.
                    let out = image::install(
                        &install,
                        reinstall,
                        &ctx,
                        &log_dir,
                        &self.cfg.node_name,
                        self.os_timeout,
                    )
                    .await?;
                    return json(out);
                }
                let def = os::find_os(&self.cfg.os_search_path, name, &self.cfg.node_name)?;
                let out =
                    os::run_create(&def, &install, reinstall, &ctx, &log_dir, self.os_timeout)
                        .await?;
                json(out)
            }
            NodeRequest::OsDiagnose => {
                let path = self.cfg.os_search_path.clone();
                json(Self::blocking(move || Ok(os::diagnose_with_builtins(&path))).await?)
            }
            NodeRequest::TestDelay { duration } => {
                if !duration.is_finite() || !(0.0..=MAX_TEST_DELAY).contains(&duration) {
                    return Err(format!(
                        "invalid delay {duration} (0 to {MAX_TEST_DELAY} seconds)"
                    ));
                }
                tokio::time::sleep(Duration::from_secs_f64(duration)).await;
                Ok(Value::Null)
            }
            NodeRequest::LeaveCluster => {
                for f in CLUSTER_FILES {
                    let path = self.cfg.state_dir.join(f);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
                    }
                }
                Ok(Value::Null)
            }
        }
    }
}
