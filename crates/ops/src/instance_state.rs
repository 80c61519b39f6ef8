//! OP_INSTANCE_STARTUP, OP_INSTANCE_SHUTDOWN and OP_INSTANCE_REBOOT.

use crate::util::{
    check_node_online, filled_beparams, instance_by_name, instance_runtime, node_by_uuid,
};
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{AdminState, ConfigData, Instance, Node, OpCode, RebootType};
use maguey_rpc::{InstanceRunInfo, NodeInfo, NodeRequest};
use serde_json::Value;

/// The instance and its primary node, resolved at check time.
struct Target {
    name: String,
    node_name: String,
    instance: Option<(Instance, Node)>,
}

impl Target {
    fn expand(cfg: &ConfigData, name: &str) -> Result<Self, OpError> {
        let inst = instance_by_name(cfg, name)?;
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        Ok(Target {
            name: name.to_string(),
            node_name: node.name.clone(),
            instance: None,
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
                LockMode::Shared,
            ),
        ]
    }

    fn check(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if inst.admin_state == AdminState::Offline {
            return Err(prereq(format!(
                "instance {} is marked offline; bring it online with modify --online first",
                self.name
            )));
        }
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        check_node_online(node)?;
        self.instance = Some((inst.clone(), node.clone()));
        Ok(())
    }

    fn get(&self) -> Result<(Instance, Node), OpError> {
        self.instance
            .clone()
            .ok_or_else(|| OpError::Exec("internal error: not checked".into()))
    }
}

pub(crate) async fn is_running(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<bool, OpError> {
    let info: Option<InstanceRunInfo> = env
        .rpc(
            node,
            NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    // A guest that powered itself off (kvm `user_shutdown`, USER_down) is not running.
    Ok(info.is_some_and(|i| i.state != "shutdown"))
}

pub(crate) async fn start(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    force_mem: bool,
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
    if be.maxmem > info.memory_free && !force_mem {
        return Err(prereq(format!(
            "not enough memory on node {} to start instance {}: needed {} MiB, free {} MiB",
            node.name, inst.name, be.maxmem, info.memory_free
        )));
    }
    if inst.disk_template.is_internally_mirrored() {
        crate::drbd::activate_for_start(env, inst, node, false).await?;
    }
    start_activated(env, inst, node).await
}

/// Starts the instance on `node` whose disks are ready there (memory checked by the caller).
pub(crate) async fn start_activated(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    env.log(format!(
        "starting instance {} on node {}",
        inst.name, node.name
    ));
    let _: Value = env
        .rpc(
            node,
            NodeRequest::InstanceStart {
                instance: instance_runtime(&cfg, inst),
            },
        )
        .await?;
    Ok(())
}

pub(crate) async fn stop(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    timeout: u64,
) -> Result<(), OpError> {
    env.log(format!(
        "shutting down instance {} on node {}",
        inst.name, node.name
    ));
    let _: Value = env
        .rpc(
            node,
            NodeRequest::InstanceShutdown {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                timeout,
            },
        )
        .await?;
    if inst.disk_template.is_internally_mirrored() {
        // The disks stay connected; the node gives up the primary role.
        crate::drbd::set_role(env, inst, node, false, false).await?;
    }
    Ok(())
}

fn set_admin(env: &Env<'_>, inst: &Instance, state: AdminState) -> Result<(), OpError> {
    if inst.admin_state != state {
        env.apply(Command::SetInstanceAdminState {
            uuid: inst.uuid.clone(),
            admin_state: state,
        })?;
    }
    Ok(())
}

pub struct InstanceStartup {
    target: Target,
    force: bool,
    no_remember: bool,
}

impl LogicalUnit for InstanceStartup {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceStartup(maguey_model::OpInstanceStartup {
            instance_name,
            force,
            no_remember,
            beparams,
            hvparams,
        }) = op
        else {
            return Err(wrong_op(op));
        };
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
    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        self.target.locks()
    }
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        self.target.check(cfg)
    }
    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let (inst, node) = self.target.get()?;
        if is_running(env, &inst, &node).await? {
            env.log(format!("instance {} is already running", inst.name));
        } else {
            start(env, &inst, &node, self.force).await?;
        }
        if !self.no_remember {
            set_admin(env, &inst, AdminState::Up)?;
        }
        Ok(Value::Null)
    }
}

pub struct InstanceShutdown {
    target: Target,
    timeout: u64,
    no_remember: bool,
}

impl LogicalUnit for InstanceShutdown {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceShutdown(maguey_model::OpInstanceShutdown {
            instance_name,
            timeout,
            no_remember,
        }) = op
        else {
            return Err(wrong_op(op));
        };
        Ok(InstanceShutdown {
            target: Target::expand(cfg, instance_name)?,
            timeout: *timeout,
            no_remember: *no_remember,
        })
    }
    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        self.target.locks()
    }
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        self.target.check(cfg)
    }
    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let (inst, node) = self.target.get()?;
        stop(env, &inst, &node, self.timeout).await?;
        if !self.no_remember {
            set_admin(env, &inst, AdminState::Down)?;
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
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceReboot(maguey_model::OpInstanceReboot {
            instance_name,
            reboot_type,
            shutdown_timeout,
        }) = op
        else {
            return Err(wrong_op(op));
        };
        Ok(InstanceReboot {
            target: Target::expand(cfg, instance_name)?,
            reboot_type: *reboot_type,
            timeout: *shutdown_timeout,
        })
    }
    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        self.target.locks()
    }
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        self.target.check(cfg)
    }
    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let (inst, node) = self.target.get()?;
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
        set_admin(env, &inst, AdminState::Up)?;
        Ok(Value::Null)
    }
}
