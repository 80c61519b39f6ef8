//! `POST /2/instances`: Ganeti's instance creation request, version 1.

use super::request::{is_empty, no_dry_run, Body, OPCODE_COMMON};
use super::{not_implemented, submit_op};
use crate::{ApiError, ApiResult, Rapi, Req};
use maguey_model::OpCode;
use serde_json::{json, Map, Value};

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
    "group_name",
    "ignore_ipolicy",
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

pub(super) fn create(rapi: &Rapi, req: &Req) -> ApiResult {
    no_dry_run(req)?;
    submit_op(rapi, create_op(req)?)
}

/// The request as OP_INSTANCE_CREATE: Ganeti's names (`name`, `os`, a NIC's `bridge`) become
/// the opcode's, disk sizes given as strings become numbers.
fn create_op(req: &Req) -> Result<OpCode, ApiError> {
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
        None => {}
        Some(m) if m.parse() == Ok(maguey_model::InstanceCreateMode::Create) => {}
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
    let b = Body::from_map("OP_INSTANCE_CREATE", op);
    Ok(OpCode::InstanceCreate(maguey_model::OpInstanceCreate {
        instance_name: b.req("instance_name")?,
        mode: b.or("mode", maguey_model::InstanceCreateMode::Create)?,
        disk_template: b.req("disk_template")?,
        disks: b.or_default("disks")?,
        nics: b.or_default("nics")?,
        pnode: b.opt("pnode")?,
        snode: b.opt("snode")?,
        os_type: b.opt("os_type")?,
        osparams: b.or_default("osparams")?,
        no_install: b.or("no_install", false)?,
        start: b.or("start", true)?,
        hypervisor: b.opt("hypervisor")?,
        hvparams: b.or_default("hvparams")?,
        beparams: b.or_default("beparams")?,
        iallocator: b.opt("iallocator")?,
        tags: b.or_default("tags")?,
        // Ganeti's `wait_for_sync` is accepted and ignored: creation always waits.
        wait_for_sync: true,
        group_name: b.opt("group_name")?,
        ignore_ipolicy: b.or("ignore_ipolicy", false)?,
    }))
}

/// Checks the disk or NIC dictionaries of a creation request.
fn convert_list(
    v: &Value,
    what: &str,
    ok: &[&str],
    unsupported: &[&str],
) -> Result<Value, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::request::tests_support::{req, wire};
    use axum::http::Method;

    #[test]
    fn creation_requests() {
        let r = req(
            Method::POST,
            json!({"__version__": 1, "name": "web1", "disk_template": "plain",
                   "disks": [{"size": "1024"}], "nics": [{"bridge": "br0", "mode": "bridged"}],
                   "os": "noop", "pnode": "n1", "beparams": {"maxmem": 64},
                   "name_check": false, "wait_for_sync": false, "reason": ["x"]}),
            &[],
        );
        assert_eq!(
            create_op(&r).unwrap(),
            wire(
                "OP_INSTANCE_CREATE",
                &json!({"instance_name": "web1", "disk_template": "plain",
                        "disks": [{"size": 1024}], "nics": [{"link": "br0", "mode": "bridged"}],
                        "os_type": "noop", "pnode": "n1", "beparams": {"maxmem": 64}})
            )
        );
        let code = |b: Value| {
            create_op(&req(Method::POST, b, &[]))
                .err()
                .map(|e| e.status.as_u16())
        };
        assert_eq!(code(json!({"name": "x"})), Some(400));
        assert_eq!(code(json!({"__version__": 2, "name": "x"})), Some(400));
        assert_eq!(
            code(json!({"__version__": 1, "name": "x", "disk_template": "plain", "bogus": 1})),
            Some(400)
        );
        assert_eq!(code(json!({"__version__": 1, "name": "x"})), Some(400));
        assert_eq!(
            code(
                json!({"__version__": 1, "name": "x", "disk_template": "plain", "mode": "import"})
            ),
            Some(501)
        );
        assert_eq!(
            code(json!({"__version__": 1, "name": "x", "disk_template": "plain", "src_node": "n"})),
            Some(501)
        );
        assert_eq!(
            code(
                json!({"__version__": 1, "name": "x", "disk_template": "plain", "disks": [{"size": "big"}]})
            ),
            Some(400)
        );
        assert_eq!(
            code(json!({"__version__": 1, "name": "x", "disk_template": "plain", "disks": [{}]})),
            Some(400)
        );
        assert_eq!(
            code(json!({"__version__": 1, "name": "x", "disk_template": "plain", "start": "yes"})),
            Some(400)
        );
    }
}
