//! Raft's RPCs between master candidates over the cluster's mTLS HTTPS (docs/replication.md).
//!
//! `POST /raft/{append,vote,snapshot,read-index}` carries one encoded RPC of
//! `maguey-replication` to the local [`Replica`]. Only node certificates are answered, and of those only a master
//! candidate's (a node of the replicated config with `master_candidate`, whose recorded
//! certificate fingerprint matches) or the current master's per [`NodeAuth`] (a fresh voter,
//! whose config is still empty, hears the leader that added it).

use crate::auth::NodeAuth;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use maguey_replication::{BoxFuture, Member, NodeId, Replica, RpcKind, Transport, TransportError};
use maguey_rpc::{PeerCert, PeerIdentity, RpcClient};
use std::sync::Arc;
use std::time::Duration;

/// What the `/raft` routes share.
#[derive(Clone)]
pub struct RaftState {
    pub replica: Arc<Replica>,
    pub auth: NodeAuth,
}

/// The `/raft/{kind}` routes of a master candidate.
pub fn raft_router(state: RaftState) -> Router {
    Router::new()
        .route("/raft/{kind}", post(handle))
        // A snapshot chunk is small (openraft sends them in pieces), entries batches too.
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_candidate,
        ))
        .layer(axum::middleware::from_fn(
            maguey_rpc::version::check_protocol,
        ))
        .with_state(state)
}

async fn handle(State(state): State<RaftState>, Path(kind): Path<String>, body: Bytes) -> Response {
    let kind: RpcKind = match kind.parse() {
        Ok(k) => k,
        Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
    };
    match state.replica.serve(kind, &body).await {
        Ok(reply) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            reply,
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// Whether `peer` may send Raft RPCs here; the refusal says why.
pub fn check_candidate(state: &RaftState, peer: Option<&PeerCert>) -> Result<(), String> {
    let Some(peer) = peer else {
        return Err(maguey_rpc::server::PEER_CERT_REQUIRED.to_string());
    };
    if peer.admin {
        return Err("an admin certificate takes no part in Raft".into());
    }
    let config = state.replica.config();
    let candidate = config.nodes.values().any(|n| {
        n.name == peer.common_name
            && n.master_candidate
            && (n.certificate_fingerprint.is_empty()
                || n.certificate_fingerprint == peer.fingerprint)
    });
    if candidate || state.auth.check(Some(peer)).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a master candidate: only candidates take part in Raft",
            peer.common_name
        ))
    }
}

async fn require_candidate(State(state): State<RaftState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    match check_candidate(&state, peer.as_ref()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::debug!(error = %e, "raft RPC refused");
            (StatusCode::FORBIDDEN, e).into_response()
        }
    }
}

/// Sends Raft RPCs to the other candidates over mTLS, with this node's certificate.
#[derive(Clone, Debug)]
pub struct RaftHttps {
    client: RpcClient,
}

impl RaftHttps {
    pub fn new(client: RpcClient) -> Self {
        RaftHttps { client }
    }
}

impl Transport for RaftHttps {
    fn call(
        &self,
        _target: NodeId,
        member: &Member,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let http = self.client.http_now();
        let url = format!("https://{}/raft/{}", member.addr, kind.as_str());
        Box::pin(async move {
            let failed = |e: &dyn std::fmt::Display, connect: bool| {
                let msg = format!("{url}: {e}");
                if connect {
                    TransportError::Unreachable(msg)
                } else {
                    TransportError::Network(msg)
                }
            };
            let resp = http
                .post(&url)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| failed(&e, e.is_connect() || e.is_timeout()))?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| failed(&e, false))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                return Err(failed(&format!("{status}: {}", text.trim()), false));
            }
            Ok(bytes.to_vec())
        })
    }
}
