//! The cluster as an iallocator request (Ganeti's protocol, version 2), answered in-process by
//! Maguey's placement engine — the same JSON an external `hail` would get.

use crate::util::{filled_beparams, node_addr};
use crate::Master;
use futures::future::join_all;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, DiskTemplate, EvacMode, Instance};
use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc::Answer;
use maguey_rpc::{NodeInfo, NodeRequest};
use serde_json::{json, Map, Value};

/// Names of the allocator built into Maguey (`-I`/`iallocator`).
pub const BUILTIN: &[&str] = &["maguey", "hail"];

/// The live instance policy of a group (the cluster's without one), as the request carries
/// it.
fn ipolicy_json(cfg: &ConfigData, group: Option<&str>) -> Value {
    let mut p = cfg.ipolicy_for_group(group);
    // The protocol has every key in every spec: an unbounded one is 0 below, huge above.
    for mm in &mut p.minmax {
        for k in maguey_model::ISPEC_KEYS {
            if mm.min.get(k).is_none() {
                mm.min.set(k, Some(0));
            }
            if mm.max.get(k).is_none() {
                mm.max.set(k, Some(i32::MAX as u64));
            }
        }
    }
    for k in maguey_model::ISPEC_KEYS {
        if p.std.get(k).is_none() {
            p.std.set(k, Some(0));
        }
    }
    serde_json::to_value(p).unwrap_or(Value::Null)
}

fn instance_entry(cfg: &ConfigData, i: &Instance) -> Value {
    let be = filled_beparams(cfg, i);
    let nodes: Vec<String> = std::iter::once(i.primary_node.as_str())
        .chain(i.secondary_nodes())
        .filter_map(|u| cfg.nodes.get(u).map(|n| n.name.clone()))
        .collect();
    json!({
        "memory": be.maxmem,
        "vcpus": be.vcpus,
        "disk_template": i.disk_template,
        "disks": i.disks.iter().map(|d| json!({"size": d.size, "mode": d.mode})).collect::<Vec<_>>(),
        "disk_space_total": i.disks.iter().map(|d| d.size).sum::<u64>(),
        "spindle_use": be.spindle_use,
        "tags": i.tags,
        "nics": i.nics.iter().map(|n| json!({"mac": n.mac, "ip": n.ip, "network": n.network})).collect::<Vec<_>>(),
        "nodes": nodes,
        "admin_state": i.admin_state.as_str(),
        "hypervisor": i.hypervisor,
        "os": i.os,
    })
}

/// The cluster part of a request: groups, nodes (with live data from the nodes) and instances.
pub async fn cluster_request(master: &Master, cfg: &ConfigData, template: DiskTemplate) -> Value {
    let hv = cfg
        .cluster
        .enabled_hypervisors
        .first()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let infos = join_all(cfg.nodes.values().map(|n| {
        let hv = hv.clone();
        async move {
            if n.offline {
                return None;
            }
            master
                .rpc
                .call::<NodeInfo>(
                    &node_addr(cfg, n),
                    &NodeRequest::NodeInfo {
                        file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                        hypervisor: hv,
                    },
                )
                .await
                .ok()
        }
    }))
    .await;
    let mut nodes = Map::new();
    for (n, info) in cfg.nodes.values().zip(infos) {
        let mut e = json!({
            "offline": n.offline || info.is_none(),
            "drained": n.drained,
            "group": n.group,
            "ndparams": {"exclusive_storage": false, "spindle_count": 1},
            "tags": crate::rooms::request_node_tags(cfg, &n.uuid),
            "vm_capable": n.vm_capable,
            "master_capable": n.master_capable,
            "master_candidate": n.master_candidate,
            "primary_ip": n.primary_ip,
            "secondary_ip": n.secondary_ip,
        });
        if let (Some(info), Some(obj)) = (info, e.as_object_mut()) {
            let storage = info
                .storage
                .iter()
                .find(|s| s.storage_type == crate::drbd::storage_type(template))
                .or(info.storage.first());
            let pri: Vec<&Instance> = cfg
                .instances
                .values()
                .filter(|i| i.primary_node == n.uuid)
                .collect();
            let mem = |up_only: bool| -> u64 {
                pri.iter()
                    .filter(|i| !up_only || i.admin_state == AdminState::Up)
                    .map(|i| filled_beparams(cfg, i).maxmem)
                    .sum()
            };
            obj.insert("total_memory".into(), json!(info.memory_total));
            obj.insert("reserved_memory".into(), json!(info.memory_dom0));
            // The node measured it (total - free - its instances' memory): the planner counts
            // it as is, not hail's static kvm node memory.
            obj.insert(
                maguey_placement::ialloc::RESERVED_MEMORY_LIVE.into(),
                json!(true),
            );
            obj.insert("free_memory".into(), json!(info.memory_free));
            obj.insert(
                "total_disk".into(),
                json!(storage.map(|s| s.storage_size).unwrap_or(0)),
            );
            obj.insert(
                "free_disk".into(),
                json!(storage.map(|s| s.storage_free).unwrap_or(0)),
            );
            obj.insert("total_cpus".into(), json!(info.cpu_count));
            obj.insert("reserved_cpus".into(), json!(1));
            obj.insert("total_spindles".into(), json!(1));
            obj.insert("free_spindles".into(), json!(1));
            obj.insert("i_pri_memory".into(), json!(mem(false)));
            obj.insert("i_pri_up_memory".into(), json!(mem(true)));
        }
        nodes.insert(n.name.clone(), e);
    }
    let groups: Map<String, Value> = cfg
        .nodegroups
        .values()
        .map(|g| {
            (
                g.uuid.clone(),
                json!({"name": g.name, "alloc_policy": g.alloc_policy,
                       "networks": g.networks.keys().collect::<Vec<_>>(), "tags": g.tags,
                       "ipolicy": ipolicy_json(cfg, Some(&g.uuid))}),
            )
        })
        .collect();
    let instances: Map<String, Value> = cfg
        .instances
        .values()
        .map(|i| (i.name.clone(), instance_entry(cfg, i)))
        .collect();
    json!({
        "version": 2,
        "cluster_name": cfg.cluster.cluster_name,
        "cluster_tags": crate::rooms::request_cluster_tags(cfg, true),
        "enabled_hypervisors": cfg.cluster.enabled_hypervisors,
        "ipolicy": ipolicy_json(cfg, None),
        "nodegroups": groups,
        "nodes": nodes,
        "instances": instances,
    })
}

/// Asks the placement engine where a new instance goes; returns the chosen node names.
pub async fn allocate(
    master: &Master,
    cfg: &ConfigData,
    inst: &Instance,
) -> Result<Vec<String>, OpError> {
    allocate_in(master, cfg, inst, None).await
}

/// [`allocate`], in one group (`-g`, the request's `group_name`) or, without one, in the
/// group hail chooses (policy order, then score).
pub async fn allocate_in(
    master: &Master,
    cfg: &ConfigData,
    inst: &Instance,
    group: Option<&str>,
) -> Result<Vec<String>, OpError> {
    let mut req = cluster_request(master, cfg, inst.disk_template).await;
    let mut entry = instance_entry(cfg, inst);
    if let Some(obj) = entry.as_object_mut() {
        obj.remove("nodes");
        obj.remove("admin_state");
        obj.insert("type".into(), json!("allocate"));
        obj.insert("name".into(), json!(inst.name));
        obj.insert(
            "required_nodes".into(),
            json!(inst.disk_template.node_count()),
        );
        if let Some(g) = group {
            obj.insert("group_name".into(), json!(g));
        }
    }
    req["request"] = entry;
    let mut answer = solve(&req, &AllocOptions::default())?;
    if answer.is_err() && crate::rooms::has_rooms(cfg) && inst.disk_template.node_count() > 1 {
        // No pair across rooms has room for it: a pair inside one room is better than none.
        req["cluster_tags"] = json!(crate::rooms::request_cluster_tags(cfg, false));
        answer = solve(&req, &AllocOptions::default())?;
    }
    let nodes = match answer {
        Ok((_, Answer::Nodes(nodes))) => nodes,
        Ok((_, other)) => return Err(unexpected(&other)),
        Err(why) => {
            return Err(OpError::Prereq(format!(
                "the allocator found no node for instance {}: {}",
                inst.name,
                crate::refusal::summarize_alloc(&req, &why, &inst.name)
            )))
        }
    };
    if nodes.is_empty() {
        return Err(OpError::Exec("allocator answered no node".to_string()));
    }
    Ok(nodes)
}

/// Runs an iallocator request (built by [`cluster_request`]) through the placement engine in
/// process: the typed answer, or why the engine found none (`Request failed: ...`, as hail
/// says it).
pub(crate) fn solve(
    req: &Value,
    opts: &AllocOptions,
) -> Result<Result<(String, Answer), String>, OpError> {
    let req = maguey_placement::ialloc::parse_request_value(req)
        .map_err(|e| OpError::Exec(format!("allocator: {e}")))?;
    let (answer, _) = maguey_placement::ialloc::solve(req, opts);
    Ok(answer.map_err(|msg| format!("Request failed: {msg}")))
}

/// An answer of another kind than the request asked for (a programming error).
pub(crate) fn unexpected(a: &Answer) -> OpError {
    OpError::Exec(format!("allocator answered {}", a.to_json()))
}

/// The template whose storage a request describes as the nodes' disk: the volume group when
/// any instance has LVM disks (`plain`, `drbd`: the planner counts their space on the target;
/// `file` disks count none), otherwise the first instance's.
pub fn request_template(instances: &[&Instance]) -> DiskTemplate {
    instances
        .iter()
        .map(|i| i.disk_template)
        .find(|t| t.uses_lvm())
        .or(instances.first().map(|i| i.disk_template))
        .unwrap_or(DiskTemplate::File)
}

/// The placement engine's plan to move `instances` off their nodes (an iallocator
/// `node-evacuate` request; `mode` is `primary-only`, `secondary-only` or `all`).
pub struct EvacPlan {
    /// Instance name and its new nodes (primary first).
    pub moved: Vec<(String, Vec<String>)>,
    /// Instance name and why it cannot move.
    pub failed: Vec<(String, String)>,
    /// One job per moved instance: its opcodes.
    pub jobs: Vec<Vec<maguey_model::OpCode>>,
    /// `failed` for a human: one line per reason, with counts and the limit that bit
    /// ([`crate::refusal::summarize`]).
    pub summary: Vec<String>,
}

/// Asks the placement engine for a node evacuation plan.
pub async fn evacuate_plan(
    master: &Master,
    cfg: &ConfigData,
    instances: &[&Instance],
    mode: EvacMode,
) -> Result<EvacPlan, OpError> {
    evacuate_plan_rooms(master, cfg, instances, mode, true).await
}

/// [`evacuate_plan`]; `rooms_hard`: a new DRBD pair never inside one room (when the cluster
/// has rooms), otherwise rooms only count in the score, as htools' locations do.
pub async fn evacuate_plan_rooms(
    master: &Master,
    cfg: &ConfigData,
    instances: &[&Instance],
    mode: EvacMode,
    rooms_hard: bool,
) -> Result<EvacPlan, OpError> {
    let template = request_template(instances);
    let mut req = cluster_request(master, cfg, template).await;
    req["request"] = json!({
        "type": "node-evacuate",
        "instances": instances.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "evac_mode": mode,
    });
    req["cluster_tags"] = json!(crate::rooms::request_cluster_tags(cfg, rooms_hard));
    let opts = AllocOptions {
        local_storage_migrates: true,
        ..Default::default()
    };
    let evac = match solve(&req, &opts)? {
        Ok((_, Answer::Evac(e))) => e,
        Ok((_, other)) => return Err(unexpected(&other)),
        Err(why) => {
            return Err(OpError::Prereq(format!(
                "the allocator found no evacuation plan: {why}"
            )))
        }
    };
    let summary = crate::refusal::summarize(&req, &evac.failed);
    let plan = EvacPlan {
        summary,
        moved: evac
            .moved
            .into_iter()
            .map(|(name, _group, nodes)| (name, nodes))
            .collect(),
        failed: evac.failed,
        jobs: evac
            .jobs
            .iter()
            .map(|ops| ops.iter().map(crate::moves::opcode).collect())
            .collect(),
    };
    Ok(plan)
}
