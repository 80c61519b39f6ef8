//! Ganeti's `fake` hypervisor: instances "run" as JSON files in `state_dir/run/fake/`, so
//! their state survives a restart of the node daemon. Memory is accounted like a real
//! hypervisor: an instance that does not fit is refused.

use super::{BoxFuture, Hypervisor, NodeMemory, RebootKind};
use crate::error::{NodeError, NodeResult};
use maguey_rpc::{InstanceRunInfo, InstanceRuntime};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What is stored per running instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunFile {
    name: String,
    #[serde(default)]
    uuid: String,
    memory: u64,
    vcpus: u32,
    /// Unix time of the (last) start or reboot.
    started: f64,
    /// A migration target waiting for the instance (until the migration is finalized).
    #[serde(default)]
    incoming: bool,
    /// Disk sizes (MiB) the hypervisor was told about since the start (`resize_disk`), by
    /// disk index.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    disk_sizes: std::collections::BTreeMap<usize, u64>,
    /// The `accel` hvparam it was started (or accepted) with, as a real QEMU keeps its
    /// accelerator for life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accel: Option<String>,
    /// The guest powered itself off and the hypervisor kept it (`user_shutdown`): tests set
    /// it in the run file; the instance then reports the state `shutdown`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    guest_shutdown: bool,
}

pub struct FakeHypervisor {
    run_dir: PathBuf,
    node_name: String,
    /// Fixed node memory (MiB); `None`: the host's `/proc/meminfo`.
    fake_memory_mib: Option<u64>,
    /// Serialises starts and balloons so memory checks cannot race.
    lock: tokio::sync::Mutex<()>,
}

impl FakeHypervisor {
    /// Keeps its state in `state_dir/run/fake` (created if missing).
    pub fn new(
        state_dir: &Path,
        node_name: &str,
        fake_memory_mib: Option<u64>,
    ) -> NodeResult<Self> {
        let run_dir = state_dir.join("run").join("fake");
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| NodeError::io(format!("cannot create {}: {e}", run_dir.display())))?;
        Ok(FakeHypervisor {
            run_dir,
            node_name: node_name.to_string(),
            fake_memory_mib,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn path(&self, name: &str) -> NodeResult<PathBuf> {
        maguey_model::names::validate_hostname(name)
            .map_err(|e| NodeError::bad_request(format!("invalid instance name: {e}")))?;
        Ok(self.run_dir.join(format!("{name}.json")))
    }

    fn read(&self, name: &str) -> NodeResult<Option<RunFile>> {
        let path = self.path(name)?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| NodeError::io(format!("corrupt run file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    fn write(&self, rf: &RunFile) -> NodeResult<()> {
        let path = self.path(&rf.name)?;
        let data = serde_json::to_vec_pretty(rf).map_err(|e| NodeError::internal(e.to_string()))?;
        crate::write_atomic(&path, &data)
    }

    fn all(&self) -> NodeResult<Vec<RunFile>> {
        let entries = std::fs::read_dir(&self.run_dir)
            .map_err(|e| NodeError::io(format!("cannot read {}: {e}", self.run_dir.display())))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            // Skip leftovers that are not ours (temp files, invalid names).
            if let Ok(Some(rf)) = self.read(name) {
                out.push(rf);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn memory(&self) -> NodeResult<NodeMemory> {
        let used: u64 = self.all()?.iter().map(|r| r.memory).sum();
        let (total, dom0, available) = match self.fake_memory_mib {
            Some(total) => (total, 0, total),
            None => {
                let (total, available) = super::host_meminfo()?;
                (total, total - available, available)
            }
        };
        Ok(NodeMemory {
            total,
            free: available.saturating_sub(used),
            dom0,
        })
    }

    fn run_info(rf: &RunFile) -> InstanceRunInfo {
        InstanceRunInfo {
            state: if rf.guest_shutdown {
                "shutdown"
            } else if rf.incoming {
                "paused"
            } else {
                "running"
            }
            .into(),
            memory: rf.memory,
            vcpus: rf.vcpus,
            pid: None,
            uptime: (maguey_model::now() - rf.started).max(0.0),
            vnc_port: None,
            accel: rf.accel.clone(),
        }
    }
}

impl Hypervisor for FakeHypervisor {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start<'a>(&'a self, inst: &'a InstanceRuntime) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            // A guest that powered itself off starts afresh.
            if self.read(&inst.name)?.is_some_and(|rf| !rf.guest_shutdown) {
                return Err(NodeError::conflict(format!(
                    "instance {} is already running",
                    inst.name
                )));
            }
            let mem = self.memory()?;
            if inst.memory > mem.free {
                return Err(NodeError::conflict(format!(
                    "not enough memory on node {}: needed {} MiB, free {} MiB",
                    self.node_name, inst.memory, mem.free
                )));
            }
            self.write(&RunFile {
                name: inst.name.clone(),
                uuid: inst.uuid.clone(),
                memory: inst.memory,
                vcpus: inst.vcpus,
                started: maguey_model::now(),
                incoming: false,
                disk_sizes: Default::default(),
                accel: inst
                    .hvparams
                    .get("accel")
                    .and_then(|v| v.as_str())
                    .map(String::from),
                guest_shutdown: false,
            })
        })
    }

    fn stop<'a>(&'a self, name: &'a str, _timeout: Duration) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let path = self.path(name)?;
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(NodeError::io(format!("cannot stop instance {name}: {e}"))),
            }
        })
    }

    fn reboot<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        _kind: RebootKind,
        _shutdown_timeout: Duration,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let mut rf = self.read(&inst.name)?.ok_or_else(|| {
                NodeError::not_found(format!("instance {} is not running", inst.name))
            })?;
            rf.started = maguey_model::now();
            self.write(&rf)
        })
    }

    fn list(&self) -> BoxFuture<'_, NodeResult<Vec<String>>> {
        Box::pin(async move { Ok(self.all()?.into_iter().map(|r| r.name).collect()) })
    }

    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, NodeResult<Option<InstanceRunInfo>>> {
        Box::pin(async move { Ok(self.read(name)?.as_ref().map(Self::run_info)) })
    }

    fn all_info(
        &self,
    ) -> BoxFuture<'_, NodeResult<std::collections::BTreeMap<String, InstanceRunInfo>>> {
        Box::pin(async move {
            Ok(self
                .all()?
                .iter()
                .map(|r| (r.name.clone(), Self::run_info(r)))
                .collect())
        })
    }

    fn balloon<'a>(&'a self, name: &'a str, memory: u64) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let mut rf = self
                .read(name)?
                .ok_or_else(|| NodeError::not_found(format!("instance {name} is not running")))?;
            if memory > rf.memory {
                let free = self.memory()?.free;
                let needed = memory - rf.memory;
                if needed > free {
                    return Err(NodeError::conflict(format!(
                        "not enough memory on node {}: needed {needed} MiB, free {free} MiB",
                        self.node_name
                    )));
                }
            }
            rf.memory = memory;
            self.write(&rf)
        })
    }

    fn node_memory(&self) -> BoxFuture<'_, NodeResult<NodeMemory>> {
        Box::pin(async move { self.memory() })
    }

    /// Records the new size in the run file (what a real hypervisor would pass to the guest).
    fn resize_disk<'a>(
        &'a self,
        name: &'a str,
        index: usize,
        size_mib: u64,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let mut rf = self
                .read(name)?
                .filter(|rf| !rf.incoming)
                .ok_or_else(|| NodeError::not_found(format!("instance {name} is not running")))?;
            rf.disk_sizes.insert(index, size_mib);
            self.write(&rf)
        })
    }

    /// The fake target reserves the instance's memory, as a real one would.
    fn accept_instance<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        _address: &'a str,
        _port: u16,
        _nbd_port: Option<u16>,
        _tls_peer: Option<&'a str>,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if self.read(&inst.name)?.is_some() {
                return Err(NodeError::conflict(format!(
                    "instance {} is already running on node {}",
                    inst.name, self.node_name
                )));
            }
            let mem = self.memory()?;
            if inst.memory > mem.free {
                return Err(NodeError::conflict(format!(
                    "not enough memory on node {}: needed {} MiB, free {} MiB",
                    self.node_name, inst.memory, mem.free
                )));
            }
            self.write(&RunFile {
                name: inst.name.clone(),
                uuid: inst.uuid.clone(),
                memory: inst.memory,
                vcpus: inst.vcpus,
                started: maguey_model::now(),
                incoming: true,
                disk_sizes: Default::default(),
                accel: inst
                    .hvparams
                    .get("accel")
                    .and_then(|v| v.as_str())
                    .map(String::from),
                guest_shutdown: false,
            })
        })
    }

    fn migrate<'a>(
        &'a self,
        name: &'a str,
        _to: super::MigrationTarget<'a>,
    ) -> BoxFuture<'a, NodeResult<maguey_rpc::MigrationStatus>> {
        Box::pin(async move {
            let rf = self
                .read(name)?
                .filter(|rf| !rf.incoming)
                .ok_or_else(|| NodeError::not_found(format!("instance {name} is not running")))?;
            Ok(maguey_rpc::MigrationStatus {
                status: "completed".into(),
                transferred: rf.memory << 20,
                ..Default::default()
            })
        })
    }

    fn finalize_migration_dst<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        success: bool,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            match self.read(&inst.name)? {
                Some(mut rf) if success => {
                    rf.incoming = false;
                    self.write(&rf)
                }
                Some(rf) if rf.incoming => self.stop(&rf.name, Duration::ZERO).await,
                Some(_) => Ok(()),
                None if success => Err(NodeError::not_found(format!(
                    "instance {} did not arrive on node {}",
                    inst.name, self.node_name
                ))),
                None => Ok(()),
            }
        })
    }

    fn finalize_migration_src<'a>(
        &'a self,
        name: &'a str,
        success: bool,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            if success {
                self.stop(name, Duration::ZERO).await
            } else {
                Ok(())
            }
        })
    }
}
