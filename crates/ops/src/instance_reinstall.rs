//! OP_INSTANCE_REINSTALL and OP_INSTANCE_RENAME: both need the instance stopped.

use crate::instance_state::is_running;
use crate::util::{instance_by_name, nic_runtimes, node_by_uuid, storage_dir};
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{AdminState, ConfigData, Instance, OpCode, Params};
use maguey_rpc::{NodeRequest, OsInstall};
use serde_json::{json, Value};

fn locks(name: &str, node: &str) -> Vec<(LockLevel, LockNames, LockMode)> {
    vec![
        (
            LockLevel::Instance,
            LockNames::Names(vec![name.to_string()]),
            LockMode::Exclusive,
        ),
        (
            LockLevel::Node,
            LockNames::Names(vec![node.to_string()]),
            LockMode::Shared,
        ),
    ]
}

/// The instance must be marked down and really stopped.
async fn check_stopped(env: &Env<'_>, inst: &Instance, what: &str) -> Result<(), OpError> {
    if inst.admin_state == AdminState::Up {
        return Err(prereq(format!(
            "instance {} is marked to run; stop it before {what}",
            inst.name
        )));
    }
    let cfg = env.cfg();
    let node = node_by_uuid(&cfg, &inst.primary_node)?;
    if !node.offline && is_running(env, inst, node).await? {
        return Err(prereq(format!(
            "instance {} is running on {}; stop it before {what}",
            inst.name, node.name
        )));
    }
    Ok(())
}

pub struct InstanceReinstall {
    name: String,
    node: String,
    os: Option<String>,
    osparams: Option<Params>,
    instance: Option<Instance>,
}

impl LogicalUnit for InstanceReinstall {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceReinstall(maguey_model::OpInstanceReinstall {
            instance_name,
            os_type,
            osparams,
        }) = op
        else {
            return Err(wrong_op(op));
        };
        let inst = instance_by_name(cfg, instance_name)?;
        Ok(InstanceReinstall {
            name: instance_name.clone(),
            node: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            os: os_type.clone().filter(|o| !o.is_empty()),
            osparams: osparams.clone(),
            instance: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        locks(&self.name, &self.node)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if !inst.disk_template.has_disks() {
            return Err(prereq(format!(
                "instance {} has no disks to install onto",
                self.name
            )));
        }
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        if node.offline {
            return Err(prereq(format!("node {} is offline", node.name)));
        }
        self.instance = Some(inst.clone());
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let mut inst = self
            .instance
            .clone()
            .ok_or_else(|| OpError::Exec("internal error: not checked".into()))?;
        check_stopped(env, &inst, "reinstalling it").await?;
        let cfg = env.cfg();
        let node = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        if let Some(os) = &self.os {
            inst.os = os.clone();
        }
        if let Some(p) = &self.osparams {
            inst.osparams = p.clone();
        }
        env.log(format!(
            "running the OS reinstall scripts of '{}' on {}",
            inst.os, node.name
        ));
        let install = OsInstall {
            instance_name: inst.name.clone(),
            os: inst.os.clone(),
            hypervisor: inst.hypervisor.to_string(),
            osparams: inst.osparams.clone(),
            disks: inst.disks.clone(),
            nics: nic_runtimes(&cfg, &inst),
            file_storage_dir: storage_dir(&cfg, inst.disk_template),
            debug_level: 0,
        };
        let out: Value = env
            .rpc(
                &node,
                NodeRequest::InstanceOsAdd {
                    install,
                    reinstall: true,
                },
            )
            .await?;
        let before = inst.hvparams.clone();
        crate::util::os_output(env, &out, &mut inst, "reinstall");
        if self.os.is_some() || self.osparams.is_some() || inst.hvparams != before {
            env.apply(Command::UpdateInstance {
                instance: inst.clone(),
            })?;
        }
        Ok(json!({"os": inst.os}))
    }
}

pub struct InstanceRename {
    name: String,
    new_name: String,
    node: String,
    instance: Option<Instance>,
}

impl LogicalUnit for InstanceRename {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceRename(maguey_model::OpInstanceRename {
            instance_name,
            new_name,
            ..
        }) = op
        else {
            return Err(wrong_op(op));
        };
        maguey_model::names::validate_hostname(new_name)
            .map_err(|e| prereq(format!("invalid new name '{new_name}': {e}")))?;
        let inst = instance_by_name(cfg, instance_name)?;
        Ok(InstanceRename {
            name: instance_name.clone(),
            new_name: new_name.clone(),
            node: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            instance: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        let mut l = locks(&self.name, &self.node);
        l[0].1 = LockNames::Names(vec![self.name.clone(), self.new_name.clone()]);
        l
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if self.new_name == self.name {
            return Err(prereq(format!("instance is already called {}", self.name)));
        }
        if cfg.instance_by_name(&self.new_name).is_some() {
            return Err(prereq(format!(
                "instance name '{}' is already in use",
                self.new_name
            )));
        }
        self.instance = Some(inst.clone());
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let mut inst = self
            .instance
            .clone()
            .ok_or_else(|| OpError::Exec("internal error: not checked".into()))?;
        check_stopped(env, &inst, "renaming it").await?;
        // The OS definition's rename script runs first: if it fails, nothing is renamed.
        let cfg = env.cfg();
        let node = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        if !inst.os.is_empty() && inst.disk_template.has_disks() && !node.offline {
            env.log(format!(
                "running the OS rename script of '{}' on {}",
                inst.os, node.name
            ));
            let install = OsInstall {
                instance_name: self.new_name.clone(),
                os: inst.os.clone(),
                hypervisor: inst.hypervisor.to_string(),
                osparams: inst.osparams.clone(),
                disks: inst.disks.clone(),
                nics: nic_runtimes(&cfg, &inst),
                file_storage_dir: storage_dir(&cfg, inst.disk_template),
                debug_level: 0,
            };
            let out: Value = env
                .rpc(
                    &node,
                    NodeRequest::InstanceOsRename {
                        install,
                        old_name: self.name.clone(),
                    },
                )
                .await?;
            if let Some(s) = out.as_str().filter(|s| !s.trim().is_empty()) {
                env.log(format!("OS rename output:\n{}", s.trim_end()));
            }
        }
        inst.name = self.new_name.clone();
        env.apply(Command::UpdateInstance { instance: inst })?;
        env.log(format!(
            "instance {} renamed to {}",
            self.name, self.new_name
        ));
        Ok(json!({"instance_name": self.new_name}))
    }
}
