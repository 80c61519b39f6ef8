//! Tags of the cluster, a node, an instance or a node group (`.../tags?tag=T&tag=U`).

use super::request::no_dry_run;
use super::submit_op;
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_model::OpCode;
use maguey_ops::tags::{object_tags, validate_tag, TagKind};
use serde_json::json;

/// A kind of tagged object (its Ganeti name on the wire comes with [`TagKind`]).
#[derive(Clone, Copy)]
pub(super) struct Kind {
    kind: TagKind,
}

pub(super) const CLUSTER: Kind = Kind {
    kind: TagKind::Cluster,
};
pub(super) const NODE: Kind = Kind {
    kind: TagKind::Node,
};
pub(super) const INSTANCE: Kind = Kind {
    kind: TagKind::Instance,
};
pub(super) const GROUP: Kind = Kind {
    kind: TagKind::NodeGroup,
};
pub(super) const NETWORK: Kind = Kind {
    kind: TagKind::Network,
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
    let (kind, name) = (k.kind, name.map(String::from));
    let op = if req.method == Method::PUT {
        OpCode::TagsSet(maguey_model::OpTagsSet { kind, name, tags })
    } else {
        OpCode::TagsDel(maguey_model::OpTagsDel { kind, name, tags })
    };
    submit_op(rapi, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_ganeti_names() {
        for (k, wire) in [
            (CLUSTER, "cluster"),
            (NODE, "node"),
            (INSTANCE, "instance"),
            (GROUP, "nodegroup"),
        ] {
            assert_eq!(serde_json::to_value(k.kind).unwrap(), json!(wire));
        }
    }
}
