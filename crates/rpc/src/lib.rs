//! Node RPC: the protocol between master and node daemons, the cluster CA, mutual TLS.
//!
//! * [`ca`]: the cluster CA and node identities (certificate + key + CA certificate).
//! * [`tls`]: rustls configurations (server requests client certs, verified against the CA).
//! * [`server`]: the HTTPS accept loop feeding an axum router, with [`server::PeerIdentity`].
//! * [`client`]: [`client::RpcClient`], the mTLS HTTP client of master and CLI, over an
//!   [`client::RpcTransport`] (HTTPS by default; in process in tests).
//! * [`join`]: one-time join tokens and the node side of the join flow.
//! * [`console`]: interactive serial consoles over upgraded HTTP/1.1 connections.
//! * [`fence`]: the cluster and master term every master→node RPC carries.
//! * [`ca_roll`]: replacing the cluster CA in place.
//! * [`rotate`]: renewing the admin and Remote API certificates.
//! * [`reload`]: the TLS server and RPC client following a renewed certificate.
//! * [`version`]: the protocol version every request carries, and its checks.

pub mod ca;
pub mod ca_roll;
pub mod client;
pub mod console;
pub mod fence;
pub mod join;
pub mod limits;
pub mod protocol;
pub mod reload;
pub mod renew;
pub mod rotate;
pub mod server;
pub mod tls;
pub mod version;

pub use ca::{fingerprint_pem, CertError, ClusterCa, NodeIdentity};
pub use client::{
    rpc_error_counts, HttpsTransport, RpcClient, RpcError, RpcTransport, TransportAnswer,
    TransportFuture, TransportRequest,
};
pub use fence::{Fence, FenceStamp};
pub use join::{
    join, join_ca_router, new_token, parse_token, secret_sha256, JoinRequest, JoinResponse,
};
pub use protocol::*;
pub use server::{require_admin_cert, require_peer_cert, serve, PeerCert, PeerIdentity};
pub use tls::{client_config, server_config};
