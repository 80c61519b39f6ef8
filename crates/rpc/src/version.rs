//! The protocol version on the wire, so that a cluster can be upgraded one node at a time.
//!
//! Every request of the node RPC and of the master API carries `X-Maguey-Protocol: N`
//! ([`HEADER`], [`PROTOCOL_VERSION`]); the clients of this crate and of the master API send
//! it on every request, and servers answer with their own. A server serves peers whose
//! version is within one of its own ([`OLDEST`] to [`NEWEST`]); a request without the header
//! comes from protocol 1, which did not send it ([`WITHOUT_HEADER`]). Unknown JSON fields are
//! ignored on both sides (no `deny_unknown_fields` on wire types), so a peer one version apart
//! works for every request both know; a request one side does not know (an unknown
//! endpoint, an unknown node procedure) is refused with a message naming both versions.
//!
//! Server side: [`check_protocol`] is the axum middleware of the node RPC and the master
//! API, and [`RpcRequest`] the extractor of `POST /rpc` bodies that refuses unknown
//! procedures clearly.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub use maguey_model::PROTOCOL_VERSION;

/// The request and response header naming the sender's protocol version.
pub const HEADER: &str = "x-maguey-protocol";
/// The version of a request without [`HEADER`]: protocol 1 did not send it.
pub const WITHOUT_HEADER: u32 = 1;
/// The oldest protocol a server of this build still serves.
pub const OLDEST: u32 = PROTOCOL_VERSION - 1;
/// The newest protocol a server of this build serves (a peer upgraded before it).
pub const NEWEST: u32 = PROTOCOL_VERSION + 1;

/// Whether this build works with a peer speaking protocol `v` (one version apart at most).
pub fn compatible(v: u32) -> bool {
    (OLDEST..=NEWEST).contains(&v)
}

/// The protocol of the peer that sent a request; in the request's extensions after
/// [`check_protocol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProtocol(pub u32);

/// Why a peer's version is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("invalid {HEADER} header '{0}': expected a protocol version number")]
    Invalid(String),
    #[error(
        "the peer speaks protocol {peer}, this daemon protocol {PROTOCOL_VERSION}, which works \
         with protocols {OLDEST} to {NEWEST}: upgrade {}",
        if *peer > NEWEST { "this node" } else { "the peer" }
    )]
    Unsupported { peer: u32 },
}

/// The protocol version a request announces ([`WITHOUT_HEADER`] without the header).
pub fn peer_version(headers: &HeaderMap) -> Result<u32, VersionError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(WITHOUT_HEADER);
    };
    let text = v.to_str().unwrap_or("").trim();
    text.parse()
        .map_err(|_| VersionError::Invalid(String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

/// [`peer_version`], refused unless [`compatible`].
pub fn check(headers: &HeaderMap) -> Result<u32, VersionError> {
    let v = peer_version(headers)?;
    if compatible(v) {
        Ok(v)
    } else {
        Err(VersionError::Unsupported { peer: v })
    }
}

/// The headers a client speaking protocol `v` sends with every request (none for protocol 1,
/// which did not send it: only tests act as such a peer).
pub fn request_headers(v: u32) -> HeaderMap {
    let mut h = HeaderMap::new();
    if v != WITHOUT_HEADER {
        h.insert(HEADER, HeaderValue::from(v));
    }
    h
}

/// The refusal of a request this side does not know, naming both versions.
pub fn unknown_request(what: &str, peer: u32) -> String {
    if peer > PROTOCOL_VERSION {
        format!(
            "{what} is not known here: this daemon speaks protocol {PROTOCOL_VERSION}, the \
             peer protocol {peer}; upgrade this node to use it"
        )
    } else {
        format!(
            "unknown request {what} (this daemon speaks protocol {PROTOCOL_VERSION}, the peer \
             protocol {peer})"
        )
    }
}

/// The message of an empty 404/405 answer: a peer older than protocol 2 (whose servers do not
/// name their version) does not know the request.
pub fn unrouted_message(status: StatusCode) -> Option<String> {
    matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    )
    .then(|| {
        format!(
            "HTTP {status}: the peer does not know this request (it may speak an older \
             protocol than this client's {PROTOCOL_VERSION}: upgrade it to use the request)"
        )
    })
}

/// An error answer: `{"error": msg}`, the shape of both the master API's errors and
/// [`crate::RpcReply::Error`].
fn refusal(status: StatusCode, msg: String) -> Response {
    let body = serde_json::json!({ "error": msg }).to_string();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// axum middleware of the node RPC and the master API: refuses a request whose protocol is
/// invalid or not [`compatible`] (400), records [`PeerProtocol`], turns the empty 404/405 of
/// a path or method this daemon does not know into a refusal naming both versions, and
/// answers with [`HEADER`]. Use with `axum::middleware::from_fn(check_protocol)`.
pub async fn check_protocol(mut req: Request, next: Next) -> Response {
    let peer = match check(req.headers()) {
        Ok(v) => v,
        Err(e) => return with_version(refusal(StatusCode::BAD_REQUEST, e.to_string())),
    };
    req.extensions_mut().insert(PeerProtocol(peer));
    let what = format!("{} {}", req.method(), req.uri().path());
    let resp = next.run(req).await;
    let unrouted = matches!(
        resp.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) && axum::body::HttpBody::size_hint(resp.body()).exact() == Some(0);
    if !unrouted {
        return with_version(resp);
    }
    let (mut parts, _) = resp.into_parts();
    let refused = refusal(parts.status, unknown_request(&what, peer));
    parts.headers.extend(refused.headers().clone());
    with_version(Response::from_parts(parts, refused.into_body()))
}

fn with_version(mut r: Response) -> Response {
    r.headers_mut()
        .insert(HEADER, HeaderValue::from(PROTOCOL_VERSION));
    r
}

/// The body of `POST /rpc` (a [`crate::NodeRequest`]), like `Json<T>` but answering an
/// unknown procedure (a peer newer than this node) with a refusal that names the procedure
/// and both versions, and bad arguments with the versions too.
pub struct RpcRequest<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for RpcRequest<T> {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, state: &S) -> Result<Self, Self::Rejection> {
        let peer = match req.extensions().get::<PeerProtocol>() {
            Some(p) => p.0,
            None => {
                check(req.headers()).map_err(|e| refusal(StatusCode::BAD_REQUEST, e.to_string()))?
            }
        };
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&bytes).map(RpcRequest).map_err(|e| {
            let procedure = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("procedure")?.as_str().map(String::from));
            match procedure {
                Some(p) if e.to_string().contains(&format!("unknown variant `{p}`")) => refusal(
                    StatusCode::NOT_IMPLEMENTED,
                    unknown_request(&format!("procedure '{p}'"), peer),
                ),
                Some(p) => refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "invalid arguments to '{p}' (this node speaks protocol \
                         {PROTOCOL_VERSION}, the peer protocol {peer}): {e}"
                    ),
                ),
                None => refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("invalid request: {e}"),
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeRequest;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    fn headers(v: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = v {
            h.insert(HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn versions_one_apart_are_served() {
        assert_eq!(check(&headers(None)), Ok(WITHOUT_HEADER));
        let ours = PROTOCOL_VERSION.to_string();
        assert_eq!(check(&headers(Some(&ours))), Ok(PROTOCOL_VERSION));
        assert_eq!(check(&headers(Some(&OLDEST.to_string()))), Ok(OLDEST));
        assert_eq!(
            check(&headers(Some(&NEWEST.to_string()))),
            Ok(PROTOCOL_VERSION + 1)
        );
        assert_eq!(
            check(&headers(Some(&(NEWEST + 1).to_string()))),
            Err(VersionError::Unsupported { peer: NEWEST + 1 })
        );
        assert_eq!(
            check(&headers(Some("0"))),
            Err(VersionError::Unsupported { peer: 0 })
        );
        assert!(matches!(
            check(&headers(Some("two"))),
            Err(VersionError::Invalid(_))
        ));
        assert!(request_headers(WITHOUT_HEADER).is_empty());
        assert_eq!(request_headers(PROTOCOL_VERSION)[HEADER], ours.as_str());
    }

    #[test]
    fn an_older_peers_empty_404_is_explained() {
        let m = crate::client::error_message(StatusCode::NOT_FOUND, "");
        assert!(
            m.starts_with("HTTP 404 Not Found: the peer does not know this request"),
            "{m}"
        );
        assert!(
            m.contains(&format!("this client's {PROTOCOL_VERSION}")),
            "{m}"
        );
        let m = crate::client::error_message(StatusCode::INTERNAL_SERVER_ERROR, "");
        assert_eq!(m, "HTTP 500 Internal Server Error");
    }

    fn router() -> Router {
        Router::new()
            .route(
                "/rpc",
                post(|RpcRequest(r): RpcRequest<NodeRequest>| async move { r.procedure() }),
            )
            .layer(axum::middleware::from_fn(check_protocol))
    }

    async fn send(
        path: &str,
        version: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::post(path)
            .body(Body::from(body.to_string()))
            .unwrap();
        *req.headers_mut() = headers(version);
        let resp = router().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn unknown_procedures_and_paths_are_refused_naming_both_versions() {
        let newer = NEWEST.to_string();
        let too_new = (NEWEST + 1).to_string();
        let (status, h, body) = send("/rpc", None, r#"{"procedure":"version"}"#).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "version"));
        assert_eq!(h[HEADER], PROTOCOL_VERSION.to_string().as_str());
        // Unknown fields from a newer peer are ignored.
        let (status, _, body) = send(
            "/rpc",
            Some(&newer),
            r#"{"procedure":"instance_list","args":{"hypervisor":"fake","new":1}}"#,
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "instance_list"));
        let (status, _, body) =
            send("/rpc", Some(&newer), r#"{"procedure":"frob","args":{}}"#).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
        let msg: crate::RpcReply = serde_json::from_str(&body).unwrap();
        assert_eq!(
            msg,
            crate::RpcReply::Error(format!(
                "procedure 'frob' is not known here: this daemon speaks protocol \
                 {PROTOCOL_VERSION}, the peer protocol {NEWEST}; upgrade this node to use it"
            ))
        );
        let (status, _, body) = send("/other", Some(&newer), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("POST /other is not known here"), "{body}");
        let (status, _, body) = send("/rpc", Some(&too_new), r#"{"procedure":"version"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains(&format!(
                "the peer speaks protocol {too_new}, this daemon protocol {PROTOCOL_VERSION}"
            )),
            "{body}"
        );
    }
}
