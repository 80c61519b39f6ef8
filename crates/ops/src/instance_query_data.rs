//! OP_INSTANCE_QUERY_DATA: detailed configuration (and, unless `static`, runtime state) of
//! instances, in the shape of Ganeti's LUInstanceQueryData: a dictionary by instance name.
//!
//! Takes no locks (Ganeti's `use_locking=False`); reads one config snapshot.

use crate::util::{filled_be_dict, filled_hvparams, instance_by_name, nic_runtimes, node_addr};
use crate::{wrong_op, Env, LogicalUnit};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{ConfigData, Instance, LogicalId, OpCode};
use maguey_rpc::{InstanceRunInfo, NodeRequest};
use serde_json::{json, Map, Value};

pub struct InstanceQueryData {
    names: Vec<String>,
    static_only: bool,
}

impl LogicalUnit for InstanceQueryData {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceQueryData(maguey_model::OpInstanceQueryData {
            instances,
            static_only,
            ..
        }) = op
        else {
            return Err(wrong_op(op));
        };
        let names = if instances.is_empty() {
            let mut all: Vec<String> = cfg.instances.values().map(|i| i.name.clone()).collect();
            all.sort();
            all
        } else {
            for n in instances {
                instance_by_name(cfg, n)?;
            }
            instances.clone()
        };
        Ok(InstanceQueryData {
            names,
            static_only: *static_only,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        Vec::new()
    }

    fn check_prereq(&mut self, _cfg: &ConfigData) -> Result<(), OpError> {
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let mut out = Map::new();
        for name in &self.names {
            let inst = instance_by_name(&cfg, name)?;
            let run_state = if self.static_only {
                Value::Null
            } else {
                match cfg.nodes.get(&inst.primary_node) {
                    Some(node) if !node.offline => {
                        let r: Result<Option<InstanceRunInfo>, _> = env
                            .master
                            .rpc
                            .call(
                                &node_addr(&cfg, node),
                                &NodeRequest::InstanceInfo {
                                    name: inst.name.clone(),
                                    hypervisor: inst.hypervisor.to_string(),
                                },
                            )
                            .await;
                        match r {
                            Ok(Some(_)) => json!("up"),
                            Ok(None) => json!("down"),
                            Err(e) => {
                                return Err(OpError::Exec(format!(
                                    "cannot get the state of instance {name} from node {}: {e}",
                                    node.name
                                )))
                            }
                        }
                    }
                    _ => Value::Null,
                }
            };
            out.insert(name.clone(), instance_data(&cfg, inst, run_state));
        }
        Ok(Value::Object(out))
    }
}

fn node_name(cfg: &ConfigData, uuid: &str) -> Value {
    cfg.nodes
        .get(uuid)
        .map(|n| json!(n.name))
        .unwrap_or(Value::Null)
}

/// Ganeti's per-instance dictionary of LUInstanceQueryData.
pub fn instance_data(cfg: &ConfigData, inst: &Instance, run_state: Value) -> Value {
    let pnode = cfg.nodes.get(&inst.primary_node);
    let group_uuid = pnode.map(|n| n.group.clone());
    let group_name = group_uuid
        .as_ref()
        .and_then(|g| cfg.nodegroups.get(g))
        .map(|g| g.name.clone());
    let snodes = inst.secondary_nodes();
    let snode_groups: Vec<Value> = snodes
        .iter()
        .map(|u| {
            cfg.nodes
                .get(*u)
                .map(|n| json!(n.group))
                .unwrap_or(Value::Null)
        })
        .collect();
    let snode_group_names: Vec<Value> = snodes
        .iter()
        .map(|u| {
            cfg.nodes
                .get(*u)
                .and_then(|n| cfg.nodegroups.get(&n.group))
                .map(|g| json!(g.name))
                .unwrap_or(Value::Null)
        })
        .collect();
    let nics: Vec<Value> = inst
        .nics
        .iter()
        .zip(nic_runtimes(cfg, inst))
        .map(|(n, rt)| {
            let vlan = n.nicparams.get("vlan").cloned().unwrap_or(Value::Null);
            // Ganeti's NICListToTuple: (name, uuid, ip, mac, mode, link, vlan, network, netinfo).
            json!([n.name, n.uuid, n.ip, n.mac, rt.mode, rt.link, vlan, n.network, null])
        })
        .collect();
    let disks: Vec<Value> = inst
        .disks
        .iter()
        .map(|d| {
            let logical_id = match &d.logical_id {
                LogicalId::File { driver, path } | LogicalId::Sharedfile { driver, path } => {
                    json!([driver, path])
                }
                LogicalId::Plain { vg, lv } => json!([vg, lv]),
                LogicalId::Drbd {
                    node_a,
                    node_b,
                    port,
                    minor_a,
                    minor_b,
                    ..
                } => json!([
                    node_name(cfg, node_a),
                    node_name(cfg, node_b),
                    port,
                    minor_a,
                    minor_b
                ]),
            };
            json!({
                "iv_name": d.iv_name,
                "dev_type": d.dev_type,
                "logical_id": logical_id,
                "drbd_info": null,
                "pstatus": null,
                "sstatus": null,
                "children": [],
                "mode": d.mode,
                "size": d.size,
                "spindles": null,
                "name": d.name,
                "uuid": d.uuid,
            })
        })
        .collect();
    let mut os_actual = cfg
        .cluster
        .osparams
        .get(&inst.os)
        .cloned()
        .unwrap_or_default();
    os_actual.extend(inst.osparams.clone());
    json!({
        "name": inst.name,
        "config_state": inst.admin_state.as_str(),
        "run_state": run_state,
        "pnode": node_name(cfg, &inst.primary_node),
        "pnode_group_uuid": group_uuid,
        "pnode_group_name": group_name,
        "snodes": snodes.iter().map(|u| node_name(cfg, u)).collect::<Vec<_>>(),
        "snodes_group_uuids": snode_groups,
        "snodes_group_names": snode_group_names,
        "os": inst.os,
        "nics": nics,
        "disk_template": inst.disk_template,
        "disks": disks,
        "hypervisor": inst.hypervisor,
        "network_port": null,
        "hv_instance": inst.hvparams,
        "hv_actual": filled_hvparams(cfg, inst),
        "be_instance": inst.beparams,
        "be_actual": filled_be_dict(cfg, inst, &inst.beparams),
        "os_instance": inst.osparams,
        "os_actual": os_actual,
        "serial_no": inst.serial_no,
        "mtime": inst.mtime,
        "ctime": inst.ctime,
        "uuid": inst.uuid,
        "tags": inst.tags,
    })
}
