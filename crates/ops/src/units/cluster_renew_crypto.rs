//! OP_CLUSTER_RENEW_CRYPTO (Ganeti's `gnt-cluster renew-crypto`): new node certificates,
//! signed by the cluster CA, while instances run (docs/security.md).
//!
//! Under the whole cluster's lock, for every online node, the master last:
//! 1. the node makes a new key and a CSR (`certificate_prepare`; the key stays there);
//! 2. the master's CA signs it for the node's name and addresses (`certificate_sign`);
//! 3. the node checks and installs it (`certificate_install`); its TLS server serves it from
//!    the next handshake; the config records the new fingerprint.
//!
//! The master's own certificate is the one nodes obey: the ssconf naming its new fingerprint
//! goes to every other node first (still sent with the old certificate), then the master
//! installs its certificate together with its own ssconf, and its RPC client presents the new
//! one from the next request on. Offline nodes are skipped (they are re-added when they come
//! back, or renewed by a later run).

use crate::util::node_addr;
use crate::{Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Node, Ssconf};
use maguey_rpc::NodeRequest;
use serde_json::{json, Value};

pub struct ClusterRenewCrypto {
    node_certificates: bool,
}

/// What is renewed: the online nodes, the master last.
pub struct Plan {
    others: Vec<Node>,
    master: Node,
}

/// A node's addresses, for its certificate's SANs (as at join).
fn node_ips(node: &Node) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    for ip in [&node.primary_ip, &node.secondary_ip] {
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_ok() && !ips.contains(ip) {
            ips.push(ip.clone());
        }
    }
    ips
}

impl ClusterRenewCrypto {
    /// Steps 1 and 2 for `node`: its CSR signed by the master's CA.
    async fn signed(env: &Env<'_>, master: &Node, node: &Node) -> Result<String, OpError> {
        let csr: String = env.rpc(node, NodeRequest::CertificatePrepare).await?;
        env.rpc(
            master,
            NodeRequest::CertificateSign {
                csr,
                node_name: node.name.clone(),
                ips: node_ips(node),
            },
        )
        .await
    }

    /// Records `node`'s new fingerprint in the config.
    async fn record(env: &Env<'_>, node: &Node, fingerprint: String) -> Result<(), OpError> {
        let Some(current) = env.cfg().nodes.get(&node.uuid).cloned() else {
            return Err(OpError::Exec(format!("node {} left the config", node.name)));
        };
        let mut updated = current;
        updated.certificate_fingerprint = fingerprint;
        env.apply(Command::UpdateNode { node: updated }).await?;
        Ok(())
    }
}

impl LogicalUnit for ClusterRenewCrypto {
    type Op = maguey_model::OpClusterRenewCrypto;
    type Checked = Plan;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        Ok(ClusterRenewCrypto {
            node_certificates: op.node_certificates,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::whole_cluster_exclusive()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let master = cfg
            .master_node()
            .cloned()
            .ok_or_else(|| crate::prereq("the config names no master node"))?;
        let others = cfg
            .nodes
            .values()
            .filter(|n| n.uuid != master.uuid && !n.offline)
            .cloned()
            .collect();
        Ok(Plan { others, master })
    }

    async fn exec(&mut self, env: &Env<'_>, plan: Self::Checked) -> Result<Value, OpError> {
        if !self.node_certificates {
            env.log("nothing to renew");
            return Ok(json!({"renewed": []}));
        }
        let Plan { others, master } = plan;
        let mut renewed = Vec::new();
        for node in &others {
            let cert = Self::signed(env, &master, node).await?;
            let fp: String = env
                .rpc(
                    node,
                    NodeRequest::CertificateInstall {
                        certificate: cert,
                        ssconf: None,
                    },
                )
                .await?;
            Self::record(env, node, fp).await?;
            env.log(format!("node {}: new certificate installed", node.name));
            renewed.push(node.name.clone());
        }
        // The master: every other node learns its new fingerprint first.
        let cert = Self::signed(env, &master, &master).await?;
        let fingerprint = maguey_rpc::fingerprint_pem(&cert)
            .map_err(|e| OpError::Exec(format!("the master's new certificate: {e}")))?;
        Self::record(env, &master, fingerprint.clone()).await?;
        let cfg = env.cfg();
        let ssconf = Ssconf::from_config(&cfg);
        let addrs: Vec<String> = others.iter().map(|n| node_addr(&cfg, n)).collect();
        let results = env
            .master
            .rpc
            .call_many::<Value>(
                &addrs,
                &NodeRequest::WriteSsconf {
                    ssconf: ssconf.clone(),
                },
            )
            .await;
        for (node, r) in others.iter().zip(results) {
            if let Err(e) = r {
                env.log(format!(
                    "node {}: the ssconf naming the master's new certificate was not delivered \
                     ({e}); it refuses the master until it gets it (the master sends it again \
                     when magueyd restarts)",
                    node.name
                ));
            }
        }
        let installed: Result<String, OpError> = env
            .rpc(
                &master,
                NodeRequest::CertificateInstall {
                    certificate: cert,
                    ssconf: Some(ssconf),
                },
            )
            .await;
        let installed = match installed {
            Ok(fp) => fp,
            Err(e) => {
                // The master keeps its certificate: the nodes must obey it again.
                Self::record(env, &master, master.certificate_fingerprint.clone()).await?;
                let ssconf = Ssconf::from_config(&env.cfg());
                env.master
                    .rpc
                    .call_many::<Value>(&addrs, &NodeRequest::WriteSsconf { ssconf })
                    .await;
                return Err(e);
            }
        };
        if installed != fingerprint {
            return Err(OpError::Exec(format!(
                "the master installed certificate {installed}, not {fingerprint}"
            )));
        }
        env.log(format!("master {}: new certificate installed", master.name));
        renewed.push(master.name.clone());
        Ok(json!({ "renewed": renewed }))
    }
}
