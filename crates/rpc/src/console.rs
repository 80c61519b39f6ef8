//! Interactive serial consoles over upgraded HTTP/1.1 connections.
//!
//! `maguey instance console NAME` asks the master with `Connection: upgrade` and
//! `Upgrade: maguey-console` ([`PROTOCOL`]); the master asks the instance's primary node the same
//! way, both answer `101 Switching Protocols`, and from then on the connections carry the raw
//! bytes of the serial console both ways (over the same mutual TLS as every other request).
//! A refusal is an ordinary HTTP answer with a JSON `{"error": ...}` body.
//!
//! Server side: [`wants_upgrade`], [`take_upgrade`], [`switching_protocols`]. Client side:
//! [`console_http_client`] and [`connect`]. Both: [`splice`].

use crate::ca::NodeIdentity;
use crate::client::{chain, error_message};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The `Upgrade` protocol token of console connections.
pub const PROTOCOL: &str = "maguey-console";

/// How long [`connect`] waits for the answer to the upgrade request.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The client side of an upgraded console connection.
pub type ConsoleStream = reqwest::Upgraded;

/// The server side of an upgraded console connection.
pub type ServerStream = TokioIo<hyper::upgrade::Upgraded>;

/// Why a console connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// The server could not be reached (connection refused, TLS handshake, timeout).
    #[error("{0}")]
    Unreachable(String),
    /// The server answered, but not with `101 Switching Protocols`: its status and message.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The upgrade itself failed.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// An HTTP client for console connections: presents `id`'s certificate, trusts only the
/// cluster CA, bounds the connection setup but not the life of the console.
pub fn console_http_client(id: &NodeIdentity) -> Result<reqwest::Client, ConsoleError> {
    let tls = crate::tls::client_config_with(&id.ca_pem, Some((&id.cert_pem, &id.key_pem)))
        .map_err(|e| ConsoleError::Protocol(format!("cannot set up TLS: {e}")))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(10))
        .default_headers(crate::version::request_headers(
            crate::version::PROTOCOL_VERSION,
        ))
        .no_proxy()
        .build()
        .map_err(|e| ConsoleError::Protocol(format!("cannot build HTTP client: {}", chain(&e))))
}

/// `GET url` asking for the console upgrade; the upgraded stream once the server agreed.
pub async fn connect(http: &reqwest::Client, url: &str) -> Result<ConsoleStream, ConsoleError> {
    connect_request(http.get(url), url).await
}

/// [`connect`] with a request of the caller's (e.g. with HTTP Basic credentials); `url` is
/// the request's, for messages.
pub async fn connect_request(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<ConsoleStream, ConsoleError> {
    let send = request
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, PROTOCOL)
        .send();
    let resp = match tokio::time::timeout(ANSWER_TIMEOUT, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(ConsoleError::Unreachable(format!("{url}: {}", chain(&e)))),
        Err(_) => {
            return Err(ConsoleError::Unreachable(format!(
                "{url}: no answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            )))
        }
    };
    let status = resp.status();
    if status != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        let body = tokio::time::timeout(ANSWER_TIMEOUT, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        return Err(ConsoleError::Refused {
            status: status.as_u16(),
            message: error_message(status, &body),
        });
    }
    resp.upgrade()
        .await
        .map_err(|e| ConsoleError::Protocol(format!("{url}: upgrade failed: {}", chain(&e))))
}

/// Whether a request asks for the console upgrade (`Connection: upgrade`,
/// `Upgrade: maguey-console`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, PROTOCOL)
}

/// Takes the pending upgrade out of a request served by [`crate::server::serve`]: resolves to
/// the raw stream once the `101` answer ([`switching_protocols`]) has gone out.
pub fn take_upgrade(
    req: &mut Request,
) -> impl Future<Output = Result<ServerStream, String>> + Send + 'static {
    let on = hyper::upgrade::on(req);
    async move {
        on.await
            .map(TokioIo::new)
            .map_err(|e| format!("connection upgrade failed: {e}"))
    }
}

/// The `101 Switching Protocols` answer to a console upgrade request.
pub fn switching_protocols() -> Response {
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    r
}

/// The answer to a request to a console endpoint without the upgrade headers.
pub fn upgrade_required() -> Response {
    let mut r = (
        StatusCode::UPGRADE_REQUIRED,
        axum::Json(serde_json::json!({
            "error": format!("this endpoint needs 'Connection: upgrade' and 'Upgrade: {PROTOCOL}'")
        })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    r
}

/// Copies `from` to `to`, flushing after every chunk (the console is interactive).
async fn pump<R, W>(mut from: R, mut to: W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        total += n as u64;
    }
}

/// Pipes bytes both ways between `a` and `b` until either side ends (end of stream or error);
/// then both are shut down and dropped. A console's ends never half-close: a client that
/// stops typing keeps its connection open while it still wants output.
pub async fn splice<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Send,
    B: AsyncRead + AsyncWrite + Send,
{
    let (ar, mut aw) = tokio::io::split(a);
    let (br, mut bw) = tokio::io::split(b);
    let (ar, br) = (Box::pin(ar), Box::pin(br));
    tokio::select! {
        r = pump(ar, &mut bw) => {
            if let Err(e) = r { tracing::debug!("console: {e}"); }
            let _ = aw.shutdown().await;
        }
        r = pump(br, &mut aw) => {
            if let Err(e) = r { tracing::debug!("console: {e}"); }
            let _ = bw.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_headers() {
        let mut h = HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("Maguey-Console"));
        assert!(wants_upgrade(&h));
        h.remove(header::CONNECTION);
        assert!(!wants_upgrade(&h));
    }

    #[tokio::test]
    async fn splice_ends_when_one_side_ends() {
        let (client, a) = tokio::io::duplex(64);
        let (b, mut far) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(a, b));
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        far.write_all(b"pong").await.unwrap();
        cr.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // The far side goes away: the splice ends and the client sees the end of stream.
        drop(far);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cr.read(&mut got).await.unwrap(), 0);
    }
}
