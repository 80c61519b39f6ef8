//! The Remote API of a master candidate (docs/replication.md): every candidate listens on
//! the RAPI port, so that Ganeti's RAPI client works against any of them. The leader serves
//! the requests itself; a follower forwards them, reads and writes alike, to the leader's
//! Remote API with the client's own credentials (the leader checks them against its users
//! file, written from the replicated config), so a read through a follower is as fresh as one
//! on the leader and a client reads its own writes. Without a leader the answer is 503 with
//! the replica's no-quorum error, as Ganeti's JSON error.

use crate::replicated::Candidacy;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use maguey_replication::Role;
use std::net::SocketAddr;
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
}

fn ganeti_error(status: StatusCode, explain: impl Into<String>) -> Response {
    maguey_rapi::ApiError::new(status, explain).into_response()
}

/// One request: the master's Remote API while this node leads; otherwise forwarded.
async fn entry(State(Fwd { c, client }): State<Fwd>, req: Request) -> Response {
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
    let status = replica.status();
    let leader = status
        .leader
        .filter(|l| *l != status.id)
        .and_then(|l| status.voters.get(&l).cloned());
    match leader {
        Some(m) => forward(&client, &leader_rapi(&c, &m.addr), req).await,
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
