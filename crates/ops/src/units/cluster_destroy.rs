//! OP_CLUSTER_DESTROY: allowed only when the master is the last node and no instance is left.
//! After the job succeeds, the master daemon removes its state and stops.

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::ConfigData;
use serde_json::{json, Value};

pub struct ClusterDestroy;

impl LogicalUnit for ClusterDestroy {
    type Op = maguey_model::OpClusterDestroy;
    type Checked = ();

    fn expand(_op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        Ok(ClusterDestroy)
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::whole_cluster_exclusive()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
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

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        env.log("the master daemon will remove the cluster's state and stop");
        env.master.destroy.notify_one();
        Ok(json!({"destroyed": true}))
    }
}
