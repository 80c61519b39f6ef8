//! OP_INSTANCE_SET_PARAMS: changes beparams, hvparams, osparams or the offline flag.
//!
//! Memory changes are checked against the primary node: the new maxmem must fit the node at
//! all, and, for a running instance, the node's free memory (unless `force`). As in Ganeti,
//! a running instance gets the new maxmem at its next start.

use crate::util::{filled_be_dict, hv_kind, instance_by_name, node_by_uuid};
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{AdminState, BeParams, ConfigData, Instance, OpCode, ParamKind, Params};
use maguey_rpc::{InstanceRunInfo, NodeInfo, NodeRequest};
use serde_json::{json, Value};

pub struct InstanceSetParams {
    name: String,
    node_name: String,
    beparams: Params,
    hvparams: Params,
    osparams: Params,
    offline: Option<bool>,
    runtime_mem: Option<u64>,
    force: bool,
    updated: Option<Instance>,
}

/// Merges changes into a partial dictionary; a value `"default"` removes the key (Ganeti).
fn merge(base: &Params, changes: &Params) -> Params {
    let mut out = base.clone();
    for (k, v) in changes {
        if v.as_str() == Some("default") {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn without_defaults(p: &Params) -> Params {
    p.iter()
        .filter(|(_, v)| v.as_str() != Some("default"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl LogicalUnit for InstanceSetParams {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceSetParams {
            instance_name,
            beparams,
            hvparams,
            osparams,
            offline,
            runtime_mem,
            force,
            ..
        } = op
        else {
            return Err(wrong_op(op));
        };
        if beparams.is_empty()
            && hvparams.is_empty()
            && osparams.is_empty()
            && offline.is_none()
            && runtime_mem.is_none()
        {
            return Err(prereq("no changes requested"));
        }
        let inst = instance_by_name(cfg, instance_name)?;
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        Ok(InstanceSetParams {
            name: instance_name.clone(),
            node_name: node.name.clone(),
            beparams: beparams.clone(),
            hvparams: hvparams.clone(),
            osparams: osparams.clone(),
            offline: *offline,
            runtime_mem: *runtime_mem,
            force: *force,
            updated: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        vec![
            (
                LockLevel::Instance,
                LockNames::Names(vec![self.name.clone()]),
                LockMode::Exclusive,
            ),
            (
                LockLevel::Node,
                LockNames::Names(vec![self.node_name.clone()]),
                LockMode::Shared,
            ),
            (
                LockLevel::NodeRes,
                LockNames::Names(vec![self.node_name.clone()]),
                LockMode::Exclusive,
            ),
        ]
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        let be = ParamKind::Be
            .validate(&without_defaults(&self.beparams))
            .map_err(prereq)?;
        let hv = hv_kind(&inst.hypervisor)
            .validate(&without_defaults(&self.hvparams))
            .map_err(prereq)?;
        let mut be_changes = self.beparams.clone();
        be_changes.extend(be);
        let mut hv_changes = self.hvparams.clone();
        hv_changes.extend(hv);
        let mut updated = inst.clone();
        updated.beparams = merge(&inst.beparams, &be_changes);
        updated.hvparams = merge(&inst.hvparams, &hv_changes);
        updated.osparams = merge(&inst.osparams, &self.osparams);
        let filled = BeParams::from_filled(&filled_be_dict(cfg, inst, &updated.beparams));
        if filled.minmem > filled.maxmem {
            return Err(prereq(format!(
                "minmem ({}) cannot exceed maxmem ({})",
                filled.minmem, filled.maxmem
            )));
        }
        match self.offline {
            Some(true) if inst.admin_state == AdminState::Up => {
                return Err(prereq(format!(
                    "instance {} is up: shut it down before marking it offline",
                    self.name
                )))
            }
            Some(true) => updated.admin_state = AdminState::Offline,
            Some(false) if inst.admin_state == AdminState::Offline => {
                updated.admin_state = AdminState::Down
            }
            _ => {}
        }
        self.updated = Some(updated);
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let updated = self
            .updated
            .clone()
            .ok_or_else(|| OpError::Exec("internal error".into()))?;
        let cfg = env.cfg();
        let old = instance_by_name(&cfg, &self.name)?.clone();
        let node = node_by_uuid(&cfg, &old.primary_node)?.clone();
        let old_be = BeParams::from_filled(&filled_be_dict(&cfg, &old, &old.beparams));
        let new_be = BeParams::from_filled(&filled_be_dict(&cfg, &old, &updated.beparams));
        if new_be.maxmem != old_be.maxmem && !node.offline {
            let info: NodeInfo = env
                .rpc(
                    &node,
                    NodeRequest::NodeInfo {
                        file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                        hypervisor: old.hypervisor.clone(),
                    },
                )
                .await?;
            if new_be.maxmem > info.memory_total {
                return Err(prereq(format!(
                    "maxmem {} MiB is larger than node {}'s memory ({} MiB)",
                    new_be.maxmem, node.name, info.memory_total
                )));
            }
            let run: Option<InstanceRunInfo> = env
                .rpc(
                    &node,
                    NodeRequest::InstanceInfo {
                        name: old.name.clone(),
                        hypervisor: old.hypervisor.clone(),
                    },
                )
                .await?;
            if let Some(run) = run {
                let extra = new_be.maxmem.saturating_sub(run.memory);
                if extra > info.memory_free && !self.force {
                    return Err(prereq(format!(
                        "node {} has {} MiB free, not enough for {} MiB more (use --force to override)",
                        node.name, info.memory_free, extra
                    )));
                }
                env.log("the new memory size applies at the next start of the instance");
            }
        }
        let mut changes = Vec::new();
        if let Some(mem) = self.runtime_mem {
            self.balloon(env, &old, &node, &new_be, mem).await?;
            changes.push(json!(["runtime_memory", mem]));
        }
        if updated != old {
            env.apply(Command::UpdateInstance {
                instance: updated.clone(),
            })?;
        }
        for (k, v) in &self.beparams {
            changes.push(json!([format!("be/{k}"), v]));
        }
        for (k, v) in &self.hvparams {
            changes.push(json!([format!("hv/{k}"), v]));
        }
        for (k, v) in &self.osparams {
            changes.push(json!([format!("os/{k}"), v]));
        }
        if let Some(o) = self.offline {
            changes.push(json!(["admin_state", if o { "offline" } else { "down" }]));
        }
        for c in &changes {
            env.log(format!(
                "modified {} to {}",
                c[0].as_str().unwrap_or(""),
                c[1]
            ));
        }
        Ok(Value::from(changes))
    }
}

impl InstanceSetParams {
    /// Changes the memory of the running instance through its balloon: between minmem and
    /// maxmem (unless `force`), with the node's free memory for any increase.
    async fn balloon(
        &self,
        env: &Env<'_>,
        inst: &Instance,
        node: &maguey_model::Node,
        be: &BeParams,
        mem: u64,
    ) -> Result<(), OpError> {
        if (mem < be.minmem || mem > be.maxmem) && !self.force {
            return Err(prereq(format!(
                "runtime memory {mem} MiB is outside instance {}'s range {}..{} MiB (use \
                 --force to override)",
                inst.name, be.minmem, be.maxmem
            )));
        }
        let run: Option<InstanceRunInfo> = env
            .rpc(
                node,
                NodeRequest::InstanceInfo {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.clone(),
                },
            )
            .await?;
        let Some(run) = run.filter(|r| r.state != "shutdown") else {
            return Err(prereq(format!(
                "instance {} is not running: its memory can only change at runtime",
                inst.name
            )));
        };
        if mem > run.memory && !self.force {
            let cfg = env.cfg();
            let info: NodeInfo = env
                .rpc(
                    node,
                    NodeRequest::NodeInfo {
                        file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                        hypervisor: inst.hypervisor.clone(),
                    },
                )
                .await?;
            if mem - run.memory > info.memory_free {
                return Err(prereq(format!(
                    "node {} has {} MiB free, not enough for {} MiB more",
                    node.name,
                    info.memory_free,
                    mem - run.memory
                )));
            }
        }
        env.log(format!(
            "changing the memory of instance {} from {} to {mem} MiB",
            inst.name, run.memory
        ));
        let _: Value = env
            .rpc(
                node,
                NodeRequest::InstanceBalloonMemory {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.clone(),
                    memory: mem,
                },
            )
            .await?;
        Ok(())
    }
}
