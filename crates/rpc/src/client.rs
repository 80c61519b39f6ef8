//! The RPC client: HTTPS with the node's certificate as client certificate, trusting only the
//! cluster CA.

use crate::ca::NodeIdentity;
use crate::protocol::{NodeRequest, RpcReply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

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
pub(crate) fn error_message(status: reqwest::StatusCode, body: &str) -> String {
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

/// Decodes a JSON answer, or turns a non-2xx answer into [`RpcError::Remote`].
pub(crate) async fn decode_json<T: DeserializeOwned>(
    url: &str,
    resp: reqwest::Response,
) -> Result<T, RpcError> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| transport_error(url, e))?;
    if !status.is_success() {
        return Err(RpcError::Remote(error_message(status, &body)));
    }
    serde_json::from_str(&body)
        .map_err(|e| RpcError::Protocol(format!("{url}: invalid answer: {e}: {}", truncate(&body))))
}

/// Talks to node daemons (and to the master's API) over mutual TLS. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RpcClient {
    http: reqwest::Client,
    /// The default bound of a request; [`NodeRequest::timeout`] raises it for long ones.
    timeout: Duration,
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
        Ok(RpcClient { http, timeout })
    }

    /// Calls `req` on the node daemon at `addr` (`ip:port`) and decodes the `Ok` value as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        addr: &str,
        req: &NodeRequest,
    ) -> Result<T, RpcError> {
        let url = format!("https://{addr}/rpc");
        let resp = self
            .http
            .post(&url)
            .timeout(req.timeout(self.timeout))
            .json(req)
            .send()
            .await
            .map_err(|e| transport_error(&url, e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| transport_error(&url, e))?;
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
        let resp = self
            .http
            .post(url)
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        decode_json(url, resp).await
    }

    /// GETs `url` and decodes the JSON answer (non-2xx: [`RpcError::Remote`]).
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, RpcError> {
        let resp = self
            .http
            .get(url)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        decode_json(url, resp).await
    }

    /// The underlying HTTP client (for other methods, streaming, ...).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
