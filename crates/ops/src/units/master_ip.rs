//! OP_CLUSTER_ACTIVATE_MASTER_IP and OP_CLUSTER_DEACTIVATE_MASTER_IP: the floating master IP
//! up or down on the master node (`maguey cluster activate-master-ip|deactivate-master-ip`).

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::{ConfigData, MasterIp, OpClusterActivateMasterIp, OpClusterDeactivateMasterIp};
use serde_json::{json, Value};

fn configured(cfg: &ConfigData) -> Result<MasterIp, OpError> {
    cfg.cluster.master_ip.clone().ok_or_else(|| {
        prereq("the cluster has no master IP (maguey cluster modify --master-ip IP --master-netdev DEV)")
    })
}

pub struct ClusterActivateMasterIp;

impl LogicalUnit for ClusterActivateMasterIp {
    type Op = OpClusterActivateMasterIp;
    type Checked = MasterIp;

    fn expand(_op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        Ok(ClusterActivateMasterIp)
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::master_ip()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<MasterIp, OpError> {
        configured(cfg)
    }

    async fn exec(&mut self, env: &Env<'_>, m: MasterIp) -> Result<Value, OpError> {
        crate::master_ip::activate(env.master, &env.cfg(), &m)
            .await
            .map_err(OpError::Exec)?;
        env.log(format!("master IP {} up on {}", m.cidr(), m.netdev));
        Ok(json!({"master_ip": m.ip.to_string(), "netdev": m.netdev}))
    }
}

pub struct ClusterDeactivateMasterIp;

impl LogicalUnit for ClusterDeactivateMasterIp {
    type Op = OpClusterDeactivateMasterIp;
    type Checked = MasterIp;

    fn expand(_op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        Ok(ClusterDeactivateMasterIp)
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::master_ip()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<MasterIp, OpError> {
        configured(cfg)
    }

    async fn exec(&mut self, env: &Env<'_>, m: MasterIp) -> Result<Value, OpError> {
        crate::master_ip::deactivate(env.master, &env.cfg(), &m)
            .await
            .map_err(OpError::Exec)?;
        env.log(format!("master IP {} down", m.cidr()));
        Ok(json!({"master_ip": m.ip.to_string(), "netdev": m.netdev}))
    }
}
