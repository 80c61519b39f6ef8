//! The iallocator protocol, version 2 (Ganeti's `doc/iallocator.rst`,
//! htools' `Backend/IAlloc.hs`): request reader and answer writer.

use serde_json::{json, Map, Value};

use crate::alloc::{self, AllocOptions, AllocRequest, EvacSolution};
use crate::jobs::{EvacAnswer, MoveOp};
use crate::model::*;
use crate::types::*;

/// A parsed request.
#[derive(Debug, Clone)]
pub enum RequestKind {
    Allocate {
        inst: Instance,
        required: usize,
        group: Option<String>,
        restrict: Option<Vec<String>>,
    },
    Relocate {
        idx: usize,
        required: usize,
        from: Vec<usize>,
    },
    NodeEvacuate {
        idxs: Vec<usize>,
        mode: EvacMode,
    },
    ChangeGroup {
        idxs: Vec<usize>,
        targets: Vec<usize>,
    },
    MultiAllocate(Vec<AllocRequest>),
    AllocateSecondary {
        idx: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub kind: RequestKind,
    pub cluster: Cluster,
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::Parse(format!("{what}: expected a JSON object")))
}
fn get<'a>(o: &'a Map<String, Value>, k: &str, what: &str) -> Result<&'a Value> {
    o.get(k)
        .ok_or_else(|| Error::Parse(format!("{what}: missing key '{k}'")))
}
fn get_str(o: &Map<String, Value>, k: &str, what: &str) -> Result<String> {
    get(o, k, what)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Parse(format!("{what}: key '{k}' is not a string")))
}
fn get_f64(o: &Map<String, Value>, k: &str, what: &str) -> Result<f64> {
    get(o, k, what)?
        .as_f64()
        .ok_or_else(|| Error::Parse(format!("{what}: key '{k}' is not a number")))
}
fn get_i64(o: &Map<String, Value>, k: &str, what: &str) -> Result<i64> {
    let v = get(o, k, what)?;
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .ok_or_else(|| Error::Parse(format!("{what}: key '{k}' is not an integer")))
}
fn get_bool(o: &Map<String, Value>, k: &str, what: &str) -> Result<bool> {
    get(o, k, what)?
        .as_bool()
        .ok_or_else(|| Error::Parse(format!("{what}: key '{k}' is not a boolean")))
}
fn get_strs(o: &Map<String, Value>, k: &str, what: &str) -> Result<Vec<String>> {
    get(o, k, what)?
        .as_array()
        .ok_or_else(|| Error::Parse(format!("{what}: key '{k}' is not a list")))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Parse(format!("{what}: '{k}' must contain strings")))
        })
        .collect()
}
fn opt_str(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k).and_then(|v| v.as_str()).map(str::to_string)
}

fn parse_ispec(v: &Value, what: &str) -> Result<ISpec> {
    let o = obj(v, what)?;
    Ok(ISpec {
        mem: get_i64(o, "memory-size", what)?,
        cpu: get_i64(o, "cpu-count", what)?,
        disk: get_i64(o, "disk-size", what)?,
        disk_count: get_i64(o, "disk-count", what)?,
        nic_count: get_i64(o, "nic-count", what)?,
        spindle_use: get_i64(o, "spindle-use", what)?,
    })
}

/// Parse an ipolicy object.
pub fn parse_ipolicy(v: &Value, what: &str) -> Result<IPolicy> {
    let o = obj(v, what)?;
    let mut minmax = vec![];
    for mm in get(o, "minmax", what)?
        .as_array()
        .ok_or_else(|| Error::Parse(format!("{what}: minmax is not a list")))?
    {
        let m = obj(mm, what)?;
        minmax.push(MinMax {
            min: parse_ispec(get(m, "min", what)?, what)?,
            max: parse_ispec(get(m, "max", what)?, what)?,
        });
    }
    let dts = get_strs(o, "disk-templates", what)?
        .iter()
        .map(|d| DiskTemplate::from_raw(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(IPolicy {
        minmax,
        std: parse_ispec(get(o, "std", what)?, what)?,
        disk_templates: dts,
        vcpu_ratio: get_f64(o, "vcpu-ratio", what)?,
        spindle_ratio: get_f64(o, "spindle-ratio", what)?,
    })
}

/// Instance attributes shared by cluster instances and allocate requests.
fn parse_base_instance(name: &str, o: &Map<String, Value>) -> Result<Instance> {
    let what = format!("invalid data for instance '{name}'");
    let dsk = get_i64(o, "disk_space_total", &what)?;
    let mut disks = vec![];
    for d in get(o, "disks", &what)?
        .as_array()
        .ok_or_else(|| Error::Parse(format!("{what}: disks is not a list")))?
    {
        let d = obj(d, &what)?;
        disks.push(Disk {
            size: get_i64(d, "size", &what)?,
            spindles: d.get("spindles").and_then(|v| v.as_i64()),
        });
    }
    let status = match o.get("admin_state").and_then(|v| v.as_str()) {
        None | Some("up") => InstanceStatus::Running,
        Some("down") => InstanceStatus::AdminDown,
        Some("offline") => InstanceStatus::AdminOffline,
        Some(x) => return Err(Error::Parse(format!("{what}: invalid admin_state '{x}'"))),
    };
    let mut nics = vec![];
    if let Some(arr) = o.get("nics").and_then(|v| v.as_array()) {
        for n in arr {
            let n = obj(n, &what)?;
            nics.push(Nic {
                mac: opt_str(n, "mac"),
                ip: opt_str(n, "ip"),
                mode: opt_str(n, "mode"),
                link: opt_str(n, "link"),
                network: opt_str(n, "network"),
            });
        }
    } else {
        get(o, "nics", &what)?;
    }
    let forthcoming = o
        .get("forthcoming")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut inst = Instance::new(
        name,
        get_i64(o, "memory", &what)?,
        dsk,
        disks,
        get_i64(o, "vcpus", &what)?,
        status,
        get_strs(o, "tags", &what)?,
        true,
        DiskTemplate::from_raw(&get_str(o, "disk_template", &what)?)?,
        get_i64(o, "spindle_use", &what)?,
        forthcoming,
    );
    inst.nics = nics;
    Ok(inst)
}

fn parse_alloc_request(
    c: &Cluster,
    r: &Map<String, Value>,
    group: Option<String>,
) -> Result<AllocRequest> {
    let name = get_str(r, "name", "invalid request dict")?;
    let required = get_i64(r, "required_nodes", "invalid request dict")?;
    let mut inst = parse_base_instance(&name, r)?;
    c.update_instance_tags(&mut inst, &[]);
    Ok(AllocRequest {
        inst,
        required: usize::try_from(required)
            .map_err(|_| Error::Parse("negative required_nodes".into()))?,
        group,
    })
}

/// Parse the cluster part of an iallocator message (groups, nodes, instances), without a
/// `request`: how Maguey hands its live cluster to the planner.
pub fn parse_cluster(body: &str) -> Result<Cluster> {
    if let Some((c, _)) = crate::ialloc_fast::parse(body) {
        return Ok(c);
    }
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Error::Parse(format!("parsing cluster description: {e}")))?;
    parse_cluster_part(obj(&v, "cluster description")?)
}

/// [`parse_cluster`] without the typed fast path (reference for its tests).
#[cfg(test)]
pub(crate) fn parse_cluster_slow(body: &str) -> Result<Cluster> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Error::Parse(format!("parsing cluster description: {e}")))?;
    parse_cluster_part(obj(&v, "cluster description")?)
}

fn parse_cluster_part(top: &serde_json::Map<String, Value>) -> Result<Cluster> {
    let w = "invalid iallocator message";
    // groups
    let mut groups = vec![];
    for (uuid, g) in obj(get(top, "nodegroups", w)?, "nodegroups")? {
        let what = format!("invalid data for group '{uuid}'");
        let go = obj(g, &what)?;
        groups.push(Group {
            name: get_str(go, "name", &what)?,
            uuid: uuid.clone(),
            alloc_policy: AllocPolicy::from_raw(&get_str(go, "alloc_policy", &what)?)?,
            tags: get_strs(go, "tags", &what)?,
            networks: get_strs(go, "networks", &what)?,
            ipolicy: parse_ipolicy(get(go, "ipolicy", &what)?, &what)?,
        });
    }
    let hvs = get_strs(top, "enabled_hypervisors", w)?;
    let kvm = hvs.first().is_some_and(|h| h == "kvm");
    // nodes
    let mut nodes: Vec<Node> = vec![];
    for (name, nv) in obj(get(top, "nodes", w)?, "nodes")? {
        let what = format!("invalid data for node '{name}'");
        let no = obj(nv, &what)?;
        let offline = get_bool(no, "offline", &what)?;
        let drained = get_bool(no, "drained", &what)?;
        let guuid = get_str(no, "group", &what)?;
        let gdx = groups
            .iter()
            .position(|g| g.uuid == guuid)
            .ok_or_else(|| Error::Parse(format!("Unknown group '{guuid}' for node {name}")))?;
        let vm_capable = no
            .get("vm_capable")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let nd = obj(get(no, "ndparams", &what)?, &what)?;
        let excl = get_bool(nd, "exclusive_storage", &what)?;
        let live = !offline && vm_capable;
        let li = |k: &str| -> Result<i64> {
            if live {
                get_i64(no, k, &what)
            } else {
                Ok(0)
            }
        };
        let lf = |k: &str| -> Result<f64> {
            if live {
                get_f64(no, k, &what)
            } else {
                Ok(0.0)
            }
        };
        let sptotal = if excl {
            li("total_spindles")?
        } else {
            get_i64(nd, "spindle_count", &what)?
        };
        let mut n = Node::new(
            name,
            lf("total_memory")?,
            li("reserved_memory")?,
            li("free_memory")?,
            lf("total_disk")?,
            li("free_disk")?,
            lf("total_cpus")?,
            li("reserved_cpus")?,
            !live || drained,
            sptotal,
            li("free_spindles")?,
            gdx,
            excl,
        );
        n.drained = drained;
        // A node whose `reserved_memory` was measured (see [`RESERVED_MEMORY_LIVE`]) keeps
        // it; otherwise a kvm node gets hail's static node memory.
        n.kvm = kvm
            && !no
                .get(RESERVED_MEMORY_LIVE)
                .is_some_and(|v| v == &Value::Bool(true));
        n.tags = match no.get("tags") {
            Some(_) => get_strs(no, "tags", &what)?,
            None => vec![],
        };
        nodes.push(n);
    }
    // instances
    let mut instances = vec![];
    let node_idx: std::collections::HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for (name, iv) in obj(get(top, "instances", w)?, "instances")? {
        let io = obj(iv, &format!("instance {name}"))?;
        let mut inst = parse_base_instance(name, io)?;
        let ns = get_strs(io, "nodes", &format!("instance {name}"))?;
        let find = |nn: &str| {
            node_idx
                .get(nn)
                .copied()
                .ok_or_else(|| Error::Parse(format!("Unknown node '{nn}' for instance {name}")))
        };
        let p = ns
            .first()
            .ok_or_else(|| Error::Parse(format!("empty node list for instance {name}")))?;
        inst.pnode = find(p)?;
        inst.snode = match ns.get(1) {
            Some(s) => Some(find(s)?),
            None => None,
        };
        instances.push(inst);
    }
    let tags = get_strs(top, "cluster_tags", w)?;
    let mut cluster = Cluster {
        groups,
        nodes,
        instances,
        tags,
        ipolicy: IPolicy::default(),
    };
    cluster.finalize(&LoadOptions {
        static_kvm_node_mem: 4096,
        ..Default::default()
    })?;
    Ok(cluster)
}

/// Node key of an iallocator request saying that the node's `reserved_memory` is live data,
/// the memory the node daemon measured as its own: total minus free minus what its running
/// instances hold. Maguey's requests carry it (`true`) for every node that answered; the
/// planner then counts that memory as is. Without it (Ganeti's requests) a node of a cluster
/// whose first hypervisor is kvm counts hail's static 4096 MiB instead, as hail does, because
/// Ganeti's kvm reports the instances' memory as the node's own.
pub const RESERVED_MEMORY_LIVE: &str = "reserved_memory_live";

/// Parse an iallocator request (JSON text).
pub fn parse_request(body: &str) -> Result<Request> {
    // typed fast path; anything it does not accept as is (including every
    // error) goes through the `Value` reader below, which has the final word
    if let Some((cluster, Some(request))) = crate::ialloc_fast::parse(body) {
        if let Ok(kind) = parse_kind(&cluster, &request) {
            return Ok(Request { kind, cluster });
        }
    }
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Error::Parse(format!("parsing input IAllocator message: {e}")))?;
    let top = obj(&v, "iallocator message")?;
    let w = "invalid iallocator message";
    let request = obj(get(top, "request", w)?, "request")?;
    let cluster = parse_cluster_part(top)?;
    let kind = parse_kind(&cluster, request)?;
    Ok(Request { kind, cluster })
}

/// The request part of an iallocator message, on its parsed cluster.
fn parse_kind(cluster: &Cluster, request: &Map<String, Value>) -> Result<RequestKind> {
    let rw = "invalid request dict";
    let rtype = get_str(request, "type", rw)?;
    let find_inst = |n: &str| {
        cluster
            .instances
            .iter()
            .position(|i| i.name == n)
            .ok_or_else(|| Error::Parse(format!("Unknown instance '{n}'")))
    };
    let kind = match rtype.as_str() {
        "allocate" => {
            let group = opt_str(request, "group_name");
            let restrict = match request.get("restrict-to-nodes") {
                Some(Value::Null) | None => None,
                Some(_) => Some(get_strs(request, "restrict-to-nodes", rw)?),
            };
            let ar = parse_alloc_request(cluster, request, group.clone())?;
            RequestKind::Allocate {
                inst: ar.inst,
                required: ar.required,
                group,
                restrict,
            }
        }
        "relocate" => {
            let idx = find_inst(&get_str(request, "name", rw)?)?;
            let required = get_i64(request, "required_nodes", rw)? as usize;
            let from = get_strs(request, "relocate_from", rw)?
                .iter()
                .map(|n| {
                    cluster
                        .nodes
                        .iter()
                        .position(|x| &x.name == n)
                        .ok_or_else(|| Error::Parse(format!("Unknown node '{n}'")))
                })
                .collect::<Result<Vec<_>>>()?;
            RequestKind::Relocate {
                idx,
                required,
                from,
            }
        }
        "change-group" => {
            let idxs = get_strs(request, "instances", rw)?
                .iter()
                .map(|n| find_inst(n))
                .collect::<Result<Vec<_>>>()?;
            let targets = get_strs(request, "target_groups", rw)?
                .iter()
                .map(|u| {
                    cluster
                        .group_by_uuid(u)
                        .or_else(|| cluster.group_by_name(u))
                        .ok_or_else(|| Error::Parse(format!("Unknown group '{u}'")))
                })
                .collect::<Result<Vec<_>>>()?;
            RequestKind::ChangeGroup { idxs, targets }
        }
        "node-evacuate" => {
            let idxs = get_strs(request, "instances", rw)?
                .iter()
                .map(|n| find_inst(n))
                .collect::<Result<Vec<_>>>()?;
            let mode = EvacMode::from_raw(&get_str(request, "evac_mode", rw)?)?;
            RequestKind::NodeEvacuate { idxs, mode }
        }
        "multi-allocate" => {
            let group = opt_str(request, "group_name");
            let arr = get(request, "instances", rw)?
                .as_array()
                .ok_or_else(|| Error::Parse("multi-allocate: instances is not a list".into()))?;
            let mut reqs = vec![];
            for r in arr {
                reqs.push(parse_alloc_request(
                    cluster,
                    obj(r, "multi-allocate instance")?,
                    group.clone(),
                )?);
            }
            RequestKind::MultiAllocate(reqs)
        }
        "allocate-secondary" => RequestKind::AllocateSecondary {
            idx: find_inst(&get_str(request, "name", rw)?)?,
        },
        t => return Err(Error::Parse(format!("Invalid request type '{t}'"))),
    };
    Ok(kind)
}

/// The opcodes of one move (htools' `iMoveToJob`), in Ganeti's JSON form.
pub fn move_opcodes(c: &Cluster, idx: usize, mv: IMove) -> Vec<Value> {
    crate::jobs::move_ops(c, idx, mv)
        .iter()
        .map(MoveOp::to_json)
        .collect()
}

fn evac_answer(c: &Cluster, es: &EvacSolution) -> (String, EvacAnswer) {
    let answer = EvacAnswer {
        moved: es
            .moved
            .iter()
            .map(|(i, g, ns)| {
                (
                    c.instances[*i].name.clone(),
                    c.groups[*g].name.clone(),
                    ns.iter().map(|&n| c.nodes[n].name.clone()).collect(),
                )
            })
            .collect(),
        failed: es
            .failed
            .iter()
            .map(|(i, m)| (c.instances[*i].name.clone(), m.clone()))
            .collect(),
        jobs: es
            .jobs
            .iter()
            .map(|(i, ops)| {
                ops.iter()
                    .flat_map(|m| crate::jobs::move_ops(c, *i, *m))
                    .collect()
            })
            .collect(),
    };
    let info = format!(
        "{} instances failed to move and {} were moved successfully",
        es.failed.len(),
        es.moved.len()
    );
    (info, answer)
}

/// What a request found, typed (in-process callers use it as is; [`Answer::to_json`] is
/// Ganeti's `result`).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `allocate`, `relocate`: node names, primary first.
    Nodes(Vec<String>),
    /// `allocate-secondary`: the node name.
    Node(String),
    /// `node-evacuate`, `change-group`.
    Evac(EvacAnswer),
    /// `multi-allocate`: (instance, nodes) allocated, (instance, why) failed.
    Multi {
        ok: Vec<(String, Vec<String>)>,
        failed: Vec<(String, String)>,
    },
}

impl Answer {
    /// Ganeti's `result` value.
    pub fn to_json(&self) -> Value {
        match self {
            Answer::Nodes(ns) => json!(ns),
            Answer::Node(n) => json!(n),
            Answer::Evac(e) => e.to_json(),
            Answer::Multi { ok, failed } => {
                let ok: Vec<Value> = ok.iter().map(|(n, ns)| json!([n, ns])).collect();
                let failed: Vec<Value> = failed.iter().map(|(n, e)| json!([n, e])).collect();
                json!([ok, failed])
            }
        }
    }
}

/// Parse an iallocator request already read as JSON (in-process callers).
pub fn parse_request_value(v: &Value) -> Result<Request> {
    let top = obj(v, "iallocator message")?;
    let request = obj(
        get(top, "request", "invalid iallocator message")?,
        "request",
    )?;
    let cluster = parse_cluster_part(top)?;
    let kind = parse_kind(&cluster, request)?;
    Ok(Request { kind, cluster })
}

/// Run a request; returns (success, info, result) and the final cluster.
pub fn run_request(
    req: Request,
    opts: &AllocOptions,
) -> (std::result::Result<(String, Value), String>, Cluster) {
    let (r, c) = solve(req, opts);
    (r.map(|(info, a)| (info, a.to_json())), c)
}

/// Run a request; returns (info, typed answer) or why it failed, and the final cluster.
pub fn solve(
    req: Request,
    opts: &AllocOptions,
) -> (std::result::Result<(String, Answer), String>, Cluster) {
    let mut c = req.cluster;
    let r = match req.kind {
        RequestKind::Allocate {
            inst,
            required,
            group,
            restrict,
        } => {
            let mut o = opts.clone();
            if o.restrict_to_nodes.is_none() {
                o.restrict_to_nodes = restrict;
            }
            let res = match &group {
                None => alloc::allocate(&c, &inst, required, &o),
                Some(g) => alloc::allocate_in_group(&c, g, &inst, required, &o),
            };
            res.and_then(|ga| {
                let info = ga.log.join(", ");
                match &ga.solution.best {
                    None => Err(info),
                    Some((_, p, s, _)) => {
                        let mut names = vec![c.nodes[*p].name.clone()];
                        if let Some(s) = s {
                            names.push(c.nodes[*s].name.clone());
                        }
                        alloc::commit_alloc(&mut c, &inst, &ga.solution);
                        Ok((info, Answer::Nodes(names)))
                    }
                }
            })
        }
        RequestKind::Relocate {
            idx,
            required,
            from,
        } => alloc::relocate(&mut c, idx, required, &from, opts).map(|ns| {
            (
                "success".to_string(),
                Answer::Nodes(ns.iter().map(|&n| c.nodes[n].name.clone()).collect()),
            )
        }),
        RequestKind::NodeEvacuate { idxs, mode } => {
            let es = alloc::node_evacuate(&mut c, &idxs, mode, opts);
            let (info, a) = evac_answer(&c, &es);
            Ok((info, Answer::Evac(a)))
        }
        RequestKind::ChangeGroup { idxs, targets } => {
            let es = alloc::change_group(&mut c, &idxs, &targets, opts);
            let (info, a) = evac_answer(&c, &es);
            Ok((info, Answer::Evac(a)))
        }
        RequestKind::MultiAllocate(reqs) => alloc::multi_allocate(&mut c, &reqs, opts).map(|res| {
            let ok: Vec<(String, Vec<String>)> = res
                .iter()
                .filter_map(|(n, r)| {
                    r.as_ref().ok().map(|ns| {
                        let names = ns.iter().map(|&x| c.nodes[x].name.clone()).collect();
                        (n.clone(), names)
                    })
                })
                .collect();
            let failed: Vec<(String, String)> = res
                .iter()
                .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.clone(), e.clone())))
                .collect();
            let info = format!(
                "{} instances failed to allocate and {} were allocated successfully",
                failed.len(),
                ok.len()
            );
            (info, Answer::Multi { ok, failed })
        }),
        RequestKind::AllocateSecondary { idx } => alloc::allocate_secondary(&mut c, idx, opts)
            .map(|(info, s)| (info, Answer::Node(c.nodes[s].name.clone()))),
    };
    (r, c)
}

/// Format the answer exactly like hail.
pub fn format_response(r: &std::result::Result<(String, Value), String>) -> String {
    let v = match r {
        Ok((info, result)) => {
            json!({"success": true, "info": format!("Request successful: {info}"), "result": result})
        }
        Err(msg) => {
            json!({"success": false, "info": format!("Request failed: {msg}"), "result": []})
        }
    };
    v.to_string()
}

/// Parse, run and format a request (the whole iallocator pipeline).
pub fn answer(body: &str, opts: &AllocOptions) -> Result<String> {
    let req = parse_request(body)?;
    let (r, _) = run_request(req, opts);
    Ok(format_response(&r))
}
