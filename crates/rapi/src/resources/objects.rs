//! Nodes, instances and groups as Ganeti's RAPI shows them: the lists, one object, and the
//! fields Maguey's query lacks computed from the config.

use crate::{ApiError, ApiResult, Rapi, Req};
use maguey_model::ConfigData;
use maguey_ops::query::{field_list, query, QueryRequest, Resource};
use serde_json::{json, Map, Value};

/// Ganeti's instance fields of `/2/instances?bulk=1` and `/2/instances/I`.
pub(super) const I_FIELDS: &[&str] = &[
    "name",
    "admin_state",
    "os",
    "pnode",
    "snodes",
    "disk_template",
    "nic.ips",
    "nic.macs",
    "nic.modes",
    "nic.uuids",
    "nic.names",
    "nic.links",
    "nic.networks",
    "nic.networks.names",
    "nic.bridges",
    "network_port",
    "disk.sizes",
    "disk.spindles",
    "disk_usage",
    "disk.uuids",
    "disk.names",
    "beparams",
    "hvparams",
    "oper_state",
    "oper_ram",
    "oper_vcpus",
    "status",
    "custom_hvparams",
    "custom_beparams",
    "custom_nicparams",
    "custom_osparams",
    "ctime",
    "mtime",
    "uuid",
    "serial_no",
    "tags",
];

/// Ganeti's node fields of `/2/nodes?bulk=1` and `/2/nodes/N`.
pub(super) const N_FIELDS: &[&str] = &[
    "name",
    "offline",
    "master_candidate",
    "drained",
    "dtotal",
    "dfree",
    "sptotal",
    "spfree",
    "mtotal",
    "mnode",
    "mfree",
    "pinst_cnt",
    "sinst_cnt",
    "ctotal",
    "cnos",
    "cnodes",
    "csockets",
    "pip",
    "sip",
    "role",
    "pinst_list",
    "sinst_list",
    "master_capable",
    "vm_capable",
    "ndparams",
    "group.uuid",
    "ctime",
    "mtime",
    "uuid",
    "serial_no",
    "tags",
    // Maguey: the node's room (failure domain); Ganeti's clients ignore unknown fields.
    "room",
];

/// Ganeti's group fields.
pub(super) const G_FIELDS: &[&str] = &[
    "alloc_policy",
    "name",
    "node_cnt",
    "node_list",
    "ipolicy",
    "custom_ipolicy",
    "diskparams",
    "custom_diskparams",
    "ndparams",
    "custom_ndparams",
    "ctime",
    "mtime",
    "uuid",
    "serial_no",
    "tags",
];

/// `GET /2/nodes`, `/2/instances`, `/2/groups`: with `?bulk=1` every object with `fields`,
/// otherwise Ganeti's list of `{key: name, "uri": ...}`.
pub(super) async fn list(
    rapi: &Rapi,
    req: &Req,
    what: Resource,
    fields: &[&str],
    prefix: &str,
    key: &str,
) -> ApiResult {
    if req.flag("bulk", false)? {
        Ok(Value::Array(
            ganeti_objects(rapi, what, vec![], fields).await?,
        ))
    } else {
        Ok(uri_list(
            names(&rapi.inner.master.config.snapshot(), what),
            prefix,
            key,
        ))
    }
}

pub(super) fn names(cfg: &ConfigData, what: Resource) -> Vec<String> {
    let mut v: Vec<String> = match what {
        Resource::Node => cfg.nodes.values().map(|n| n.name.clone()).collect(),
        Resource::Instance => cfg.instances.values().map(|i| i.name.clone()).collect(),
        Resource::Group => cfg.nodegroups.values().map(|g| g.name.clone()).collect(),
        Resource::Network => cfg.networks.values().map(|n| n.name.clone()).collect(),
    };
    v.sort();
    v
}

/// Ganeti's `BuildUriList`.
fn uri_list(names: Vec<String>, prefix: &str, key: &str) -> Value {
    Value::Array(
        names
            .into_iter()
            .map(|n| {
                let uri = format!(
                    "{prefix}/{}",
                    percent_encoding::utf8_percent_encode(&n, percent_encoding::NON_ALPHANUMERIC)
                );
                json!({ key: n, "uri": uri })
            })
            .collect(),
    )
}

pub(super) fn role_name(letter: &str) -> &'static str {
    match letter {
        "M" => "master",
        "C" => "master-candidate",
        "D" => "drained",
        "O" => "offline",
        _ => "regular",
    }
}

/// Objects with Ganeti's field names: fields the query knows come from it (live data
/// included); the others are computed from the config object.
async fn ganeti_objects(
    rapi: &Rapi,
    what: Resource,
    names: Vec<String>,
    fields: &[&str],
) -> Result<Vec<Value>, ApiError> {
    let known = field_list(what);
    let queried: Vec<String> = fields
        .iter()
        .filter(|f| known.iter().any(|(n, _)| n == *f))
        .map(|f| f.to_string())
        .collect();
    let mut q = queried.clone();
    if !q.iter().any(|f| f == "name") {
        q.push("name".into());
    }
    let res = query(
        &rapi.inner.master,
        &QueryRequest {
            what,
            names,
            fields: q.clone(),
        },
    )
    .await
    .map_err(|e| {
        if e.contains("is not known") {
            ApiError::not_found(e)
        } else {
            ApiError::bad_request(e)
        }
    })?;
    let cfg = rapi.inner.master.config.snapshot();
    let name_idx = q.iter().position(|f| f == "name").unwrap_or(0);
    let mut out = Vec::with_capacity(res.rows.len());
    for row in res.rows {
        let name = row
            .get(name_idx)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let mut obj = Map::new();
        for f in fields {
            let v = match q.iter().position(|x| x == f) {
                Some(i) => row.get(i).cloned().unwrap_or(Value::Null),
                None => extra_field(&cfg, what, &name, f, &q, &row),
            };
            obj.insert(f.to_string(), v);
        }
        if what == Resource::Instance {
            // Ganeti keeps `memory` beside `maxmem` for old clients.
            if let Some(Value::Object(be)) = obj.get_mut("beparams") {
                if let Some(m) = be.get("maxmem").cloned() {
                    be.insert("memory".into(), m);
                }
            }
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

pub(super) async fn one_object(
    rapi: &Rapi,
    what: Resource,
    name: &str,
    fields: &[&str],
) -> ApiResult {
    let cfg = rapi.inner.master.config.snapshot();
    let exists = match what {
        Resource::Node => cfg.node_by_name(name).is_some(),
        Resource::Instance => cfg.instance_by_name(name).is_some(),
        Resource::Group => cfg.group_by_name(name).is_some(),
        Resource::Network => cfg.network_by_name(name).is_some(),
    };
    if !exists {
        let kind = match what {
            Resource::Node => "node",
            Resource::Instance => "instance",
            Resource::Group => "node group",
            Resource::Network => "network",
        };
        return Err(ApiError::not_found(format!("{kind} '{name}' is not known")));
    }
    let mut v = ganeti_objects(rapi, what, vec![name.to_string()], fields).await?;
    v.pop()
        .ok_or_else(|| ApiError::not_found(format!("'{name}' is not known")))
}

/// Ganeti fields Maguey's query does not have, computed from the config.
fn extra_field(
    cfg: &ConfigData,
    what: Resource,
    name: &str,
    f: &str,
    q: &[String],
    row: &[Value],
) -> Value {
    let from_row = |field: &str| {
        q.iter()
            .position(|x| x == field)
            .and_then(|i| row.get(i).cloned())
            .unwrap_or(Value::Null)
    };
    match what {
        Resource::Node => {
            let Some(n) = cfg.node_by_name(name) else {
                return Value::Null;
            };
            match f {
                "sptotal" => from_row("dtotal"),
                "spfree" => from_row("dfree"),
                "ndparams" => {
                    let mut p = cfg.cluster.ndparams.clone();
                    if let Some(g) = cfg.nodegroups.get(&n.group) {
                        p.extend(g.ndparams.clone());
                    }
                    p.extend(n.ndparams.clone());
                    json!(p)
                }
                _ => Value::Null,
            }
        }
        Resource::Instance => {
            let Some(i) = cfg.instance_by_name(name) else {
                return Value::Null;
            };
            match f {
                "nic.uuids" => json!(i.nics.iter().map(|n| n.uuid.clone()).collect::<Vec<_>>()),
                "nic.names" => json!(i.nics.iter().map(|n| n.name.clone()).collect::<Vec<_>>()),
                "nic.networks" => {
                    json!(i.nics.iter().map(|n| n.network.clone()).collect::<Vec<_>>())
                }
                "nic.networks.names" => {
                    json!(i.nics.iter().map(|_| Value::Null).collect::<Vec<_>>())
                }
                "nic.bridges" => {
                    let modes = from_row("nic.modes");
                    let links = from_row("nic.links");
                    let m = modes.as_array().cloned().unwrap_or_default();
                    let l = links.as_array().cloned().unwrap_or_default();
                    json!(m
                        .iter()
                        .zip(l.iter())
                        .map(|(m, l)| {
                            if m.as_str() == Some(maguey_model::NicMode::Bridged.as_str()) {
                                l.clone()
                            } else {
                                Value::Null
                            }
                        })
                        .collect::<Vec<_>>())
                }
                "network_port" => Value::Null,
                "disk.spindles" => json!(i.disks.iter().map(|_| Value::Null).collect::<Vec<_>>()),
                "disk.names" => json!(i.disks.iter().map(|d| d.name.clone()).collect::<Vec<_>>()),
                "custom_hvparams" => json!(i.hvparams),
                "custom_beparams" => json!(i.beparams),
                "custom_osparams" => json!(i.osparams),
                "custom_nicparams" => {
                    json!(i
                        .nics
                        .iter()
                        .map(|n| n.nicparams.clone())
                        .collect::<Vec<_>>())
                }
                _ => Value::Null,
            }
        }
        Resource::Group => {
            let Some(g) = cfg.group_by_name(name) else {
                return Value::Null;
            };
            match f {
                "ndparams" => {
                    let mut p = cfg.cluster.ndparams.clone();
                    p.extend(g.ndparams.clone());
                    json!(p)
                }
                "custom_ndparams" => json!(g.ndparams),
                _ => Value::Null,
            }
        }
        Resource::Network => Value::Null,
    }
}
