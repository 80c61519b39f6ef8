//! OP_NODE_REMOVE: removes an empty node from the cluster and tells it to leave.

use crate::util::node_by_name;
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{ConfigData, Node, OpCode};
use maguey_rpc::NodeRequest;
use serde_json::Value;

pub struct NodeRemove {
    name: String,
    node: Option<Node>,
}

impl LogicalUnit for NodeRemove {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::NodeRemove(maguey_model::OpNodeRemove { node_name }) = op else {
            return Err(wrong_op(op));
        };
        node_by_name(cfg, node_name)?;
        Ok(NodeRemove {
            name: node_name.clone(),
            node: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        vec![
            (LockLevel::Instance, LockNames::All, LockMode::Shared),
            (
                LockLevel::Node,
                LockNames::Names(vec![self.name.clone()]),
                LockMode::Exclusive,
            ),
            (
                LockLevel::NodeRes,
                LockNames::Names(vec![self.name.clone()]),
                LockMode::Exclusive,
            ),
        ]
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let node = node_by_name(cfg, &self.name)?;
        if node.uuid == cfg.cluster.master_node {
            return Err(prereq(format!(
                "node {} is the master node and cannot be removed",
                node.name
            )));
        }
        let hosted: Vec<&str> = cfg
            .instances_on_node(&node.uuid)
            .map(|i| i.name.as_str())
            .collect();
        if !hosted.is_empty() {
            return Err(prereq(format!(
                "node {} still hosts instances: {}",
                node.name,
                hosted.join(", ")
            )));
        }
        self.node = Some(node.clone());
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let node = self
            .node
            .clone()
            .ok_or_else(|| OpError::Exec("internal error".into()))?;
        env.apply(Command::RemoveNode {
            uuid: node.uuid.clone(),
        })?;
        if node.offline {
            env.log(format!(
                "node {} is offline: not asking it to leave",
                node.name
            ));
        } else if let Err(e) = env.rpc::<Value>(&node, NodeRequest::LeaveCluster).await {
            env.log(format!(
                "warning: node {} could not be told to leave: {e}",
                node.name
            ));
        }
        for (name, e) in env.master.distribute_ssconf().await {
            env.log(format!(
                "warning: could not update ssconf on node {name}: {e}"
            ));
        }
        env.log(format!("node {} removed", node.name));
        Ok(Value::Null)
    }
}
