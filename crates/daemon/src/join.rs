//! The join service: the master issues one-time join tokens, and a node that presents a valid
//! token and a certificate request gets its certificate signed and is added to the cluster
//! (OP_NODE_ADD, which finishes once the node's daemon answers over mutual TLS). The HTTP
//! handlers (`/luxi/join-token` and `/join` in [`crate::api`]) only decode and encode.

use crate::api::{JoinTokenRequest, JoinTokenResponse, MasterState};
use maguey_config::Command;
use maguey_jobs::submit::{submit, Origin, SubmitError};
use maguey_jobs::JobQueue;
use maguey_model::{names::validate_hostname, JoinToken, OpCode};
use maguey_ops::Master;
use maguey_rpc::ca::ClusterCa;
use maguey_rpc::join::{JoinRequest, JoinResponse};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// How long a join token stays valid (seconds).
pub const JOIN_TOKEN_LIFETIME: f64 = 3600.0;

/// The node group of a token that names none.
const DEFAULT_GROUP: &str = "default";

/// Why a token was not issued or a node not let in.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid node name: {0}")]
    BadNodeName(String),
    #[error("invalid IP address '{0}'")]
    BadIp(String),
    #[error("node '{0}' is already in the cluster (to re-add it: `maguey node add {0} --readd`)")]
    NodeExists(String),
    #[error("node '{0}' is not in the cluster")]
    NoSuchNode(String),
    /// A node that cannot be re-added, and why.
    #[error("{0}")]
    Readd(String),
    #[error("IP address {ip} is already used by node {node}")]
    IpInUse { ip: String, node: String },
    #[error("node group '{0}' does not exist")]
    NoSuchGroup(String),
    #[error("{0}")]
    BadRoom(maguey_model::rooms::RoomError),
    /// The config store refused the new token.
    #[error("{0}")]
    TokenNotStored(maguey_ops::ConfigWriteError),
    /// Unknown node, wrong secret, or expired: the three are not told apart.
    #[error("invalid, used or expired join token")]
    InvalidToken,
    #[error("cannot sign the certificate request: {0}")]
    BadCsr(String),
    /// The config or the job queue failed.
    #[error("{0}")]
    Internal(String),
}

impl From<SubmitError> for JoinError {
    fn from(e: SubmitError) -> Self {
        JoinError::Internal(e.to_string())
    }
}

/// Issues tokens and lets nodes in, on the master.
pub struct JoinService {
    master: Arc<Master>,
    queue: Arc<JobQueue>,
    ca: Arc<ClusterCa>,
    /// Where the master API listens (the token's master URL).
    listen: SocketAddr,
    /// The state directory: the CA is read from it (a CA roll replaces it under magueyd).
    state_dir: std::path::PathBuf,
}

impl From<&MasterState> for JoinService {
    fn from(s: &MasterState) -> Self {
        JoinService {
            master: s.master.clone(),
            queue: s.queue.clone(),
            ca: s.ca.clone(),
            listen: s.listen,
            state_dir: s.state_dir.clone(),
        }
    }
}

impl JoinService {
    /// The cluster CA as the state directory holds it now (the one loaded at start when it
    /// cannot be read).
    fn ca(&self) -> ClusterCa {
        ClusterCa::load(&self.state_dir).unwrap_or_else(|_| (*self.ca).clone())
    }

    /// A one-time token for `r.node_name` (replacing an earlier one), valid for
    /// [`JOIN_TOKEN_LIFETIME`].
    pub async fn issue_token(&self, r: &JoinTokenRequest) -> Result<JoinTokenResponse, JoinError> {
        validate_hostname(&r.node_name).map_err(|e| JoinError::BadNodeName(e.to_string()))?;
        if let Some(room) = &r.room {
            maguey_model::rooms::validate_room(room).map_err(JoinError::BadRoom)?;
        }
        for ip in std::iter::once(&r.primary_ip).chain(r.secondary_ip.iter()) {
            if ip.parse::<IpAddr>().is_err() {
                return Err(JoinError::BadIp(ip.clone()));
            }
        }
        self.purge_expired().await;
        let cfg = self.master.config.snapshot();
        if cfg.node_by_name(&r.node_name).is_some() {
            return Err(JoinError::NodeExists(r.node_name.clone()));
        }
        if let Some(n) = cfg.nodes.values().find(|n| n.primary_ip == r.primary_ip) {
            return Err(JoinError::IpInUse {
                ip: r.primary_ip.clone(),
                node: n.name.clone(),
            });
        }
        let group_name = r.group.as_deref().unwrap_or(DEFAULT_GROUP);
        let group = cfg
            .group_by_name(group_name)
            .ok_or_else(|| JoinError::NoSuchGroup(group_name.to_string()))?;
        let (token, secret_sha256) = maguey_rpc::join::new_token(&self.ca().fingerprint());
        let expires = maguey_model::now() + JOIN_TOKEN_LIFETIME;
        let stored = JoinToken {
            node_name: r.node_name.clone(),
            primary_ip: r.primary_ip.clone(),
            secondary_ip: r
                .secondary_ip
                .clone()
                .unwrap_or_else(|| r.primary_ip.clone()),
            group: group.uuid.clone(),
            secret_sha256,
            expires,
            room: r.room.clone().unwrap_or_default(),
            witness: r.witness,
            readd: false,
        };
        self.store_token(stored).await?;
        Ok(JoinTokenResponse {
            token,
            master_url: format!("https://{}", self.listen),
            expires,
        })
    }

    /// A one-time token for a node of the config to join again (Ganeti's `gnt-node add
    /// --readd`), with the addresses, group and room the config holds; valid for
    /// [`JOIN_TOKEN_LIFETIME`]. Its join queues OP_NODE_ADD with `readd`: the node gets a new
    /// certificate (the old one, expired or not, is revoked) and keeps its instances.
    pub async fn issue_readd_token(
        &self,
        r: &maguey_client::api::ReaddTokenRequest,
    ) -> Result<JoinTokenResponse, JoinError> {
        validate_hostname(&r.node_name).map_err(|e| JoinError::BadNodeName(e.to_string()))?;
        self.purge_expired().await;
        let cfg = self.master.config.snapshot();
        let node = cfg
            .node_by_name(&r.node_name)
            .ok_or_else(|| JoinError::NoSuchNode(r.node_name.clone()))?;
        if cfg.master_node().is_some_and(|m| m.uuid == node.uuid) {
            return Err(JoinError::Readd(format!(
                "node '{}' is the master: it cannot be re-added",
                node.name
            )));
        }
        if let Some(ip) = r.primary_ip.as_ref().filter(|ip| **ip != node.primary_ip) {
            return Err(JoinError::Readd(format!(
                "node '{}' has primary IP {} in the config, not {ip}",
                node.name, node.primary_ip
            )));
        }
        let (token, secret_sha256) = maguey_rpc::join::new_token(&self.ca().fingerprint());
        let expires = maguey_model::now() + JOIN_TOKEN_LIFETIME;
        let stored = JoinToken {
            node_name: node.name.clone(),
            primary_ip: node.primary_ip.clone(),
            secondary_ip: node.secondary_ip.clone(),
            group: node.group.clone(),
            secret_sha256,
            expires,
            room: node.room.clone(),
            witness: node.witness,
            readd: true,
        };
        self.store_token(stored).await?;
        Ok(JoinTokenResponse {
            token,
            master_url: format!("https://{}", self.listen),
            expires,
        })
    }

    /// Stores `token`, replacing the node's earlier one.
    async fn store_token(&self, token: JoinToken) -> Result<(), JoinError> {
        if self
            .master
            .config
            .snapshot()
            .join_tokens
            .contains_key(&token.node_name)
        {
            self.master
                .config
                .apply(Command::RemoveJoinToken {
                    node_name: token.node_name.clone(),
                })
                .await
                .map_err(|e| JoinError::Internal(e.to_string()))?;
        }
        self.master
            .config
            .apply(Command::AddJoinToken { token })
            .await
            .map_err(JoinError::TokenNotStored)?;
        Ok(())
    }

    /// Removes the expired join tokens from the config (each one a config command; a token
    /// that cannot be removed now is tried again at the next issue).
    pub async fn purge_expired(&self) {
        let now = maguey_model::now();
        let cfg = self.master.config.snapshot();
        for t in cfg.join_tokens.values().filter(|t| t.expires < now) {
            let removed = self
                .master
                .config
                .apply(Command::RemoveJoinToken {
                    node_name: t.node_name.clone(),
                })
                .await;
            if let Err(e) = removed {
                tracing::warn!("removing the expired join token of {}: {e}", t.node_name);
            }
        }
    }

    /// A node presents its token and CSR: the token is used up, the CSR signed and
    /// OP_NODE_ADD queued.
    pub async fn join(&self, r: &JoinRequest) -> Result<JoinResponse, JoinError> {
        let cfg = self.master.config.snapshot();
        let tok = cfg
            .join_tokens
            .get(&r.node_name)
            .ok_or(JoinError::InvalidToken)?;
        if !maguey_rpc::join::secret_matches(&r.secret, &tok.secret_sha256)
            || tok.expires < maguey_model::now()
        {
            return Err(JoinError::InvalidToken);
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in [&tok.primary_ip, &tok.secondary_ip] {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let ca = self.ca();
        let lifetime = cfg.cluster.node_certificate_lifetime;
        let lifetime = (lifetime > 0).then(|| std::time::Duration::from_secs(lifetime));
        let cert_pem = ca
            .sign_csr_for(&r.csr_pem, &r.node_name, &ips, lifetime)
            .map_err(|e| JoinError::BadCsr(e.to_string()))?;
        let certificate_fingerprint = maguey_rpc::fingerprint_pem(&cert_pem)
            .map_err(|e| JoinError::Internal(e.to_string()))?;
        // One-time: the token is gone before the certificate leaves.
        self.master
            .config
            .apply(Command::RemoveJoinToken {
                node_name: r.node_name.clone(),
            })
            .await
            .map_err(|e| JoinError::Internal(e.to_string()))?;
        let op = OpCode::NodeAdd(maguey_model::OpNodeAdd {
            node_name: r.node_name.clone(),
            primary_ip: tok.primary_ip.clone(),
            secondary_ip: Some(tok.secondary_ip.clone()),
            group: cfg.nodegroups.get(&tok.group).map(|g| g.name.clone()),
            master_capable: None,
            vm_capable: None,
            room: (!tok.room.is_empty()).then(|| tok.room.clone()),
            // Recorded with the node by OP_NODE_ADD: a certificate whose node was not added
            // (the job failed) is nobody's, and commands nothing.
            certificate_fingerprint: Some(certificate_fingerprint),
            witness: tok.witness,
            readd: tok.readd,
        });
        submit(&self.queue, Origin::Join, vec![op], 0)?;
        Ok(JoinResponse {
            cert_pem,
            ca_pem: ca.cert_pem.clone(),
            master_name: self.master.node_name.clone(),
            master_certificate: cfg
                .master_node()
                .map(|n| n.certificate_fingerprint.clone())
                .unwrap_or_default(),
        })
    }
}
