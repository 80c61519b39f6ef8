//! OP_NODE_REMOVE: removes an empty node from the cluster and tells it to leave.

use crate::util::node_by_name;
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Node};
use maguey_rpc::NodeRequest;
use serde_json::Value;

pub struct NodeRemove {
    name: String,
}

impl LogicalUnit for NodeRemove {
    type Op = maguey_model::OpNodeRemove;
    type Checked = Node;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpNodeRemove { node_name } = op;
        node_by_name(cfg, node_name)?;
        Ok(NodeRemove {
            name: node_name.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::node_leaving(&self.name)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
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
        Ok(node.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, node: Self::Checked) -> Result<Value, OpError> {
        env.apply(Command::RemoveNode {
            uuid: node.uuid.clone(),
        })
        .await?;
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
