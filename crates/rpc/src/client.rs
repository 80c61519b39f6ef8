//! The RPC client: HTTPS with the node's certificate as client certificate, trusting only the
//! cluster CA.
//!
//! [`RpcClient`] encodes requests and decodes answers; an [`RpcTransport`] carries them. The
//! default transport is [`HttpsTransport`] (reqwest over mutual TLS); tests run the master's
//! code against in-process node runtimes by giving [`RpcClient::with_transport`] a transport
//! that answers in the same process (same JSON on the wire, no sockets).

use crate::ca::NodeIdentity;
use crate::fence::{Fence, FenceStamp};
use crate::protocol::{NodeRequest, RpcReply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Failed node RPCs of this process, by procedure (the master's `/metrics`).
static RPC_ERRORS: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// How many node RPCs failed in this process since it started, by procedure.
pub fn rpc_error_counts() -> std::collections::BTreeMap<&'static str, u64> {
    RPC_ERRORS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub use reqwest::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RpcError {
    /// The peer could not be reached: connection refused, TLS handshake failed, timeout.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error.
    #[error("{0}")]
    Remote(String),
    /// The answer could not be understood.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// An error message with its whole source chain (reqwest's Display alone is terse).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg
}

pub(crate) fn transport_error(url: &str, e: reqwest::Error) -> RpcError {
    if e.is_connect() || e.is_timeout() || e.is_request() {
        RpcError::Unreachable(format!("{url}: {}", chain(&e)))
    } else {
        RpcError::Protocol(format!("{url}: {}", chain(&e)))
    }
}

const MAX_ERROR_BODY: usize = 2000;

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_BODY {
        return s.trim().to_string();
    }
    let mut end = MAX_ERROR_BODY;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s[..end].trim())
}

/// The error message of a failed HTTP answer: a JSON `{"error": ...}`/`{"message": ...}` or
/// `RpcReply::Error`, else the body text, else the status.
pub(crate) fn error_message(status: StatusCode, body: &str) -> String {
    if let Ok(RpcReply::Error(e)) = serde_json::from_str::<RpcReply>(body) {
        return e;
    }
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["error", "message", "msg"] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    if body.trim().is_empty() {
        crate::version::unrouted_message(status).unwrap_or_else(|| format!("HTTP {status}"))
    } else {
        format!("HTTP {status}: {}", truncate(body))
    }
}

/// The HTTP method of a [`TransportRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One request as a transport carries it: the client has encoded the body already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportRequest {
    pub method: Method,
    /// `https://ip:port/path`; node RPCs go to [`node_rpc_url`].
    pub url: String,
    /// The JSON body of a POST (`Content-Type: application/json`).
    pub body: Option<Vec<u8>>,
    /// Bounds the whole exchange (connect + answer).
    pub timeout: Duration,
    /// The cluster and master term a node RPC carries (a master's client); `None`: no
    /// fencing headers (the CLI, tests, older peers).
    pub fence: Option<FenceStamp>,
}

/// The raw answer: status and body text; the client decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportAnswer {
    pub status: StatusCode,
    pub body: String,
}

/// A boxed future of a transport.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TransportAnswer, RpcError>> + Send + 'a>>;

/// Carries the requests of an [`RpcClient`]. A peer that cannot be reached is
/// [`RpcError::Unreachable`]; any answer, whatever its status, is `Ok`.
pub trait RpcTransport: Debug + Send + Sync + 'static {
    fn send(&self, req: TransportRequest) -> TransportFuture<'_>;

    /// The HTTPS client this transport uses now, when it follows certificate renewals
    /// ([`RpcClient::http_now`]); `None`: the client's own.
    fn http_now(&self) -> Option<reqwest::Client> {
        None
    }
}

/// The URL of the node RPC endpoint of the daemon at `addr` (`ip:port`).
pub fn node_rpc_url(addr: &str) -> String {
    format!("https://{addr}/rpc")
}

/// The production transport: HTTPS with reqwest (mutual TLS when built by [`RpcClient::new`]).
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    http: reqwest::Client,
}

impl HttpsTransport {
    pub fn new(http: reqwest::Client) -> Self {
        HttpsTransport { http }
    }

    /// The HTTPS client it sends with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl RpcTransport for HttpsTransport {
    fn send(&self, req: TransportRequest) -> TransportFuture<'_> {
        Box::pin(async move {
            let url = req.url;
            let mut builder = match req.method {
                Method::Get => self.http.get(&url),
                Method::Post => self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(req.body.unwrap_or_default()),
            };
            if let Some(stamp) = &req.fence {
                let mut h = reqwest::header::HeaderMap::new();
                stamp.insert_into(&mut h);
                builder = builder.headers(h);
            }
            let resp = builder
                .timeout(req.timeout)
                .send()
                .await
                .map_err(|e| transport_error(&url, e))?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| transport_error(&url, e))?;
            Ok(TransportAnswer { status, body })
        })
    }
}

/// Decodes a JSON answer, or turns a non-2xx answer into [`RpcError::Remote`].
pub(crate) async fn decode_json<T: DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, RpcError> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| transport_error(url, e))?;
    decode_answer(url, TransportAnswer { status, body })
}

fn decode_answer<T: DeserializeOwned>(url: &str, answer: TransportAnswer) -> Result<T, RpcError> {
    let TransportAnswer { status, body } = answer;
    if !status.is_success() {
        return Err(RpcError::Remote(error_message(status, &body)));
    }
    serde_json::from_str(&body)
        .map_err(|e| RpcError::Protocol(format!("{url}: invalid answer: {e}: {}", truncate(&body))))
}

fn encode<B: Serialize + ?Sized>(url: &str, body: &B) -> Result<Vec<u8>, RpcError> {
    serde_json::to_vec(body)
        .map_err(|e| RpcError::Protocol(format!("{url}: cannot encode the request: {e}")))
}

/// Talks to node daemons (and to the master's API) over mutual TLS, or over the transport
/// given to [`RpcClient::with_transport`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    transport: Arc<dyn RpcTransport>,
    /// The default bound of a request; [`NodeRequest::timeout`] raises it for long ones.
    timeout: Duration,
    /// The master's cluster and term, stamped on every node RPC ([`RpcClient::with_fence`]).
    fence: Option<Fence>,
}

impl RpcClient {
    /// A client presenting `id`'s certificate and trusting only `id`'s cluster CA. `timeout`
    /// bounds every request (connect + answer).
    pub fn new(id: &NodeIdentity, timeout: Duration) -> Result<Self, RpcError> {
        let tls = crate::tls::client_config_with(&id.ca_pem, Some((&id.cert_pem, &id.key_pem)))
            .map_err(|e| RpcError::Protocol(format!("cannot set up TLS: {e}")))?;
        Self::with_tls(tls, timeout, crate::version::PROTOCOL_VERSION)
    }

    /// [`RpcClient::new`] speaking protocol `protocol` (tests acting as an older or newer peer).
    pub fn with_protocol(
        id: &NodeIdentity,
        timeout: Duration,
        protocol: u32,
    ) -> Result<Self, RpcError> {
        let tls = crate::tls::client_config_with(&id.ca_pem, Some((&id.cert_pem, &id.key_pem)))
            .map_err(|e| RpcError::Protocol(format!("cannot set up TLS: {e}")))?;
        Self::with_tls(tls, timeout, protocol)
    }

    pub(crate) fn with_tls(
        tls: rustls::ClientConfig,
        timeout: Duration,
        protocol: u32,
    ) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .default_headers(crate::version::request_headers(protocol))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .no_proxy()
            .build()
            .map_err(|e| RpcError::Protocol(format!("cannot build HTTP client: {}", chain(&e))))?;
        Ok(RpcClient {
            transport: Arc::new(HttpsTransport::new(http.clone())),
            http,
            timeout,
            fence: None,
        })
    }

    /// A client whose requests ([`call`](Self::call), [`post_json`](Self::post_json),
    /// [`get_json`](Self::get_json)) go through `transport` (tests: in-process nodes).
    /// [`http`](Self::http) is then a plain HTTPS client without a client certificate.
    pub fn with_transport(
        transport: Arc<dyn RpcTransport>,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| RpcError::Protocol(format!("cannot build HTTP client: {}", chain(&e))))?;
        Ok(RpcClient {
            http,
            transport,
            timeout,
            fence: None,
        })
    }

    /// This client sending its requests through `transport` instead (the same timeout, fence
    /// and [`http`](Self::http) client): [`crate::reload::rpc_client`].
    pub fn replace_transport(mut self, transport: Arc<dyn RpcTransport>) -> Self {
        self.transport = transport;
        self
    }

    /// This client stamping every node RPC with `fence`'s cluster and term (a master's
    /// client: nodes refuse a lower term than the highest they have seen).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The fence of a master's client.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Calls `req` on the node daemon at `addr` (`ip:port`) and decodes the `Ok` value as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        addr: &str,
        req: &NodeRequest,
    ) -> Result<T, RpcError> {
        let r = self.call_once(addr, req).await;
        if r.is_err() {
            let mut m = RPC_ERRORS.lock().unwrap_or_else(|e| e.into_inner());
            *m.entry(req.procedure()).or_default() += 1;
        }
        r
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        addr: &str,
        req: &NodeRequest,
    ) -> Result<T, RpcError> {
        let url = node_rpc_url(addr);
        let TransportAnswer { status, body } = self
            .transport
            .send(TransportRequest {
                method: Method::Post,
                body: Some(encode(&url, req)?),
                url,
                timeout: req.timeout(self.timeout),
                fence: self.fence.as_ref().map(Fence::stamp),
            })
            .await?;
        match serde_json::from_str::<RpcReply>(&body) {
            Ok(RpcReply::Ok(value)) => serde_json::from_value(value).map_err(|e| {
                RpcError::Protocol(format!(
                    "{}: unexpected answer to {}: {e}",
                    addr,
                    req.procedure()
                ))
            }),
            Ok(RpcReply::Error(e)) => Err(RpcError::Remote(e)),
            Err(_) if !status.is_success() => Err(RpcError::Remote(error_message(status, &body))),
            Err(e) => Err(RpcError::Protocol(format!(
                "{addr}: invalid answer to {}: {e}: {}",
                req.procedure(),
                truncate(&body)
            ))),
        }
    }

    /// Calls `req` on every address in parallel; results are in the order of `addrs`.
    pub async fn call_many<T: DeserializeOwned + Send + 'static>(
        &self,
        addrs: &[String],
        req: &NodeRequest,
    ) -> Vec<Result<T, RpcError>> {
        let handles: Vec<_> = addrs
            .iter()
            .map(|addr| {
                let client = self.clone();
                let addr = addr.clone();
                let req = req.clone();
                tokio::spawn(async move { client.call::<T>(&addr, &req).await })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(match h.await {
                Ok(r) => r,
                Err(e) => Err(RpcError::Protocol(format!("RPC task failed: {e}"))),
            });
        }
        out
    }

    /// POSTs `body` as JSON to `url` and decodes the JSON answer. A non-2xx answer is
    /// [`RpcError::Remote`] with the server's error message.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, RpcError> {
        let answer = self
            .transport
            .send(TransportRequest {
                method: Method::Post,
                url: url.to_string(),
                body: Some(encode(url, body)?),
                timeout: self.timeout,
                fence: None,
            })
            .await?;
        decode_answer(url, answer)
    }

    /// GETs `url` and decodes the JSON answer (non-2xx: [`RpcError::Remote`]).
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, RpcError> {
        let answer = self
            .transport
            .send(TransportRequest {
                method: Method::Get,
                url: url.to_string(),
                body: None,
                timeout: self.timeout,
                fence: None,
            })
            .await?;
        decode_answer(url, answer)
    }

    /// The underlying HTTP client (for other methods, streaming, ...).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The HTTPS client presenting the node certificate as it is now: after a renewal
    /// ([`crate::reload::rpc_client`]) a new client (new connections) with the renewed
    /// certificate; otherwise [`http`](Self::http). For requests outside the node RPC (Raft,
    /// consoles) that must follow renewals.
    pub fn http_now(&self) -> reqwest::Client {
        self.transport
            .http_now()
            .unwrap_or_else(|| self.http.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers every request with the next canned answer and records the requests.
    #[derive(Debug, Default)]
    struct Canned {
        answers: Mutex<Vec<Result<TransportAnswer, RpcError>>>,
        seen: Mutex<Vec<TransportRequest>>,
    }

    impl RpcTransport for Canned {
        fn send(&self, req: TransportRequest) -> TransportFuture<'_> {
            self.seen.lock().unwrap().push(req);
            let next = self.answers.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    fn answer(status: u16, body: &str) -> Result<TransportAnswer, RpcError> {
        Ok(TransportAnswer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.to_string(),
        })
    }

    #[tokio::test]
    async fn calls_go_through_the_transport_as_json() {
        let t = Arc::new(Canned::default());
        *t.answers.lock().unwrap() = vec![
            answer(200, r#"{"ok": 42}"#),
            answer(200, r#"{"error": "no such instance"}"#),
            answer(500, "boom"),
            Err(RpcError::Unreachable("down".into())),
            answer(200, "not json"),
        ];
        let c = RpcClient::with_transport(t.clone(), Duration::from_secs(7)).unwrap();
        let req = NodeRequest::TestDelay { duration: 1.0 };
        let v: u32 = c.call("10.0.0.1:1811", &req).await.unwrap();
        assert_eq!(v, 42);
        {
            let seen = t.seen.lock().unwrap();
            assert_eq!(seen[0].method, Method::Post);
            assert_eq!(seen[0].url, "https://10.0.0.1:1811/rpc");
            assert_eq!(seen[0].timeout, req.timeout(Duration::from_secs(7)));
            let body: NodeRequest = serde_json::from_slice(seen[0].body.as_ref().unwrap()).unwrap();
            assert_eq!(body, req);
        }
        let e = c.call::<u32>("a:1", &req).await.unwrap_err();
        assert_eq!(e, RpcError::Remote("no such instance".into()));
        let e = c.call::<u32>("a:1", &req).await.unwrap_err();
        assert_eq!(
            e,
            RpcError::Remote("HTTP 500 Internal Server Error: boom".into())
        );
        let e = c.call::<u32>("a:1", &req).await.unwrap_err();
        assert_eq!(e, RpcError::Unreachable("down".into()));
        let e = c.call::<u32>("a:1", &req).await.unwrap_err();
        assert!(matches!(e, RpcError::Protocol(m) if m.contains("invalid answer to test_delay")));
    }

    #[tokio::test]
    async fn a_masters_node_rpcs_carry_its_cluster_and_term() {
        let t = Arc::new(Canned::default());
        *t.answers.lock().unwrap() = vec![
            answer(200, r#"{"ok": 1}"#),
            answer(200, r#"{"ok": 2}"#),
            answer(200, r#"{"id": 3}"#),
        ];
        let fence = Fence::new("c-1", 4);
        let c = RpcClient::with_transport(t.clone(), Duration::from_secs(5))
            .unwrap()
            .with_fence(fence.clone());
        let req = NodeRequest::Version;
        let _: u32 = c.call("a:1", &req).await.unwrap();
        // A new leader raises the term of every clone in place.
        c.clone().fence().unwrap().raise(6);
        let _: u32 = c.call("a:1", &req).await.unwrap();
        let _: serde_json::Value = c.post_json("https://m:1/luxi/x", &1).await.unwrap();
        let seen = t.seen.lock().unwrap();
        let stamp = |term| {
            Some(FenceStamp {
                cluster: "c-1".into(),
                term,
            })
        };
        assert_eq!(seen[0].fence, stamp(4));
        assert_eq!(seen[1].fence, stamp(6));
        // The master API (the CLI's requests) carries none.
        assert_eq!(seen[2].fence, None);
        assert_eq!(fence.term(), 6);
    }

    #[tokio::test]
    async fn master_api_requests_go_through_the_transport() {
        let t = Arc::new(Canned::default());
        *t.answers.lock().unwrap() = vec![
            answer(200, r#"{"id": 3}"#),
            answer(404, r#"{"error": "job 9 not found"}"#),
        ];
        let c = RpcClient::with_transport(t.clone(), Duration::from_secs(5)).unwrap();
        let v: serde_json::Value = c
            .post_json("https://m:1/luxi/submit", &serde_json::json!({"ops": []}))
            .await
            .unwrap();
        assert_eq!(v["id"], 3);
        let e = c
            .get_json::<serde_json::Value>("https://m:1/luxi/jobs/9")
            .await
            .unwrap_err();
        assert_eq!(e, RpcError::Remote("job 9 not found".into()));
        let seen = t.seen.lock().unwrap();
        assert_eq!(seen[0].method, Method::Post);
        assert_eq!(seen[0].body.as_deref(), Some(&br#"{"ops":[]}"#[..]));
        assert_eq!(seen[1].method, Method::Get);
        assert_eq!(seen[1].body, None);
        assert_eq!(seen[1].timeout, Duration::from_secs(5));
    }
}
