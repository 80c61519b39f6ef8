//! Fencing by term on the node RPC (docs/security.md): every request the master stamps with
//! its cluster and term ([`maguey_rpc::fence`]) is checked against the highest term this node
//! has seen ([`maguey_node::fence::TermStore`]), after [`crate::auth::require_master`] let the
//! peer in. A refusal is the node RPC's error answer (409), so the master reads it as any
//! failed node request. Requests without the headers (older masters) pass as before.

use crate::auth::NodeAuth;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maguey_node::fence::TermStore;
use maguey_rpc::{FenceStamp, PeerIdentity, RpcReply};
use std::sync::Arc;

/// The middleware's state: who may command the node, and the stored term.
#[derive(Debug, Clone)]
pub struct NodeFence {
    pub auth: NodeAuth,
    pub terms: Arc<TermStore>,
}

impl NodeFence {
    /// Opens the term store of `auth`'s state directory.
    pub fn open(auth: NodeAuth) -> anyhow::Result<NodeFence> {
        let terms = TermStore::open(&auth.state_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(NodeFence {
            auth,
            terms: Arc::new(terms),
        })
    }
}

fn refused(status: StatusCode, msg: String) -> Response {
    (status, axum::Json(RpcReply::Error(msg))).into_response()
}

/// axum middleware: refuses a stamped request from another cluster or an older term, and
/// stores a higher term of a master candidate.
pub async fn check_term(State(f): State<NodeFence>, req: Request, next: Next) -> Response {
    let stamp = match FenceStamp::from_headers(req.headers()) {
        Ok(Some(s)) => s,
        Ok(None) => return next.run(req).await,
        Err(e) => return refused(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let peer = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    let fingerprint = peer.as_ref().map(|p| p.fingerprint.clone());
    let authorized = f.auth.check(peer.as_ref()).is_ok();
    let ssconf = maguey_node::read_ssconf(&f.auth.state_dir);
    let terms = f.terms.clone();
    // Raising the term writes (and fsyncs) a file: off the async threads.
    let admitted = tokio::task::spawn_blocking(move || {
        terms.admit(
            &stamp,
            ssconf.as_ref(),
            fingerprint.as_deref().unwrap_or(""),
            authorized,
        )
    })
    .await;
    match admitted {
        Ok(Ok(())) => next.run(req).await,
        Ok(Err(e)) => {
            tracing::warn!("node RPC refused: {e}");
            refused(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("checking the master term: {e}"),
        ),
    }
}
