//! HTTPS server with optional client certificates: an accept loop over tokio-rustls and hyper
//! that hands every request to an axum [`Router`], tagged with the peer's identity.

use crate::ca::{common_name_der, fingerprint_der, is_admin_der};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`serve`] waits for open connections after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A verified client certificate (signed by the cluster CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The certificate's subject CN: the node name.
    pub common_name: String,
    /// SHA-256 (hex) of the certificate's DER.
    pub fingerprint: String,
    /// An admin client certificate ([`crate::ca::ADMIN_OU`]), not a node's.
    pub admin: bool,
}

/// Inserted into every request's extensions by [`serve`]: the client certificate, if the peer
/// presented one (it was then verified against the cluster CA during the handshake).
///
/// Also an axum extractor (`PeerIdentity(peer): PeerIdentity`); outside [`serve`] it
/// extracts as `PeerIdentity(None)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub Option<PeerCert>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIdentity {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<PeerIdentity>()
            .cloned()
            .unwrap_or(PeerIdentity(None)))
    }
}

/// The message of the 403 answered by [`require_peer_cert`].
pub const PEER_CERT_REQUIRED: &str = "a client certificate signed by the cluster CA is required";

/// axum middleware: answers 403 Forbidden unless the peer presented a cluster certificate.
/// Use with `axum::middleware::from_fn(require_peer_cert)`.
pub async fn require_peer_cert(req: Request, next: Next) -> Response {
    match req.extensions().get::<PeerIdentity>() {
        Some(PeerIdentity(Some(_))) => next.run(req).await,
        _ => (StatusCode::FORBIDDEN, PEER_CERT_REQUIRED).into_response(),
    }
}

/// The message of the 403 answered by [`require_admin_cert`].
pub const ADMIN_CERT_REQUIRED: &str =
    "an admin client certificate is required (a node's certificate is not an admin's)";

/// axum middleware: answers 403 Forbidden unless the peer presented an admin certificate of
/// the cluster (see [`crate::ca::ClusterCa::issue_admin`]). Node certificates are refused.
pub async fn require_admin_cert(req: Request, next: Next) -> Response {
    match req.extensions().get::<PeerIdentity>() {
        Some(PeerIdentity(Some(p))) if p.admin => next.run(req).await,
        _ => (StatusCode::FORBIDDEN, ADMIN_CERT_REQUIRED).into_response(),
    }
}

/// `router.layer(from_fn(require_peer_cert))`, for convenience.
pub fn with_peer_cert_required(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(require_peer_cert))
}

fn peer_of(conn: &rustls::ServerConnection) -> PeerIdentity {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| PeerCert {
            common_name: common_name_der(der).unwrap_or_default(),
            fingerprint: fingerprint_der(der),
            admin: is_admin_der(der),
        });
    PeerIdentity(cert)
}

/// Serves `router` over TLS on `listener` until `shutdown` completes.
///
/// Each request carries a [`PeerIdentity`] and `ConnectInfo<SocketAddr>` in its extensions.
/// A failed TLS handshake drops only that connection (logged at debug level). After the
/// shutdown signal no connection is accepted; open connections finish their current request
/// (up to [`SHUTDOWN_GRACE`]) before `serve` returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = crate::limits::ConnectionLimits::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // e.g. EMFILE: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Bounded connections: a flood from one address leaves room for the others.
        // Replies are written in several pieces (TLS records, headers, body): without
        // TCP_NODELAY the last one waits for the client's delayed ACK (~40 ms a request).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on the connection from {remote}: {e}");
        }
        let Some(slot) = limits.admit(remote.ip()) else {
            tracing::debug!("connection from {remote} refused: too many open connections");
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let mut stop_rx = stop_rx.clone();
        conns.spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {remote} failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake with {remote} timed out");
                    return;
                }
            };
            let peer = peer_of(tls.get_ref().1);
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req.extensions_mut().insert(ConnectInfo(remote));
                let mut router = router.clone();
                async move {
                    let req = req.map(|b| {
                        axum::body::Body::new(crate::limits::TimeoutBody::new(
                            b,
                            crate::limits::BODY_READ_TIMEOUT,
                        ))
                    });
                    tower::Service::call(&mut router, req).await
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(crate::limits::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc)
                // Console connections switch protocols (see `crate::console`).
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection from {remote}: {e}");
                    }
                }
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::debug!("connection from {remote}: {e}");
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// The peer address of a request served by [`serve`], if any.
pub fn remote_addr(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
