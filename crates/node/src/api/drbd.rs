//! Requests about DRBD devices: the steps of mirrored disks the master sequences.

use crate::error::{Context, NodeResult};
use crate::storage::drbd::{self as d, NetRole};
use crate::storage::runner::StorageError;
use crate::storage::StorageContext;
use crate::NodeRuntime;
use maguey_model::Disk;
use maguey_rpc::{DrbdDiskStatus, DrbdNodeCheck, DrbdRole, DrbdSyncProgress};

/// One DRBD step on one disk.
type Step = fn(&StorageContext, &Disk) -> Result<(), StorageError>;

/// Runs `step` on every disk, in order, off the async threads; the first failure names its
/// disk.
async fn each(
    rt: &NodeRuntime,
    disks: Vec<Disk>,
    owner: Option<String>,
    step: Step,
) -> NodeResult<()> {
    let mut ctx = rt.storage_ctx("");
    if let Some(o) = owner {
        ctx = ctx.with_owner(&o);
    }
    NodeRuntime::blocking(move || {
        for disk in &disks {
            step(&ctx, disk).context_with(|| format!("disk {}", disk.iv_name))?;
        }
        Ok(())
    })
    .await
}

/// `drbd_assemble`: brings this node's ends up, connected, in `role`.
pub async fn assemble(
    rt: &NodeRuntime,
    disks: Vec<Disk>,
    instance_name: String,
    role: DrbdRole,
) -> NodeResult<()> {
    let step: Step = match role {
        DrbdRole::Secondary => |c, d| d::drbd_attach_net(c, d, NetRole::Secondary),
        DrbdRole::Primary => |c, d| d::drbd_attach_net(c, d, NetRole::Primary),
        DrbdRole::DualPrimary => |c, d| d::drbd_attach_net(c, d, NetRole::DualPrimary),
    };
    each(rt, disks, Some(instance_name), step).await
}

/// `drbd_set_role`: promotes (`force`d or not) or demotes the local devices.
pub async fn set_role(
    rt: &NodeRuntime,
    disks: Vec<Disk>,
    primary: bool,
    force: bool,
) -> NodeResult<()> {
    let step: Step = match (primary, force) {
        (true, true) => |c, d| d::drbd_set_primary(c, d, true),
        (true, false) => |c, d| d::drbd_set_primary(c, d, false),
        (false, _) => d::drbd_set_secondary,
    };
    each(rt, disks, None, step).await
}

/// `drbd_promote_connected`: waits here until the new devices are connected, then makes
/// them primary (forced: the initial sync starts).
pub async fn promote_connected(
    rt: &NodeRuntime,
    disks: Vec<Disk>,
    timeout_secs: u64,
) -> NodeResult<()> {
    let ctx = rt.storage_ctx("");
    let timeout = std::time::Duration::from_secs(timeout_secs);
    NodeRuntime::blocking(move || {
        d::drbd_promote_connected(&ctx, &disks, timeout).context_with(|| {
            let names: Vec<&str> = disks.iter().map(|d| d.iv_name.as_str()).collect();
            format!("promoting {}", names.join(", "))
        })
    })
    .await
}

/// `drbd_set_dual_primary`: allows or forbids two primaries.
pub async fn set_dual_primary(rt: &NodeRuntime, disks: Vec<Disk>, enable: bool) -> NodeResult<()> {
    let step: Step = if enable {
        d::drbd_enable_dual_primary
    } else {
        d::drbd_disable_dual_primary
    };
    each(rt, disks, None, step).await
}

/// `drbd_shutdown`: tears the local devices down.
pub async fn shutdown(rt: &NodeRuntime, disks: Vec<Disk>) -> NodeResult<()> {
    each(rt, disks, None, d::drbd_shutdown).await
}

/// `drbd_reconnect_discard`: resolves a split brain against this node.
pub async fn reconnect_discard(
    rt: &NodeRuntime,
    disks: Vec<Disk>,
    instance_name: String,
) -> NodeResult<()> {
    each(
        rt,
        disks,
        Some(instance_name),
        d::drbd_reconnect_discard_my_data,
    )
    .await
}

/// `drbd_disconnect_net`: drops and forgets the peer.
pub async fn disconnect(rt: &NodeRuntime, disks: Vec<Disk>) -> NodeResult<()> {
    each(rt, disks, None, d::drbd_disconnect_forget).await
}

/// `drbd_skip_initial_sync`: new, connected devices on fresh volumes declared identical.
pub async fn skip_initial_sync(rt: &NodeRuntime, disks: Vec<Disk>) -> NodeResult<()> {
    each(rt, disks, None, d::drbd_skip_initial_sync).await
}

/// `drbd_replace_storage`: new LVs under each device; answers the old LVs set aside.
pub async fn replace_storage(
    rt: &NodeRuntime,
    disks: Vec<Disk>,
    instance_name: &str,
    suffix: String,
) -> NodeResult<Vec<String>> {
    let ctx = rt.storage_ctx("").with_owner(instance_name);
    NodeRuntime::blocking(move || {
        let mut aside = Vec::new();
        for disk in &disks {
            aside.extend(
                d::drbd_replace_backing(&ctx, disk, &suffix)
                    .context_with(|| format!("disk {}", disk.iv_name))?,
            );
        }
        Ok(aside)
    })
    .await
}

/// `drbd_node_check`: the module's version and what is wrong with its usermode helper.
pub async fn node_check(rt: &NodeRuntime, usermode_helper: String) -> NodeResult<DrbdNodeCheck> {
    let ctx = rt.storage_ctx("");
    NodeRuntime::blocking(move || {
        let version = d::drbd_version(&ctx)
            .ok()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.point));
        let helper_error = d::drbd_check_helper(&ctx, &usermode_helper)
            .err()
            .map(|e| e.to_string());
        Ok(DrbdNodeCheck {
            version,
            helper_error,
        })
    })
    .await
}

/// `drbd_status`: one status read per disk (`None`: device not configured).
pub async fn status(rt: &NodeRuntime, disks: Vec<Disk>) -> NodeResult<Vec<Option<DrbdDiskStatus>>> {
    let ctx = rt.storage_ctx("");
    NodeRuntime::blocking(move || {
        let mut out = Vec::with_capacity(disks.len());
        for disk in &disks {
            let st =
                d::drbd_status(&ctx, disk).context_with(|| format!("disk {}", disk.iv_name))?;
            out.push(st.as_ref().map(d::rpc_status));
        }
        Ok(out)
    })
    .await
}

/// `drbd_wait_sync`: one step of the master's resync poll.
pub async fn sync_progress(rt: &NodeRuntime, disks: Vec<Disk>) -> NodeResult<DrbdSyncProgress> {
    let ctx = rt.storage_ctx("");
    let p = NodeRuntime::blocking(move || Ok(d::drbd_sync_progress(&ctx, &disks)?)).await?;
    Ok(DrbdSyncProgress {
        all_done: p.all_done,
        min_percent: p.min_percent,
        max_eta_secs: p.max_eta_secs,
    })
}
