//! Moves with the instance stopped: failover (the target sees the same disks, or is the DRBD
//! secondary), copy (file disks copied to the target), and the relocation of an instance
//! that is not running at all.

use super::target::{check_target_memory, current, set_primary};
use crate::disks::{copy_disks, remove_disks};
use crate::lifecycle::{is_running, start, start_activated, stop};
use crate::{prereq, Env};
use maguey_jobs::OpError;
use maguey_model::{AdminState, Instance, Node};

/// A stopped instance changes primary: its local disks copied to `dst` first (and removed
/// from `src` afterwards); shared and DRBD disks stay where they are.
pub(super) async fn relocate_stopped(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    if inst.disk_template.has_local_disks() {
        copy_disks(env, inst, src, dst).await?;
        set_primary(env, inst, dst).await?;
        remove_disks(env, inst, src).await;
    } else {
        set_primary(env, inst, dst).await?;
    }
    Ok(())
}

/// Failover: shut down on `src` (skipped or ignored when it is dead and the admin said so),
/// `dst` made the primary, the instance started there if it is meant to run.
pub(super) async fn failover(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
    timeout: u64,
    ignore_consistency: bool,
) -> Result<(), OpError> {
    let up = inst.admin_state == AdminState::Up;
    if up {
        check_target_memory(env, inst, dst).await?;
    }
    let drbd = inst.disk_template.is_internally_mirrored();
    if drbd {
        // The target's copy must be good, unless the admin says the primary is dead.
        let sts = crate::drbd::status(env, inst, dst).await?;
        for (d, st) in inst.disks.iter().zip(sts) {
            let ok = st.as_ref().is_some_and(|s| s.disk == "UpToDate");
            if !ok && !ignore_consistency {
                return Err(prereq(format!(
                    "disk {} is not up to date on node {} ({}); use --ignore-consistency \
                     to fail over anyway",
                    d.iv_name,
                    dst.name,
                    st.map(|s| format!("{} {}/{}", s.connection, s.disk, s.peer_disk))
                        .unwrap_or_else(|| "not active".into())
                )));
            }
        }
    }
    let mut src_alive = !src.offline;
    if src.offline {
        env.log(format!(
            "primary node {} is offline: not shutting the instance down there",
            src.name
        ));
    } else if let Err(e) = stop(env, inst, src, timeout).await {
        src_alive = false;
        if !ignore_consistency {
            return Err(OpError::Exec(format!(
                "could not shut instance {} down on {}: {e}; if the node is dead, \
                 use --ignore-consistency",
                inst.name, src.name
            )));
        }
        env.log(format!(
            "ignoring the failed shutdown on {} (--ignore-consistency): {e}",
            src.name
        ));
    }
    set_primary(env, inst, dst).await?;
    env.log(format!(
        "instance {} now has primary node {}",
        inst.name, dst.name
    ));
    if drbd {
        let now = current(env, inst)?;
        if src_alive {
            crate::drbd::assemble(env, &now, src, maguey_rpc::DrbdRole::Secondary).await?;
        }
        crate::drbd::assemble(env, &now, dst, maguey_rpc::DrbdRole::Secondary).await?;
        if up {
            env.log(format!("making node {} the DRBD primary", dst.name));
            crate::drbd::set_role(env, &now, dst, true, !src_alive).await?;
            start_activated(env, &now, dst).await?;
        }
    } else if up {
        start(env, &current(env, inst)?, dst, false).await?;
    }
    Ok(())
}

/// Copy: shut down on `src`, the disks copied to `dst` (restarted on `src` if that fails),
/// `dst` made the primary, the old disks removed, started on `dst` if meant to run.
pub(super) async fn copy(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
    timeout: u64,
    ignore_consistency: bool,
) -> Result<(), OpError> {
    let up = inst.admin_state == AdminState::Up;
    if up {
        check_target_memory(env, inst, dst).await?;
    }
    let was_running = is_running(env, inst, src).await?;
    if was_running {
        if let Err(e) = stop(env, inst, src, timeout).await {
            if !ignore_consistency {
                return Err(e);
            }
            env.log(format!("ignoring: {e}"));
        }
    }
    if let Err(e) = relocate_stopped(env, inst, src, dst).await {
        if was_running {
            env.log(format!("restarting instance {} on {}", inst.name, src.name));
            if let Err(e2) = start(env, inst, src, false).await {
                env.log(format!("could not restart it: {e2}"));
            }
        }
        return Err(e);
    }
    if up {
        let moved = current(env, inst)?;
        start(env, &moved, dst, false).await?;
    }
    Ok(())
}
