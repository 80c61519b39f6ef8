//! OP_INSTANCE_REINSTALL and OP_INSTANCE_RENAME: both need the instance stopped.

use crate::lifecycle::*;
use crate::util::{instance_by_name, node_by_uuid};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance, Params};
use maguey_rpc::NodeRequest;
use serde_json::{json, Value};

fn locks(name: &str, node: &str) -> Vec<LockRequest> {
    crate::locks::instance_disks(&[name], crate::locks::nodes(vec![node.to_string()]))
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
}

impl LogicalUnit for InstanceReinstall {
    type Op = maguey_model::OpInstanceReinstall;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceReinstall {
            instance_name,
            os_type,
            osparams,
        } = op;
        let inst = instance_by_name(cfg, instance_name)?;
        Ok(InstanceReinstall {
            name: instance_name.clone(),
            node: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            os: os_type.clone().filter(|o| !o.is_empty()),
            osparams: osparams.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        locks(&self.name, &self.node)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
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
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let mut inst = checked;
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
        let install = crate::util::os_install(&cfg, &inst, &inst.name);
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
            })
            .await?;
        }
        Ok(json!({"os": inst.os}))
    }
}

pub struct InstanceRename {
    name: String,
    new_name: String,
    node: String,
}

impl LogicalUnit for InstanceRename {
    type Op = maguey_model::OpInstanceRename;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceRename {
            instance_name,
            new_name,
            ..
        } = op;
        maguey_model::names::validate_hostname(new_name)
            .map_err(|e| prereq(format!("invalid new name '{new_name}': {e}")))?;
        let inst = instance_by_name(cfg, instance_name)?;
        Ok(InstanceRename {
            name: instance_name.clone(),
            new_name: new_name.clone(),
            node: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let nodes = crate::locks::nodes(vec![self.node.clone()]);
        crate::locks::instance_disks(&[&self.name, &self.new_name], nodes)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
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
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let mut inst = checked;
        check_stopped(env, &inst, "renaming it").await?;
        // The OS definition's rename script runs first: if it fails, nothing is renamed.
        let cfg = env.cfg();
        let node = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        if !inst.os.is_empty() && inst.disk_template.has_disks() && !node.offline {
            env.log(format!(
                "running the OS rename script of '{}' on {}",
                inst.os, node.name
            ));
            let install = crate::util::os_install(&cfg, &inst, &self.new_name);
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
        env.apply(Command::UpdateInstance { instance: inst })
            .await?;
        env.log(format!(
            "instance {} renamed to {}",
            self.name, self.new_name
        ));
        Ok(json!({"instance_name": self.new_name}))
    }
}
