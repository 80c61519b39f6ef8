//! `/2/groups`: the list, one node group, add, remove, modify, rename, assign-nodes, tags.

use super::objects::{list, one_object, G_FIELDS};
use super::request::{no_dry_run, Body};
use super::tags::{self, GROUP};
use super::{submit_op, unrouted};
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_model::OpCode;
use maguey_ops::query::Resource;

/// Fields of a group's parameters Ganeti accepts and Maguey does not keep.
const UNSUPPORTED: &[&str] = &["hv_state", "disk_state"];

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    let (get, put) = (m == Method::GET, m == Method::PUT);
    match segs {
        [] if get => list(rapi, req, Resource::Group, G_FIELDS, "/2/groups", "name").await,
        [] if m == Method::POST => {
            no_dry_run(req)?;
            let mut b = Body::parse(
                req,
                "OP_GROUP_ADD",
                &[
                    "name",
                    "group_name",
                    "alloc_policy",
                    "ndparams",
                    "diskparams",
                    "ipolicy",
                    "tags",
                ],
                UNSUPPORTED,
            )?;
            // Ganeti's client sends `name`.
            if let Some(n) = b.take("name") {
                b.insert_if_absent("group_name", n);
            }
            submit_op(
                rapi,
                OpCode::GroupAdd(maguey_model::OpGroupAdd {
                    group_name: b.req("group_name")?,
                    alloc_policy: b.opt("alloc_policy")?,
                    ndparams: b.or_default("ndparams")?,
                    diskparams: b.or_default("diskparams")?,
                    ipolicy: b.or_default("ipolicy")?,
                    tags: b.or_default("tags")?,
                }),
            )
        }
        [g] if get => one_object(rapi, Resource::Group, g, G_FIELDS).await,
        [g] if m == Method::DELETE => {
            no_dry_run(req)?;
            group_exists(rapi, g)?;
            submit_op(
                rapi,
                OpCode::GroupRemove(maguey_model::OpGroupRemove {
                    group_name: g.to_string(),
                }),
            )
        }
        [g, "modify"] if put => {
            no_dry_run(req)?;
            group_exists(rapi, g)?;
            let b = Body::parse(
                req,
                "OP_GROUP_SET_PARAMS",
                &["alloc_policy", "ndparams", "diskparams", "ipolicy"],
                UNSUPPORTED,
            )?;
            submit_op(
                rapi,
                OpCode::GroupSetParams(maguey_model::OpGroupSetParams {
                    group_name: g.to_string(),
                    alloc_policy: b.opt("alloc_policy")?,
                    ndparams: b.opt("ndparams")?,
                    diskparams: b.opt("diskparams")?,
                    ipolicy: b.opt("ipolicy")?,
                }),
            )
        }
        [g, "rename"] if put => {
            no_dry_run(req)?;
            group_exists(rapi, g)?;
            let b = Body::parse(req, "OP_GROUP_RENAME", &["new_name"], &[])?;
            submit_op(
                rapi,
                OpCode::GroupRename(maguey_model::OpGroupRename {
                    group_name: g.to_string(),
                    new_name: b.req("new_name")?,
                }),
            )
        }
        [g, "assign-nodes"] if put => {
            no_dry_run(req)?;
            group_exists(rapi, g)?;
            let b = Body::parse(req, "OP_GROUP_ASSIGN_NODES", &["nodes", "force"], &[])?;
            let force = req.flag("force", false)? || b.or("force", false)?;
            submit_op(
                rapi,
                OpCode::GroupAssignNodes(maguey_model::OpGroupAssignNodes {
                    group_name: g.to_string(),
                    force,
                    nodes: b.req("nodes")?,
                }),
            )
        }
        [g, "evacuate"] if put => {
            group_exists(rapi, g)?;
            super::group_moves::evacuate(rapi, req, g)
        }
        [g, "tags"] if get => tags::get(rapi, GROUP, g),
        [g, "tags"] if put || m == Method::DELETE => tags::change(rapi, req, GROUP, Some(g)),
        _ => Err(unrouted(req)),
    }
}

fn group_exists(rapi: &Rapi, name: &str) -> Result<(), ApiError> {
    if rapi
        .inner
        .master
        .config
        .snapshot()
        .group_by_name(name)
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "node group '{name}' is not known"
        )));
    }
    Ok(())
}
