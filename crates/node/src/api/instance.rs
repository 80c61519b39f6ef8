//! Requests about instances on a hypervisor, and their live migration.

use crate::error::NodeResult;
pub use crate::hypervisor::MigrationTarget;
use crate::hypervisor::RebootKind;
use crate::{migration, NodeRuntime, MAX_CONSOLE_BYTES};
use maguey_rpc::{
    AcceptedPorts, InstanceRunInfo, InstanceRuntime, MigrationProgress, MigrationStatus,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// `instance_start`.
pub async fn start(rt: &NodeRuntime, instance: &InstanceRuntime) -> NodeResult<()> {
    rt.hypervisor(&instance.hypervisor)?.start(instance).await
}

/// `instance_shutdown`: soft, then hard after `timeout` seconds.
pub async fn shutdown(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
    timeout: u64,
) -> NodeResult<()> {
    rt.hypervisor(hypervisor)?
        .stop(name, Duration::from_secs(timeout))
        .await
}

/// `instance_reboot` (`soft` or `hard`; `full` is the master's stop + start).
pub async fn reboot(
    rt: &NodeRuntime,
    instance: &InstanceRuntime,
    reboot_type: &str,
    shutdown_timeout: u64,
) -> NodeResult<()> {
    let kind: RebootKind = reboot_type.parse()?;
    rt.hypervisor(&instance.hypervisor)?
        .reboot(instance, kind, Duration::from_secs(shutdown_timeout))
        .await
}

/// `instance_list`: the running instances.
pub async fn list(rt: &NodeRuntime, hypervisor: &str) -> NodeResult<Vec<String>> {
    rt.hypervisor(hypervisor)?.list().await
}

/// `instance_info`: live data of one instance, `None` when it is not running.
pub async fn info(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
) -> NodeResult<Option<InstanceRunInfo>> {
    rt.hypervisor(hypervisor)?.info(name).await
}

/// `all_instances_info`.
pub async fn all_info(
    rt: &NodeRuntime,
    hypervisor: &str,
) -> NodeResult<BTreeMap<String, InstanceRunInfo>> {
    rt.hypervisor(hypervisor)?.all_info().await
}

/// `instance_balloon_memory`.
pub async fn balloon(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
    memory: u64,
) -> NodeResult<()> {
    rt.hypervisor(hypervisor)?.balloon(name, memory).await
}

/// `instance_console`: the last `max_bytes` (at most [`MAX_CONSOLE_BYTES`]) of the serial
/// console's output.
pub async fn console(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
    max_bytes: u64,
) -> NodeResult<String> {
    rt.hypervisor(hypervisor)?
        .console_log(name, max_bytes.min(MAX_CONSOLE_BYTES))
        .await
}

/// `resize_disk`: the guest sees disk `disk_index` at its new `size` MiB.
pub async fn resize_disk(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
    disk_index: usize,
    size: u64,
) -> NodeResult<()> {
    rt.hypervisor(hypervisor)?
        .resize_disk(name, disk_index, size)
        .await
}

/// `accept_instance`: the migration target starts the instance waiting for its state; port
/// 0 (NBD port `Some(0)`) picks a free port.
pub async fn accept(
    rt: &NodeRuntime,
    instance: &InstanceRuntime,
    address: &str,
    port: u16,
    nbd_port: Option<u16>,
    tls_peer: Option<&str>,
) -> NodeResult<AcceptedPorts> {
    let ranges = rt.port_ranges();
    let port = match port {
        0 => crate::ports::free_port(address, ranges.migration)?,
        p => p,
    };
    let nbd_port = match nbd_port {
        Some(0) => Some(crate::ports::free_port(address, ranges.nbd)?),
        other => other,
    };
    rt.hypervisor(&instance.hypervisor)?
        .accept_instance(instance, address, port, nbd_port, tls_peer)
        .await?;
    Ok(AcceptedPorts { port, nbd_port })
}

/// `instance_migrate`: the source sends the running instance and waits for the end.
pub async fn migrate(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
    to: MigrationTarget<'_>,
) -> NodeResult<MigrationStatus> {
    rt.hypervisor(hypervisor)?.migrate(name, to).await
}

/// `instance_finalize_migration_dst`.
pub async fn finalize_dst(
    rt: &NodeRuntime,
    instance: &InstanceRuntime,
    success: bool,
) -> NodeResult<()> {
    rt.hypervisor(&instance.hypervisor)?
        .finalize_migration_dst(instance, success)
        .await
}

/// `instance_finalize_migration_src`.
pub async fn finalize_src(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
    success: bool,
) -> NodeResult<()> {
    rt.hypervisor(hypervisor)?
        .finalize_migration_src(name, success)
        .await
}

/// `instance_migration_progress`: the migration the source runs, if any.
pub async fn migration_progress(
    rt: &NodeRuntime,
    name: &str,
    hypervisor: &str,
) -> NodeResult<Option<MigrationProgress>> {
    Ok(match hypervisor {
        "kvm" => migration::kvm_progress(&rt.kvm.paths(name)?.qmp).await,
        _ => {
            rt.hypervisor(hypervisor)?;
            None
        }
    })
}
