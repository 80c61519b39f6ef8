//! `/2/query/RESOURCE` (Ganeti's query2) and `/2/query/RESOURCE/fields`.

use super::objects::names;
use super::request::Body;
use super::{not_implemented, unrouted};
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_ops::query::{field_list, query, QueryRequest, Resource};
use serde_json::{json, Value};

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    match segs {
        [res] if m == Method::GET => {
            let fields = query_fields_arg(req)?
                .ok_or_else(|| ApiError::bad_request("missing 'fields' query argument"))?;
            query2(rapi, res, fields).await
        }
        [res] if m == Method::PUT => {
            let b = Body::parse(req, "query", &["fields"], &["qfilter", "filter"])?;
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
        [res, "fields"] if m == Method::GET => {
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
    }
}

fn query_resource(res: &str) -> Result<Resource, ApiError> {
    match res {
        "instance" => Ok(Resource::Instance),
        "node" => Ok(Resource::Node),
        "group" => Ok(Resource::Group),
        "network" => Ok(Resource::Network),
        "job" | "export" | "lock" | "os" | "extstorage" | "cluster" | "filter" => {
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
