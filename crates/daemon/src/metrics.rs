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
        if let Err(e) = m.rapi.authorize(auth, false).await {
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

/// The Remote API's access log: one line per request (target `maguey::rapi::access`) with
/// the client's address when known, the user (never the password), method, path, status and
/// time taken.
pub async fn access_log(req: Request, next: axum::middleware::Next) -> Response {
    use maguey_rapi::auth::{parse_authorization, Credentials};
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".into());
    let user = match parse_authorization(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    ) {
        Credentials::Basic { user, .. } => user,
        Credentials::Malformed => "(malformed)".into(),
        Credentials::None => "-".into(),
    };
    let resp = next.run(req).await;
    tracing::info!(
        target: "maguey::rapi::access",
        "{peer} {user} \"{method} {path}\" {} {:.3}s",
        resp.status().as_u16(),
        start.elapsed().as_secs_f64()
    );
    resp
}
