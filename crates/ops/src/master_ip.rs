//! The floating master IP (docs/master-ip.md): brought up on the master node when the master
//! starts, when it is set or changed (`cluster modify --master-ip`) and by `cluster
//! activate-master-ip`; taken down when it changes or is removed and by `cluster
//! deactivate-master-ip`.

use crate::util::node_addr;
use crate::Master;
use maguey_model::{ConfigData, MasterIp};
use maguey_rpc::NodeRequest;
use serde_json::Value;

/// Brings `m` up on the master node of `cfg`.
pub async fn activate(master: &Master, cfg: &ConfigData, m: &MasterIp) -> Result<(), String> {
    call(
        master,
        cfg,
        NodeRequest::ActivateMasterIp {
            master_ip: m.clone(),
        },
    )
    .await
}

/// Takes `m` down from the master node of `cfg`.
pub async fn deactivate(master: &Master, cfg: &ConfigData, m: &MasterIp) -> Result<(), String> {
    call(
        master,
        cfg,
        NodeRequest::DeactivateMasterIp {
            master_ip: m.clone(),
        },
    )
    .await
}

/// Brings the configured master IP (if any) up on the master node: what a master does when
/// it starts serving. Failures are the caller's to log.
pub async fn activate_configured(master: &Master) -> Result<Option<MasterIp>, String> {
    let cfg = master.config.snapshot();
    match cfg.cluster.master_ip.clone() {
        Some(m) => activate(master, &cfg, &m).await.map(|()| Some(m)),
        None => Ok(None),
    }
}

async fn call(master: &Master, cfg: &ConfigData, req: NodeRequest) -> Result<(), String> {
    let node = cfg
        .master_node()
        .ok_or_else(|| "the config names no master node".to_string())?;
    let proc_name = req.procedure();
    master
        .rpc
        .call::<Value>(&node_addr(cfg, node), &req)
        .await
        .map(|_| ())
        .map_err(|e| format!("{proc_name} on node {}: {e}", node.name))
}
