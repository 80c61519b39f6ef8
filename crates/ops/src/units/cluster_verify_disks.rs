//! OP_CLUSTER_VERIFY_DISKS (Ganeti's OpClusterVerifyDisks + OpGroupVerifyDisks): finds the
//! instances that should have active disks (admin state up) whose disks are not active on
//! their nodes, e.g. after a node reboot left their DRBD devices down, and the nodes that
//! could not be asked. It changes nothing: `maguey cluster verify-disks` then submits one
//! OP_INSTANCE_ACTIVATE_DISKS job per instance listed in `offline_disk_instances`.
//!
//! It never resolves a DRBD split brain (Maguey is not proactive except for restoring what
//! should run): a StandAlone DRBD end is listed in `standalone_disks`; its activation
//! reconnects it, and when the nodes refuse to connect the activation fails naming the
//! command that decides (`activate-disks --resolve-split-brain`).
//!
//! Result (Ganeti's three values, named, plus Maguey's list):
//! `{"bad_nodes": {node: error}, "offline_disk_instances": [instance],
//!   "missing_disks": {instance: [[node, "vg/lv"]]}, "standalone_disks": {instance: [text]}}`

use crate::disks::*;
use crate::util::node_addr;
use crate::{prereq, Env, LockRequest, LogicalUnit};
use futures::future::join_all;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Disk, Instance, LogicalId, Node};
use maguey_rpc::{DrbdDiskStatus, NodeRequest};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub struct ClusterVerifyDisks {
    /// Group uuid, when limited to one group.
    group: Option<String>,
}

/// `vg/lv` of every LV `disk` (or its children) needs on `node_uuid`.
fn expected_lvs(disk: &Disk, node_uuid: &str, out: &mut Vec<String>) {
    match &disk.logical_id {
        LogicalId::Plain { vg, lv } if disk.nodes.iter().any(|n| n == node_uuid) => {
            out.push(format!("{vg}/{lv}"))
        }
        LogicalId::Drbd { node_a, node_b, .. } if node_a == node_uuid || node_b == node_uuid => {
            for c in &disk.children {
                if let LogicalId::Plain { vg, lv } = &c.logical_id {
                    out.push(format!("{vg}/{lv}"));
                }
            }
        }
        _ => {}
    }
}

/// What one node answered.
struct NodeData {
    lvs: BTreeSet<String>,
    /// The DRBD status of the disks asked for, in order.
    drbd: Vec<Option<DrbdDiskStatus>>,
}

/// Why one end of a DRBD disk needs activating (`None`: it is fine or will connect by
/// itself).
pub(crate) fn drbd_problem(st: &Option<DrbdDiskStatus>) -> Option<String> {
    match st {
        None => Some("not active".into()),
        Some(s) if s.disk == "Diskless" => Some("active without its local disk (Diskless)".into()),
        Some(s) if s.connection == "StandAlone" => Some("StandAlone".into()),
        _ => None,
    }
}

impl LogicalUnit for ClusterVerifyDisks {
    type Op = maguey_model::OpClusterVerifyDisks;
    type Checked = ();

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpClusterVerifyDisks { group_name } = op;
        let group = match group_name {
            None => None,
            Some(g) => Some(
                cfg.nodegroups
                    .values()
                    .find(|x| x.name == *g || x.uuid == *g)
                    .map(|x| x.uuid.clone())
                    .ok_or_else(|| prereq(format!("node group '{g}' is not known")))?,
            ),
        };
        Ok(ClusterVerifyDisks { group })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::whole_cluster_read()
    }

    fn check_prereq(&mut self, _cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let in_group = |i: &Instance| match &self.group {
            None => true,
            Some(g) => cfg
                .nodes
                .get(&i.primary_node)
                .is_some_and(|n| n.group == *g),
        };
        let instances: Vec<&Instance> = cfg
            .instances
            .values()
            .filter(|i| i.admin_state == AdminState::Up)
            .filter(|i| i.disk_template.uses_lvm())
            .filter(|i| in_group(i))
            .collect();
        // The online nodes of those instances, each with the DRBD disks it holds.
        let mut per_node: BTreeMap<String, Vec<Disk>> = BTreeMap::new();
        for i in &instances {
            for n in std::iter::once(i.primary_node.as_str()).chain(i.secondary_nodes()) {
                let drbd = per_node.entry(n.to_string()).or_default();
                drbd.extend(
                    i.disks
                        .iter()
                        .filter(|d| d.dev_type == maguey_model::DevType::Drbd)
                        .cloned(),
                );
            }
        }
        let nodes: Vec<(&Node, Vec<Disk>)> = per_node
            .into_iter()
            .filter_map(|(u, disks)| cfg.nodes.get(&u).map(|n| (n, disks)))
            .filter(|(n, _)| !n.offline)
            .collect();
        env.log(format!(
            "verifying the disks of {} instances on {} nodes",
            instances.len(),
            nodes.len()
        ));
        let rpc = &env.master.rpc;
        let answers = join_all(nodes.iter().map(|(n, disks)| {
            let addr = node_addr(&cfg, n);
            async move {
                let lvs: Vec<String> = rpc.call(&addr, &NodeRequest::NodeVolumes).await?;
                let drbd = if disks.is_empty() {
                    Vec::new()
                } else {
                    rpc.call(
                        &addr,
                        &NodeRequest::DrbdStatus {
                            disks: disks.clone(),
                        },
                    )
                    .await?
                };
                Ok::<_, maguey_rpc::RpcError>(NodeData {
                    lvs: lvs.into_iter().collect(),
                    drbd,
                })
            }
        }))
        .await;
        let mut bad_nodes = BTreeMap::new();
        let mut data: BTreeMap<String, (NodeData, Vec<Disk>)> = BTreeMap::new();
        for ((n, disks), a) in nodes.iter().zip(answers) {
            match a {
                Ok(d) => {
                    data.insert(n.uuid.clone(), (d, disks.clone()));
                }
                Err(e) => {
                    env.log(format!("ERROR: node {}: {e}", n.name));
                    bad_nodes.insert(n.name.clone(), e.to_string());
                }
            }
        }
        let mut offline_disk_instances = Vec::new();
        let mut missing: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut standalone: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for inst in &instances {
            let mut needs = false;
            for nu in std::iter::once(inst.primary_node.as_str()).chain(inst.secondary_nodes()) {
                let Some(node) = cfg.nodes.get(nu) else {
                    continue;
                };
                if node.offline {
                    continue;
                }
                let Some((nd, asked)) = data.get(nu) else {
                    if bad_nodes.contains_key(&node.name) {
                        // Ganeti lists the LVs as missing on a broken node.
                        let mut want = Vec::new();
                        for d in &inst.disks {
                            expected_lvs(d, nu, &mut want);
                        }
                        missing
                            .entry(inst.name.clone())
                            .or_default()
                            .extend(want.into_iter().map(|lv| json!([node.name, lv])));
                    }
                    continue;
                };
                let mut want = Vec::new();
                for d in &inst.disks {
                    expected_lvs(d, nu, &mut want);
                }
                for lv in want.into_iter().filter(|lv| !nd.lvs.contains(lv)) {
                    env.log(format!(
                        "instance {}: logical volume {lv} is missing on node {}",
                        inst.name, node.name
                    ));
                    missing
                        .entry(inst.name.clone())
                        .or_default()
                        .push(json!([node.name, lv]));
                }
                for d in inst
                    .disks
                    .iter()
                    .filter(|d| d.dev_type == maguey_model::DevType::Drbd)
                {
                    let st = asked
                        .iter()
                        .position(|x| x.uuid == d.uuid)
                        .and_then(|i| nd.drbd.get(i))
                        .cloned()
                        .flatten();
                    if let Some(why) = drbd_problem(&st) {
                        env.log(format!(
                            "instance {}: DRBD {} is {why} on node {}",
                            inst.name, d.iv_name, node.name
                        ));
                        needs = true;
                        if why == "StandAlone" {
                            standalone
                                .entry(inst.name.clone())
                                .or_default()
                                .push(format!(
                                    "{} is StandAlone on node {}: activation reconnects it; if \
                                 the nodes refuse (split brain), '{}' keeps the primary's \
                                 data",
                                    d.iv_name,
                                    node.name,
                                    resolve_command(&inst.name)
                                ));
                        }
                    }
                }
            }
            // Ganeti: instances with missing volumes need replace/recreate, not activation.
            if needs && !missing.contains_key(&inst.name) {
                offline_disk_instances.push(inst.name.clone());
            }
        }
        env.log(format!(
            "{} instances need their disks activated, {} have missing disks, {} nodes could \
             not be asked",
            offline_disk_instances.len(),
            missing.len(),
            bad_nodes.len()
        ));
        Ok(json!({
            "bad_nodes": bad_nodes,
            "offline_disk_instances": offline_disk_instances,
            "missing_disks": missing,
            "standalone_disks": standalone,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(cs: &str, ds: &str) -> Option<DrbdDiskStatus> {
        Some(DrbdDiskStatus {
            minor: 0,
            connection: cs.into(),
            replication: "Off".into(),
            role: "Secondary".into(),
            peer_role: "Unknown".into(),
            disk: ds.into(),
            peer_disk: "DUnknown".into(),
            sync_percent: None,
            in_sync: false,
            degraded: true,
            sync_eta_secs: None,
        })
    }

    #[test]
    fn which_drbd_ends_need_activation() {
        assert_eq!(drbd_problem(&None).as_deref(), Some("not active"));
        assert_eq!(
            drbd_problem(&st("StandAlone", "UpToDate")).as_deref(),
            Some("StandAlone")
        );
        assert!(drbd_problem(&st("Connected", "Diskless")).is_some());
        // Waiting for the peer: the peer's own check decides.
        assert_eq!(drbd_problem(&st("Connecting", "UpToDate")), None);
        assert_eq!(drbd_problem(&st("Connected", "UpToDate")), None);
    }
}
