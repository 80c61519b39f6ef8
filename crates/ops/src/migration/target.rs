//! What every move of an instance needs (the tasklet is in `mod.rs`): the target's checks
//! (usable, memory), the target chosen by the placement engine, the switch of the primary in
//! the config, progress lines.

use crate::util::*;
use crate::{prereq, Env};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::*;
use maguey_rpc::*;

/// Checks that `target` can take `inst`: another node, online, vm_capable, not drained.
pub(super) fn check_target(inst: &Instance, target: &Node) -> Result<(), OpError> {
    if target.uuid == inst.primary_node {
        return Err(prereq(format!(
            "instance {} is already on node {}",
            inst.name, target.name
        )));
    }
    check_node_usable(target)
}

/// The target chosen by the placement engine (primary-only evacuation of this instance).
pub(super) async fn choose_target(env: &Env<'_>, inst: &Instance) -> Result<Node, OpError> {
    let cfg = env.cfg();
    let plan = crate::iallocator::evacuate_plan(
        env.master,
        &cfg,
        &[inst],
        maguey_model::EvacMode::PrimaryOnly,
    )
    .await?;
    if !plan.failed.is_empty() {
        return Err(prereq(format!(
            "the allocator found no node for instance {}:\n{}",
            inst.name,
            plan.summary.join("\n")
        )));
    }
    let name = plan
        .moved
        .first()
        .and_then(|(_, nodes)| nodes.first())
        .ok_or_else(|| prereq(format!("the allocator found no node for {}", inst.name)))?;
    let node = node_by_name(&cfg, name)?.clone();
    env.log(format!(
        "the allocator chose node {} for instance {}",
        node.name, inst.name
    ));
    Ok(node)
}

/// Checks that the target has the memory the instance needs now.
pub(super) async fn check_target_memory(
    env: &Env<'_>,
    inst: &Instance,
    target: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let be = filled_beparams(&cfg, inst);
    let info: NodeInfo = env
        .rpc(
            target,
            NodeRequest::NodeInfo {
                file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if be.maxmem > info.memory_free {
        return Err(prereq(format!(
            "not enough memory on node {} for instance {}: needed {} MiB, free {} MiB",
            target.name, inst.name, be.maxmem, info.memory_free
        )));
    }
    Ok(())
}

/// Makes `target` the instance's primary node in the config.
pub(super) async fn set_primary(
    env: &Env<'_>,
    inst: &Instance,
    target: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let mut updated = cfg
        .instances
        .get(&inst.uuid)
        .cloned()
        .ok_or_else(|| OpError::Exec(format!("instance {} vanished", inst.name)))?;
    let old = updated.primary_node.clone();
    updated.primary_node = target.uuid.clone();
    for d in &mut updated.disks {
        if d.dev_type == maguey_model::DevType::Drbd {
            // Both ends stay; the new primary comes first.
            d.nodes = vec![target.uuid.clone(), old.clone()];
        } else {
            d.nodes = vec![target.uuid.clone()];
        }
    }
    env.apply(Command::UpdateInstance { instance: updated })
        .await?;
    Ok(())
}

/// One job-log line of progress (the CLI draws a bar from lines of this shape).
pub(super) fn progress_line(p: &MigrationProgress) -> String {
    let mut parts = Vec::new();
    if p.disk_total > 0 {
        parts.push(format!(
            "disks {}% ({}/{} MiB)",
            percent(p.disk_transferred, p.disk_total),
            mib(p.disk_transferred),
            mib(p.disk_total)
        ));
    }
    if p.ram_total > 0 && p.status != "mirroring" {
        parts.push(format!(
            "memory {}% ({}/{} MiB)",
            percent(p.ram_transferred, p.ram_total),
            mib(p.ram_transferred),
            mib(p.ram_total)
        ));
    }
    format!("migration {}: {}", p.status, parts.join(", "))
}

/// The instance as the config has it now.
pub(super) fn current(env: &Env<'_>, inst: &Instance) -> Result<Instance, OpError> {
    env.cfg()
        .instances
        .get(&inst.uuid)
        .cloned()
        .ok_or_else(|| OpError::Exec(format!("instance {} vanished", inst.name)))
}

pub(super) fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

pub(super) fn percent(done: u64, total: u64) -> u64 {
    (done.saturating_mul(100))
        .checked_div(total)
        .unwrap_or(0)
        .min(100)
}
