//! OP_INSTANCE_MIGRATE: moves a running instance to another node while it runs.
//!
//! `sharedfile` and `diskless` instances move their memory only; `file` instances also move
//! their disks: the target creates fresh disks and exports them over NBD, the source mirrors
//! into them, then the memory moves (Maguey's local-storage live migration). A stopped
//! instance is failed over (shared disks) or moved (local disks) instead, as in Ganeti.
//! `--cleanup` repairs the state a failed migration left: it finds where the instance really
//! runs, fixes the config and stops the stray copy.

use crate::util::{
    filled_hvparams, instance_by_name, instance_runtime, node_addr, node_by_name, node_by_uuid,
    storage_dir,
};
use crate::{disks::*, lifecycle::*, migration::*};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance, MigrationMode, Node};
use maguey_rpc::{AcceptedPorts, InstanceRunInfo, MigrationProgress, MigrationStatus, NodeRequest};
use serde_json::{json, Value};
use std::time::Duration;

pub struct InstanceMigrate {
    name: String,
    primary: String,
    target: Option<String>,
    cleanup: bool,
    allow_failover: bool,
}

impl LogicalUnit for InstanceMigrate {
    type Op = maguey_model::OpInstanceMigrate;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceMigrate {
            instance_name,
            mode,
            live,
            target_node,
            cleanup,
            allow_failover,
            iallocator,
            ..
        } = op;
        let non_live = *mode == Some(MigrationMode::NonLive) || *live == Some(false);
        if non_live {
            return Err(prereq(
                "non-live migration is not supported; use 'instance failover' to restart the \
                 instance on another node",
            ));
        }
        if let Some(a) = iallocator
            .as_deref()
            .filter(|a| !a.is_empty() && *a != "hail")
        {
            return Err(prereq(format!(
                "unknown iallocator '{a}' (Maguey's placement engine answers as 'hail')"
            )));
        }
        let inst = instance_by_name(cfg, instance_name)?;
        let primary = node_by_uuid(cfg, &inst.primary_node)?.name.clone();
        let target = match target_node {
            Some(t) => Some(node_by_name(cfg, t)?.name.clone()),
            None => None,
        };
        if let Some(t) = target_node {
            // Issue 15: the policy of the target's group when it is another group.
            crate::ipolicy::check_move(cfg, inst, &node_by_name(cfg, t)?.uuid, op.ignore_ipolicy)?;
        }
        if *cleanup && target.is_some() {
            return Err(prereq("--cleanup takes no target node"));
        }
        Ok(InstanceMigrate {
            name: instance_name.clone(),
            primary,
            target,
            cleanup: *cleanup,
            allow_failover: *allow_failover,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let target = if self.cleanup {
            None
        } else {
            self.target.as_deref()
        };
        crate::locks::instance_moving(&self.name, &self.primary, target)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if node_by_uuid(cfg, &inst.primary_node)?.name != self.primary {
            return Err(prereq(format!(
                "instance {} moved while this job waited for its locks",
                self.name
            )));
        }
        if !self.cleanup {
            if inst.admin_state == AdminState::Offline {
                return Err(prereq(format!("instance {} is offline", self.name)));
            }
            let primary = node_by_uuid(cfg, &inst.primary_node)?;
            if primary.offline {
                return Err(prereq(format!(
                    "the primary node {} is offline; use 'instance failover \
                     --ignore-consistency' to restart the instance elsewhere",
                    primary.name
                )));
            }
            if let Some(t) = &self.target {
                check_target(inst, node_by_name(cfg, t)?)?;
            }
        }
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let inst = checked;
        if self.cleanup {
            return cleanup(env, &inst).await;
        }
        let cfg = env.cfg();
        let src = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let dst = match (&self.target, crate::drbd::secondary_of(&cfg, &inst)) {
            (Some(t), Some(sec))
                if inst.disk_template.is_internally_mirrored() && *t != sec.name =>
            {
                return Err(prereq(format!(
                    "instance {} has drbd disks: it can only migrate to its secondary node {}",
                    inst.name, sec.name
                )))
            }
            (_, Some(sec)) if inst.disk_template.is_internally_mirrored() => sec.clone(),
            (Some(t), _) => node_by_name(&cfg, t)?.clone(),
            (None, _) => choose_target(env, &inst).await?,
        };
        check_target(&inst, &dst)?;
        if !is_running(env, &inst, &src).await? {
            if !self.allow_failover {
                return Err(prereq(format!(
                    "instance {} is not running, and failover is not allowed",
                    inst.name
                )));
            }
            env.log(format!(
                "instance {} is not running: moving it without migration",
                inst.name
            ));
            if inst.disk_template.has_local_disks() {
                copy_disks(env, &inst, &src, &dst).await?;
                set_primary(env, &inst, &dst)?;
                remove_disks(env, &inst, &src).await;
            } else {
                set_primary(env, &inst, &dst)?;
            }
            return Ok(json!({"migrated": false, "node": dst.name}));
        }
        check_target_memory(env, &inst, &dst).await?;
        let st = live_migrate(env, &inst, &src, &dst).await?;
        Ok(json!({
            "node": dst.name,
            "total_time_ms": st.total_time,
            "downtime_ms": st.downtime,
            "ram_bytes": st.transferred,
            "disk_bytes": st.disk_transferred,
        }))
    }
}

/// Checks that every disk is present on `node` before anything moves.
async fn check_disks(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let cfg = env.cfg();
    for disk in &inst.disks {
        let found: Option<Value> = env
            .rpc(
                node,
                NodeRequest::BlockdevFind {
                    disk: disk.clone(),
                    file_storage_dir: storage_dir(&cfg, disk.dev_type.template()),
                },
            )
            .await?;
        if found.is_none() {
            return Err(prereq(format!(
                "disk {} of instance {} is missing on node {}",
                disk.iv_name, inst.name, node.name
            )));
        }
    }
    Ok(())
}

/// The live migration proper, undone on failure: the instance then keeps running on `src`
/// and the config is unchanged.
async fn live_migrate(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<MigrationStatus, OpError> {
    let cfg = env.cfg();
    let local = inst.disk_template.has_local_disks();
    let drbd = inst.disk_template.is_internally_mirrored();
    check_disks(env, inst, src).await?;
    if drbd {
        crate::drbd::check_in_sync(env, inst, src).await?;
        crate::drbd::check_in_sync(env, inst, dst).await?;
    }
    let rt = instance_runtime(&cfg, inst);
    let hv = filled_hvparams(&cfg, inst);
    let int = |k: &str, d: u64| hv.get(k).and_then(|v| v.as_u64()).unwrap_or(d);
    let (bandwidth, downtime) = (
        int("migration_bandwidth", 32),
        int("migration_downtime", 30),
    );
    env.log(format!(
        "migrating instance {} from {} to {} ({}, {bandwidth} MiB/s, {downtime} ms downtime)",
        inst.name,
        src.name,
        dst.name,
        if local {
            "memory and local disks"
        } else if drbd {
            "memory; DRBD dual-primary for the duration"
        } else {
            "memory; the disks are shared"
        }
    ));
    if drbd {
        if let Err(e) = drbd_dual_primary(env, inst, src, dst).await {
            drbd_single_primary(env, inst, src, dst).await;
            return Err(e);
        }
    }
    let mut created = Vec::new();
    if local {
        for disk in &inst.disks {
            let r: Result<Value, OpError> = env
                .rpc(
                    dst,
                    NodeRequest::BlockdevCreate {
                        disk: disk.clone(),
                        instance_name: inst.name.clone(),
                        file_storage_dir: storage_dir(&cfg, disk.dev_type.template()),
                    },
                )
                .await;
            match r {
                Ok(_) => created.push(disk.clone()),
                Err(e) => {
                    crate::disks::undo_disks(env, dst, &created).await;
                    return Err(e);
                }
            }
        }
    }
    let accepted: Result<AcceptedPorts, OpError> = env
        .rpc(
            dst,
            NodeRequest::AcceptInstance {
                instance: rt.clone(),
                address: dst.primary_ip.clone(),
                port: 0,
                nbd_port: local.then_some(0),
            },
        )
        .await;
    let ports = match accepted {
        Ok(p) => p,
        Err(e) => {
            crate::disks::undo_disks(env, dst, &created).await;
            if drbd {
                drbd_single_primary(env, inst, src, dst).await;
            }
            return Err(e);
        }
    };
    let migrate = env.rpc::<MigrationStatus>(
        src,
        NodeRequest::InstanceMigrate {
            name: inst.name.clone(),
            hypervisor: inst.hypervisor.to_string(),
            target: dst.primary_ip.clone(),
            port: ports.port,
            bandwidth,
            downtime,
            nbd_port: ports.nbd_port,
        },
    );
    let result = with_progress(env, inst, src, migrate).await;
    let result = match result {
        Ok(st) if st.status == "completed" => Ok(st),
        Ok(st) => Err(OpError::Exec(format!(
            "the migration ended with status '{}'",
            st.status
        ))),
        Err(e) => Err(e),
    };
    let st = match result {
        Ok(st) => st,
        Err(e) => {
            env.log(format!(
                "migration failed: {e}; instance {} keeps running on {}",
                inst.name, src.name
            ));
            let r: Result<Value, OpError> = env
                .rpc(
                    dst,
                    NodeRequest::FinalizeMigrationDst {
                        instance: rt.clone(),
                        success: false,
                    },
                )
                .await;
            if let Err(e) = r {
                env.log(format!("could not stop the copy on {}: {e}", dst.name));
            }
            let r: Result<Value, OpError> = env
                .rpc(
                    src,
                    NodeRequest::FinalizeMigrationSrc {
                        name: inst.name.clone(),
                        hypervisor: inst.hypervisor.to_string(),
                        success: false,
                    },
                )
                .await;
            if let Err(e) = r {
                env.log(format!(
                    "could not resume the instance on {}: {e}; run 'instance migrate --cleanup'",
                    src.name
                ));
            }
            crate::disks::undo_disks(env, dst, &created).await;
            if drbd {
                drbd_single_primary(env, inst, src, dst).await;
            }
            return Err(OpError::Exec(format!(
                "migration of instance {} to node {} failed: {e}",
                inst.name, dst.name
            )));
        }
    };
    // The memory is on the target: from now on the target is the primary.
    set_primary(env, inst, dst)?;
    let r: Result<Value, OpError> = env
        .rpc(
            dst,
            NodeRequest::FinalizeMigrationDst {
                instance: rt.clone(),
                success: true,
            },
        )
        .await;
    if let Err(e) = r {
        return Err(OpError::Exec(format!(
            "instance {} arrived on {} but could not be resumed: {e}; run 'instance migrate \
             --cleanup'",
            inst.name, dst.name
        )));
    }
    let r: Result<Value, OpError> = env
        .rpc(
            src,
            NodeRequest::FinalizeMigrationSrc {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                success: true,
            },
        )
        .await;
    if let Err(e) = r {
        env.log(format!(
            "could not stop the old copy on {}: {e}; run 'instance migrate --cleanup'",
            src.name
        ));
    }
    if local {
        remove_disks(env, inst, src).await;
    }
    if drbd {
        // Back to one primary: the new node.
        drbd_single_primary(env, inst, dst, src).await;
    }
    env.log(format!(
        "migration done: {} ms in all, {} ms downtime, {} MiB of memory{}",
        st.total_time,
        st.downtime,
        mib(st.transferred),
        if local {
            format!(", {} MiB of disk", mib(st.disk_transferred))
        } else {
            String::new()
        }
    ));
    Ok(st)
}

/// DRBD before a live migration: two primaries allowed on both ends, the target promoted
/// (QEMU on the target opens the disks while the source still writes).
async fn drbd_dual_primary(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    env.log(format!(
        "DRBD: allowing two primaries on {} and {}, promoting {}",
        src.name, dst.name, dst.name
    ));
    crate::drbd::set_dual(env, inst, src, true).await?;
    crate::drbd::set_dual(env, inst, dst, true).await?;
    crate::drbd::set_role(env, inst, dst, true, false).await
}

/// DRBD after a live migration (or its failure): `keep` stays primary, `other` is demoted,
/// and two primaries are forbidden again. Failures are logged (the instance runs on `keep`).
async fn drbd_single_primary(env: &Env<'_>, inst: &Instance, keep: &Node, other: &Node) {
    env.log(format!(
        "DRBD: back to a single primary on {} ({} secondary)",
        keep.name, other.name
    ));
    if let Err(e) = crate::drbd::set_role(env, inst, other, false, false).await {
        env.log(format!("could not demote the disks on {}: {e}", other.name));
    }
    for n in [other, keep] {
        if let Err(e) = crate::drbd::set_dual(env, inst, n, false).await {
            env.log(format!("could not forbid two primaries on {}: {e}", n.name));
        }
    }
}

/// Runs `fut` (the source's migrate RPC) and logs the source's progress every second.
async fn with_progress<F>(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    fut: F,
) -> Result<MigrationStatus, OpError>
where
    F: std::future::Future<Output = Result<MigrationStatus, OpError>>,
{
    tokio::pin!(fut);
    let cfg = env.cfg();
    let addr = node_addr(&cfg, src);
    let mut last = String::new();
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let p: Result<Option<MigrationProgress>, _> = env
                    .master
                    .rpc
                    .call(
                        &addr,
                        &NodeRequest::InstanceMigrationProgress {
                            name: inst.name.clone(),
                            hypervisor: inst.hypervisor.to_string(),
                        },
                    )
                    .await;
                if let Ok(Some(p)) = p {
                    let line = progress_line(&p);
                    if line != last {
                        env.log(line.clone());
                        last = line;
                    }
                }
            }
        }
    }
}

/// `migrate --cleanup`: finds where the instance runs and makes the config and the nodes
/// agree again.
async fn cleanup(env: &Env<'_>, inst: &Instance) -> Result<Value, OpError> {
    let cfg = env.cfg();
    let nodes: Vec<Node> = cfg.nodes.values().filter(|n| !n.offline).cloned().collect();
    let addrs: Vec<String> = nodes.iter().map(|n| node_addr(&cfg, n)).collect();
    let infos = env
        .master
        .rpc
        .call_many::<Option<InstanceRunInfo>>(
            &addrs,
            &NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await;
    let mut found: Vec<(Node, InstanceRunInfo)> = Vec::new();
    for (n, r) in nodes.into_iter().zip(infos) {
        match r {
            Ok(Some(info)) => found.push((n, info)),
            Ok(None) => {}
            Err(e) => env.log(format!("node {} did not answer: {e}", n.name)),
        }
    }
    let primary = node_by_uuid(&cfg, &inst.primary_node)?.clone();
    let rt = instance_runtime(&cfg, inst);
    let where_ = found
        .iter()
        .map(|(n, i)| format!("{} ({})", n.name, i.state))
        .collect::<Vec<_>>()
        .join(", ");
    env.log(format!(
        "instance {} found on: {}",
        inst.name,
        if where_.is_empty() {
            "no node"
        } else {
            &where_
        }
    ));
    let running = |i: &InstanceRunInfo| i.state == "running";
    // The copy that runs wins; a paused copy elsewhere is a leftover.
    let winner = found
        .iter()
        .find(|(_, i)| running(i))
        .or_else(|| found.iter().find(|(n, _)| n.uuid == primary.uuid))
        .or(found.first())
        .cloned();
    let Some((win, _)) = winner else {
        env.log(format!(
            "instance {} runs nowhere; nothing to clean up",
            inst.name
        ));
        return Ok(json!({"node": Value::Null}));
    };
    for (n, _) in found.iter().filter(|(n, _)| n.uuid != win.uuid) {
        env.log(format!("stopping the stray copy on {}", n.name));
        let req = if n.uuid == primary.uuid {
            NodeRequest::FinalizeMigrationSrc {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                success: true,
            }
        } else {
            NodeRequest::FinalizeMigrationDst {
                instance: rt.clone(),
                success: false,
            }
        };
        let _: Value = env.rpc(n, req).await?;
    }
    if win.uuid != primary.uuid {
        env.log(format!(
            "instance {} runs on {}: making it the primary node",
            inst.name, win.name
        ));
        set_primary(env, inst, &win)?;
        let _: Value = env
            .rpc(
                &win,
                NodeRequest::FinalizeMigrationDst {
                    instance: rt.clone(),
                    success: true,
                },
            )
            .await?;
        if inst.disk_template.has_local_disks() {
            env.log(format!(
                "the old disks on {} are left in place; 'cluster verify' lists them",
                primary.name
            ));
        }
    } else {
        // A failed migration may have left the source paused.
        let _: Value = env
            .rpc(
                &win,
                NodeRequest::FinalizeMigrationSrc {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.to_string(),
                    success: false,
                },
            )
            .await?;
    }
    Ok(json!({"node": win.name}))
}
