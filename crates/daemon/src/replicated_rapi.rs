//! The Remote API of a master candidate (docs/replication.md): every candidate listens on
//! the RAPI port, so that Ganeti's RAPI client works against any of them. The leader serves
//! the requests itself; a follower forwards them, reads and writes alike, to the leader's
//! Remote API with the client's own credentials (the leader checks them against its users
//! file, written from the replicated config), so a read through a follower is as fresh as one
//! on the leader and a client reads its own writes. Without a leader the answer is 503 with
//! the replica's no-quorum error, as Ganeti's JSON error.
//!
//! A GET with `?stale-ok=1` on a follower is answered from its own replica instead, leader or
//! not, quorum or not, marked with an `X-Maguey-Stale` header saying why it may be stale
//! (whose replica, its serial, who the master is or why there is none).

use crate::replicated::Candidacy;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use maguey_replication::{Replica, Role};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// How long a forwarded request may take (a job's `wait` long-polls).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts the candidate's RAPI listener (none with `--rapi-port 0`; a port that cannot be
/// bound is logged and left alone, as a master's is).
pub(crate) async fn start(c: &Arc<Candidacy>) {
    if c.args.rapi_port == 0 {
        return;
    }
    let client = match maguey_rpc::reload::rpc_client(&c.dir, FORWARD_TIMEOUT) {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!("the Remote API does not run on this candidate: {e}");
            return;
        }
    };
    let router = Router::new()
        .fallback(entry)
        .layer(axum::extract::DefaultBodyLimit::max(
            maguey_rapi::DEFAULT_MAX_BODY,
        ))
        .with_state(Fwd {
            c: c.clone(),
            client,
            users_synced: Arc::new(AtomicU64::new(u64::MAX)),
        });
    match crate::serve_rapi(&c.args, &c.dir, c.listen, router).await {
        Ok(server) => {
            if let Ok(mut slot) = c.rapi_server.lock() {
                *slot = Some(server);
            }
        }
        Err(e) => tracing::warn!("the Remote API does not run on this candidate: {e:#}"),
    }
}

/// What the listener's handler holds: the candidate, and a client for the leader's RAPI (it
/// trusts the cluster CA only).
#[derive(Clone)]
struct Fwd {
    c: Arc<Candidacy>,
    client: maguey_rpc::RpcClient,
    /// The config serial whose RAPI users were last written to this node's users file for
    /// stale reads (`u64::MAX`: never).
    users_synced: Arc<AtomicU64>,
}

fn ganeti_error(status: StatusCode, explain: impl Into<String>) -> Response {
    maguey_rapi::ApiError::new(status, explain).into_response()
}

/// One request: the master's Remote API while this node leads; otherwise forwarded.
async fn entry(State(fwd): State<Fwd>, req: Request) -> Response {
    let Fwd { c, client, .. } = &fwd;
    let active = c.active.read().ok().and_then(|a| a.clone());
    if let Some(router) = active.as_ref().and_then(|a| a.rapi.clone()) {
        return match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let Some(replica) = c.replica() else {
        return ganeti_error(StatusCode::SERVICE_UNAVAILABLE, "this node is no master");
    };
    if req.method() == Method::GET && crate::replicated_http::stale_ok(req.uri()) {
        return stale_read(&fwd, replica, req).await;
    }
    let status = replica.status();
    let leader = status
        .leader
        .filter(|l| *l != status.id)
        .and_then(|l| status.voters.get(&l).cloned());
    match leader {
        Some(m) => forward(client, &leader_rapi(c, &m.addr), req).await,
        None if status.role == Role::Leader => ganeti_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node was just elected master and is starting; try again",
        ),
        None => {
            let why = match replica.read_config().await {
                Err(e) => e.to_string(),
                Ok(_) => "no master is elected yet; try again".to_string(),
            };
            ganeti_error(StatusCode::SERVICE_UNAVAILABLE, why)
        }
    }
}

/// Header marking a stale answer, with why it may be stale.
const STALE_HEADER: &str = "x-maguey-stale";

/// `GET ...?stale-ok=1` on a follower: the Remote API over this replica's config, read-only,
/// authenticated against the RAPI users of that config (written to this node's users file as
/// the master writes them), the answer marked with [`STALE_HEADER`].
async fn stale_read(fwd: &Fwd, replica: Arc<Replica>, req: Request) -> Response {
    let c = &fwd.c;
    let master = match crate::replicated_http::stale_master(c, &replica) {
        Ok(m) => m,
        Err(e) => return ganeti_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let users_file = c
        .args
        .rapi_users
        .clone()
        .unwrap_or_else(|| maguey_rapi::default_users_file(&c.dir));
    let cfg = replica.config();
    if fwd.users_synced.load(Ordering::Relaxed) != cfg.serial_no && !cfg.rapi_users.is_empty() {
        match crate::rapi_users::sync_users_file(&users_file, &cfg.rapi_users, &[]) {
            Ok(()) => fwd.users_synced.store(cfg.serial_no, Ordering::Relaxed),
            Err(e) => tracing::warn!("writing the RAPI users file: {e}"),
        }
    }
    if let Err(e) = crate::auth::check_users_file_mode(&users_file) {
        return ganeti_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
    }
    let rapi = maguey_rapi::Rapi::read_only(
        Arc::new(master),
        maguey_rapi::RapiConfig {
            users_file,
            anonymous_reads: c.args.rapi_anonymous_reads,
            max_body: maguey_rapi::DEFAULT_MAX_BODY,
        },
    );
    let why = crate::replicated_http::stale_why(c, &replica).await;
    let mut r = match rapi.router().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // A header carries visible ASCII only.
    let why: String = why
        .chars()
        .map(|ch| {
            if ch.is_ascii_graphic() || ch == ' ' {
                ch
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = header::HeaderValue::from_str(&why) {
        r.headers_mut()
            .insert(HeaderName::from_static(STALE_HEADER), v);
    }
    r
}

/// The leader's Remote API address: its magueyd's host, this node's RAPI port (the same on
/// every candidate).
fn leader_rapi(c: &Candidacy, magueyd: &str) -> String {
    let host = match magueyd.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => a.ip().to_string(),
        Ok(SocketAddr::V6(a)) => format!("[{}]", a.ip()),
        Err(_) => magueyd
            .rsplit_once(':')
            .map_or(magueyd, |(h, _)| h)
            .to_string(),
    };
    format!("{host}:{}", c.args.rapi_port)
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade"
    )
}

/// Sends the request to the leader's Remote API and answers what it answered.
async fn forward(client: &maguey_rpc::RpcClient, leader: &str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("https://{leader}{path}");
    let body = match axum::body::to_bytes(body, maguey_rapi::DEFAULT_MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ganeti_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the request body: {e}"),
            )
        }
    };
    let mut out = client.http_now().request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return ganeti_error(
                StatusCode::BAD_GATEWAY,
                format!("forwarding to the master at {url}: {e}"),
            )
        }
    };
    let status = resp.status();
    let headers: Vec<(HeaderName, header::HeaderValue)> = resp
        .headers()
        .iter()
        .filter(|(n, _)| !hop_by_hop(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return ganeti_error(
                StatusCode::BAD_GATEWAY,
                format!("reading the master's answer from {url}: {e}"),
            )
        }
    };
    let mut r = (status, bytes).into_response();
    for (n, v) in headers {
        r.headers_mut().insert(n, v);
    }
    r
}
