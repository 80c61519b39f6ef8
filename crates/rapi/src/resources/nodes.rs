//! `/2/nodes`: the list, one node, its role, modify, evacuate, migrate and tags.

use super::objects::{list, one_object, role_name, N_FIELDS};
use super::request::{defaults, no_dry_run, Body};
use super::tags::{self, NODE};
use super::{node_exists, submit_op, unrouted};
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_model::OpCode;
use maguey_ops::query::Resource;
use serde_json::{json, Value};

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    let (get, put, post) = (m == Method::GET, m == Method::PUT, m == Method::POST);
    match segs {
        [] if get => list(rapi, req, Resource::Node, N_FIELDS, "/2/nodes", "id").await,
        [n] if get => one_object(rapi, Resource::Node, n, N_FIELDS).await,
        [n, "role"] if get => {
            let cfg = rapi.inner.master.config.snapshot();
            let node = cfg
                .node_by_name(n)
                .ok_or_else(|| ApiError::not_found(format!("node '{n}' is not known")))?;
            Ok(json!(role_name(node.role(&cfg.cluster.master_node))))
        }
        [n, "role"] if put => {
            node_exists(rapi, n)?;
            submit_op(rapi, set_role_op(req, n)?)
        }
        [n, "modify"] if post => {
            node_exists(rapi, n)?;
            submit_op(rapi, modify_op(&modify_body(req)?, n)?)
        }
        [n, "evacuate"] if post => {
            no_dry_run(req)?;
            node_exists(rapi, n)?;
            submit_op(rapi, evacuate_op(&evacuate_body(req)?, n)?)
        }
        [n, "migrate"] if post => {
            no_dry_run(req)?;
            node_exists(rapi, n)?;
            submit_op(rapi, migrate_op(&migrate_body(req)?, n)?)
        }
        [n, "tags"] if get => tags::get(rapi, NODE, n),
        [n, "tags"] if put || m == Method::DELETE => tags::change(rapi, req, NODE, Some(n)),
        _ => Err(unrouted(req)),
    }
}

/// `PUT /2/nodes/N/role`: the body is the role as a JSON string.
fn set_role_op(req: &Req, node: &str) -> Result<OpCode, ApiError> {
    let Value::String(role) = &req.body else {
        return Err(ApiError::bad_request(
            "the body must be the role as a JSON string",
        ));
    };
    let (master_candidate, offline, drained) = match role.as_str() {
        "regular" => (Some(false), Some(false), Some(false)),
        "master-candidate" => (Some(true), None, None),
        "drained" => (None, None, Some(true)),
        "offline" => (None, Some(true), None),
        other => return Err(ApiError::bad_request(format!("Can't set '{other}' role"))),
    };
    let force = req.flag("force", false)?;
    req.flag("auto-promote", false)?;
    Ok(OpCode::NodeSetParams(maguey_model::OpNodeSetParams {
        node_name: node.to_string(),
        offline,
        drained,
        master_candidate,
        master_capable: None,
        vm_capable: None,
        force,
        room: None,
    }))
}

fn modify_body(req: &Req) -> Result<Body, ApiError> {
    Body::parse(
        req,
        "OP_NODE_SET_PARAMS",
        &[
            "offline",
            "drained",
            "master_candidate",
            "master_capable",
            "vm_capable",
            "force",
            "room",
        ],
        &[
            "auto_promote",
            "powered",
            "secondary_ip",
            "ndparams",
            "hv_state",
            "disk_state",
        ],
    )
}

/// `POST /2/nodes/N/modify`.
fn modify_op(b: &Body, node: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::NodeSetParams(maguey_model::OpNodeSetParams {
        node_name: node.to_string(),
        offline: b.opt("offline")?,
        drained: b.opt("drained")?,
        master_candidate: b.opt("master_candidate")?,
        master_capable: b.opt("master_capable")?,
        vm_capable: b.opt("vm_capable")?,
        force: b.or("force", false)?,
        room: b.opt("room")?,
    }))
}

fn evacuate_body(req: &Req) -> Result<Body, ApiError> {
    let mut b = Body::parse(
        req,
        "OP_NODE_EVACUATE",
        &["iallocator", "remote_node", "mode", "early_release"],
        &[],
    )?;
    if let Some(m) = req.query_str("mode") {
        b.insert_if_absent("mode", json!(m));
    }
    Ok(b)
}

/// `POST /2/nodes/N/evacuate`.
fn evacuate_op(b: &Body, node: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::NodeEvacuate(maguey_model::OpNodeEvacuate {
        node_name: node.to_string(),
        mode: b.or("mode", maguey_model::EvacMode::All)?,
        remote_node: b.opt("remote_node")?,
        iallocator: b.opt("iallocator")?,
        early_release: b.or("early_release", false)?,
        max_parallel: defaults::MAX_PARALLEL,
        force: false,
    }))
}

fn migrate_body(req: &Req) -> Result<Body, ApiError> {
    let mut b = Body::parse(
        req,
        "OP_NODE_MIGRATE",
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
        b.insert_if_absent("mode", json!(m));
    }
    if req.query_str("live").is_some() {
        let live = req.flag("live", true)?;
        b.insert_if_absent("live", json!(live));
    }
    Ok(b)
}

/// `POST /2/nodes/N/migrate`.
fn migrate_op(b: &Body, node: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::NodeMigrate(maguey_model::OpNodeMigrate {
        node_name: node.to_string(),
        mode: b.opt("mode")?,
        live: b.opt("live")?,
        target_node: b.opt("target_node")?,
        iallocator: b.opt("iallocator")?,
        ignore_ipolicy: b.or("ignore_ipolicy", false)?,
        allow_runtime_changes: true,
        max_parallel: defaults::MAX_PARALLEL,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::request::tests_support::{req, wire};

    #[test]
    fn defaults_match_the_wire() {
        let r = req(Method::POST, Value::Null, &[]);
        let node = json!({"node_name": "n1"});
        assert_eq!(
            evacuate_op(&evacuate_body(&r).unwrap(), "n1").unwrap(),
            wire("OP_NODE_EVACUATE", &node)
        );
        assert_eq!(
            migrate_op(&migrate_body(&r).unwrap(), "n1").unwrap(),
            wire("OP_NODE_MIGRATE", &node)
        );
        assert_eq!(
            modify_op(&modify_body(&r).unwrap(), "n1").unwrap(),
            wire("OP_NODE_SET_PARAMS", &node)
        );
    }

    #[test]
    fn query_arguments_of_older_clients() {
        let r = req(
            Method::POST,
            json!({"iallocator": "hail"}),
            &[("mode", "non-live"), ("live", "0")],
        );
        assert_eq!(
            migrate_op(&migrate_body(&r).unwrap(), "n1").unwrap(),
            wire(
                "OP_NODE_MIGRATE",
                &json!({"node_name": "n1", "mode": "non-live", "live": false, "iallocator": "hail"})
            )
        );
        let r = req(
            Method::POST,
            json!({"mode": "primary-only"}),
            &[("mode", "all")],
        );
        assert_eq!(
            evacuate_op(&evacuate_body(&r).unwrap(), "n1").unwrap(),
            wire(
                "OP_NODE_EVACUATE",
                &json!({"node_name": "n1", "mode": "primary-only"})
            )
        );
        // Bad values are refused before a job exists.
        let r = req(Method::POST, json!({"early_release": "yes"}), &[]);
        assert_eq!(
            evacuate_op(&evacuate_body(&r).unwrap(), "n1")
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        let r = req(Method::PUT, json!("offline"), &[("force", "1")]);
        assert_eq!(
            set_role_op(&r, "n1").unwrap(),
            wire(
                "OP_NODE_SET_PARAMS",
                &json!({"node_name": "n1", "offline": true, "force": true})
            )
        );
        assert!(set_role_op(&req(Method::PUT, json!("master"), &[]), "n1").is_err());
    }
}
