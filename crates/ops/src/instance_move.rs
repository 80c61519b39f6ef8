//! OP_INSTANCE_MOVE: stops an instance, copies its disks to another node over the
//! cluster's mutual TLS (chunks through the master; holes stay holes), makes that node the
//! primary and starts the instance there if it was meant to run.

use crate::instance_migrate::{check_target, check_target_memory, move_locks, set_primary};
use crate::instance_state::{is_running, start, stop};
use crate::util::{instance_by_name, node_by_name, node_by_uuid, storage_dir};
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{AdminState, ConfigData, Disk, Instance, Node, OpCode};
use maguey_rpc::{BlockdevChunk, NodeRequest};
use serde_json::{json, Value};

/// Bytes per copy request (the node's limit).
const CHUNK: u64 = 8 << 20;

/// Removes the instance's disks on `node`, logging (not failing on) errors: used once the
/// instance lives elsewhere.
pub(crate) async fn remove_disks(env: &Env<'_>, inst: &Instance, node: &Node) {
    let cfg = env.cfg();
    for disk in &inst.disks {
        let r: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: disk.clone(),
                    file_storage_dir: storage_dir(&cfg, disk.dev_type.template()),
                },
            )
            .await;
        match r {
            Ok(_) => env.log(format!(
                "removed the old disk {} on {}",
                disk.iv_name, node.name
            )),
            Err(e) => env.log(format!(
                "could not remove the old disk {} on {}: {e}; 'cluster verify' lists it",
                disk.iv_name, node.name
            )),
        }
    }
}

/// Creates the instance's disks on `dst` and copies their contents from `src`; on failure
/// the new disks are removed again.
pub(crate) async fn copy_disks(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let mut created: Vec<Disk> = Vec::new();
    let r = async {
        for disk in &inst.disks {
            let dir = storage_dir(&cfg, disk.dev_type.template());
            let _: Value = env
                .rpc(
                    dst,
                    NodeRequest::BlockdevCreate {
                        disk: disk.clone(),
                        instance_name: inst.name.clone(),
                        file_storage_dir: dir.clone(),
                    },
                )
                .await?;
            created.push(disk.clone());
            copy_one(env, disk, &dir, src, dst).await?;
        }
        Ok::<(), OpError>(())
    }
    .await;
    if r.is_err() {
        crate::instance_create::undo_disks(env, dst, &created).await;
    }
    r
}

async fn copy_one(
    env: &Env<'_>,
    disk: &Disk,
    dir: &str,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    let total = disk.size.saturating_mul(1 << 20);
    env.log(format!(
        "copying disk {} ({} MiB) from {} to {}",
        disk.iv_name, disk.size, src.name, dst.name
    ));
    let started = std::time::Instant::now();
    let (mut offset, mut data_bytes, mut last_pct) = (0u64, 0u64, 0u64);
    while offset < total {
        let length = CHUNK.min(total - offset);
        let chunk: BlockdevChunk = env
            .rpc(
                src,
                NodeRequest::BlockdevRead {
                    disk: disk.clone(),
                    file_storage_dir: dir.to_string(),
                    offset,
                    length,
                },
            )
            .await?;
        if chunk.length != length {
            return Err(OpError::Exec(format!(
                "node {} sent {} bytes instead of {length}",
                src.name, chunk.length
            )));
        }
        // Holes are skipped on fresh image files; an LV needs its zeroes written.
        if chunk.data.is_some() || disk.dev_type == maguey_model::DevType::Plain {
            data_bytes += length;
            let _: Value = env
                .rpc(
                    dst,
                    NodeRequest::BlockdevWrite {
                        disk: disk.clone(),
                        file_storage_dir: dir.to_string(),
                        offset,
                        chunk,
                    },
                )
                .await?;
        }
        offset += length;
        let pct = offset * 100 / total;
        if pct >= last_pct + 10 || offset == total {
            last_pct = pct;
            env.log(format!(
                "copy of disk {}: {pct}% ({}/{} MiB)",
                disk.iv_name,
                offset >> 20,
                total >> 20
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    env.log(format!(
        "disk {} copied in {secs:.1} s ({} MiB of data, the rest holes)",
        disk.iv_name,
        data_bytes >> 20
    ));
    Ok(())
}

/// The instance as the config has it now.
pub(crate) fn current(env: &Env<'_>, inst: &Instance) -> Result<Instance, OpError> {
    env.cfg()
        .instances
        .get(&inst.uuid)
        .cloned()
        .ok_or_else(|| OpError::Exec(format!("instance {} vanished", inst.name)))
}

pub struct InstanceMove {
    name: String,
    primary: String,
    target: String,
    timeout: u64,
    ignore_consistency: bool,
    instance: Option<Instance>,
}

impl LogicalUnit for InstanceMove {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceMove(maguey_model::OpInstanceMove {
            instance_name,
            target_node,
            shutdown_timeout,
            ignore_consistency,
            ..
        }) = op
        else {
            return Err(wrong_op(op));
        };
        let inst = instance_by_name(cfg, instance_name)?;
        Ok(InstanceMove {
            name: instance_name.clone(),
            primary: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            target: node_by_name(cfg, target_node)?.name.clone(),
            timeout: *shutdown_timeout,
            ignore_consistency: *ignore_consistency,
            instance: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        move_locks(&self.name, &self.primary, Some(&self.target))
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if !inst.disk_template.can_move_by_copy() {
            return Err(prereq(format!(
                "instance {} has disk template {}; 'instance move' copies file disks only \
                 (use 'instance migrate' or 'instance failover' for shared disks)",
                self.name, inst.disk_template
            )));
        }
        let src = node_by_uuid(cfg, &inst.primary_node)?;
        if src.name != self.primary {
            return Err(prereq(format!(
                "instance {} moved while this job waited for its locks",
                self.name
            )));
        }
        if src.offline {
            return Err(prereq(format!(
                "the primary node {} is offline: its disks cannot be copied",
                src.name
            )));
        }
        check_target(inst, node_by_name(cfg, &self.target)?)?;
        self.instance = Some(inst.clone());
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let inst = self
            .instance
            .clone()
            .ok_or_else(|| OpError::Exec("internal error: not checked".into()))?;
        let cfg = env.cfg();
        let src = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let dst = node_by_name(&cfg, &self.target)?.clone();
        let up = inst.admin_state == AdminState::Up;
        if up {
            check_target_memory(env, &inst, &dst).await?;
        }
        let was_running = is_running(env, &inst, &src).await?;
        if was_running {
            if let Err(e) = stop(env, &inst, &src, self.timeout).await {
                if !self.ignore_consistency {
                    return Err(e);
                }
                env.log(format!("ignoring: {e}"));
            }
        }
        if let Err(e) = copy_disks(env, &inst, &src, &dst).await {
            if was_running {
                env.log(format!("restarting instance {} on {}", inst.name, src.name));
                if let Err(e2) = start(env, &inst, &src, false).await {
                    env.log(format!("could not restart it: {e2}"));
                }
            }
            return Err(e);
        }
        set_primary(env, &inst, &dst)?;
        remove_disks(env, &inst, &src).await;
        if up {
            let moved = current(env, &inst)?;
            start(env, &moved, &dst, false).await?;
        }
        Ok(json!({"node": dst.name}))
    }
}
