//! Progress of a running live migration, read on the source node for the master's job log.

use crate::qmp::Qmp;
use maguey_rpc::MigrationProgress;
use std::path::Path;

/// What QEMU says about the migration of the instance behind `qmp_path`: the disk mirror
/// jobs (local-disk migration) and the RAM phase. `None` when nothing runs (or QEMU is gone).
pub async fn kvm_progress(qmp_path: &Path) -> Option<MigrationProgress> {
    let mut q = Qmp::connect(qmp_path).await.ok()?;
    let jobs = q.query_block_jobs().await.unwrap_or_default();
    let mirrors: Vec<_> = jobs
        .iter()
        .filter(|j| j.device.starts_with("mirror"))
        .collect();
    let m = q.query_migrate().await.ok()?;
    let status = m.status.clone().unwrap_or_default();
    let ram = m.ram.unwrap_or_default();
    let mut p = MigrationProgress {
        status: status.clone(),
        ram_transferred: ram.transferred,
        ram_total: ram.total,
        disk_transferred: mirrors.iter().map(|j| j.offset).sum(),
        disk_total: mirrors.iter().map(|j| j.len).sum(),
    };
    if status.is_empty() || status == "none" {
        if mirrors.is_empty() {
            return None;
        }
        p.status = "mirroring".to_string();
    }
    Some(p)
}
