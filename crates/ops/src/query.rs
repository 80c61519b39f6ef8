//! Queries over the configuration and live node data (Ganeti's query2 fields).
//!
//! Field names are Ganeti's (`name`, `pnode`, `status`, `be/maxmem`, `mfree`, ...). Live data
//! (instance state, node memory and storage) is fetched from the nodes in parallel, and only
//! when a requested field needs it.

use crate::util::{filled_beparams, filled_hvparams, node_addr};
use crate::Master;
use futures::future::join_all;
use maguey_model::{AdminState, ConfigData, Instance, Node, NodeGroup};
use maguey_rpc::{InstanceRunInfo, NodeInfo, NodeRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Kinds of objects a query can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Instance,
    Node,
    Group,
    Network,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryRequest {
    pub what: Resource,
    /// Empty: all objects.
    #[serde(default)]
    pub names: Vec<String>,
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResult {
    pub fields: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Set on an answer from a replica that is not the master (`--stale-ok`): why it may be
    /// stale (docs/replication.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// Field names and their descriptions, per resource (for `list-fields` and validation).
pub fn field_list(what: Resource) -> &'static [(&'static str, &'static str)] {
    match what {
        Resource::Instance => &[
            ("name", "Instance name"),
            ("uuid", "Instance UUID"),
            ("os", "Operating system"),
            ("hypervisor", "Hypervisor"),
            ("pnode", "Primary node"),
            ("snodes", "Secondary nodes"),
            ("admin_state", "Desired state (up, down, offline)"),
            ("admin_up", "Whether the instance should run"),
            (
                "admin_state_source",
                "Who set the desired state (admin, or user: the guest powered itself off)",
            ),
            (
                "status",
                "Combined state (running, ADMIN_down, ERROR_down, ...)",
            ),
            ("oper_state", "Whether the instance runs"),
            ("oper_ram", "Memory in use (MiB)"),
            ("oper_vcpus", "VCPUs in use"),
            ("network_port", "VNC console port of the running instance"),
            ("disk_template", "Disk template"),
            ("be/maxmem", "Maximum memory (MiB)"),
            ("be/minmem", "Minimum memory (MiB)"),
            ("be/vcpus", "VCPUs"),
            ("be/auto_balance", "Auto balance"),
            ("be/always_failover", "Always failover"),
            ("beparams", "Filled backend parameters"),
            ("hvparams", "Filled hypervisor parameters"),
            ("osparams", "OS parameters"),
            ("disk.count", "Number of disks"),
            ("disk.sizes", "Disk sizes (MiB)"),
            (
                "disk.status",
                "Live state of each disk on each node (DRBD: connection, disks, roles, sync percent and time left)",
            ),
            ("disk_usage", "Total disk space (MiB)"),
            ("disk.uuids", "Disk UUIDs"),
            ("nic.count", "Number of NICs"),
            ("nic.macs", "NIC MAC addresses"),
            ("nic.ips", "NIC IP addresses"),
            ("nic.modes", "NIC modes"),
            ("nic.links", "NIC links"),
            ("tags", "Tags"),
            ("serial_no", "Serial number"),
            ("ctime", "Creation time"),
            ("mtime", "Modification time"),
        ],
        Resource::Node => &[
            ("name", "Node name"),
            ("uuid", "Node UUID"),
            ("pip", "Primary IP"),
            ("sip", "Secondary IP"),
            ("group", "Node group"),
            ("group.uuid", "Node group UUID"),
            ("room", "Room (failure domain)"),
            ("role", "Role (M, C, R, D, O)"),
            ("master", "Whether the node is the master"),
            ("offline", "Offline"),
            ("drained", "Drained"),
            ("master_candidate", "Master candidate"),
            ("master_capable", "Master capable"),
            ("vm_capable", "VM capable"),
            ("mtotal", "Total memory (MiB)"),
            ("mnode", "Memory used by the node (MiB)"),
            ("mfree", "Free memory (MiB)"),
            ("dtotal", "Total disk (MiB)"),
            ("dfree", "Free disk (MiB)"),
            ("ctotal", "CPUs"),
            ("bootid", "Boot id"),
            ("pinst_cnt", "Number of primary instances"),
            ("sinst_cnt", "Number of secondary instances"),
            ("pinst_list", "Primary instances"),
            ("sinst_list", "Secondary instances"),
            ("tags", "Tags"),
            ("serial_no", "Serial number"),
            ("ctime", "Creation time"),
            ("mtime", "Modification time"),
        ],
        Resource::Group => &[
            ("name", "Group name"),
            ("uuid", "Group UUID"),
            ("alloc_policy", "Allocation policy"),
            ("node_cnt", "Number of nodes"),
            ("node_list", "Nodes"),
            ("pinst_cnt", "Number of primary instances"),
            ("pinst_list", "Primary instances"),
            ("tags", "Tags"),
            ("serial_no", "Serial number"),
            ("ctime", "Creation time"),
            ("mtime", "Modification time"),
            ("ipolicy", "Instance policy (filled)"),
            ("custom_ipolicy", "Instance policy (group overrides)"),
            ("ndparams", "Node parameters (filled)"),
            ("custom_ndparams", "Node parameters (group overrides)"),
            ("diskparams", "Disk parameters (filled)"),
            ("custom_diskparams", "Disk parameters (group overrides)"),
            ("networks", "Connected networks"),
            ("network_links", "Links of the connected networks"),
        ],
        Resource::Network => crate::query_groups::NETWORK_FIELDS,
    }
}

const LIVE_INSTANCE: &[&str] = &[
    "status",
    "oper_state",
    "oper_ram",
    "oper_vcpus",
    "network_port",
];
const LIVE_NODE: &[&str] = &[
    "mtotal", "mnode", "mfree", "dtotal", "dfree", "ctotal", "bootid",
];

/// Runs a query; unknown fields or names are refused with a message.
pub async fn query(master: &Master, req: &QueryRequest) -> Result<QueryResult, String> {
    let known = field_list(req.what);
    for f in &req.fields {
        if !known.iter().any(|(n, _)| n == f) {
            return Err(format!(
                "unknown field '{f}' (known: {})",
                known.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let cfg = master.config.snapshot();
    let rows = match req.what {
        Resource::Instance => {
            let insts = select(&req.names, cfg.instances.values(), |i| &i.name, "instance")?;
            let live = if req
                .fields
                .iter()
                .any(|f| LIVE_INSTANCE.contains(&f.as_str()))
            {
                Some(live_instances(master, &cfg).await)
            } else {
                None
            };
            let disks = if req.fields.iter().any(|f| f == "disk.status") {
                Some(crate::query_disks::live_disks(master, &cfg, &insts).await)
            } else {
                None
            };
            insts
                .iter()
                .map(|i| {
                    req.fields
                        .iter()
                        .map(|f| match f.as_str() {
                            "disk.status" => {
                                json!(crate::query_disks::disk_status(i, disks.as_ref()))
                            }
                            _ => instance_field(&cfg, i, f, live.as_ref()),
                        })
                        .collect()
                })
                .collect()
        }
        Resource::Node => {
            let nodes = select(&req.names, cfg.nodes.values(), |n| &n.name, "node")?;
            let live = if req.fields.iter().any(|f| LIVE_NODE.contains(&f.as_str())) {
                Some(live_nodes(master, &cfg, &nodes).await)
            } else {
                None
            };
            nodes
                .iter()
                .map(|n| {
                    req.fields
                        .iter()
                        .map(|f| node_field(&cfg, n, f, live.as_ref()))
                        .collect()
                })
                .collect()
        }
        Resource::Group => {
            let groups = select(&req.names, cfg.nodegroups.values(), |g| &g.name, "group")?;
            groups
                .iter()
                .map(|g| req.fields.iter().map(|f| group_field(&cfg, g, f)).collect())
                .collect()
        }
        Resource::Network => {
            let nets = select(&req.names, cfg.networks.values(), |n| &n.name, "network")?;
            nets.iter()
                .map(|n| {
                    req.fields
                        .iter()
                        .map(|f| crate::query_groups::network_field(&cfg, n, f))
                        .collect()
                })
                .collect()
        }
    };
    Ok(QueryResult {
        stale: None,
        fields: req.fields.clone(),
        rows,
    })
}

fn select<'a, T>(
    names: &[String],
    all: impl Iterator<Item = &'a T>,
    name: impl Fn(&T) -> &String,
    kind: &str,
) -> Result<Vec<&'a T>, String> {
    let mut all: Vec<&T> = all.collect();
    all.sort_by(|a, b| name(a).cmp(name(b)));
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|o| name(o) == n)
                .copied()
                .ok_or_else(|| format!("{kind} '{n}' is not known to the cluster"))
        })
        .collect()
}

/// Live instance data per node uuid; `None` for nodes that did not answer.
pub(crate) type LiveInstances = BTreeMap<String, Option<BTreeMap<String, InstanceRunInfo>>>;

pub(crate) async fn live_instances(master: &Master, cfg: &ConfigData) -> LiveInstances {
    let nodes: Vec<&Node> = cfg.nodes.values().filter(|n| !n.offline).collect();
    let futs = nodes.iter().map(|n| async move {
        let mut all = BTreeMap::new();
        for hv in &cfg.cluster.enabled_hypervisors {
            let r = master
                .rpc
                .call::<BTreeMap<String, InstanceRunInfo>>(
                    &node_addr(cfg, n),
                    &NodeRequest::AllInstancesInfo {
                        hypervisor: hv.to_string(),
                    },
                )
                .await;
            match r {
                Ok(m) => all.extend(m),
                Err(_) => return (n.uuid.clone(), None),
            }
        }
        (n.uuid.clone(), Some(all))
    });
    join_all(futs).await.into_iter().collect()
}

pub(crate) async fn live_nodes(
    master: &Master,
    cfg: &ConfigData,
    nodes: &[&Node],
) -> BTreeMap<String, NodeInfo> {
    let hv = cfg
        .cluster
        .enabled_hypervisors
        .first()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let futs = nodes.iter().filter(|n| !n.offline).map(|n| {
        let hv = hv.clone();
        async move {
            let r = master
                .rpc
                .call::<NodeInfo>(
                    &node_addr(cfg, n),
                    &NodeRequest::NodeInfo {
                        file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                        hypervisor: hv.to_string(),
                    },
                )
                .await;
            (n.uuid.clone(), r.ok())
        }
    });
    join_all(futs)
        .await
        .into_iter()
        .filter_map(|(u, r)| r.map(|r| (u, r)))
        .collect()
}

/// Ganeti's combined instance status.
pub fn instance_status(cfg: &ConfigData, inst: &Instance, live: &LiveInstances) -> &'static str {
    if inst.admin_state == AdminState::Offline {
        return "ADMIN_offline";
    }
    let Some(node) = cfg.nodes.get(&inst.primary_node) else {
        return "ERROR_nodedown";
    };
    if node.offline {
        return "ERROR_nodeoffline";
    }
    let Some(Some(on_primary)) = live.get(&node.uuid) else {
        return "ERROR_nodedown";
    };
    if let Some(run) = on_primary.get(&inst.name) {
        // The guest powered itself off; its hypervisor kept it (kvm `user_shutdown`).
        if run.state == "shutdown" {
            return "USER_down";
        }
        return if inst.admin_state == AdminState::Up {
            "running"
        } else {
            "ERROR_up"
        };
    }
    let elsewhere = live
        .iter()
        .any(|(u, m)| u != &node.uuid && m.as_ref().is_some_and(|m| m.contains_key(&inst.name)));
    if elsewhere {
        "ERROR_wrongnode"
    } else if inst.admin_state == AdminState::Up {
        "ERROR_down"
    } else if inst.admin_state_source == maguey_model::AdminStateSource::User {
        // Its guest powered itself off and the watcher recorded it (`user_shutdown`).
        "USER_down"
    } else {
        "ADMIN_down"
    }
}

fn node_name(cfg: &ConfigData, uuid: &str) -> Value {
    cfg.nodes
        .get(uuid)
        .map(|n| Value::from(n.name.clone()))
        .unwrap_or(Value::Null)
}

fn instance_field(cfg: &ConfigData, i: &Instance, f: &str, live: Option<&LiveInstances>) -> Value {
    let be = || filled_beparams(cfg, i);
    let run = || {
        live.and_then(|l| l.get(&i.primary_node))
            .and_then(|m| m.as_ref())
            .and_then(|m| m.get(&i.name))
    };
    match f {
        "name" => json!(i.name),
        "uuid" => json!(i.uuid),
        "os" => json!(i.os),
        "hypervisor" => json!(i.hypervisor),
        "pnode" => node_name(cfg, &i.primary_node),
        "snodes" => Value::from(
            i.secondary_nodes()
                .iter()
                .map(|u| node_name(cfg, u))
                .collect::<Vec<_>>(),
        ),
        "admin_state" => json!(i.admin_state.as_str()),
        "admin_up" => json!(i.admin_state == AdminState::Up),
        "admin_state_source" => json!(i.admin_state_source.as_str()),
        "status" => live
            .map(|l| json!(instance_status(cfg, i, l)))
            .unwrap_or(Value::Null),
        "oper_state" => json!(run().is_some()),
        "oper_ram" => run().map(|r| json!(r.memory)).unwrap_or(Value::Null),
        "oper_vcpus" => run().map(|r| json!(r.vcpus)).unwrap_or(Value::Null),
        "network_port" => run()
            .and_then(|r| r.vnc_port)
            .map(|p| json!(p))
            .unwrap_or(Value::Null),
        "disk_template" => json!(i.disk_template),
        "be/maxmem" => json!(be().maxmem),
        "be/minmem" => json!(be().minmem),
        "be/vcpus" => json!(be().vcpus),
        "be/auto_balance" => json!(be().auto_balance),
        "be/always_failover" => json!(be().always_failover),
        "beparams" => serde_json::to_value(be()).unwrap_or(Value::Null),
        "hvparams" => json!(filled_hvparams(cfg, i)),
        "osparams" => json!(i.osparams),
        "disk.count" => json!(i.disks.len()),
        "disk.sizes" => json!(i.disks.iter().map(|d| d.size).collect::<Vec<_>>()),
        "disk_usage" => json!(i.disks.iter().map(|d| d.size).sum::<u64>()),
        "disk.uuids" => json!(i.disks.iter().map(|d| d.uuid.clone()).collect::<Vec<_>>()),
        "nic.count" => json!(i.nics.len()),
        "nic.macs" => json!(i.nics.iter().map(|n| n.mac.clone()).collect::<Vec<_>>()),
        "nic.ips" => json!(i.nics.iter().map(|n| n.ip.clone()).collect::<Vec<_>>()),
        "nic.modes" | "nic.links" => {
            let key = if f == "nic.modes" { "mode" } else { "link" };
            json!(crate::util::nic_runtimes(cfg, i)
                .iter()
                .map(|n| if key == "mode" {
                    n.mode.to_string()
                } else {
                    n.link.clone()
                })
                .collect::<Vec<_>>())
        }
        "tags" => json!(i.tags),
        "serial_no" => json!(i.serial_no),
        "ctime" => json!(i.ctime),
        "mtime" => json!(i.mtime),
        _ => Value::Null,
    }
}

fn node_field(
    cfg: &ConfigData,
    n: &Node,
    f: &str,
    live: Option<&BTreeMap<String, NodeInfo>>,
) -> Value {
    let info = || live.and_then(|l| l.get(&n.uuid));
    let prim: Vec<&Instance> = cfg
        .instances
        .values()
        .filter(|i| i.primary_node == n.uuid)
        .collect();
    let sec: Vec<&Instance> = cfg
        .instances
        .values()
        .filter(|i| i.secondary_nodes().contains(&n.uuid.as_str()))
        .collect();
    // Ganeti's dtotal/dfree: the storage of the cluster's first enabled disk template that
    // the node reports (`lvm-vg` for plain/drbd), else the first it reports.
    let storage = |free: bool| {
        info()
            .and_then(|i| {
                cfg.cluster
                    .enabled_disk_templates
                    .iter()
                    .find_map(|t| {
                        let kind = crate::drbd::storage_type(*t);
                        i.storage.iter().find(|s| s.storage_type == kind)
                    })
                    .or(i.storage.first())
            })
            .map(|s| json!(if free { s.storage_free } else { s.storage_size }))
    };
    match f {
        "name" => json!(n.name),
        "uuid" => json!(n.uuid),
        "pip" => json!(n.primary_ip),
        "sip" => json!(n.secondary_ip),
        "group" => cfg
            .nodegroups
            .get(&n.group)
            .map(|g| json!(g.name))
            .unwrap_or(Value::Null),
        "group.uuid" => json!(n.group),
        "room" => json!(n.room),
        "role" => json!(n.role(&cfg.cluster.master_node)),
        "master" => json!(n.uuid == cfg.cluster.master_node),
        "offline" => json!(n.offline),
        "drained" => json!(n.drained),
        "master_candidate" => json!(n.master_candidate),
        "master_capable" => json!(n.master_capable),
        "vm_capable" => json!(n.vm_capable),
        "mtotal" => info().map(|i| json!(i.memory_total)).unwrap_or(Value::Null),
        "mnode" => info().map(|i| json!(i.memory_dom0)).unwrap_or(Value::Null),
        "mfree" => info().map(|i| json!(i.memory_free)).unwrap_or(Value::Null),
        "dtotal" => storage(false).unwrap_or(Value::Null),
        "dfree" => storage(true).unwrap_or(Value::Null),
        "ctotal" => info().map(|i| json!(i.cpu_count)).unwrap_or(Value::Null),
        "bootid" => info().map(|i| json!(i.bootid)).unwrap_or(Value::Null),
        "pinst_cnt" => json!(prim.len()),
        "sinst_cnt" => json!(sec.len()),
        "pinst_list" => json!(prim.iter().map(|i| i.name.clone()).collect::<Vec<_>>()),
        "sinst_list" => json!(sec.iter().map(|i| i.name.clone()).collect::<Vec<_>>()),
        "tags" => json!(n.tags),
        "serial_no" => json!(n.serial_no),
        "ctime" => json!(n.ctime),
        "mtime" => json!(n.mtime),
        _ => Value::Null,
    }
}

fn group_field(cfg: &ConfigData, g: &NodeGroup, f: &str) -> Value {
    let nodes: Vec<&Node> = cfg.nodes.values().filter(|n| n.group == g.uuid).collect();
    match f {
        "name" => json!(g.name),
        "uuid" => json!(g.uuid),
        "alloc_policy" => json!(g.alloc_policy),
        "node_cnt" => json!(nodes.len()),
        "node_list" => json!(nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>()),
        "pinst_cnt" | "pinst_list" => {
            let insts: Vec<String> = cfg
                .instances
                .values()
                .filter(|i| nodes.iter().any(|n| n.uuid == i.primary_node))
                .map(|i| i.name.clone())
                .collect();
            if f == "pinst_cnt" {
                json!(insts.len())
            } else {
                json!(insts)
            }
        }
        "tags" => json!(g.tags),
        "serial_no" => json!(g.serial_no),
        "ctime" => json!(g.ctime),
        "mtime" => json!(g.mtime),
        _ => crate::query_groups::group_extra(cfg, g, f),
    }
}
