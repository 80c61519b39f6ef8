//! A `drbd` instance moves to another node group with two up-to-date copies at every
//! moment (the child job of `instance change-group` / `group evacuate`, docs/groups.md).
//!
//! Ganeti's plan (replace-disks, migrate, replace-disks) resyncs a new secondary twice, with
//! one up-to-date copy during each resync, and leaves a split instance when it fails
//! midway. Maguey builds a whole new DRBD pair in the target group instead:
//!
//! 1. new ports and minors; data and meta LVs and DRBD devices on the new secondary, then the
//!    new primary; connected, declared in sync without a full resync (fresh volumes:
//!    `new-current-uuid --clear-bitmap`), the new primary promoted;
//! 2. a running guest: QEMU on the new primary waits for it with the new devices exported
//!    over NBD; the old primary's QEMU mirrors every disk into them (write-blocking: each
//!    guest write reaches the old pair, which keeps replicating, and the new one, which
//!    replicates too), then migrates the memory. A stopped instance: its disks are copied
//!    from the old primary into the new one;
//! 3. the config names the new pair (one command);
//! 4. the old pair is removed.
//!
//! A failure before step 3 removes the new pair, the instance keeps running (or stays
//! stopped) on its old pair, and the config is unchanged.

use crate::lifecycle::is_running;
use crate::util::{
    check_node_usable, filled_beparams, filled_hvparams, instance_runtime, node_by_name,
    node_by_uuid, storage_dir,
};
use crate::{prereq, Env};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{
    AdminState, ConfigData, DiskTemplate, Instance, LogicalId, Node, PendingPairMove,
    DRBD_META_SIZE_MIB,
};
use maguey_rpc::{
    AcceptedPorts, BlockdevChunk, InstanceRunInfo, MigrationStatus, NodeInfo, NodeRequest,
};
use serde_json::{json, Value};

/// Bytes per copy request of a stopped instance's disks (the node's limit).
const CHUNK: u64 = 8 << 20;

/// One checked move of a `drbd` instance onto a new pair.
#[derive(Debug)]
pub struct PairMove {
    inst: Instance,
    old_p: Node,
    old_s: Node,
    new_p: Node,
    new_s: Node,
}

/// The nodes an instance's move onto `pnode`/`snode` involves (names): old primary, old
/// secondary, new primary, new secondary (for the locks).
pub fn involved_nodes(cfg: &ConfigData, inst: &Instance, pnode: &str, snode: &str) -> Vec<String> {
    // A pair left by an interrupted move is removed first: its nodes are locked too.
    let pending = inst
        .pending_move
        .iter()
        .flat_map(|p| [p.primary.as_str(), p.secondary.as_str()]);
    let mut v: Vec<String> = Vec::new();
    let named = std::iter::once(inst.primary_node.as_str())
        .chain(inst.secondary_nodes())
        .chain(pending)
        .filter_map(|u| cfg.nodes.get(u).map(|n| n.name.as_str()));
    for n in named.chain([pnode, snode]) {
        if !v.iter().any(|x| x == n) {
            v.push(n.to_string());
        }
    }
    v
}

impl PairMove {
    /// The prerequisites on a fresh snapshot under the job's locks: `primary` is the node
    /// the job locked as the instance's primary; `pnode`/`snode` the new pair.
    pub fn check(
        cfg: &ConfigData,
        name: &str,
        primary: &str,
        pnode: &str,
        snode: &str,
    ) -> Result<Self, OpError> {
        let inst = crate::util::instance_by_name(cfg, name)?;
        if inst.disk_template != DiskTemplate::Drbd {
            return Err(prereq(format!(
                "instance {name} has disk template {}: a new pair is only built for drbd \
                 instances",
                inst.disk_template
            )));
        }
        let old_p = node_by_uuid(cfg, &inst.primary_node)?.clone();
        if old_p.name != primary {
            return Err(prereq(format!(
                "instance {name} moved while this job waited for its locks"
            )));
        }
        if inst.admin_state == AdminState::Offline {
            return Err(prereq(format!("instance {name} is offline")));
        }
        let old_s = crate::drbd::secondary_of(cfg, inst)
            .ok_or_else(|| prereq(format!("instance {name} has no secondary node")))?
            .clone();
        for n in [&old_p, &old_s] {
            if n.offline {
                return Err(prereq(format!(
                    "node {} of instance {name} is offline: its old pair does not hold two \
                     up-to-date copies (replace its secondary first)",
                    n.name
                )));
            }
        }
        let new_p = node_by_name(cfg, pnode)?.clone();
        let new_s = node_by_name(cfg, snode)?.clone();
        if new_p.uuid == new_s.uuid {
            return Err(prereq(format!(
                "the new pair needs two nodes, got {} twice",
                new_p.name
            )));
        }
        for n in [&new_p, &new_s] {
            if n.uuid == old_p.uuid || n.uuid == old_s.uuid {
                return Err(prereq(format!(
                    "node {} already holds instance {name}'s disks",
                    n.name
                )));
            }
            check_node_usable(n)?;
        }
        if new_p.group != new_s.group {
            return Err(prereq(format!(
                "nodes {} and {} are in different groups: a DRBD pair stays in one group",
                new_p.name, new_s.name
            )));
        }
        if new_p.group == old_p.group {
            return Err(prereq(format!(
                "node {} is in the group instance {name} is in already",
                new_p.name
            )));
        }
        crate::ipolicy::check_move(cfg, inst, &new_p.uuid, false)?;
        Ok(PairMove {
            inst: inst.clone(),
            old_p,
            old_s,
            new_p,
            new_s,
        })
    }

    /// Moves the instance (see the module docs). On failure the instance is on its old
    /// pair, running if it ran, and nothing of the new pair is left.
    pub async fn exec(mut self, env: &Env<'_>) -> Result<Value, OpError> {
        if let Some(p) = self.inst.pending_move.clone() {
            undo_interrupted(env, &self.inst, &self.old_p, &p).await?;
            self.inst.pending_move = None;
        }
        let PairMove {
            inst,
            old_p,
            old_s,
            new_p,
            new_s,
        } = &self;
        let running = is_running(env, inst, old_p).await?;
        check_room(env, inst, new_p, running).await?;
        check_room(env, inst, new_s, false).await?;
        if running {
            // Both old copies up to date before anything starts.
            crate::drbd::check_in_sync(env, inst, old_p).await?;
        } else if inst.admin_state == AdminState::Up {
            return Err(prereq(format!(
                "instance {} should run but does not run on {}: start it first (or stop it \
                 with 'instance shutdown' to move it stopped)",
                inst.name, old_p.name
            )));
        }
        let cfg = env.cfg();
        let (allocs, reservation) =
            crate::drbd::allocate(&cfg, &new_p.uuid, &new_s.uuid, inst.disks.len())?;
        let now = maguey_model::now();
        let mut moved = inst.clone();
        moved.primary_node = new_p.uuid.clone();
        for (i, (d, a)) in moved.disks.iter_mut().zip(allocs).enumerate() {
            let vg = match d.children.first().map(|c| &c.logical_id) {
                Some(LogicalId::Plain { vg, .. }) => vg.clone(),
                _ => cfg.cluster.vg_name.clone(),
            };
            crate::drbd::make_drbd(d, i, &vg, &new_p.uuid, &new_s.uuid, a, now);
            d.serial_no += 1;
            d.mtime = now;
            env.log(format!(
                "disk {}: new DRBD pair, port {}, minor {} on {} and {} on {}",
                d.iv_name, a.port, a.minor_p, new_p.name, a.minor_s, new_s.name
            ));
        }
        env.log(format!(
            "moving instance {} from {}/{} to a new DRBD pair on {}/{} ({})",
            inst.name,
            old_p.name,
            old_s.name,
            new_p.name,
            new_s.name,
            if running {
                "the running guest's disks mirrored live, then its memory"
            } else {
                "stopped: the disks copied"
            }
        ));

        // 1. The new pair, recorded first: a master that stops from here on leaves it named
        // in the config, for the next move to remove (and for `cluster verify`).
        set_pending(
            env,
            inst,
            Some(PendingPairMove {
                primary: new_p.uuid.clone(),
                secondary: new_s.uuid.clone(),
                disks: moved.disks.clone(),
            }),
        )
        .await?;
        drop(reservation);
        let mut created: Vec<Node> = Vec::new();
        let built = build_pair(env, &moved, new_p, new_s, &mut created).await;
        // 2. The data.
        let copied = match built {
            Ok(()) if running => migrate(env, inst, &moved, old_p, new_p).await,
            Ok(()) => copy_stopped(env, inst, &moved, old_p, new_p).await,
            Err(e) => Err(e),
        };
        let st = match copied {
            Ok(st) => st,
            Err(e) => {
                undo_pair(env, inst, &moved, &created).await;
                env.log(format!(
                    "instance {} stays on its old pair {}/{}{}",
                    inst.name,
                    old_p.name,
                    old_s.name,
                    if running { ", running" } else { "" }
                ));
                return Err(e);
            }
        };

        // 3. The config names the new pair.
        let switched = match env.cfg().instances.get(&inst.uuid).cloned() {
            Some(mut fresh) => {
                fresh.primary_node = moved.primary_node.clone();
                fresh.disks = moved.disks.clone();
                fresh.pending_move = None;
                env.apply(Command::UpdateInstance { instance: fresh })
                    .await
                    .map(|_| ())
            }
            None => Err(OpError::Exec(format!("instance {} vanished", inst.name))),
        };
        if let Err(e) = switched {
            if running {
                finalize(env, inst, &moved, old_p, new_p, false).await;
            }
            undo_pair(env, inst, &moved, &created).await;
            return Err(e);
        }
        if running {
            if let Err(e) = resume_on_new(env, inst, &moved, old_p, new_p).await {
                undo_pair(env, inst, &moved, &created).await;
                return Err(e);
            }
        } else {
            // A stopped instance's disks stay down, as before.
            for n in [new_p, new_s] {
                shutdown(env, &moved, n).await;
            }
        }

        // 4. The old pair goes.
        let old: Vec<Node> = vec![old_s.clone(), old_p.clone()];
        remove_pair(env, inst, &old, "removing the old pair").await;
        env.log(format!(
            "instance {} is on its new pair {}/{}{}",
            inst.name,
            new_p.name,
            new_s.name,
            st.as_ref()
                .map(|s| format!(
                    " ({} ms in all, {} ms downtime, {} MiB of disk mirrored)",
                    s.total_time,
                    s.downtime,
                    s.disk_transferred >> 20
                ))
                .unwrap_or_default()
        ));
        Ok(json!({
            "node": new_p.name,
            "secondary": new_s.name,
            "migrated": running,
            "total_time_ms": st.as_ref().map(|s| s.total_time),
            "downtime_ms": st.as_ref().map(|s| s.downtime),
        }))
    }
}

/// Checks that `node` has room for the instance's new disks and, with `memory`, for its
/// memory now.
async fn check_room(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    memory: bool,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let be = filled_beparams(&cfg, inst);
    let info: NodeInfo = env
        .rpc(
            node,
            NodeRequest::NodeInfo {
                file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if memory && be.maxmem > info.memory_free {
        return Err(prereq(format!(
            "not enough memory on node {} for instance {}: needed {} MiB, free {} MiB",
            node.name, inst.name, be.maxmem, info.memory_free
        )));
    }
    let needed = crate::drbd::storage_needed(DiskTemplate::Drbd, inst.disks.iter().map(|d| d.size));
    let kind = crate::drbd::storage_type(DiskTemplate::Drbd);
    if let Some(st) = info.storage.iter().find(|s| s.storage_type == kind) {
        if needed > st.storage_free {
            return Err(prereq(format!(
                "not enough space on node {} for instance {}'s disks: needed {needed} MiB \
                 (with {DRBD_META_SIZE_MIB} MiB of DRBD metadata per disk), free {} MiB",
                node.name, inst.name, st.storage_free
            )));
        }
    }
    Ok(())
}

/// The new pair's storage and devices: the secondary first, then the primary (`created`
/// records each node touched, for the undo); connected, in sync without a full resync, the
/// primary promoted.
async fn build_pair(
    env: &Env<'_>,
    moved: &Instance,
    new_p: &Node,
    new_s: &Node,
    created: &mut Vec<Node>,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let fsd = storage_dir(&cfg, DiskTemplate::Drbd);
    for node in [new_s, new_p] {
        created.push(node.clone());
        for d in &moved.disks {
            env.log(format!(
                "creating disk {} ({} MiB) on node {}",
                d.iv_name, d.size, node.name
            ));
            let _: Value = env
                .rpc(
                    node,
                    NodeRequest::BlockdevCreate {
                        disk: d.clone(),
                        instance_name: moved.name.clone(),
                        file_storage_dir: fsd.clone(),
                    },
                )
                .await?;
        }
    }
    crate::drbd::wait_connected(env, moved, new_p).await?;
    let disks = crate::drbd::drbd_disks(moved);
    let skipped: Result<Value, OpError> = env
        .rpc(new_p, NodeRequest::DrbdSkipInitialSync { disks })
        .await;
    match skipped {
        Ok(_) => {
            env.log(format!(
                "new pair declared in sync (fresh volumes, no initial resync); promoting {}",
                new_p.name
            ));
            crate::drbd::set_role(env, moved, new_p, true, false).await
        }
        Err(e) => {
            // An older node: a full initial sync, awaited before the data arrives.
            env.log(format!(
                "node {} cannot skip the initial sync ({e}): full initial sync",
                new_p.name
            ));
            crate::drbd::set_role(env, moved, new_p, true, true).await?;
            crate::drbd::wait_for_sync(env, moved, new_p).await
        }
    }
}

/// Removes the instance's DRBD disks (device and LVs) on `nodes`, logging failures;
/// whether all went.
async fn remove_pair(env: &Env<'_>, inst: &Instance, nodes: &[Node], why: &str) -> bool {
    let mut all = true;
    for n in nodes.iter().rev() {
        env.log(format!("{why}: removing the disks on node {}", n.name));
        if let Err(e) = crate::drbd::remove_on(env, inst, n).await {
            all = false;
            env.log(format!(
                "warning: could not remove the disks of instance {} on node {}: {e}; \
                 'cluster verify' lists what is left",
                inst.name, n.name
            ));
        }
    }
    all
}

/// Undoes the new pair within the job that built it: removed where it was created (what
/// cannot be removed is left to `cluster verify`, which names orphan volumes, as before),
/// and the record of the move cleared.
async fn undo_pair(env: &Env<'_>, inst: &Instance, moved: &Instance, created: &[Node]) {
    remove_pair(env, moved, created, "undoing").await;
    if let Err(e) = set_pending(env, inst, None).await {
        env.log(format!(
            "warning: could not clear the record of the move of instance {}: {e}",
            inst.name
        ));
    }
}

/// Records (or clears) the instance's move in progress in the config.
async fn set_pending(
    env: &Env<'_>,
    inst: &Instance,
    pending: Option<PendingPairMove>,
) -> Result<(), OpError> {
    let Some(mut fresh) = env.cfg().instances.get(&inst.uuid).cloned() else {
        return Err(OpError::Exec(format!("instance {} vanished", inst.name)));
    };
    if fresh.pending_move == pending {
        return Ok(());
    }
    fresh.pending_move = pending;
    env.apply(Command::UpdateInstance { instance: fresh })
        .await
        .map(|_| ())
}

/// A move that a stopped master left in the middle (its new pair recorded in the config):
/// the guest, which cannot have resumed on the new primary (QEMU waits there paused until
/// the switch), is dropped there and resumed on the old primary; the new pair is removed
/// and the record cleared. Refused, changing nothing, when the guest runs on the new
/// primary after all.
async fn undo_interrupted(
    env: &Env<'_>,
    inst: &Instance,
    old_p: &Node,
    p: &PendingPairMove,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let new_p = node_by_uuid(&cfg, &p.primary)?.clone();
    let new_s = node_by_uuid(&cfg, &p.secondary)?.clone();
    let mut moved = inst.clone();
    moved.primary_node = p.primary.clone();
    moved.disks = p.disks.clone();
    moved.pending_move = None;
    env.log(format!(
        "instance {}: an earlier move to a new pair on {}/{} stopped in the middle (a master \
         restart?); undoing it first",
        inst.name, new_p.name, new_s.name
    ));
    let there: Option<InstanceRunInfo> = env
        .rpc(
            &new_p,
            NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if there.as_ref().is_some_and(|i| i.state == "running") {
        return Err(OpError::Exec(format!(
            "instance {} runs on node {} on the new pair of an interrupted move while the \
             config names its old pair on {}: check both nodes before anything else",
            inst.name, new_p.name, old_p.name
        )));
    }
    finalize(env, inst, &moved, old_p, &new_p, false).await;
    if !remove_pair(env, &moved, &[new_s, new_p], "undoing the interrupted move").await {
        return Err(OpError::Exec(format!(
            "the new pair an interrupted move of instance {} left could not be removed: see \
             the warnings above; 'cluster verify' names it",
            inst.name
        )));
    }
    set_pending(env, inst, None).await
}

/// Shuts the instance's DRBD devices down on `node` (the LVs stay), logging failures.
async fn shutdown(env: &Env<'_>, inst: &Instance, node: &Node) {
    let r: Result<Value, OpError> = env
        .rpc(
            node,
            NodeRequest::DrbdShutdown {
                disks: crate::drbd::drbd_disks(inst),
            },
        )
        .await;
    if let Err(e) = r {
        env.log(format!(
            "warning: could not shut down the disks on node {}: {e}",
            node.name
        ));
    }
}

/// The running guest: QEMU on the new primary with the new devices exported over NBD, the
/// old primary's QEMU mirrors the disks into them, then sends the memory. On failure both
/// sides are finalized as failed (the guest runs on on the old primary).
async fn migrate(
    env: &Env<'_>,
    inst: &Instance,
    moved: &Instance,
    old_p: &Node,
    new_p: &Node,
) -> Result<Option<MigrationStatus>, OpError> {
    let cfg = env.cfg();
    let mut rt = instance_runtime(&cfg, moved);
    let info: Option<InstanceRunInfo> = env
        .rpc(
            old_p,
            NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if let Some(accel) = info.and_then(|i| i.accel) {
        rt.hvparams.insert("accel".into(), Value::String(accel));
    }
    let hv = filled_hvparams(&cfg, inst);
    let int = |k: &str, d: u64| hv.get(k).and_then(|v| v.as_u64()).unwrap_or(d);
    let (bandwidth, downtime) = (
        int("migration_bandwidth", 32),
        int("migration_downtime", 30),
    );
    let ports: AcceptedPorts = env
        .rpc(
            new_p,
            NodeRequest::AcceptInstance {
                instance: rt,
                address: new_p.primary_ip.clone(),
                port: 0,
                nbd_port: Some(0),
                tls_peer: Some(old_p.name.clone()),
            },
        )
        .await?;
    env.log(format!(
        "mirroring the disks of instance {} into the new pair, then its memory ({} -> {}, \
         {bandwidth} MiB/s, {downtime} ms downtime)",
        inst.name, old_p.name, new_p.name
    ));
    let r: Result<MigrationStatus, OpError> = env
        .rpc(
            old_p,
            NodeRequest::InstanceMigrate {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                target: new_p.primary_ip.clone(),
                port: ports.port,
                bandwidth,
                downtime,
                caps: crate::util::migration_caps(&hv),
                nbd_port: ports.nbd_port,
                tls_peer: Some(new_p.name.clone()),
            },
        )
        .await;
    let r = match r {
        Ok(st) if st.status == "completed" => Ok(st),
        Ok(st) => Err(OpError::Exec(format!(
            "the migration ended with status '{}'",
            st.status
        ))),
        Err(e) => Err(e),
    };
    match r {
        Ok(st) => Ok(Some(st)),
        Err(e) => {
            env.log(format!(
                "migration into the new pair failed: {e}; instance {} keeps running on {}",
                inst.name, old_p.name
            ));
            finalize(env, inst, moved, old_p, new_p, false).await;
            Err(OpError::Exec(format!(
                "moving instance {} to node {} failed: {e}",
                inst.name, new_p.name
            )))
        }
    }
}

/// After the switch: the guest resumed on the new primary, the old copy stopped. When the
/// new primary cannot resume it (the guest never ran there), the config names the old pair
/// again and the guest resumes on the old primary (the caller removes the new pair).
async fn resume_on_new(
    env: &Env<'_>,
    inst: &Instance,
    moved: &Instance,
    old_p: &Node,
    new_p: &Node,
) -> Result<(), OpError> {
    let rt = instance_runtime(&env.cfg(), moved);
    let r: Result<Value, OpError> = env
        .rpc(
            new_p,
            NodeRequest::FinalizeMigrationDst {
                instance: rt,
                success: true,
            },
        )
        .await;
    let Err(e) = r else {
        let r: Result<Value, OpError> = env
            .rpc(
                old_p,
                NodeRequest::FinalizeMigrationSrc {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.to_string(),
                    success: true,
                },
            )
            .await;
        if let Err(e) = r {
            env.log(format!(
                "warning: could not stop the old copy of the instance on {}: {e}; run \
                 'instance migrate --cleanup'",
                old_p.name
            ));
        }
        return Ok(());
    };
    env.log(format!(
        "instance {} could not be resumed on {}: {e}; back to its old pair",
        inst.name, new_p.name
    ));
    let back = match env.cfg().instances.get(&inst.uuid).cloned() {
        Some(mut fresh) => {
            fresh.primary_node = inst.primary_node.clone();
            fresh.disks = inst.disks.clone();
            fresh.pending_move = Some(PendingPairMove {
                primary: moved.primary_node.clone(),
                secondary: crate::drbd::secondary_of(&env.cfg(), moved)
                    .map(|n| n.uuid.clone())
                    .unwrap_or_default(),
                disks: moved.disks.clone(),
            });
            env.apply(Command::UpdateInstance { instance: fresh })
                .await
                .map(|_| ())
        }
        None => Err(OpError::Exec(format!("instance {} vanished", inst.name))),
    };
    if let Err(e2) = back {
        return Err(OpError::Exec(format!(
            "instance {} could not be resumed on {} ({e}) and the config could not name its \
             old pair again ({e2}): run 'instance migrate --cleanup'",
            inst.name, new_p.name
        )));
    }
    finalize(env, inst, moved, old_p, new_p, false).await;
    Err(OpError::Exec(format!(
        "instance {} could not be resumed on {}: {e}; it keeps running on its old pair",
        inst.name, new_p.name
    )))
}

/// Ends a migration on both sides: resumed on the new primary and stopped on the old one
/// (`success`), or dropped on the new primary and resumed on the old one.
async fn finalize(
    env: &Env<'_>,
    inst: &Instance,
    moved: &Instance,
    old_p: &Node,
    new_p: &Node,
    success: bool,
) {
    let rt = instance_runtime(&env.cfg(), moved);
    let r: Result<Value, OpError> = env
        .rpc(
            new_p,
            NodeRequest::FinalizeMigrationDst {
                instance: rt,
                success,
            },
        )
        .await;
    if let Err(e) = r {
        env.log(format!(
            "warning: could not {} the instance on {}: {e}; run 'instance migrate --cleanup'",
            if success {
                "resume"
            } else {
                "stop the copy of"
            },
            new_p.name
        ));
    }
    let r: Result<Value, OpError> = env
        .rpc(
            old_p,
            NodeRequest::FinalizeMigrationSrc {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                success,
            },
        )
        .await;
    if let Err(e) = r {
        env.log(format!(
            "warning: could not {} the instance on {}: {e}; run 'instance migrate --cleanup'",
            if success {
                "stop the old copy of"
            } else {
                "resume"
            },
            old_p.name
        ));
    }
}

/// A stopped instance: the old pair brought up (primary on the old primary), each disk
/// copied into the new primary's device (zeroes written too: fresh volumes hold old
/// extents), the old devices shut down again.
async fn copy_stopped(
    env: &Env<'_>,
    inst: &Instance,
    moved: &Instance,
    old_p: &Node,
    new_p: &Node,
) -> Result<Option<MigrationStatus>, OpError> {
    crate::drbd::activate_for_start(env, inst, old_p, false).await?;
    let r = async {
        crate::drbd::check_in_sync(env, inst, old_p).await?;
        let cfg = env.cfg();
        let dir = storage_dir(&cfg, DiskTemplate::Drbd);
        for (old, new) in inst.disks.iter().zip(&moved.disks) {
            let total = old.size.saturating_mul(1 << 20);
            env.log(format!(
                "copying disk {} ({} MiB) from {} into the new pair on {}",
                old.iv_name, old.size, old_p.name, new_p.name
            ));
            let mut offset = 0u64;
            while offset < total {
                let length = CHUNK.min(total - offset);
                let chunk: BlockdevChunk = env
                    .rpc(
                        old_p,
                        NodeRequest::BlockdevRead {
                            disk: old.clone(),
                            file_storage_dir: dir.clone(),
                            offset,
                            length,
                        },
                    )
                    .await?;
                if chunk.length != length {
                    return Err(OpError::Exec(format!(
                        "node {} sent {} bytes instead of {length}",
                        old_p.name, chunk.length
                    )));
                }
                let _: Value = env
                    .rpc(
                        new_p,
                        NodeRequest::BlockdevWrite {
                            disk: new.clone(),
                            file_storage_dir: dir.clone(),
                            offset,
                            chunk,
                        },
                    )
                    .await?;
                offset += length;
            }
        }
        Ok(None)
    }
    .await;
    let cfg = env.cfg();
    for u in std::iter::once(inst.primary_node.as_str()).chain(inst.secondary_nodes()) {
        if let Ok(n) = node_by_uuid(&cfg, u) {
            shutdown(env, inst, n).await;
        }
    }
    r
}
