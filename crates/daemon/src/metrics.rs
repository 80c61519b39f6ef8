//! `GET /metrics` (Prometheus text): the master's on the Remote API's port (any RAPI user, or
//! no credentials with `--metrics-anonymous` or anonymous reads), and a small one on every
//! node's daemon port (no credentials; counts only, no names).

use crate::api::MasterState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maguey_node::NodeRuntime;
use maguey_rpc::{NodeInfo, NodeReply, NodeRequest};
use std::sync::Arc;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

#[derive(Clone)]
struct MasterMetrics {
    state: MasterState,
    rapi: maguey_rapi::Rapi,
    anonymous: bool,
}

/// The master's `/metrics`, for the Remote API's port.
pub fn master_router(state: MasterState, rapi: maguey_rapi::Rapi, anonymous: bool) -> Router {
    Router::new()
        .route("/metrics", get(master_metrics))
        .with_state(MasterMetrics {
            state,
            rapi,
            anonymous,
        })
}

async fn master_metrics(State(m): State<MasterMetrics>, req: Request) -> Response {
    if !m.anonymous {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|h| h.to_str().unwrap_or("\u{0}invalid"));
        if let Err(e) = m.rapi.authorize(auth, false) {
            return e.into_response();
        }
    }
    match maguey_ops::metrics::master_text(&m.state.master, &m.state.queue).await {
        Ok(body) => text(body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// Every node's `/metrics`.
pub fn node_router(node: Arc<NodeRuntime>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let node = node.clone();
            async move { text(node_metrics(&node).await) }
        }),
    )
}

async fn node_metrics(node: &NodeRuntime) -> String {
    let fsd = maguey_node::read_ssconf(&node.config().state_dir)
        .map(|s| s.file_storage_dir)
        .unwrap_or_default();
    let mut per_hv: Vec<(&str, Option<NodeInfo>, Option<usize>)> = Vec::new();
    for hv in ["fake", "kvm"] {
        let info = match node
            .execute(NodeRequest::NodeInfo {
                file_storage_dir: fsd.clone(),
                hypervisor: hv.into(),
            })
            .await
        {
            Ok(NodeReply::NodeInfo(i)) => Some(i),
            _ => None,
        };
        let running = match node
            .execute(NodeRequest::AllInstancesInfo {
                hypervisor: hv.into(),
            })
            .await
        {
            Ok(NodeReply::AllInstancesInfo(m)) => Some(m.len()),
            _ => None,
        };
        per_hv.push((hv, info, running));
    }
    maguey_ops::metrics::node_text(&node.config().node_name, &per_hv)
}
