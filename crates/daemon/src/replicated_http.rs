//! The HTTP side of a master candidate (docs/replication.md): `/raft/...` to candidates
//! only (Raft's RPCs, the secrets a new voter gets, a request to campaign), and the master
//! API of whichever master this node is now, or a redirect to the leader.

use crate::raft::{check_candidate, RaftState};
use crate::replicated::{Candidacy, Secrets};
use anyhow::Result;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use maguey_replication::{Replica, Role};
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::PeerIdentity;
use serde::Deserialize;
use std::sync::Arc;
use tower::ServiceExt;

/// The `/raft` routes (to candidates only), and the master API of whichever master this node
/// is now, or a redirect to the leader.
pub fn router(c: Arc<Candidacy>) -> Router {
    Router::new()
        .route("/raft/secrets", post(secrets))
        .route("/raft/campaign", post(campaign))
        .route("/raft/{kind}", post(raft_rpc))
        // Every path no route knows comes here (the master API, or a refusal): the protocol
        // check below covers it too, so that an unknown request names both versions.
        .fallback(master_api)
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .layer(axum::middleware::from_fn(
            maguey_rpc::version::check_protocol,
        ))
        .with_state(c)
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

/// The replica answering a peer: opened on the first request of an authorized master.
async fn replica_for(
    c: &Arc<Candidacy>,
    peer: Option<&maguey_rpc::PeerCert>,
) -> Result<Arc<Replica>, Response> {
    if let Some(r) = c.replica() {
        let state = RaftState {
            replica: r.clone(),
            auth: c.auth.clone(),
        };
        return match check_candidate(&state, peer) {
            Ok(()) => Ok(r.clone()),
            Err(e) => Err(refuse(StatusCode::FORBIDDEN, e)),
        };
    }
    // Not a candidate yet: only the master may make this node one.
    if let Err(e) = c.auth.check(peer) {
        return Err(refuse(StatusCode::FORBIDDEN, e));
    }
    c.open()
        .await
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))
}

fn peer_of(req: &Request) -> Option<maguey_rpc::PeerCert> {
    req.extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone())
}

async fn raft_rpc(
    State(c): State<Arc<Candidacy>>,
    UrlPath(kind): UrlPath<String>,
    req: Request,
) -> Response {
    let peer = peer_of(&req);
    let replica = match replica_for(&c, peer.as_ref()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let kind = match kind.parse() {
        Ok(k) => k,
        Err(e) => return refuse(StatusCode::NOT_FOUND, e),
    };
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match replica.serve(kind, &body).await {
        Ok(reply) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            reply,
        )
            .into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct FailoverRequest {
    #[serde(default)]
    to: Option<String>,
}

/// `POST /raft/campaign`: the master steps down and asks this candidate to stand.
async fn campaign(State(c): State<Arc<Candidacy>>, req: Request) -> Response {
    let peer = peer_of(&req);
    match replica_for(&c, peer.as_ref()).await {
        Ok(r) => match r.campaign().await {
            Ok(()) => Json(serde_json::json!({})).into_response(),
            Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        Err(resp) => resp,
    }
}

/// `POST /raft/secrets`: the leader hands a candidate the CA key and the admin certificate
/// (kept where they are if this node has them already).
async fn secrets(State(c): State<Arc<Candidacy>>, req: Request) -> Response {
    let peer = peer_of(&req);
    if let Err(resp) = replica_for(&c, peer.as_ref()).await {
        return resp;
    }
    let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let s: Secrets = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let dir = &c.dir;
    let write = || -> Result<()> {
        // The first time, and again after a CA roll (the new CA's key, once trusted here).
        maguey_rpc::ca_roll::adopt_key(dir, &s.ca_key_pem).map_err(|e| anyhow::anyhow!("{e}"))?;
        let current = NodeIdentity::load_admin(dir).ok();
        if current.is_none_or(|a| a.cert_pem != s.admin_cert_pem) {
            NodeIdentity {
                cert_pem: s.admin_cert_pem.clone(),
                key_pem: s.admin_key_pem.clone(),
                ca_pem: c.identity.ca_pem.clone(),
            }
            .save_admin(dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    };
    match write() {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// Any other request: the master API when this node is the master; on a follower a redirect
/// to the leader; without a leader the no-quorum error.
async fn master_api(State(c): State<Arc<Candidacy>>, req: Request) -> Response {
    let active = c.active.read().ok().and_then(|a| a.clone());
    if req.uri().path() == "/luxi/force-single" {
        if !peer_of(&req).is_some_and(|p| p.admin) {
            return refuse(StatusCode::FORBIDDEN, "the admin certificate is required");
        }
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16)
            .await
            .unwrap_or_default();
        let r: ForceSingleRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match (&r.confirm_off, &active) {
            (None, _) => {
                return match c.force_single().await {
                    Ok((term, cut)) => Json(serde_json::json!({
                        "term": term,
                        "cut_off": cut,
                        "master": c.node_name,
                    }))
                    .into_response(),
                    Err(e) => refuse(StatusCode::CONFLICT, format!("{e:#}")),
                };
            }
            (Some(node), Some(a)) => return confirm_off(&a.master(), node).await,
            // Confirmations go to the master.
            (Some(_), None) => {
                let req = Request::from_parts(parts, axum::body::Body::from(body));
                return redirect_or_refuse(&c, req).await;
            }
        }
    }
    if let (Some(_), Some(replica), "/luxi/replication") = (&active, c.replica(), req.uri().path())
    {
        if !peer_of(&req).is_some_and(|p| p.admin) {
            return refuse(StatusCode::FORBIDDEN, "the admin certificate is required");
        }
        return Json(replication_info(&replica)).into_response();
    }
    if let (Some(_), Some(replica), "/luxi/master-failover") =
        (&active, c.replica(), req.uri().path())
    {
        if !peer_of(&req).is_some_and(|p| p.admin) {
            return refuse(StatusCode::FORBIDDEN, "the admin certificate is required");
        }
        let body = axum::body::to_bytes(req.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let to: FailoverRequest = serde_json::from_slice(&body).unwrap_or_default();
        return match c.master_failover(replica.clone(), to.to).await {
            Ok(name) => Json(serde_json::json!({ "master": name })).into_response(),
            Err(e) => refuse(StatusCode::CONFLICT, format!("{e:#}")),
        };
    }
    if let Some(a) = active {
        return match a.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    redirect_or_refuse(&c, req).await
}

#[derive(Debug, Default, Deserialize)]
struct ForceSingleRequest {
    /// Not a recovery: the admin confirms this cut-off node is off.
    #[serde(default)]
    confirm_off: Option<String>,
}

/// `cluster force-single --confirm-off NODE` on the master: NODE's instances may be failed
/// over and started elsewhere again.
async fn confirm_off(master: &maguey_ops::Master, name: &str) -> Response {
    let cfg = master.config.snapshot();
    let Some(node) = cfg.node_by_name(name) else {
        return refuse(StatusCode::NOT_FOUND, format!("no node {name}"));
    };
    if !cfg.cluster.cut_off_nodes.contains(&node.uuid) {
        return refuse(
            StatusCode::CONFLICT,
            format!("node {name} was not cut off by force-single"),
        );
    }
    let mut cluster = cfg.cluster.clone();
    cluster.cut_off_nodes.retain(|u| *u != node.uuid);
    match master
        .config
        .apply(maguey_config::Command::UpdateCluster { cluster })
        .await
    {
        Ok(serial) => {
            Json(serde_json::json!({ "confirmed_off": name, "serial_no": serial })).into_response()
        }
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Whether a request asks for a possibly stale answer: `stale-ok=1` (or `true`, or bare) in
/// its query.
pub(crate) fn stale_ok(uri: &axum::http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "stale-ok" | "stale-ok=1" | "stale-ok=true"))
    })
}

/// Off the master: stale reads (`?stale-ok=1`), else a redirect to the leader, or why there
/// is none.
async fn redirect_or_refuse(c: &Arc<Candidacy>, req: Request) -> Response {
    let path = req.uri().path();
    let Some(replica) = c.replica() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if stale_ok(req.uri()) && path == "/luxi/query" {
        if !peer_of(&req).is_some_and(|p| p.admin) {
            return refuse(StatusCode::FORBIDDEN, "the admin certificate is required");
        }
        return stale_query(c, replica.clone(), req).await;
    }
    if !(path.starts_with("/luxi/") || path.starts_with("/join")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let status = replica.status();
    let leader = status
        .leader
        .filter(|l| *l != status.id)
        .and_then(|l| status.voters.get(&l));
    match leader {
        Some(m) => {
            let target = format!(
                "https://{}{}",
                m.addr,
                req.uri().path_and_query().map_or(path, |p| p.as_str())
            );
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
                .into_response()
        }
        None if status.role == Role::Leader => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node was just elected master and is starting; try again",
        ),
        None => {
            let why = match replica.read_config().await {
                Err(e) => e.to_string(),
                Ok(_) => "no master is elected yet; try again".to_string(),
            };
            refuse(StatusCode::SERVICE_UNAVAILABLE, why)
        }
    }
}

/// `GET /luxi/replication` on the master (`cluster info`): the term, the voters and how far
/// each one's log is behind the leader's.
fn replication_info(replica: &Replica) -> serde_json::Value {
    let st = replica.status();
    let last = st.last_log_index.unwrap_or(0);
    let voters: Vec<serde_json::Value> = st
        .voters
        .iter()
        .map(|(id, m)| {
            let matched = if *id == st.id {
                st.last_log_index
            } else {
                st.matched.get(id).copied().flatten()
            };
            serde_json::json!({
                "name": m.name,
                "id": id,
                "address": m.addr,
                "leader": Some(*id) == st.leader,
                "matched": matched,
                "lag": matched.map(|m| last.saturating_sub(m)),
            })
        })
        .collect();
    serde_json::json!({
        "term": st.term,
        "leader": st.leader.and_then(|l| st.voters.get(&l)).map(|m| m.name.clone()),
        "last_log_index": st.last_log_index,
        "last_applied": st.last_applied,
        "voters": voters,
    })
}

/// The replicated config as this replica has applied it, read-only: what a follower answers
/// with `--stale-ok`.
struct StaleConfig(Arc<Replica>);

impl maguey_ops::ConfigBackend for StaleConfig {
    fn snapshot(&self) -> Arc<maguey_model::ConfigData> {
        self.0.config()
    }

    fn apply(
        &self,
        _command: maguey_config::Command,
    ) -> maguey_ops::BoxFuture<'_, Result<u64, maguey_ops::ConfigWriteError>> {
        Box::pin(async {
            Err(maguey_ops::ConfigWriteError::Unavailable(
                "a stale replica changes nothing".into(),
            ))
        })
    }
}

/// A master over this replica's config, read-only (its writes are refused): what stale reads
/// are answered with (live fields still ask the nodes, fenced with the replica's term).
pub(crate) fn stale_master(
    c: &Candidacy,
    replica: &Arc<Replica>,
) -> Result<maguey_ops::Master, String> {
    let cfg = replica.config();
    let rpc = maguey_rpc::reload::rpc_client(&c.dir, std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?
        .with_fence(maguey_rpc::Fence::new(
            &cfg.cluster.uuid,
            cfg.cluster.fence_term(),
        ));
    Ok(maguey_ops::Master {
        config: Arc::new(StaleConfig(replica.clone())),
        rpc,
        node_name: c.node_name.clone(),
        destroy: Arc::new(tokio::sync::Notify::new()),
    })
}

/// Why a stale answer may be stale: whose replica, how far it has applied, and who the master
/// is (or why there is none, e.g. the no-quorum error).
pub(crate) async fn stale_why(c: &Candidacy, replica: &Replica) -> String {
    let cfg = replica.config();
    let st = replica.status();
    let leader = st
        .leader
        .filter(|l| *l != st.id)
        .and_then(|l| st.voters.get(&l))
        .map(|m| format!("the master is {}", m.name));
    let why = match leader {
        Some(l) => l,
        None => match replica.read_config().await {
            Err(e) => e.to_string(),
            Ok(_) => "no master is elected".to_string(),
        },
    };
    format!(
        "{}'s replica (config serial {}, log index {}); {why}",
        c.node_name,
        cfg.serial_no,
        st.last_applied.unwrap_or(0)
    )
}

/// `POST /luxi/query?stale-ok=1` on a node that is not the master: the query answered from
/// this replica's config (live fields still ask the nodes), marked with why it may be stale.
async fn stale_query(c: &Arc<Candidacy>, replica: Arc<Replica>, req: Request) -> Response {
    let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let q: maguey_ops::query::QueryRequest = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let master = match stale_master(c, &replica) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let why = stale_why(c, &replica).await;
    match maguey_ops::query::query(&master, &q).await {
        Ok(mut r) => {
            r.stale = Some(why);
            Json(r).into_response()
        }
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}
