//! `/2/networks`: the list, one network, add, remove, modify, rename, connect, disconnect,
//! tags.

use super::objects::{list, one_object};
use super::request::{no_dry_run, Body};
use super::tags::{self, NETWORK};
use super::{submit_op, unrouted};
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_model::OpCode;
use maguey_ops::query::Resource;

/// Ganeti's network fields of `/2/networks?bulk=1` and `/2/networks/N`.
pub(super) const NET_FIELDS: &[&str] = &[
    "name",
    "network",
    "gateway",
    "network6",
    "gateway6",
    "mac_prefix",
    "free_count",
    "reserved_count",
    "map",
    "group_list",
    "inst_list",
    "external_reservations",
    "ctime",
    "mtime",
    "uuid",
    "serial_no",
    "tags",
];

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    let (get, put) = (m == Method::GET, m == Method::PUT);
    match segs {
        [] if get => {
            list(
                rapi,
                req,
                Resource::Network,
                NET_FIELDS,
                "/2/networks",
                "name",
            )
            .await
        }
        [] if m == Method::POST => {
            no_dry_run(req)?;
            let b = Body::parse(
                req,
                "OP_NETWORK_ADD",
                &[
                    "network_name",
                    "network",
                    "gateway",
                    "network6",
                    "gateway6",
                    "mac_prefix",
                    "add_reserved_ips",
                    "conflicts_check",
                    "tags",
                ],
                &[],
            )?;
            submit_op(
                rapi,
                OpCode::NetworkAdd(maguey_model::OpNetworkAdd {
                    network_name: b.req("network_name")?,
                    network: b.req("network")?,
                    gateway: b.opt("gateway")?,
                    network6: b.opt("network6")?,
                    gateway6: b.opt("gateway6")?,
                    mac_prefix: b.opt("mac_prefix")?,
                    add_reserved_ips: b.opt("add_reserved_ips")?.unwrap_or_default(),
                    conflicts_check: b.or("conflicts_check", false)?,
                    tags: b.opt("tags")?.unwrap_or_default(),
                }),
            )
        }
        [n] if get => one_object(rapi, Resource::Network, n, NET_FIELDS).await,
        [n] if m == Method::DELETE => {
            no_dry_run(req)?;
            network_exists(rapi, n)?;
            submit_op(
                rapi,
                OpCode::NetworkRemove(maguey_model::OpNetworkRemove {
                    network_name: n.to_string(),
                    force: false,
                }),
            )
        }
        [n, "modify"] if put => {
            no_dry_run(req)?;
            network_exists(rapi, n)?;
            let b = Body::parse(
                req,
                "OP_NETWORK_SET_PARAMS",
                &[
                    "gateway",
                    "network6",
                    "gateway6",
                    "mac_prefix",
                    "add_reserved_ips",
                    "remove_reserved_ips",
                ],
                &[],
            )?;
            submit_op(
                rapi,
                OpCode::NetworkSetParams(maguey_model::OpNetworkSetParams {
                    network_name: n.to_string(),
                    gateway: b.opt("gateway")?,
                    network6: b.opt("network6")?,
                    gateway6: b.opt("gateway6")?,
                    mac_prefix: b.opt("mac_prefix")?,
                    add_reserved_ips: b.opt("add_reserved_ips")?.unwrap_or_default(),
                    remove_reserved_ips: b.opt("remove_reserved_ips")?.unwrap_or_default(),
                }),
            )
        }
        [n, "rename"] if put => {
            no_dry_run(req)?;
            network_exists(rapi, n)?;
            let b = Body::parse(req, "OP_NETWORK_RENAME", &["new_name"], &[])?;
            submit_op(
                rapi,
                OpCode::NetworkRename(maguey_model::OpNetworkRename {
                    network_name: n.to_string(),
                    new_name: b.req("new_name")?,
                }),
            )
        }
        [n, "connect"] if put => {
            no_dry_run(req)?;
            network_exists(rapi, n)?;
            let b = Body::parse(
                req,
                "OP_NETWORK_CONNECT",
                &[
                    "group_name",
                    "network_mode",
                    "network_link",
                    "network_vlan",
                    "conflicts_check",
                ],
                &[],
            )?;
            submit_op(
                rapi,
                OpCode::NetworkConnect(maguey_model::OpNetworkConnect {
                    group_name: b.req("group_name")?,
                    network_name: n.to_string(),
                    network_mode: b.req("network_mode")?,
                    network_link: b.req("network_link")?,
                    network_vlan: b.or("network_vlan", String::new())?,
                    conflicts_check: b.or("conflicts_check", false)?,
                }),
            )
        }
        [n, "disconnect"] if put => {
            no_dry_run(req)?;
            network_exists(rapi, n)?;
            let b = Body::parse(req, "OP_NETWORK_DISCONNECT", &["group_name"], &[])?;
            submit_op(
                rapi,
                OpCode::NetworkDisconnect(maguey_model::OpNetworkDisconnect {
                    group_name: b.req("group_name")?,
                    network_name: n.to_string(),
                }),
            )
        }
        [n, "tags"] if get => tags::get(rapi, NETWORK, n),
        [n, "tags"] if put || m == Method::DELETE => tags::change(rapi, req, NETWORK, Some(n)),
        _ => Err(unrouted(req)),
    }
}

fn network_exists(rapi: &Rapi, name: &str) -> Result<(), ApiError> {
    if rapi
        .inner
        .master
        .config
        .snapshot()
        .network_by_name(name)
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "network '{name}' is not known"
        )));
    }
    Ok(())
}
