//! Joining a node to the cluster with a one-time token.
//!
//! The token is `"{secret_hex}.{ca_fingerprint_hex}"`: the secret proves to the master that the
//! admin allowed this node (the master stores only its SHA-256), the fingerprint lets the node
//! check the master's CA before trusting it.
//!
//! 1. The node GETs `{master}/join/ca` without verifying the server, and checks that the SHA-256
//!    of the returned CA certificate equals the token's fingerprint.
//! 2. It generates its key locally and POSTs a [`JoinRequest`] (with a CSR) to `{master}/join`,
//!    now verifying the master against that CA. The master answers a [`JoinResponse`].

use crate::ca::{fingerprint_pem, NodeIdentity};
use crate::client::{decode_json, transport_error, RpcError};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Path of the CA certificate endpoint (served by [`join_ca_router`]).
pub const JOIN_CA_PATH: &str = "/join/ca";
/// Path the master serves the join request on (handler in the daemon).
pub const JOIN_PATH: &str = "/join";
/// Timeout of each join request.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_name: String,
    /// The secret part of the token.
    pub secret: String,
    pub csr_pem: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The node's certificate, signed by the cluster CA.
    pub cert_pem: String,
    pub ca_pem: String,
    pub master_name: String,
    /// SHA-256 (hex) of the master's certificate: the one client whose commands the new
    /// node accepts until its first ssconf (empty from masters that do not record it).
    #[serde(default)]
    pub master_certificate: String,
}

/// SHA-256 (hex) of the secret string as given (its UTF-8 bytes).
pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented secret with a stored SHA-256, in constant time.
pub fn secret_matches(secret: &str, stored_sha256: &str) -> bool {
    let a = secret_sha256(secret);
    let b = stored_sha256.to_ascii_lowercase();
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A new token for a cluster whose CA has `ca_fingerprint`: returns `(token, secret_sha256)`.
pub fn new_token(ca_fingerprint: &str) -> (String, String) {
    let secret: [u8; 32] = rand::random();
    let secret = hex::encode(secret);
    let hash = secret_sha256(&secret);
    (
        format!("{secret}.{}", ca_fingerprint.to_ascii_lowercase()),
        hash,
    )
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Splits a token into `(secret, ca_fingerprint)`.
pub fn parse_token(token: &str) -> Result<(String, String), String> {
    let token = token.trim();
    let (secret, fp) = token
        .split_once('.')
        .ok_or_else(|| "invalid join token: expected SECRET.FINGERPRINT".to_string())?;
    if !is_hex(secret, 64) {
        return Err("invalid join token: the secret must be 64 hex digits".into());
    }
    if !is_hex(fp, 64) {
        return Err("invalid join token: the CA fingerprint must be 64 hex digits".into());
    }
    Ok((secret.to_ascii_lowercase(), fp.to_ascii_lowercase()))
}

/// A router serving `GET /join/ca` with the cluster CA certificate (PEM text). Needs no client
/// certificate: merge it into the master's router outside `require_peer_cert`.
pub fn join_ca_router(ca_pem: String) -> Router {
    Router::new().route(
        JOIN_CA_PATH,
        get(move || {
            let pem = ca_pem.clone();
            async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], pem) }
        }),
    )
}

/// [`join_ca_router`] serving the CA `dir`'s `ca.pem` holds now (its first certificate: the
/// current CA, also during a CA roll), or `fallback` when it cannot be read.
pub fn join_ca_router_dir(dir: std::path::PathBuf, fallback: String) -> Router {
    Router::new().route(
        JOIN_CA_PATH,
        get(move || {
            let pem = crate::ca::ClusterCa::load(&dir)
                .map(|ca| first_cert_pem(&ca.cert_pem))
                .unwrap_or_else(|_| fallback.clone());
            async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], pem) }
        }),
    )
}

/// The first PEM certificate block of `text`.
fn first_cert_pem(text: &str) -> String {
    const END: &str = "-----END CERTIFICATE-----";
    match text.find(END) {
        Some(i) => format!("{}\n", &text[..i + END.len()]),
        None => text.to_string(),
    }
}

/// Joins the cluster whose master listens at `master_url` (`https://ip:port`): checks the
/// master's CA against the token, sends a CSR and returns the node's new identity (to be
/// saved with [`NodeIdentity::save`]).
pub async fn join(
    master_url: &str,
    token: &str,
    node_name: &str,
) -> Result<NodeIdentity, RpcError> {
    join_cluster(master_url, token, node_name)
        .await
        .map(|(id, _, _)| id)
}

/// [`join`], also answering the master's name and certificate fingerprint (see
/// [`JoinResponse::master_certificate`]).
pub async fn join_cluster(
    master_url: &str,
    token: &str,
    node_name: &str,
) -> Result<(NodeIdentity, String, String), RpcError> {
    let (secret, fingerprint) = parse_token(token).map_err(RpcError::Protocol)?;
    let base = master_url.trim_end_matches('/');

    // 1. Fetch the CA without trusting anything, then check it against the token.
    let insecure = crate::tls::insecure_client_config()
        .map_err(|e| RpcError::Protocol(format!("cannot set up TLS: {e}")))?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(insecure)
        .timeout(JOIN_TIMEOUT)
        .default_headers(crate::version::request_headers(
            crate::version::PROTOCOL_VERSION,
        ))
        .no_proxy()
        .build()
        .map_err(|e| RpcError::Protocol(format!("cannot build HTTP client: {e}")))?;
    let url = format!("{base}{JOIN_CA_PATH}");
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| transport_error(&url, e))?;
    let status = resp.status();
    let ca_pem = resp.text().await.map_err(|e| transport_error(&url, e))?;
    if !status.is_success() {
        return Err(RpcError::Remote(crate::client::error_message(
            status, &ca_pem,
        )));
    }
    let master_fp = fingerprint_pem(&ca_pem)
        .map_err(|e| RpcError::Protocol(format!("{url}: invalid CA certificate: {e}")))?;
    if master_fp != fingerprint {
        return Err(RpcError::Protocol(
            "the master's CA does not match the token".into(),
        ));
    }

    // 2. Send the CSR, verifying the master with that CA.
    let (csr_pem, key_pem) = NodeIdentity::new_csr(node_name)
        .map_err(|e| RpcError::Protocol(format!("cannot create a CSR: {e}")))?;
    let tls = crate::tls::client_config_with(&ca_pem, None)
        .map_err(|e| RpcError::Protocol(format!("cannot set up TLS: {e}")))?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(JOIN_TIMEOUT)
        .default_headers(crate::version::request_headers(
            crate::version::PROTOCOL_VERSION,
        ))
        .no_proxy()
        .build()
        .map_err(|e| RpcError::Protocol(format!("cannot build HTTP client: {e}")))?;
    let url = format!("{base}{JOIN_PATH}");
    let req = JoinRequest {
        node_name: node_name.to_string(),
        secret,
        csr_pem,
    };
    let resp = http
        .post(&url)
        .json(&req)
        .send()
        .await
        .map_err(|e| transport_error(&url, e))?;
    let answer: JoinResponse = decode_json(&url, resp).await?;
    if fingerprint_pem(&answer.ca_pem).ok().as_deref() != Some(fingerprint.as_str()) {
        return Err(RpcError::Protocol(
            "the master's CA does not match the token".into(),
        ));
    }
    let id = NodeIdentity {
        cert_pem: answer.cert_pem,
        key_pem,
        ca_pem: answer.ca_pem,
    };
    // The certificate must fit our key and be signed by the CA.
    crate::tls::client_config(&id)
        .map_err(|e| RpcError::Protocol(format!("the master sent an unusable certificate: {e}")))?;
    Ok((id, answer.master_name, answer.master_certificate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let fp = "AB".repeat(32);
        let (token, hash) = new_token(&fp);
        let (secret, got_fp) = parse_token(&token).unwrap();
        assert_eq!(got_fp, fp.to_ascii_lowercase());
        assert_eq!(secret.len(), 64);
        assert_eq!(secret_sha256(&secret), hash);
        assert!(secret_matches(&secret, &hash));
        assert!(secret_matches(&secret, &hash.to_ascii_uppercase()));
        assert!(!secret_matches(&secret, &secret_sha256("other")));
        assert!(!secret_matches(&secret, ""));
        // Two tokens never share a secret.
        assert_ne!(new_token(&fp).0, token);
        for bad in [
            "",
            ".",
            "abc",
            &format!("{secret}."),
            &format!(".{fp}"),
            &format!("{secret}.{fp}x"),
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
        assert!(parse_token(&format!("  {token}\n")).is_ok());
    }
}
