//! Requests about the node itself and its cluster files.

use crate::error::{NodeError, NodeResult};
use crate::storage::{self, BlockStorage};
use crate::{boot_id, write_atomic, NodeRuntime, CLUSTER_FILES, MAX_TEST_DELAY, SSCONF_FILE};
use maguey_model::Ssconf;
use maguey_rpc::{NodeInfo, VersionInfo};
use std::time::Duration;

/// `version`: this node's build, protocol and name.
pub fn version(rt: &NodeRuntime) -> VersionInfo {
    VersionInfo {
        version: maguey_model::VERSION.to_string(),
        protocol: maguey_model::PROTOCOL_VERSION,
        node_name: rt.cfg.node_name.clone(),
    }
}

/// `node_info`: memory as `hypervisor` sees it, CPUs, storage space, boot id.
pub async fn node_info(
    rt: &NodeRuntime,
    file_storage_dir: &str,
    hypervisor: &str,
) -> NodeResult<NodeInfo> {
    let mem = rt.hypervisor(hypervisor)?.node_memory().await?;
    let ctx = rt.storage_ctx(file_storage_dir);
    let (file, vg) = NodeRuntime::blocking(move || {
        let file = storage::file::FileStorage.info(&ctx)?;
        // The cluster's volume group, when this node has it (a node without LVM simply has
        // no `lvm-vg` storage).
        let vg = match ctx.vg_name {
            Some(_) => storage::lvm::LvmStorage
                .info(&ctx)
                .map_err(|e| tracing::debug!("no lvm-vg storage: {e}"))
                .ok(),
            None => None,
        };
        Ok((file, vg))
    })
    .await?;
    let cpu_count = rt.cfg.fake_cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    });
    Ok(NodeInfo {
        name: rt.cfg.node_name.clone(),
        cpu_count,
        memory_total: mem.total,
        memory_free: mem.free,
        memory_dom0: mem.dom0,
        storage: std::iter::once(file).chain(vg).collect(),
        bootid: boot_id(),
    })
}

/// `write_ssconf`: stores the cluster-wide facts the master sends.
/// An ssconf older than the stored one (same cluster, lower config serial) is ignored: the
/// master sends ssconf from concurrent jobs, and a late delivery must not undo a newer one.
pub async fn write_ssconf(rt: &NodeRuntime, ssconf: &Ssconf) -> NodeResult<()> {
    static WRITE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let data = serde_json::to_vec_pretty(ssconf).map_err(|e| NodeError::internal(e.to_string()))?;
    let path = rt.cfg.state_dir.join(SSCONF_FILE);
    let (uuid, serial) = (ssconf.cluster_uuid.clone(), ssconf.config_serial);
    NodeRuntime::blocking(move || {
        let _one_at_a_time = WRITE.lock().unwrap_or_else(|p| p.into_inner());
        let stored: Option<Ssconf> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(old) = stored {
            if !uuid.is_empty() && old.cluster_uuid == uuid && old.config_serial > serial {
                tracing::debug!(
                    "ssconf of serial {serial} ignored: serial {} is stored",
                    old.config_serial
                );
                return Ok(());
            }
        }
        write_atomic(&path, &data)
    })
    .await
}

/// `node_volumes`: every LVM logical volume of the node, as sorted `vg/lv`.
pub async fn volumes(rt: &NodeRuntime) -> NodeResult<Vec<String>> {
    let ctx = rt.storage_ctx("");
    let mut lvs: Vec<String> = NodeRuntime::blocking(move || {
        Ok(storage::lvm::list_all(ctx.runner())?
            .iter()
            .map(storage::lvm::LvInfo::full_name)
            .collect())
    })
    .await?;
    lvs.sort();
    Ok(lvs)
}

/// `test_delay`: sleeps `duration` seconds (0 to [`MAX_TEST_DELAY`]).
pub async fn test_delay(duration: f64) -> NodeResult<()> {
    if !duration.is_finite() || !(0.0..=MAX_TEST_DELAY).contains(&duration) {
        return Err(NodeError::bad_request(format!(
            "invalid delay {duration} (0 to {MAX_TEST_DELAY} seconds)"
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    Ok(())
}

/// `leave_cluster`: removes the node's certificates and ssconf (the daemon stops after
/// replying).
pub fn leave_cluster(rt: &NodeRuntime) -> NodeResult<()> {
    for f in CLUSTER_FILES {
        let path = rt.cfg.state_dir.join(f);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(NodeError::io(format!(
                    "cannot remove {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}
