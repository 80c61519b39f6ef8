//! Moving instances to other node groups (`instance change-group`, `group evacuate`): the
//! placement engine's `change-group` plan (hail's: the target group by allocation policy,
//! then score; the nodes inside it), carried out as one child job per instance through
//! `room_moves::run_moves`. docs/groups.md.
//!
//! `file`, `plain`, `diskless` and `sharedfile` instances migrate live to their new node
//! (local disks mirrored with the memory, the migration tasklet); stopped ones with local
//! disks are copied (`instance move`). `drbd` instances get a new DRBD pair in the target
//! group (`drbd_group_move`: a child OP_INSTANCE_CHANGE_GROUP naming the pair): Ganeti's
//! plan (replace-disks, migrate, replace-disks) would leave a single up-to-date copy during
//! each resync.

use crate::room_moves::{RoomMove, RoomPlan};
use crate::{prereq, Master};
use maguey_jobs::OpError;
use maguey_model::{
    AdminState, ConfigData, Instance, NodeGroup, OpCode, OpInstanceChangeGroup, OpInstanceFailover,
    OpInstanceMove,
};
use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc::Answer;
use serde_json::json;

/// Ganeti's default shutdown timeout (seconds).
const SHUTDOWN_TIMEOUT: u64 = 120;

/// A group by name or uuid.
pub fn group<'a>(cfg: &'a ConfigData, name: &str) -> Result<&'a NodeGroup, OpError> {
    cfg.group_by_name(name)
        .or_else(|| cfg.nodegroups.get(name))
        .ok_or_else(|| prereq(format!("node group '{name}' is not known")))
}

/// The target groups' uuids; none of them may be in `from` (the groups being left).
pub fn target_groups(
    cfg: &ConfigData,
    names: &[String],
    from: &[&str],
) -> Result<Vec<String>, OpError> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let g = group(cfg, n)?;
        if from.contains(&g.uuid.as_str()) {
            return Err(prereq(format!(
                "group {} cannot be a target: the instances are leaving it",
                g.name
            )));
        }
        if !out.contains(&g.uuid) {
            out.push(g.uuid.clone());
        }
    }
    if names.is_empty() && cfg.nodegroups.keys().all(|g| from.contains(&g.as_str())) {
        return Err(prereq(
            "there is no other node group to move the instances to",
        ));
    }
    Ok(out)
}

/// The group of an instance's primary node (uuid).
pub fn group_of(cfg: &ConfigData, inst: &Instance) -> String {
    cfg.group_of_node(&inst.primary_node)
        .map(|g| g.uuid.clone())
        .unwrap_or_default()
}

/// The moves of `insts` to the groups `targets` (uuids; empty: any other group). Instances
/// that cannot move are in `stuck`, with the reason.
pub async fn plan(
    master: &Master,
    cfg: &ConfigData,
    insts: &[&Instance],
    targets: &[String],
    force_failover: bool,
) -> Result<RoomPlan, OpError> {
    let mut plan = RoomPlan::default();
    let movable: Vec<&Instance> = insts.to_vec();
    if movable.is_empty() {
        return Ok(plan);
    }
    // `plain` and `file` disks move live (`plain` ones need room in the target's volume
    // group), a `diskless` instance moves anywhere, a `drbd` one needs two nodes of one
    // group with room in their volume groups: the planner relocates them all.
    let template = crate::iallocator::request_template(&movable);
    let mut req = crate::iallocator::cluster_request(master, cfg, template).await;
    req["request"] = json!({
        "type": "change-group",
        "instances": movable.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "target_groups": targets,
    });
    let opts = AllocOptions {
        local_storage_migrates: true,
        ..Default::default()
    };
    let evac = match crate::iallocator::solve(&req, &opts)? {
        Ok((_, Answer::Evac(e))) => e,
        Ok((_, other)) => return Err(crate::iallocator::unexpected(&other)),
        Err(why) => {
            for i in &movable {
                plan.stuck.push((i.name.clone(), why.clone()));
            }
            return Ok(plan);
        }
    };
    for ((name, group, nodes), ops) in evac.moved.into_iter().zip(evac.jobs) {
        let Some(i) = movable.iter().find(|i| i.name == name) else {
            continue;
        };
        let Some(target) = nodes.first().cloned() else {
            plan.stuck
                .push((name, "the allocator answered no node".to_string()));
            continue;
        };
        let stopped = i.admin_state != AdminState::Up;
        let local = i.disk_template.has_local_disks();
        let (what, ops): (String, Vec<OpCode>) = if i.disk_template.is_internally_mirrored() {
            let Some(second) = nodes.get(1).cloned() else {
                plan.stuck.push((
                    name,
                    "the allocator answered no secondary node for the new DRBD pair".into(),
                ));
                continue;
            };
            (
                format!(
                    "new DRBD pair on {target} and {second} (group {group}), {}, old pair \
                     removed",
                    if stopped {
                        "stopped: disks copied"
                    } else {
                        "disks mirrored live, then memory"
                    }
                ),
                vec![OpInstanceChangeGroup {
                    instance_name: name.clone(),
                    target_node: Some(target.clone()),
                    remote_node: Some(second),
                    ..Default::default()
                }
                .into()],
            )
        } else if local && (stopped || force_failover) {
            (
                format!(
                    "{}: disks copied to {target} (group {group})",
                    if stopped { "stopped" } else { "failover" }
                ),
                vec![OpInstanceMove {
                    instance_name: name.clone(),
                    target_node: target.clone(),
                    shutdown_timeout: SHUTDOWN_TIMEOUT,
                    ignore_consistency: false,
                    ignore_ipolicy: false,
                }
                .into()],
            )
        } else if force_failover {
            (
                format!("failover to {target} (group {group})"),
                vec![OpInstanceFailover {
                    instance_name: name.clone(),
                    shutdown_timeout: SHUTDOWN_TIMEOUT,
                    ignore_consistency: false,
                    target_node: Some(target.clone()),
                    iallocator: None,
                    ignore_ipolicy: false,
                    cleanup: false,
                }
                .into()],
            )
        } else {
            (
                format!("live migration to {target} (group {group})"),
                ops.iter().map(crate::moves::opcode).collect(),
            )
        };
        plan.moves.push(RoomMove {
            instance: name,
            uuid: i.uuid.clone(),
            from: i.primary_node.clone(),
            what,
            ops,
        });
    }
    plan.stuck.extend(evac.failed);
    Ok(plan)
}
