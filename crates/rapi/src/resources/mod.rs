//! The RAPI resources, one module per resource; shapes follow Ganeti's `rlib2.py`.
//!
//! Reads answer from the config snapshot, the query functions and the job queue. Each write
//! parses its request (body and query arguments) into a typed [`OpCode`] and submits it
//! through the queue's one submission path ([`maguey_jobs::submit`], the same as the master
//! API's `/luxi/submit`); the answer is the job id as a JSON string.

mod cluster;
mod group_moves;
mod groups;
mod instance_create;
mod instances;
mod jobs;
mod networks;
mod nodes;
mod objects;
mod query;
mod request;
mod tags;

use crate::openapi;
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::StatusCode;
use maguey_jobs::submit::{submit_by, Origin, SubmitError};
use maguey_model::OpCode;
use serde_json::json;

fn not_implemented(what: &str) -> ApiError {
    ApiError::not_implemented(format!("{what} is not implemented in Maguey yet"))
}

/// Routes a parsed request to its resource.
pub async fn dispatch(rapi: &Rapi, req: &Req) -> ApiResult {
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["2", "jobs", rest @ ..] => jobs::route(rapi, req, rest).await,
        ["2", "nodes", rest @ ..] => nodes::route(rapi, req, rest).await,
        ["2", "groups", rest @ ..] => groups::route(rapi, req, rest).await,
        ["2", "networks", rest @ ..] => networks::route(rapi, req, rest).await,
        ["2", "instances", rest @ ..] => instances::route(rapi, req, rest).await,
        ["2", "query", rest @ ..] => query::route(rapi, req, rest).await,
        _ => cluster::route(rapi, req, &segs).await,
    }
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

/// Submits one job of `ops` as the master API does; answers the job id as a string. The job
/// records its submitter as `rapi:USER` (the request's authenticated user, [`crate::USER`]),
/// or `rapi` without one.
fn submit_job(rapi: &Rapi, ops: Vec<OpCode>) -> ApiResult {
    let submitter = crate::USER
        .try_with(|u| u.as_ref().map(|u| format!("rapi:{u}")))
        .ok()
        .flatten()
        .unwrap_or_else(|| Origin::Rapi.submitter().to_string());
    match submit_by(rapi.queue()?, Origin::Rapi, ops, 0, &submitter, "") {
        Ok(id) => Ok(json!(id.to_string())),
        Err(SubmitError::Queue(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e @ SubmitError::Forbidden(_)) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, e.to_string()))
        }
        Err(e @ SubmitError::Busy(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e @ SubmitError::UserBusy { .. }) => {
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()))
        }
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// A job of one opcode.
fn submit_op(rapi: &Rapi, op: OpCode) -> ApiResult {
    submit_job(rapi, vec![op])
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
