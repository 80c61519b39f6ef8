//! OP_CLUSTER_DESTROY: allowed only when the master is the last node and no instance is left.
//! After the job succeeds, the master daemon removes its state and stops.

use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{ConfigData, OpCode};
use serde_json::{json, Value};

pub struct ClusterDestroy;

impl LogicalUnit for ClusterDestroy {
    fn expand(op: &OpCode, _cfg: &ConfigData) -> Result<Self, OpError> {
        match op {
            OpCode::ClusterDestroy(maguey_model::OpClusterDestroy {}) => Ok(ClusterDestroy),
            _ => Err(wrong_op(op)),
        }
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        vec![
            (LockLevel::Cluster, LockNames::All, LockMode::Exclusive),
            (LockLevel::Instance, LockNames::All, LockMode::Exclusive),
            (LockLevel::Node, LockNames::All, LockMode::Exclusive),
        ]
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        if !cfg.instances.is_empty() {
            return Err(prereq(format!(
                "the cluster still has {} instances; remove them first",
                cfg.instances.len()
            )));
        }
        let others: Vec<&str> = cfg
            .nodes
            .values()
            .filter(|n| n.uuid != cfg.cluster.master_node)
            .map(|n| n.name.as_str())
            .collect();
        if !others.is_empty() {
            return Err(prereq(format!(
                "the cluster still has nodes besides the master: {}; remove them first",
                others.join(", ")
            )));
        }
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        env.log("the master daemon will remove the cluster's state and stop");
        env.master.destroy.notify_one();
        Ok(json!({"destroyed": true}))
    }
}
