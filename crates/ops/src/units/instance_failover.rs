//! OP_INSTANCE_FAILOVER: stops an instance on its primary node and starts it on another
//! that sees the same disks (`sharedfile`, `diskless`; `drbd` with the replicated-storage
//! work). With `ignore_consistency` it goes on when the primary cannot be reached (it died).

use crate::util::{instance_by_name, node_by_name, node_by_uuid};
use crate::{lifecycle::*, migration::*};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance};
use serde_json::{json, Value};

pub struct InstanceFailover {
    name: String,
    primary: String,
    target: Option<String>,
    timeout: u64,
    ignore_consistency: bool,
}

impl LogicalUnit for InstanceFailover {
    type Op = maguey_model::OpInstanceFailover;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceFailover {
            instance_name,
            shutdown_timeout,
            ignore_consistency,
            target_node,
            cleanup,
            ..
        } = op;
        if *cleanup {
            return Err(prereq(
                "a failover has nothing to clean up (use 'instance migrate --cleanup' after a \
                 failed migration)",
            ));
        }
        let inst = instance_by_name(cfg, instance_name)?;
        if let Some(t) = target_node {
            // Issue 15: the policy of the target's group when it is another group.
            crate::ipolicy::check_move(cfg, inst, &node_by_name(cfg, t)?.uuid, op.ignore_ipolicy)?;
        }
        Ok(InstanceFailover {
            name: instance_name.clone(),
            primary: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            target: match target_node {
                Some(t) => Some(node_by_name(cfg, t)?.name.clone()),
                None => None,
            },
            timeout: *shutdown_timeout,
            ignore_consistency: *ignore_consistency,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::instance_moving(&self.name, &self.primary, self.target.as_deref())
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        let drbd = inst.disk_template.is_internally_mirrored();
        if drbd {
            let sec = crate::drbd::secondary_of(cfg, inst)
                .ok_or_else(|| prereq(format!("instance {} has no secondary node", self.name)))?;
            match &self.target {
                Some(t) if *t != sec.name => {
                    return Err(prereq(format!(
                        "instance {} has drbd disks: it can only fail over to its secondary \
                         node {}",
                        self.name, sec.name
                    )))
                }
                _ => self.target = Some(sec.name.clone()),
            }
        }
        if !drbd && !inst.disk_template.is_node_independent() {
            return Err(prereq(format!(
                "instance {} has disk template {}: failover needs disks every node sees \
                 (sharedfile); use 'instance migrate' (live, copies the disks) or 'instance \
                 move' for file disks",
                self.name, inst.disk_template
            )));
        }
        if node_by_uuid(cfg, &inst.primary_node)?.name != self.primary {
            return Err(prereq(format!(
                "instance {} moved while this job waited for its locks",
                self.name
            )));
        }
        if let Some(t) = &self.target {
            check_target(inst, node_by_name(cfg, t)?)?;
        }
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let inst = checked;
        let cfg = env.cfg();
        let src = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let dst = match &self.target {
            Some(t) => node_by_name(&cfg, t)?.clone(),
            None => choose_target(env, &inst).await?,
        };
        check_target(&inst, &dst)?;
        let up = inst.admin_state == AdminState::Up;
        if up {
            check_target_memory(env, &inst, &dst).await?;
        }
        let drbd = inst.disk_template.is_internally_mirrored();
        if drbd {
            // The target's copy must be good, unless the admin says the primary is dead.
            let sts = crate::drbd::status(env, &inst, &dst).await?;
            for (d, st) in inst.disks.iter().zip(sts) {
                let ok = st.as_ref().is_some_and(|s| s.disk == "UpToDate");
                if !ok && !self.ignore_consistency {
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
        } else if let Err(e) = stop(env, &inst, &src, self.timeout).await {
            src_alive = false;
            if !self.ignore_consistency {
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
        set_primary(env, &inst, &dst)?;
        env.log(format!(
            "instance {} now has primary node {}",
            inst.name, dst.name
        ));
        if drbd {
            let now = current(env, &inst)?;
            if src_alive {
                crate::drbd::assemble(env, &now, &src, maguey_rpc::DrbdRole::Secondary).await?;
            }
            crate::drbd::assemble(env, &now, &dst, maguey_rpc::DrbdRole::Secondary).await?;
            if up {
                env.log(format!("making node {} the DRBD primary", dst.name));
                crate::drbd::set_role(env, &now, &dst, true, !src_alive).await?;
                start_activated(env, &now, &dst).await?;
            }
        } else if up {
            start(env, &current(env, &inst)?, &dst, false).await?;
        }
        Ok(json!({"node": dst.name}))
    }
}
