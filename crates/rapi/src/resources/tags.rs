//! Tags of the cluster, a node, an instance or a node group (`.../tags?tag=T&tag=U`).

use super::request::no_dry_run;
use super::submit_op;
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_model::OpCode;
use maguey_ops::tags::{object_tags, validate_tag, TagKind};
use serde_json::json;

/// A kind of tagged object: how ops finds it, and its name in OP_TAGS_SET/OP_TAGS_DEL.
#[derive(Clone, Copy)]
pub(super) struct Kind {
    kind: TagKind,
    wire: &'static str,
}

pub(super) const CLUSTER: Kind = Kind {
    kind: TagKind::Cluster,
    wire: "cluster",
};
pub(super) const NODE: Kind = Kind {
    kind: TagKind::Node,
    wire: "node",
};
pub(super) const INSTANCE: Kind = Kind {
    kind: TagKind::Instance,
    wire: "instance",
};
pub(super) const GROUP: Kind = Kind {
    kind: TagKind::NodeGroup,
    wire: "nodegroup",
};

/// `GET .../tags` of a named object (404 if unknown).
pub(super) fn get(rapi: &Rapi, k: Kind, name: &str) -> ApiResult {
    let cfg = rapi.inner.master.config.snapshot();
    object_tags(&cfg, k.kind, Some(name))
        .map(|t| json!(t))
        .map_err(ApiError::not_found)
}

/// `PUT` (add) or `DELETE` (remove) `.../tags?tag=...`: OP_TAGS_SET or OP_TAGS_DEL.
pub(super) fn change(rapi: &Rapi, req: &Req, k: Kind, name: Option<&str>) -> ApiResult {
    no_dry_run(req)?;
    if let Some(n) = name {
        let cfg = rapi.inner.master.config.snapshot();
        object_tags(&cfg, k.kind, Some(n)).map_err(ApiError::not_found)?;
    }
    let tags = req.query_all("tag");
    if tags.is_empty() {
        return Err(ApiError::bad_request(
            "no tags given: use ?tag=TAG (repeatable)",
        ));
    }
    for t in &tags {
        validate_tag(t).map_err(ApiError::bad_request)?;
    }
    let (kind, name) = (k.wire.to_string(), name.map(String::from));
    let op = if req.method == Method::PUT {
        OpCode::TagsSet { kind, name, tags }
    } else {
        OpCode::TagsDel { kind, name, tags }
    };
    submit_op(rapi, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_ganeti_names() {
        for k in [CLUSTER, NODE, INSTANCE, GROUP] {
            assert_eq!(TagKind::parse(k.wire), Some(k.kind));
        }
    }
}
