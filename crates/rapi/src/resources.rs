//! The RAPI resources: thin translators onto the job queue, the query functions and the config
//! snapshot. Shapes follow Ganeti's `rlib2.py`.

use crate::openapi;
use crate::{ApiError, ApiResult, Rapi, Req, RAPI_VERSION};
use axum::http::{Method, StatusCode};
use maguey_model::{ConfigData, Job, JobStatus, LogEntry, OpCode};
use maguey_ops::query::{field_list, query, QueryRequest, Resource};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Ganeti's instance fields of `/2/instances?bulk=1` and `/2/instances/I`.
pub const I_FIELDS: &[&str] = &[
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
pub const N_FIELDS: &[&str] = &[
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
];

/// Ganeti's group fields.
pub const G_FIELDS: &[&str] = &[
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

/// Ganeti's job fields.
pub const J_FIELDS_BULK: &[&str] = &[
    "id",
    "ops",
    "status",
    "summary",
    "opstatus",
    "received_ts",
    "start_ts",
    "end_ts",
];
pub const J_FIELDS: &[&str] = &[
    "id",
    "ops",
    "status",
    "summary",
    "opstatus",
    "received_ts",
    "start_ts",
    "end_ts",
    "oplog",
    "opresult",
];
/// Every job field `/2/jobs/ID/wait` accepts.
const J_ALL_FIELDS: &[&str] = &[
    "id",
    "ops",
    "status",
    "summary",
    "opstatus",
    "received_ts",
    "start_ts",
    "end_ts",
    "oplog",
    "opresult",
    "priority",
    "archived",
    "oppriority",
    "opstart",
    "opexec",
    "opend",
];

/// Seconds a `/2/jobs/ID/wait` waits for a change (Ganeti's `_WFJC_TIMEOUT`).
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

fn not_implemented(what: &str) -> ApiError {
    ApiError::not_implemented(format!("{what} is not implemented in Maguey yet"))
}

/// Routes a parsed request.
pub async fn dispatch(rapi: &Rapi, req: &Req) -> ApiResult {
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let get = req.method == Method::GET;
    let put = req.method == Method::PUT;
    let post = req.method == Method::POST;
    let delete = req.method == Method::DELETE;
    let r = &rapi.inner;
    let reply = match segs.as_slice() {
        [] | ["2"] if get => Ok(Value::Null),
        ["version"] if get => Ok(json!(RAPI_VERSION)),
        ["openapi.json"] if get => Ok(openapi::document()),
        ["2", "info"] if get => Ok(cluster_info(&r.master.config.snapshot())),
        ["2", "features"] if get => Ok(json!([
            "instance-create-reqv1",
            "instance-reinstall-reqv1",
            "node-migrate-reqv1",
            "node-evac-res1"
        ])),
        ["2", "os"] if get => os_list(rapi, req).await,
        ["2", "tags"] if get => Ok(json!(r.master.config.snapshot().cluster.tags)),
        ["2", "tags"] if put || delete => tags_change(rapi, req, "cluster", None),
        ["2", "jobs"] if get => jobs_list(rapi, req),
        ["2", "jobs", id] if get => {
            let job = find_job(rapi, id)?;
            Ok(job_fields(&job, J_FIELDS))
        }
        ["2", "jobs", id] if delete => {
            let id = parse_job_id(id)?;
            no_dry_run(req)?;
            match r.queue.cancel(id) {
                Ok(outcome) => Ok(json!([
                    true,
                    format!("job {id}: {outcome:?}").to_lowercase()
                ])),
                Err(maguey_jobs::JobError::NotFound(_)) => {
                    Err(ApiError::not_found(format!("job {id} not found")))
                }
                Err(e) => Ok(json!([false, e.to_string()])),
            }
        }
        ["2", "jobs", id, "wait"] if get => job_wait(rapi, req, id).await,
        ["2", "nodes"] if get => {
            if req.flag("bulk", false)? {
                Ok(Value::Array(
                    ganeti_objects(rapi, Resource::Node, vec![], N_FIELDS).await?,
                ))
            } else {
                Ok(uri_list(
                    names(&r.master.config.snapshot(), Resource::Node),
                    "/2/nodes",
                    "id",
                ))
            }
        }
        ["2", "nodes", n] if get => one_object(rapi, Resource::Node, n, N_FIELDS).await,
        ["2", "nodes", n, "role"] if get => {
            let cfg = r.master.config.snapshot();
            let node = cfg
                .node_by_name(n)
                .ok_or_else(|| ApiError::not_found(format!("node '{n}' is not known")))?;
            Ok(json!(role_name(node.role(&cfg.cluster.master_node))))
        }
        ["2", "nodes", n, "role"] if put => node_set_role(rapi, req, n),
        ["2", "nodes", n, "modify"] if post => node_modify(rapi, req, n),
        ["2", "nodes", n, "evacuate"] if post => {
            no_dry_run(req)?;
            node_exists(rapi, n)?;
            let mut b = body_object(
                req,
                &["iallocator", "remote_node", "mode", "early_release"],
                &[],
            )?;
            if let Some(m) = req.query_str("mode") {
                b.entry("mode").or_insert(json!(m));
            }
            b.insert("node_name".into(), json!(n));
            submit_op(rapi, "OP_NODE_EVACUATE", b)
        }
        ["2", "nodes", n, "migrate"] if post => {
            no_dry_run(req)?;
            node_exists(rapi, n)?;
            let mut b = body_object(
                req,
                &[
                    "mode",
                    "live",
                    "target_node",
                    "iallocator",
                    "ignore_ipolicy",
                ],
                &[],
            )?;
            // Pre-2.5 clients send the mode as query arguments.
            if let Some(m) = req.query_str("mode") {
                b.entry("mode").or_insert(json!(m));
            }
            if req.query_str("live").is_some() {
                b.entry("live").or_insert(json!(req.flag("live", true)?));
            }
            b.insert("node_name".into(), json!(n));
            submit_op(rapi, "OP_NODE_MIGRATE", b)
        }
        ["2", "nodes", n, "tags"] if get => get_tags(rapi, "node", n),
        ["2", "nodes", n, "tags"] if put || delete => tags_change(rapi, req, "node", Some(n)),
        ["2", "groups"] if get => {
            if req.flag("bulk", false)? {
                Ok(Value::Array(
                    ganeti_objects(rapi, Resource::Group, vec![], G_FIELDS).await?,
                ))
            } else {
                Ok(uri_list(
                    names(&r.master.config.snapshot(), Resource::Group),
                    "/2/groups",
                    "name",
                ))
            }
        }
        ["2", "groups", g] if get => one_object(rapi, Resource::Group, g, G_FIELDS).await,
        ["2", "groups", g, "tags"] if get => get_tags(rapi, "nodegroup", g),
        ["2", "groups", g, "tags"] if put || delete => tags_change(rapi, req, "nodegroup", Some(g)),
        ["2", "instances"] if get => {
            if req.flag("bulk", false)? {
                Ok(Value::Array(
                    ganeti_objects(rapi, Resource::Instance, vec![], I_FIELDS).await?,
                ))
            } else {
                Ok(uri_list(
                    names(&r.master.config.snapshot(), Resource::Instance),
                    "/2/instances",
                    "id",
                ))
            }
        }
        ["2", "instances"] if post => instance_create(rapi, req),
        ["2", "instances", i] if get => one_object(rapi, Resource::Instance, i, I_FIELDS).await,
        ["2", "instances", i] if delete => {
            no_dry_run(req)?;
            let mut b = body_object(req, &["shutdown_timeout", "ignore_failures"], &[])?;
            b.insert("ignore_failures".into(), json!(false));
            submit(rapi, "OP_INSTANCE_REMOVE", i, b)
        }
        ["2", "instances", i, "info"] if get => {
            let static_only = req.flag("static", false)?;
            instance_exists(rapi, i)?;
            let mut b = Map::new();
            b.insert("instances".into(), json!([i]));
            b.insert("static".into(), json!(static_only));
            submit_op(rapi, "OP_INSTANCE_QUERY_DATA", b)
        }
        ["2", "instances", i, "startup"] if put => {
            no_dry_run(req)?;
            let mut b = Map::new();
            b.insert("force".into(), json!(req.flag("force", false)?));
            b.insert("no_remember".into(), json!(req.flag("no_remember", false)?));
            submit(rapi, "OP_INSTANCE_STARTUP", i, b)
        }
        ["2", "instances", i, "shutdown"] if put => {
            no_dry_run(req)?;
            let mut b = body_object(req, &["timeout"], &[])?;
            b.insert("no_remember".into(), json!(req.flag("no_remember", false)?));
            submit(rapi, "OP_INSTANCE_SHUTDOWN", i, b)
        }
        ["2", "instances", i, "reboot"] if post => {
            no_dry_run(req)?;
            let mut b = body_object(req, &["shutdown_timeout"], &["ignore_secondaries"])?;
            let t = req.query_str("type").unwrap_or("hard");
            if !["soft", "hard", "full"].contains(&t) {
                return Err(ApiError::bad_request(format!(
                    "invalid reboot type '{t}' (soft, hard, full)"
                )));
            }
            b.insert("reboot_type".into(), json!(t));
            submit(rapi, "OP_INSTANCE_REBOOT", i, b)
        }
        ["2", "instances", i, "modify"] if put => instance_modify(rapi, req, i),
        ["2", "instances", i, "migrate"] if put => {
            no_dry_run(req)?;
            let b = body_object(
                req,
                &[
                    "mode",
                    "cleanup",
                    "target_node",
                    "iallocator",
                    "allow_failover",
                    "ignore_ipolicy",
                    "allow_runtime_changes",
                ],
                &[],
            )?;
            submit(rapi, "OP_INSTANCE_MIGRATE", i, b)
        }
        ["2", "instances", i, "failover"] if put => {
            no_dry_run(req)?;
            let b = body_object(
                req,
                &[
                    "iallocator",
                    "ignore_consistency",
                    "target_node",
                    "shutdown_timeout",
                    "ignore_ipolicy",
                ],
                &[],
            )?;
            submit(rapi, "OP_INSTANCE_FAILOVER", i, b)
        }
        ["2", "instances", i, "activate-disks"] if put => {
            no_dry_run(req)?;
            let mut b = Map::new();
            b.insert("ignore_size".into(), json!(req.flag("ignore_size", false)?));
            submit(rapi, "OP_INSTANCE_ACTIVATE_DISKS", i, b)
        }
        ["2", "instances", i, "deactivate-disks"] if put => {
            no_dry_run(req)?;
            let mut b = Map::new();
            b.insert("force".into(), json!(req.flag("force", false)?));
            submit(rapi, "OP_INSTANCE_DEACTIVATE_DISKS", i, b)
        }
        ["2", "instances", i, "rename"] if put => {
            no_dry_run(req)?;
            let b = body_object(req, &["new_name", "ip_check", "name_check"], &[])?;
            if !b.contains_key("new_name") {
                return Err(ApiError::bad_request("missing 'new_name'"));
            }
            submit(rapi, "OP_INSTANCE_RENAME", i, b)
        }
        ["2", "instances", i, "disk", idx, "grow"] if post => {
            no_dry_run(req)?;
            let disk: usize = idx.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid disk index '{idx}' (0, 1, ...)"))
            })?;
            let mut b = body_object(req, &["amount", "absolute", "wait_for_sync"], &[])?;
            match b.get("amount") {
                Some(v) if v.as_u64().is_some_and(|a| a > 0) => {}
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "'amount' must be a positive integer (MiB), not {v}"
                    )))
                }
                None => return Err(ApiError::bad_request("missing 'amount' (MiB)")),
            }
            b.insert("disk".into(), json!(disk));
            submit(rapi, "OP_INSTANCE_GROW_DISK", i, b)
        }
        ["2", "instances", i, "replace-disks"] if post => {
            no_dry_run(req)?;
            let mut b = body_object(
                req,
                &[
                    "mode",
                    "disks",
                    "remote_node",
                    "iallocator",
                    "early_release",
                    "ignore_ipolicy",
                ],
                &[],
            )?;
            // Older clients send the arguments in the query string.
            for k in ["mode", "remote_node", "iallocator", "disks"] {
                if let (false, Some(v)) = (b.contains_key(k), req.query_str(k)) {
                    b.insert(k.into(), json!(v));
                }
            }
            if !b.contains_key("early_release") && req.query_str("early_release").is_some() {
                b.insert(
                    "early_release".into(),
                    json!(req.flag("early_release", false)?),
                );
            }
            b.entry("mode").or_insert(json!("replace_auto"));
            disk_list(&mut b, "disks")?;
            submit(rapi, "OP_INSTANCE_REPLACE_DISKS", i, b)
        }
        ["2", "instances", i, "recreate-disks"] if post => {
            no_dry_run(req)?;
            let mut b = body_object(req, &["disks", "nodes", "iallocator"], &[])?;
            disk_list(&mut b, "disks")?;
            submit(rapi, "OP_INSTANCE_RECREATE_DISKS", i, b)
        }
        ["2", "instances", i, "reinstall"] if post => instance_reinstall(rapi, req, i),
        ["2", "instances", i, "console"] if get => instance_console(rapi, i).await,
        ["2", "instances", i, "tags"] if get => get_tags(rapi, "instance", i),
        ["2", "instances", i, "tags"] if put || delete => {
            tags_change(rapi, req, "instance", Some(i))
        }
        ["2", "query", res] if get => {
            let fields = query_fields_arg(req)?
                .ok_or_else(|| ApiError::bad_request("missing 'fields' query argument"))?;
            query2(rapi, res, fields).await
        }
        ["2", "query", res] if put => {
            let b = body_object(req, &["fields"], &["qfilter", "filter"])?;
            let fields = match b.get("fields") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(String::from)
                            .ok_or_else(|| ApiError::bad_request("'fields' must be strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(ApiError::bad_request("'fields' must be a list")),
                None => query_fields_arg(req)?
                    .ok_or_else(|| ApiError::bad_request("missing 'fields'"))?,
            };
            query2(rapi, res, fields).await
        }
        ["2", "query", res, "fields"] if get => {
            let what = query_resource(res)?;
            let wanted = query_fields_arg(req)?;
            let defs: Vec<Value> = match wanted {
                None => field_list(what)
                    .iter()
                    .map(|(n, d)| field_def(n, d))
                    .collect(),
                Some(ws) => ws.iter().map(|w| field_def_named(what, w)).collect(),
            };
            Ok(json!({ "fields": defs }))
        }
        _ => Err(unrouted(req)),
    }?;
    Ok(reply)
}

/// 404 for unknown paths, 405 for a wrong method, 501 for Ganeti resources Maguey lacks.
fn unrouted(req: &Req) -> ApiError {
    let routes = openapi::find(&req.segs);
    if routes.is_empty() {
        return ApiError::not_found(format!("no resource at /{}", req.segs.join("/")));
    }
    match routes.iter().find(|r| r.method == req.method.as_str()) {
        Some(r) if !r.implemented => not_implemented(&format!("{} {}", r.method, r.path)),
        _ => {
            let allowed: Vec<&str> = routes.iter().map(|r| r.method).collect();
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "method {} is not supported here (allowed: {})",
                    req.method,
                    allowed.join(", ")
                ),
            )
        }
    }
}

fn no_dry_run(req: &Req) -> Result<(), ApiError> {
    if req.flag("dry-run", false)? {
        return Err(not_implemented("dry-run"));
    }
    Ok(())
}

/// Fields every Ganeti opcode accepts: harmless ones are ignored; `dry_run` and `depends`
/// are not supported.
const OPCODE_COMMON: &[&str] = &["comment", "debug_level", "priority", "reason"];

/// The body as an object with only `allowed` keys (plus the common opcode fields, ignored).
/// Keys in `unsupported` with a non-empty value answer 501; other keys 400.
fn body_object(
    req: &Req,
    allowed: &[&str],
    unsupported: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let obj = match &req.body {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ))
        }
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if allowed.contains(&k.as_str()) {
            out.insert(k, v);
        } else if OPCODE_COMMON.contains(&k.as_str()) {
            continue;
        } else if k == "dry_run" || k == "depends" || unsupported.contains(&k.as_str()) {
            if is_empty(&v) {
                continue;
            }
            return Err(not_implemented(&format!("the field '{k}'")));
        } else {
            return Err(ApiError::bad_request(format!("unknown field '{k}'")));
        }
    }
    Ok(out)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Builds an opcode from JSON (so defaults apply) and submits it; answers the job id string.
fn submit_op(rapi: &Rapi, op_id: &str, mut fields: Map<String, Value>) -> ApiResult {
    fields.insert("OP_ID".into(), json!(op_id));
    let op: OpCode = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("invalid parameters for {op_id}: {e}")))?;
    let id = rapi
        .inner
        .queue
        .submit(vec![op], 0)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(json!(id.to_string()))
}

/// As [`submit_op`], for an opcode on one instance (404 if unknown).
fn submit(rapi: &Rapi, op_id: &str, instance: &str, mut fields: Map<String, Value>) -> ApiResult {
    instance_exists(rapi, instance)?;
    fields.insert("instance_name".into(), json!(instance));
    submit_op(rapi, op_id, fields)
}

fn instance_exists(rapi: &Rapi, name: &str) -> Result<(), ApiError> {
    if rapi
        .inner
        .master
        .config
        .snapshot()
        .instance_by_name(name)
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "instance '{name}' is not known"
        )));
    }
    Ok(())
}

fn node_exists(rapi: &Rapi, name: &str) -> Result<(), ApiError> {
    if rapi
        .inner
        .master
        .config
        .snapshot()
        .node_by_name(name)
        .is_none()
    {
        return Err(ApiError::not_found(format!("node '{name}' is not known")));
    }
    Ok(())
}

fn names(cfg: &ConfigData, what: Resource) -> Vec<String> {
    let mut v: Vec<String> = match what {
        Resource::Node => cfg.nodes.values().map(|n| n.name.clone()).collect(),
        Resource::Instance => cfg.instances.values().map(|i| i.name.clone()).collect(),
        Resource::Group => cfg.nodegroups.values().map(|g| g.name.clone()).collect(),
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

fn role_name(letter: &str) -> &'static str {
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

async fn one_object(rapi: &Rapi, what: Resource, name: &str, fields: &[&str]) -> ApiResult {
    let cfg = rapi.inner.master.config.snapshot();
    let exists = match what {
        Resource::Node => cfg.node_by_name(name).is_some(),
        Resource::Instance => cfg.instance_by_name(name).is_some(),
        Resource::Group => cfg.group_by_name(name).is_some(),
    };
    if !exists {
        let kind = match what {
            Resource::Node => "node",
            Resource::Instance => "instance",
            Resource::Group => "node group",
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
                        .map(|(m, l)| if m == "bridged" {
                            l.clone()
                        } else {
                            Value::Null
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
                "diskparams" | "custom_diskparams" | "custom_ipolicy" => json!({}),
                _ => Value::Null,
            }
        }
    }
}

/// Ganeti's QueryClusterInfo.
fn cluster_info(cfg: &ConfigData) -> Value {
    let c = &cfg.cluster;
    let master = cfg.master_node().map(|n| n.name.clone());
    json!({
        "software_version": maguey_model::VERSION,
        "protocol_version": 2_160_000,
        "config_version": maguey_model::CONFIG_VERSION,
        "os_api_version": 20,
        "export_version": 0,
        "vcs_version": format!("maguey-{}", maguey_model::VERSION),
        "architecture": [if cfg!(target_pointer_width = "64") { "64bit" } else { "32bit" }, std::env::consts::ARCH],
        "name": c.cluster_name,
        "master": master,
        "default_hypervisor": c.enabled_hypervisors.first(),
        "enabled_hypervisors": c.enabled_hypervisors,
        "hvparams": c.hvparams,
        "os_hvp": {},
        "beparams": c.beparams,
        "osparams": c.osparams,
        "ipolicy": {},
        "nicparams": c.nicparams,
        "ndparams": c.ndparams,
        "diskparams": {},
        "candidate_pool_size": c.candidate_pool_size,
        "max_running_jobs": 20,
        "master_netdev": "",
        "master_netmask": 32,
        "use_external_mip_script": false,
        "volume_group_name": null,
        "drbd_usermode_helper": null,
        "file_storage_dir": c.file_storage_dir,
        "shared_file_storage_dir": c.shared_file_storage_dir,
        "maintain_node_health": false,
        "ctime": c.ctime,
        "mtime": c.mtime,
        "uuid": c.uuid,
        "tags": c.tags,
        "uid_pool": [],
        "default_iallocator": c.default_iallocator,
        "default_iallocator_params": {},
        "reserved_lvs": [],
        "primary_ip_version": 4,
        "prealloc_wipe_disks": false,
        "hidden_os": [],
        "blacklisted_os": [],
        "enabled_disk_templates": c.enabled_disk_templates,
        "mac_prefix": c.mac_prefix,
    })
}

async fn os_list(rapi: &Rapi, req: &Req) -> ApiResult {
    let bulk = req.flag("bulk", false)?;
    let oses = maguey_ops::os_diagnose::diagnose(&rapi.inner.master)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot get the OS list: {e}"),
            )
        })?;
    if bulk {
        return Ok(Value::Array(
            oses.iter()
                .map(|o| {
                    json!({
                        "name": o.name,
                        "valid": o.valid,
                        "variants": o.variants,
                        "parameters": o.parameters.iter()
                            .map(|(n, d)| json!({"name": n, "description": d}))
                            .collect::<Vec<_>>(),
                        "api_versions": o.api_versions,
                        "blacklisted": o.blacklisted,
                        "hidden": o.hidden,
                        "trusted": o.trusted,
                    })
                })
                .collect(),
        ));
    }
    // Ganeti's CalculateOSNames: valid OSes, with their variants as NAME+VARIANT.
    let mut out = Vec::new();
    for o in oses
        .iter()
        .filter(|o| o.valid && !o.hidden && !o.blacklisted)
    {
        if o.variants.is_empty() {
            out.push(o.name.clone());
        } else {
            out.extend(o.variants.iter().map(|v| format!("{}+{v}", o.name)));
        }
    }
    Ok(json!(out))
}

fn get_tags(rapi: &Rapi, kind: &str, name: &str) -> ApiResult {
    let cfg = rapi.inner.master.config.snapshot();
    let k = maguey_ops::tags::TagKind::parse(kind).expect("a known kind");
    maguey_ops::tags::object_tags(&cfg, k, Some(name))
        .map(|t| json!(t))
        .map_err(ApiError::not_found)
}

fn tags_change(rapi: &Rapi, req: &Req, kind: &str, name: Option<&str>) -> ApiResult {
    no_dry_run(req)?;
    if let Some(n) = name {
        let cfg = rapi.inner.master.config.snapshot();
        let k = maguey_ops::tags::TagKind::parse(kind).expect("a known kind");
        maguey_ops::tags::object_tags(&cfg, k, Some(n)).map_err(ApiError::not_found)?;
    }
    let tags = req.query_all("tag");
    if tags.is_empty() {
        return Err(ApiError::bad_request(
            "no tags given: use ?tag=TAG (repeatable)",
        ));
    }
    for t in &tags {
        maguey_ops::tags::validate_tag(t).map_err(ApiError::bad_request)?;
    }
    let op = if req.method == Method::PUT {
        "OP_TAGS_SET"
    } else {
        "OP_TAGS_DEL"
    };
    let mut b = Map::new();
    b.insert("kind".into(), json!(kind));
    b.insert("name".into(), json!(name));
    b.insert("tags".into(), json!(tags));
    submit_op(rapi, op, b)
}

fn node_set_role(rapi: &Rapi, req: &Req, node: &str) -> ApiResult {
    node_exists(rapi, node)?;
    let Value::String(role) = &req.body else {
        return Err(ApiError::bad_request(
            "the body must be the role as a JSON string",
        ));
    };
    let (candidate, offline, drained) = match role.as_str() {
        "regular" => (Some(false), Some(false), Some(false)),
        "master-candidate" => (Some(true), None, None),
        "drained" => (None, None, Some(true)),
        "offline" => (None, Some(true), None),
        other => return Err(ApiError::bad_request(format!("Can't set '{other}' role"))),
    };
    let mut b = Map::new();
    b.insert("node_name".into(), json!(node));
    b.insert("master_candidate".into(), json!(candidate));
    b.insert("offline".into(), json!(offline));
    b.insert("drained".into(), json!(drained));
    b.insert("force".into(), json!(req.flag("force", false)?));
    req.flag("auto-promote", false)?;
    submit_op(rapi, "OP_NODE_SET_PARAMS", b)
}

fn node_modify(rapi: &Rapi, req: &Req, node: &str) -> ApiResult {
    node_exists(rapi, node)?;
    let mut b = body_object(
        req,
        &[
            "offline",
            "drained",
            "master_candidate",
            "master_capable",
            "vm_capable",
            "force",
        ],
        &[
            "auto_promote",
            "powered",
            "secondary_ip",
            "ndparams",
            "hv_state",
            "disk_state",
        ],
    )?;
    b.insert("node_name".into(), json!(node));
    submit_op(rapi, "OP_NODE_SET_PARAMS", b)
}

/// Fields of OP_INSTANCE_CREATE Maguey accepts, those it ignores (harmless checks and
/// hints) and Ganeti's fields it does not support yet.
const CREATE_ACCEPTED: &[&str] = &[
    "mode",
    "name",
    "instance_name",
    "disk_template",
    "disks",
    "nics",
    "os",
    "os_type",
    "pnode",
    "snode",
    "iallocator",
    "hypervisor",
    "hvparams",
    "beparams",
    "osparams",
    "start",
    "no_install",
    "tags",
];
const CREATE_IGNORED: &[&str] = &[
    "name_check",
    "ip_check",
    "conflicts_check",
    "wait_for_sync",
    "identify_defaults",
    "opportunistic_locking",
    "force_variant",
    "file_driver",
];
const CREATE_UNSUPPORTED: &[&str] = &[
    "src_node",
    "src_path",
    "source_handshake",
    "source_x509_ca",
    "source_instance_name",
    "source_shutdown_timeout",
    "file_storage_dir",
    "osparams_private",
    "osparams_secret",
    "instance_communication",
    "helper_startup_timeout",
    "helper_shutdown_timeout",
    "compress",
    "forthcoming",
    "commit",
    "pnode_uuid",
    "snode_uuid",
    "remote_node",
];

fn instance_create(rapi: &Rapi, req: &Req) -> ApiResult {
    no_dry_run(req)?;
    let Value::Object(body) = &req.body else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    match body.get("__version__") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Instance creation request version 0 is no longer supported",
            ))
        }
        Some(v) if v.as_i64() == Some(1) => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Unsupported request data version {v}"
            )))
        }
    }
    let mut op = Map::new();
    for (k, v) in body {
        let k = k.as_str();
        if k == "__version__" || CREATE_IGNORED.contains(&k) || OPCODE_COMMON.contains(&k) {
            continue;
        }
        if CREATE_UNSUPPORTED.contains(&k) || k == "dry_run" || k == "depends" {
            if is_empty(v) {
                continue;
            }
            return Err(not_implemented(&format!(
                "the instance creation field '{k}'"
            )));
        }
        if !CREATE_ACCEPTED.contains(&k) {
            return Err(ApiError::bad_request(format!("unknown field '{k}'")));
        }
        let key = match k {
            "name" => "instance_name",
            "os" => "os_type",
            other => other,
        };
        op.insert(key.to_string(), v.clone());
    }
    match op.get("mode").and_then(|m| m.as_str()) {
        None | Some("create") => {}
        Some(m) => return Err(not_implemented(&format!("instance creation mode '{m}'"))),
    }
    if let Some(d) = op.get_mut("disks") {
        *d = convert_list(
            d,
            "disk",
            &["size", "mode", "name"],
            &["spindles", "vg", "metavg", "adopt", "provider", "access"],
        )?;
    }
    if let Some(n) = op.get_mut("nics") {
        *n = convert_list(
            n,
            "nic",
            &["mac", "ip", "mode", "link", "network", "name"],
            &["vlan"],
        )?;
        if let Value::Array(list) = n {
            for nic in list.iter_mut() {
                if let Value::Object(o) = nic {
                    if let Some(b) = o.remove("bridge") {
                        o.entry("link").or_insert(b);
                    }
                }
            }
        }
    }
    if !op.contains_key("instance_name") {
        return Err(ApiError::bad_request("missing field 'name'"));
    }
    if !op.contains_key("disk_template") {
        return Err(ApiError::bad_request("missing field 'disk_template'"));
    }
    submit_op(rapi, "OP_INSTANCE_CREATE", op)
}

/// Checks the disk or NIC dictionaries of a creation request.
fn convert_list(v: &Value, what: &str, ok: &[&str], unsupported: &[&str]) -> ApiResult {
    let Value::Array(items) = v else {
        return Err(ApiError::bad_request(format!("'{what}s' must be a list")));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(ApiError::bad_request(format!(
                "{what} {i} must be an object"
            )));
        };
        let mut m = Map::new();
        for (k, v) in o {
            if ok.contains(&k.as_str()) || (what == "nic" && k == "bridge") {
                let v = if what == "disk" && k == "size" {
                    match v {
                        Value::String(s) => json!(s.trim().parse::<u64>().map_err(|_| {
                            ApiError::bad_request(format!("disk {i}: invalid size '{s}' (MiB)"))
                        })?),
                        other => other.clone(),
                    }
                } else {
                    v.clone()
                };
                m.insert(k.clone(), v);
            } else if unsupported.contains(&k.as_str()) {
                if !is_empty(v) {
                    return Err(not_implemented(&format!("the {what} parameter '{k}'")));
                }
            } else {
                return Err(ApiError::bad_request(format!(
                    "{what} {i}: unknown parameter '{k}'"
                )));
            }
        }
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

fn instance_modify(rapi: &Rapi, req: &Req, inst: &str) -> ApiResult {
    no_dry_run(req)?;
    let mut b = body_object(
        req,
        &[
            "beparams",
            "hvparams",
            "osparams",
            "offline",
            "force",
            "custom_beparams",
            "custom_hvparams",
            "runtime_mem",
            "disk_template",
            "remote_node",
            "wait_for_sync",
        ],
        &[
            "disks",
            "nics",
            "iallocator",
            "os_name",
            "force_variant",
            "osparams_private",
            "pnode",
            "online_inst",
            "offline_inst",
            "conflicts_check",
            "hotplug",
            "hotplug_if_possible",
            "instance_communication",
            "ext_params",
            "file_driver",
            "file_storage_dir",
            "ignore_ipolicy",
            "allow_arbit_params",
            "clear_osparams",
            "clear_osparams_private",
            "remove_osparams",
            "remove_osparams_private",
            "hv_state",
            "disk_state",
            "snode",
        ],
    )?;
    for (from, to) in [
        ("custom_beparams", "beparams"),
        ("custom_hvparams", "hvparams"),
    ] {
        if let Some(v) = b.remove(from) {
            if b.contains_key(to) {
                return Err(ApiError::bad_request(format!(
                    "both '{from}' and '{to}' given"
                )));
            }
            b.insert(to.into(), v);
        }
    }
    submit(rapi, "OP_INSTANCE_SET_PARAMS", inst, b)
}

async fn instance_console(rapi: &Rapi, name: &str) -> ApiResult {
    instance_exists(rapi, name)?;
    let res = query(
        &rapi.inner.master,
        &QueryRequest {
            what: Resource::Instance,
            names: vec![name.to_string()],
            fields: vec!["oper_state".into(), "hypervisor".into()],
        },
    )
    .await
    .map_err(ApiError::not_found)?;
    let row = res.rows.first().cloned().unwrap_or_default();
    let running = row.first().and_then(|v| v.as_bool()).unwrap_or(false);
    if !running {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Instance console unavailable",
        ));
    }
    match row.get(1).and_then(|v| v.as_str()) {
        Some("fake") => Ok(json!({
            "instance": name,
            "kind": "message",
            "message": "Console not available for fake hypervisor",
        })),
        Some(hv) => Err(not_implemented(&format!(
            "the console of {hv} instances through the API"
        ))),
        None => Err(ApiError::not_found(format!(
            "instance '{name}' is not known"
        ))),
    }
}

fn query_resource(res: &str) -> Result<Resource, ApiError> {
    match res {
        "instance" => Ok(Resource::Instance),
        "node" => Ok(Resource::Node),
        "group" => Ok(Resource::Group),
        "network" | "job" | "export" | "lock" | "os" | "extstorage" | "cluster" | "filter" => {
            Err(not_implemented(&format!("the query resource '{res}'")))
        }
        other => Err(ApiError::bad_request(format!(
            "unknown query resource '{other}' (instance, node, group)"
        ))),
    }
}

fn query_fields_arg(req: &Req) -> Result<Option<Vec<String>>, ApiError> {
    Ok(req.query_str("fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }))
}

fn field_kind(name: &str) -> &'static str {
    match name {
        "ctime" | "mtime" => "timestamp",
        "name" | "uuid" | "os" | "pnode" | "hypervisor" | "disk_template" | "pip" | "sip"
        | "group" | "group.uuid" | "role" | "admin_state" | "status" | "alloc_policy"
        | "bootid" => "text",
        "offline" | "drained" | "master_candidate" | "master_capable" | "vm_capable" | "master"
        | "admin_up" | "oper_state" | "be/auto_balance" | "be/always_failover" => "bool",
        "mtotal" | "mnode" | "mfree" | "dtotal" | "dfree" | "oper_ram" | "be/maxmem"
        | "be/minmem" | "disk_usage" => "unit",
        n if n.ends_with("_cnt")
            || n.ends_with(".count")
            || n == "serial_no"
            || n == "ctotal"
            || n == "oper_vcpus"
            || n == "be/vcpus" =>
        {
            "number"
        }
        _ => "other",
    }
}

fn field_def(name: &str, doc: &str) -> Value {
    json!({"name": name, "title": name, "kind": field_kind(name), "doc": doc})
}

fn field_def_named(what: Resource, name: &str) -> Value {
    match field_list(what).iter().find(|(n, _)| *n == name) {
        Some((n, d)) => field_def(n, d),
        None => json!({"name": name, "title": name, "kind": "unknown", "doc": "Unknown field"}),
    }
}

/// Ganeti's result status of a query2 cell: normal, or no data.
const RS_NORMAL: u8 = 0;
const RS_UNKNOWN: u8 = 1;
const RS_NODATA: u8 = 2;

async fn query2(rapi: &Rapi, res: &str, fields: Vec<String>) -> ApiResult {
    let what = query_resource(res)?;
    if fields.is_empty() {
        return Err(ApiError::bad_request("no fields requested"));
    }
    let known = field_list(what);
    let is_known = |f: &str| known.iter().any(|(n, _)| *n == f);
    let queried: Vec<String> = fields.iter().filter(|f| is_known(f)).cloned().collect();
    let rows = if queried.is_empty() {
        // Only unknown fields: one row per object, all unknown.
        let cfg = rapi.inner.master.config.snapshot();
        names(&cfg, what).iter().map(|_| Vec::new()).collect()
    } else {
        query(
            &rapi.inner.master,
            &QueryRequest {
                what,
                names: vec![],
                fields: queried.clone(),
            },
        )
        .await
        .map_err(ApiError::bad_request)?
        .rows
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            Value::Array(
                fields
                    .iter()
                    .map(|f| match queried.iter().position(|q| q == f) {
                        Some(i) => match row.get(i) {
                            Some(Value::Null) | None => json!([RS_NODATA, null]),
                            Some(v) => json!([RS_NORMAL, v]),
                        },
                        None => json!([RS_UNKNOWN, null]),
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(json!({
        "fields": fields.iter().map(|f| field_def_named(what, f)).collect::<Vec<_>>(),
        "data": data,
    }))
}

fn parse_job_id(id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid job id '{id}'")))
}

fn find_job(rapi: &Rapi, id: &str) -> Result<Job, ApiError> {
    let id = parse_job_id(id)?;
    rapi.inner
        .queue
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))
}

fn jobs_list(rapi: &Rapi, req: &Req) -> ApiResult {
    let jobs = rapi.inner.queue.list(false);
    if req.flag("bulk", false)? {
        Ok(Value::Array(
            jobs.iter().map(|j| job_fields(j, J_FIELDS_BULK)).collect(),
        ))
    } else {
        Ok(Value::Array(
            jobs.iter()
                .map(|j| json!({"id": j.id, "uri": format!("/2/jobs/{}", j.id)}))
                .collect(),
        ))
    }
}

/// Ganeti's timestamps are `(seconds, microseconds)`.
fn ts(t: f64) -> Value {
    let secs = t.floor();
    json!([secs as i64, ((t - secs) * 1e6).round() as i64])
}

fn opt_ts(t: Option<f64>) -> Value {
    t.map(ts).unwrap_or(Value::Null)
}

/// Ganeti's log entry tuple: `(serial, timestamp, type, message)`.
fn log_entry(e: &LogEntry) -> Value {
    json!([e.serial, ts(e.timestamp), e.log_type, e.message])
}

fn opresult(job: &Job, i: usize) -> Value {
    let r = job.opresult.get(i).cloned().unwrap_or(Value::Null);
    match (job.opstatus.get(i), &r) {
        // Ganeti encodes a failed opcode's result as (exception class, arguments).
        (Some(JobStatus::Error), Value::String(msg)) => json!(["OpExecError", [msg]]),
        (Some(JobStatus::Canceled), Value::String(msg)) => json!(["JobCanceled", [msg]]),
        _ => r,
    }
}

fn job_field(job: &Job, f: &str) -> Value {
    match f {
        "id" => json!(job.id),
        "ops" => json!(job.ops),
        "status" => json!(job.status),
        "summary" => json!(job.summary),
        "opstatus" => json!(job.opstatus),
        "opresult" => json!((0..job.ops.len())
            .map(|i| opresult(job, i))
            .collect::<Vec<_>>()),
        "oplog" => json!(job
            .oplog
            .iter()
            .map(|l| l.iter().map(log_entry).collect::<Vec<_>>())
            .collect::<Vec<_>>()),
        "received_ts" => ts(job.received_ts),
        "start_ts" => opt_ts(job.start_ts),
        "end_ts" => opt_ts(job.end_ts),
        "priority" => json!(job.priority),
        "archived" => json!(job.archived),
        "oppriority" => json!(job.ops.iter().map(|_| job.priority).collect::<Vec<_>>()),
        "opstart" | "opexec" => json!(job
            .ops
            .iter()
            .map(|_| opt_ts(job.start_ts))
            .collect::<Vec<_>>()),
        "opend" => json!(job
            .ops
            .iter()
            .map(|_| opt_ts(job.end_ts))
            .collect::<Vec<_>>()),
        _ => Value::Null,
    }
}

fn job_fields(job: &Job, fields: &[&str]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| (f.to_string(), job_field(job, f)))
            .collect(),
    )
}

async fn job_wait(rapi: &Rapi, req: &Req, id: &str) -> ApiResult {
    let id = parse_job_id(id)?;
    let b = body_object(
        req,
        &["fields", "previous_job_info", "previous_log_serial"],
        &[],
    )?;
    let fields: Vec<String> = match b.get("fields") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::bad_request("The 'fields' parameter should be a list of strings")
            })?,
        _ => {
            return Err(ApiError::bad_request(
                "The 'fields' parameter should be a list",
            ))
        }
    };
    for f in &fields {
        if !J_ALL_FIELDS.contains(&f.as_str()) {
            return Err(ApiError::bad_request(format!("unknown job field '{f}'")));
        }
    }
    let prev_info = match b.get("previous_job_info") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Array(_)) => Some(v.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The 'previous_job_info' parameter should be a list",
            ))
        }
    };
    let prev_serial = match b.get("previous_log_serial") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request("The 'previous_log_serial' parameter should be a number")
        })?,
    };
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    loop {
        let job = rapi
            .inner
            .queue
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
        let info = Value::Array(fields.iter().map(|f| job_field(&job, f)).collect());
        let logs: Vec<Value> = job
            .all_log()
            .filter(|e| e.serial > prev_serial)
            .map(log_entry)
            .collect();
        if prev_info.as_ref() != Some(&info) || !logs.is_empty() || job.status.is_finalized() {
            return Ok(json!({"job_info": info, "log_entries": logs}));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Value::Null);
        }
        let max_serial = job
            .all_log()
            .map(|e| e.serial)
            .max()
            .unwrap_or(0)
            .max(prev_serial);
        // Returns on any status change or new log entry; re-check the fields then.
        let _ = rapi
            .inner
            .queue
            .wait_for_change(
                id,
                Some(job.status),
                max_serial,
                (deadline - now).min(Duration::from_secs(1)),
            )
            .await;
    }
}

/// `POST /2/instances/NAME/reinstall`, as Ganeti: one job that stops the instance, reinstalls
/// it and (unless `start` is false / `nostartup` is set) starts it again.
fn instance_reinstall(rapi: &Rapi, req: &Req, inst: &str) -> ApiResult {
    no_dry_run(req)?;
    instance_exists(rapi, inst)?;
    let b = body_object(req, &["os", "start", "osparams"], &["clear_osparams"])?;
    let os = b
        .get("os")
        .and_then(|v| v.as_str())
        .or_else(|| req.query_str("os"))
        .map(String::from);
    let start = match b.get("start") {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ApiError::bad_request("'start' must be a boolean"))?,
        None => !req.flag("nostartup", false)?,
    };
    let op = |v: Value| -> Result<OpCode, ApiError> {
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("{e}")))
    };
    let mut ops = vec![
        op(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": inst}))?,
        op(
            json!({"OP_ID": "OP_INSTANCE_REINSTALL", "instance_name": inst, "os_type": os,
                  "osparams": b.get("osparams").cloned()}),
        )?,
    ];
    if start {
        ops.push(op(
            json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": inst}),
        )?);
    }
    let id = rapi
        .inner
        .queue
        .submit(ops, 0)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(json!(id.to_string()))
}

/// A list of disk indices as Ganeti's clients send it: a JSON list of integers, or a string
/// `"0,1"` (query arguments); normalised to the list. Recreate-disks' list of
/// `[index, {params}]` pairs keeps only the indices (new parameters are not supported).
fn disk_list(b: &mut Map<String, Value>, key: &str) -> Result<(), ApiError> {
    let bad = |v: &Value| ApiError::bad_request(format!("invalid '{key}': {v} (disk indices)"));
    let Some(v) = b.get(key).cloned() else {
        return Ok(());
    };
    let list: Vec<u64> = match &v {
        Value::Null => Vec::new(),
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(|p| p.trim().parse::<u64>().map_err(|_| bad(&v)))
            .collect::<Result<_, _>>()?,
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Array(pair) if pair.len() == 2 => match &pair[1] {
                    Value::Object(m) if !m.is_empty() => {
                        Err(not_implemented("new disk parameters in recreate-disks"))
                    }
                    _ => pair[0].as_u64().ok_or_else(|| bad(&v)),
                },
                _ => x.as_u64().ok_or_else(|| bad(&v)),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(&v)),
    };
    b.insert(key.into(), json!(list));
    Ok(())
}

#[cfg(test)]
mod disk_list_tests {
    use super::*;

    fn norm(v: Value) -> Result<Value, ApiError> {
        let mut b = Map::new();
        b.insert("disks".into(), v);
        disk_list(&mut b, "disks")?;
        Ok(b["disks"].clone())
    }

    #[test]
    fn disk_lists_as_ganeti_clients_send_them() {
        assert_eq!(norm(json!("0,2")).ok(), Some(json!([0, 2])));
        assert_eq!(norm(json!([1])).ok(), Some(json!([1])));
        assert_eq!(norm(json!("")).ok(), Some(json!([])));
        assert_eq!(norm(json!([[0, {}], [1, {}]])).ok(), Some(json!([0, 1])));
        assert!(norm(json!("a")).is_err());
        assert!(norm(json!([-1])).is_err());
        assert!(norm(json!([[0, {"size": 5}]])).is_err());
    }
}
