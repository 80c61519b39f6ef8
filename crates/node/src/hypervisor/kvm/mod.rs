//! Ganeti's `kvm` hypervisor: one QEMU process per instance, in its own session, driven over
//! QMP.
//!
//! Runtime files live in `state_dir/run/kvm/`: `NAME.runtime.json` (argv, memory, vcpus,
//! start time, pid), `NAME.pid` (QEMU's `-pidfile`), `NAME.qmp` (QMP socket), `NAME.serial`
//! (serial console socket), `NAME.console.log` (everything the serial console printed) and
//! `NAME.qemu.log` (QEMU's own output). QEMU is started in a session of its own (`setsid`,
//! not `-daemonize`: its sandbox forbids the fork), so it outlives magueyd; a restarted magueyd
//! finds its instances again from these files (the pid must still be a QEMU using this
//! instance's QMP socket) and talks to them over QMP. No state is kept in memory.

mod cmdline;
mod migration;
mod probe;
mod process;
pub mod scope;
mod shutdown;
mod tls;
pub mod user;

pub use cmdline::{build_argv, resolve_accel};
pub use probe::kvm_can_run;
pub use process::{kill_all, Paths, RunFile};
pub use shutdown::{PoweredDown, RECORD_FILE};
pub use tls::x509_identity;

use super::{BoxFuture, Hypervisor, MigrationTarget, NodeMemory, RebootKind};
use crate::error::{NodeError, NodeResult};
use crate::exec::CommandRunner;
use crate::qmp::Qmp;
use maguey_rpc::{InstanceRunInfo, InstanceRuntime, MigrationStatus};
use process::rss_mib;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest time a QEMU just started may take to answer QMP.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Soft reboot: the longest the guest may take to power off (whatever `shutdown_timeout` was
/// asked) before it is stopped hard. The master's node RPCs time out after 60 s, so a reboot
/// (power-off, then a fresh boot) must answer well before.
const REBOOT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(45);
/// Soft stop: the longest wait for the guest's ACPI power-off, whatever timeout was asked
/// (Ganeti's default is 120 s), so the answer arrives within the master's 60 s RPC timeout.
const MAX_SOFT_STOP: Duration = Duration::from_secs(50);
const MIB: u64 = 1024 * 1024;

pub struct KvmHypervisor {
    run_dir: PathBuf,
    state_dir: PathBuf,
    node_name: String,
    /// Serialises starts, stops and reboots.
    lock: tokio::sync::Mutex<()>,
    /// Runs QEMU.
    runner: Arc<dyn CommandRunner>,
    /// Start each QEMU in its own systemd scope ([`scope`]).
    systemd_scopes: std::sync::atomic::AtomicBool,
}

impl KvmHypervisor {
    /// Keeps its runtime files in `state_dir/run/kvm` (created if missing).
    pub fn new(state_dir: &Path, node_name: &str) -> NodeResult<Self> {
        let state_dir = if state_dir.is_absolute() {
            state_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| NodeError::io(e.to_string()))?
                .join(state_dir)
        };
        let run_dir = state_dir.join("run").join("kvm");
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| NodeError::io(format!("cannot create {}: {e}", run_dir.display())))?;
        Ok(KvmHypervisor {
            run_dir,
            state_dir,
            node_name: node_name.to_string(),
            lock: tokio::sync::Mutex::new(()),
            runner: crate::exec::system(),
            systemd_scopes: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts QEMU through `systemd-run --scope` from now on ([`scope::wrap`]).
    pub fn set_systemd_scopes(&self, on: bool) {
        self.systemd_scopes
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn paths(&self, name: &str) -> NodeResult<Paths> {
        maguey_model::names::validate_hostname(name)
            .map_err(|e| NodeError::bad_request(format!("invalid instance name: {e}")))?;
        let p = Paths::new(&self.run_dir, name);
        // sun_path holds 108 bytes.
        if p.serial.as_os_str().len() > 100 || p.qmp.as_os_str().len() > 100 {
            return Err(NodeError::bad_request(format!(
                "the runtime directory {} is too deep for unix sockets",
                self.run_dir.display()
            )));
        }
        Ok(p)
    }

    /// A fresh QMP session with the instance's QEMU.
    async fn qmp(&self, name: &str) -> NodeResult<Qmp<tokio::net::UnixStream>> {
        Ok(Qmp::connect(&self.paths(name)?.qmp).await?)
    }

    /// The last `max_bytes` of what the instance's serial console printed (also after it
    /// stopped, until it starts again).
    pub fn console_log(&self, name: &str, max_bytes: u64) -> NodeResult<String> {
        use std::io::{Read, Seek, SeekFrom};
        let p = self.paths(name)?.console_log;
        let mut f = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NodeError::not_found(format!(
                    "instance {name} has no console log on {}",
                    self.node_name
                )))
            }
            Err(e) => return Err(NodeError::io(format!("cannot read {}: {e}", p.display()))),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > max_bytes {
            f.seek(SeekFrom::Start(len - max_bytes))
                .map_err(|e| NodeError::io(e.to_string()))?;
        }
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| NodeError::io(e.to_string()))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// The serial console socket of a running instance.
    pub fn serial_socket(&self, name: &str) -> NodeResult<PathBuf> {
        if self.running(name)?.is_none() {
            return Err(NodeError::not_found(format!(
                "instance {name} is not running on node {}",
                self.node_name
            )));
        }
        Ok(self.paths(name)?.serial)
    }
}

impl Hypervisor for KvmHypervisor {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn start<'a>(&'a self, inst: &'a InstanceRuntime) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if self.running(&inst.name)?.is_some() {
                // A guest that powered itself off (`user_shutdown`) starts in a fresh QEMU.
                let off = match self.qmp(&inst.name).await {
                    Ok(mut q) => q.query_status().await.is_ok_and(|s| s.status == "shutdown"),
                    Err(_) => false,
                };
                if !off {
                    return Err(NodeError::conflict(format!(
                        "instance {} is already running",
                        inst.name
                    )));
                }
                self.stop_locked(&inst.name, Duration::ZERO).await?;
            }
            let r = self.start_locked(inst).await;
            if r.is_err() {
                // Leave nothing half-started behind.
                let _ = self.stop_locked(&inst.name, Duration::ZERO).await;
            }
            r
        })
    }

    fn stop<'a>(&'a self, name: &'a str, timeout: Duration) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if timeout > MAX_SOFT_STOP {
                tracing::info!(
                    "instance {name}: waiting {MAX_SOFT_STOP:?} (not {timeout:?}) for the guest to power off, within the master's RPC timeout"
                );
            }
            self.stop_locked(name, timeout.min(MAX_SOFT_STOP)).await
        })
    }

    fn reboot<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        kind: RebootKind,
        shutdown_timeout: Duration,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if self.running(&inst.name)?.is_none() {
                return Err(NodeError::not_found(format!(
                    "instance {} is not running",
                    inst.name
                )));
            }
            match kind {
                // The machine's reset line: same QEMU process, the guest boots again.
                RebootKind::Hard => {
                    self.qmp(&inst.name).await?.system_reset().await?;
                    if let Some(mut rf) = self.read(&inst.name)? {
                        rf.started = maguey_model::now();
                        let data = serde_json::to_vec_pretty(&rf)
                            .map_err(|e| NodeError::internal(e.to_string()))?;
                        crate::write_atomic(&self.paths(&inst.name)?.runtime, &data)?;
                    }
                    Ok(())
                }
                // Ganeti's way: a clean ACPI power-off, then a fresh QEMU.
                RebootKind::Soft => {
                    self.stop_locked(&inst.name, shutdown_timeout.min(REBOOT_SHUTDOWN_TIMEOUT))
                        .await?;
                    self.start_locked(inst).await
                }
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, NodeResult<Vec<String>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut dead = Vec::new();
            for n in self.all_names()? {
                match self.running(&n) {
                    Ok(Some(_)) => out.push(n),
                    Ok(None) => dead.push(n),
                    Err(_) => {}
                }
            }
            self.reap(&dead);
            Ok(out)
        })
    }

    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, NodeResult<Option<InstanceRunInfo>>> {
        Box::pin(async move {
            match self.running(name)? {
                Some(rf) => Ok(Some(self.run_info(&rf).await)),
                None => {
                    self.reap(&[name.to_string()]);
                    Ok(None)
                }
            }
        })
    }

    fn balloon<'a>(&'a self, name: &'a str, memory: u64) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let rf = self
                .running(name)?
                .ok_or_else(|| NodeError::not_found(format!("instance {name} is not running")))?;
            if memory > rf.memory {
                return Err(NodeError::io(format!(
                    "cannot balloon instance {name} to {memory} MiB: it started with {} MiB",
                    rf.memory
                )));
            }
            Ok(self.qmp(name).await?.balloon(memory * MIB).await?)
        })
    }

    /// QMP `block_resize` of the disk's format node (`disk<N>`): the guest's virtio-blk sees
    /// the new capacity at once. The block device under it must have grown already.
    fn resize_disk<'a>(
        &'a self,
        name: &'a str,
        index: usize,
        size_mib: u64,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            self.running(name)?
                .ok_or_else(|| NodeError::not_found(format!("instance {name} is not running")))?;
            let bytes = size_mib.checked_mul(MIB).ok_or_else(|| {
                NodeError::bad_request(format!("disk size {size_mib} MiB is too large"))
            })?;
            self.qmp(name)
                .await?
                .call(
                    "block_resize",
                    serde_json::json!({"node-name": format!("disk{index}"), "size": bytes}),
                )
                .await
                .map_err(|e| {
                    NodeError::from(e)
                        .context(format!("instance {name}: block_resize of disk {index}"))
                })
        })
    }

    fn serial_socket(&self, name: &str) -> NodeResult<PathBuf> {
        KvmHypervisor::serial_socket(self, name)
    }

    fn console_log<'a>(
        &'a self,
        name: &'a str,
        max_bytes: u64,
    ) -> BoxFuture<'a, NodeResult<String>> {
        Box::pin(async move { KvmHypervisor::console_log(self, name, max_bytes) })
    }

    fn accept_instance<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        address: &'a str,
        port: u16,
        nbd_port: Option<u16>,
        tls_peer: Option<&'a str>,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(self.accept(inst, address, port, nbd_port, tls_peer))
    }

    fn migrate<'a>(
        &'a self,
        name: &'a str,
        to: MigrationTarget<'a>,
    ) -> BoxFuture<'a, NodeResult<MigrationStatus>> {
        Box::pin(self.migrate_out(name, to))
    }

    fn finalize_migration_dst<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        success: bool,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(self.finalize_dst(inst, success))
    }

    fn finalize_migration_src<'a>(
        &'a self,
        name: &'a str,
        success: bool,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(self.finalize_src(name, success))
    }

    fn node_memory(&self) -> BoxFuture<'_, NodeResult<NodeMemory>> {
        Box::pin(async move {
            let (total, available) = super::host_meminfo()?;
            // A guest touches its RAM lazily: what running instances may still claim (their
            // memory minus what their QEMU already holds) is not free for new ones.
            let mut reserved = 0u64;
            let mut held = 0u64;
            for name in self.all_names()? {
                if let Ok(Some(rf)) = self.running(&name) {
                    let rss = rss_mib(rf.pid);
                    held += rss.min(rf.memory);
                    reserved += rf.memory.saturating_sub(rss);
                }
            }
            Ok(NodeMemory {
                total,
                free: available.saturating_sub(reserved),
                dom0: (total - available).saturating_sub(held),
            })
        })
    }
}
