//! OP_INSTANCE_REMOVE: stops the instance, removes its disks, drops it from the config.

use crate::util::{instance_by_name, node_by_uuid};
use crate::{Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Instance};
use maguey_rpc::NodeRequest;
use serde_json::Value;

pub struct InstanceRemove {
    name: String,
    ignore_failures: bool,
    timeout: u64,
    nodes: Vec<String>,
}

impl LogicalUnit for InstanceRemove {
    type Op = maguey_model::OpInstanceRemove;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceRemove {
            instance_name,
            ignore_failures,
            shutdown_timeout,
        } = op;
        let inst = instance_by_name(cfg, instance_name)?;
        let nodes = std::iter::once(inst.primary_node.as_str())
            .chain(inst.secondary_nodes())
            .filter_map(|u| cfg.nodes.get(u).map(|n| n.name.clone()))
            .collect();
        Ok(InstanceRemove {
            name: instance_name.clone(),
            ignore_failures: *ignore_failures,
            timeout: *shutdown_timeout,
            nodes,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::instance_on_its_nodes(&self.name, crate::locks::nodes(self.nodes.clone()))
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        Ok(instance_by_name(cfg, &self.name)?.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, inst: Self::Checked) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let node = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let tolerate = |e: OpError| -> Result<(), OpError> {
            if self.ignore_failures || node.offline {
                env.log(format!("ignoring: {e}"));
                Ok(())
            } else {
                Err(e)
            }
        };
        env.log(format!(
            "shutting down instance {} on node {}",
            inst.name, node.name
        ));
        if node.offline {
            env.log(format!("node {} is offline: not contacting it", node.name));
        } else {
            let r: Result<Value, OpError> = env
                .rpc(
                    &node,
                    NodeRequest::InstanceShutdown {
                        name: inst.name.clone(),
                        hypervisor: inst.hypervisor.to_string(),
                        timeout: self.timeout,
                    },
                )
                .await;
            if let Err(e) = r {
                tolerate(e)?;
            }
            for disk in &inst.disks {
                env.log(format!(
                    "removing disk {} on node {}",
                    disk.iv_name, node.name
                ));
                let r: Result<Value, OpError> = env
                    .rpc(
                        &node,
                        NodeRequest::BlockdevRemove {
                            disk: disk.clone(),
                            file_storage_dir: crate::util::storage_dir(
                                &cfg,
                                disk.dev_type.template(),
                            ),
                        },
                    )
                    .await;
                if let Err(e) = r {
                    tolerate(e)?;
                }
            }
        }
        // DRBD: the other end's device and LVs.
        for sec in inst.secondary_nodes() {
            let sec = node_by_uuid(&cfg, sec)?.clone();
            if sec.offline {
                env.log(format!(
                    "secondary node {} is offline: its disks stay (cluster verify reports them)",
                    sec.name
                ));
                continue;
            }
            if let Err(e) = crate::drbd::remove_on(env, &inst, &sec).await {
                tolerate(e)?;
            }
        }
        env.apply(Command::RemoveInstance {
            uuid: inst.uuid.clone(),
        })
        .await?;
        env.log(format!("instance {} removed", inst.name));
        Ok(Value::Null)
    }
}
