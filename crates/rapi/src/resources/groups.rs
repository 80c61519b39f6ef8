//! `/2/groups`: the list, one node group and its tags.

use super::objects::{list, one_object, G_FIELDS};
use super::tags::{self, GROUP};
use super::unrouted;
use crate::{ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_ops::query::Resource;

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    match segs {
        [] if m == Method::GET => {
            list(rapi, req, Resource::Group, G_FIELDS, "/2/groups", "name").await
        }
        [g] if m == Method::GET => one_object(rapi, Resource::Group, g, G_FIELDS).await,
        [g, "tags"] if m == Method::GET => tags::get(rapi, GROUP, g),
        [g, "tags"] if m == Method::PUT || m == Method::DELETE => {
            tags::change(rapi, req, GROUP, Some(g))
        }
        _ => Err(unrouted(req)),
    }
}
