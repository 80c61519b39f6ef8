//! OP_INSTANCE_MOVE: stops an instance, copies its disks to another node over the
//! cluster's mutual TLS (chunks through the master; holes stay holes), makes that node the
//! primary and starts the instance there if it was meant to run.

use crate::util::{instance_by_name, node_by_name, node_by_uuid};
use crate::{disks::*, lifecycle::*, migration::*};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance};
use serde_json::{json, Value};

pub struct InstanceMove {
    name: String,
    primary: String,
    target: String,
    timeout: u64,
    ignore_consistency: bool,
}

impl LogicalUnit for InstanceMove {
    type Op = maguey_model::OpInstanceMove;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceMove {
            instance_name,
            target_node,
            shutdown_timeout,
            ignore_consistency,
            ..
        } = op;
        let inst = instance_by_name(cfg, instance_name)?;
        // Issue 15: the policy of the target's group when it is another group.
        let t = &node_by_name(cfg, target_node)?.uuid;
        crate::ipolicy::check_move(cfg, inst, t, op.ignore_ipolicy)?;
        Ok(InstanceMove {
            name: instance_name.clone(),
            primary: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            target: node_by_name(cfg, target_node)?.name.clone(),
            timeout: *shutdown_timeout,
            ignore_consistency: *ignore_consistency,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::instance_moving(&self.name, &self.primary, Some(&self.target))
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
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
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let inst = checked;
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
