//! OP_INSTANCE_STARTUP, OP_INSTANCE_SHUTDOWN and OP_INSTANCE_REBOOT.

use crate::lifecycle::*;
use crate::util::{check_node_online, instance_by_name, instance_runtime, node_by_uuid};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{AdminState, AdminStateSource, ConfigData, Instance, Node, RebootType};
use maguey_rpc::NodeRequest;
use serde_json::Value;

/// The instance and its primary node, resolved at check time.
struct Target {
    name: String,
    node_name: String,
}

impl Target {
    fn expand(cfg: &ConfigData, name: &str) -> Result<Self, OpError> {
        let inst = instance_by_name(cfg, name)?;
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        Ok(Target {
            name: name.to_string(),
            node_name: node.name.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::instance_on_its_nodes(
            &self.name,
            crate::locks::nodes(vec![self.node_name.clone()]),
        )
    }

    fn check(&self, cfg: &ConfigData) -> Result<(Instance, Node), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if inst.admin_state == AdminState::Offline {
            return Err(prereq(format!(
                "instance {} is marked offline; bring it online with modify --online first",
                self.name
            )));
        }
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        check_node_online(node)?;
        Ok((inst.clone(), node.clone()))
    }
}

async fn set_admin(env: &Env<'_>, inst: &Instance, state: AdminState) -> Result<(), OpError> {
    if inst.admin_state != state {
        env.apply(Command::SetInstanceAdminState {
            uuid: inst.uuid.clone(),
            admin_state: state,
        })
        .await?;
    }
    Ok(())
}

/// Records who set the admin state (the watcher's `user` for a guest's own power-off).
async fn set_source(env: &Env<'_>, name: &str, source: AdminStateSource) -> Result<(), OpError> {
    let cfg = env.cfg();
    let inst = instance_by_name(&cfg, name)?;
    if inst.admin_state_source != source {
        let mut inst = inst.clone();
        inst.admin_state_source = source;
        env.apply(Command::UpdateInstance { instance: inst })
            .await?;
    }
    Ok(())
}

pub struct InstanceStartup {
    target: Target,
    force: bool,
    no_remember: bool,
}

impl LogicalUnit for InstanceStartup {
    type Op = maguey_model::OpInstanceStartup;
    type Checked = (Instance, Node);

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceStartup {
            instance_name,
            force,
            no_remember,
            beparams,
            hvparams,
        } = op;
        if !beparams.is_empty() || !hvparams.is_empty() {
            return Err(prereq(
                "temporary beparams/hvparams at startup are not supported yet",
            ));
        }
        Ok(InstanceStartup {
            target: Target::expand(cfg, instance_name)?,
            force: *force,
            no_remember: *no_remember,
        })
    }
    fn locks(&self) -> Vec<LockRequest> {
        self.target.locks()
    }
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        if let Ok(inst) = instance_by_name(cfg, &self.target.name) {
            crate::cut_off::check(cfg, inst)?;
        }
        self.target.check(cfg)
    }
    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let (inst, node) = checked;
        if is_running(env, &inst, &node).await? {
            env.log(format!("instance {} is already running", inst.name));
        } else {
            start(env, &inst, &node, self.force).await?;
        }
        if !self.no_remember {
            set_admin(env, &inst, AdminState::Up).await?;
            set_source(env, &inst.name, AdminStateSource::Admin).await?;
        }
        Ok(Value::Null)
    }
}

pub struct InstanceShutdown {
    target: Target,
    timeout: u64,
    no_remember: bool,
    source: AdminStateSource,
}

impl LogicalUnit for InstanceShutdown {
    type Op = maguey_model::OpInstanceShutdown;
    type Checked = (Instance, Node);

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceShutdown {
            instance_name,
            timeout,
            no_remember,
            admin_state_source,
        } = op;
        Ok(InstanceShutdown {
            target: Target::expand(cfg, instance_name)?,
            timeout: *timeout,
            no_remember: *no_remember,
            source: *admin_state_source,
        })
    }
    fn locks(&self) -> Vec<LockRequest> {
        self.target.locks()
    }
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        self.target.check(cfg)
    }
    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let (inst, node) = checked;
        stop(env, &inst, &node, self.timeout).await?;
        if !self.no_remember {
            set_admin(env, &inst, AdminState::Down).await?;
            set_source(env, &inst.name, self.source).await?;
        }
        Ok(Value::Null)
    }
}

pub struct InstanceReboot {
    target: Target,
    reboot_type: RebootType,
    timeout: u64,
}

impl LogicalUnit for InstanceReboot {
    type Op = maguey_model::OpInstanceReboot;
    type Checked = (Instance, Node);

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceReboot {
            instance_name,
            reboot_type,
            shutdown_timeout,
        } = op;
        Ok(InstanceReboot {
            target: Target::expand(cfg, instance_name)?,
            reboot_type: *reboot_type,
            timeout: *shutdown_timeout,
        })
    }
    fn locks(&self) -> Vec<LockRequest> {
        self.target.locks()
    }
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        self.target.check(cfg)
    }
    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let (inst, node) = checked;
        let running = is_running(env, &inst, &node).await?;
        if running && self.reboot_type != RebootType::Full {
            env.log(format!(
                "{} reboot of instance {} on node {}",
                self.reboot_type, inst.name, node.name
            ));
            let cfg = env.cfg();
            let _: Value = env
                .rpc(
                    &node,
                    NodeRequest::InstanceReboot {
                        instance: instance_runtime(&cfg, &inst),
                        reboot_type: self.reboot_type.to_string(),
                        shutdown_timeout: self.timeout,
                    },
                )
                .await?;
        } else {
            if running {
                stop(env, &inst, &node, self.timeout).await?;
            }
            start(env, &inst, &node, false).await?;
        }
        set_admin(env, &inst, AdminState::Up).await?;
        Ok(Value::Null)
    }
}
