//! OP_CLUSTER_RENEW_CRYPTO (Ganeti's `gnt-cluster renew-crypto`): new node certificates,
//! signed by the cluster CA, a new Remote API certificate, new DRBD secrets and a new admin
//! certificate (last: the CLI that asked switches to it), while instances run
//! (docs/security.md).
//!
//! Node certificates: under the whole cluster's lock, for every online node, the master last:
//! 1. the node makes a new key and a CSR (`certificate_prepare`; the key stays there);
//! 2. the master's CA signs it for the node's name and addresses (`certificate_sign`);
//! 3. the node checks and installs it (`certificate_install`); its TLS server serves it from
//!    the next handshake; the config records the new fingerprint.
//!
//! The master's own certificate is the one nodes obey: the ssconf naming its new fingerprint
//! goes to every other node first (still sent with the old certificate), then the master
//! installs its certificate together with its own ssconf, and its RPC client presents the new
//! one from the next request on. Offline nodes are skipped (they are re-added when they come
//! back, or renewed by a later run); so are nodes that cannot be reached at all, except in a
//! CA roll.

use crate::util::node_addr;
use crate::{Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Node, Ssconf};
use maguey_rpc::NodeRequest;
use serde_json::{json, Value};

pub struct ClusterRenewCrypto {
    op: maguey_model::OpClusterRenewCrypto,
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
    async fn signed(
        env: &Env<'_>,
        master: &Node,
        node: &Node,
        next_ca: bool,
        lifetime_secs: u64,
    ) -> Result<String, OpError> {
        let csr: String = env.rpc(node, NodeRequest::CertificatePrepare).await?;
        env.rpc(
            master,
            NodeRequest::CertificateSign {
                csr,
                node_name: node.name.clone(),
                ips: node_ips(node),
                next_ca,
                lifetime_secs,
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
        if op.new_rapi_cert && op.rapi_cert_file.is_some() {
            return Err(crate::prereq(
                "a new RAPI certificate is either made (new_rapi_cert) or given \
                 (rapi_cert_file), not both",
            ));
        }
        if let Some(f) = &op.rapi_cert_file {
            if !f.starts_with('/') {
                return Err(crate::prereq(format!(
                    "the RAPI certificate file must be an absolute path on the master: {f}"
                )));
            }
        }
        if let Some(l) = op.node_certificate_lifetime {
            let (min, max) = (
                maguey_model::MIN_NODE_CERTIFICATE_LIFETIME,
                maguey_model::MAX_NODE_CERTIFICATE_LIFETIME,
            );
            if !(min..=max).contains(&l) {
                return Err(crate::prereq(format!(
                    "a node certificate lifetime must be between {min} and {max} seconds, not {l}"
                )));
            }
        }
        Ok(ClusterRenewCrypto { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::whole_cluster_exclusive()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let master = cfg
            .master_node()
            .cloned()
            .ok_or_else(|| crate::prereq("the config names no master node"))?;
        // A replicated cluster rolls its CA too: the leader hands the new CA key and admin
        // certificate to every master candidate once the roll is done (daemon, `voters`).
        let others = cfg
            .nodes
            .values()
            .filter(|n| n.uuid != master.uuid && !n.offline)
            .cloned()
            .collect();
        Ok(Plan { others, master })
    }

    async fn exec(&mut self, env: &Env<'_>, plan: Self::Checked) -> Result<Value, OpError> {
        let op = self.op.clone();
        let mut result = serde_json::Map::new();
        let master = plan.master.clone();
        if let Some(l) = op.node_certificate_lifetime {
            let mut c = env.cfg().cluster.clone();
            c.node_certificate_lifetime = l;
            env.apply(Command::UpdateCluster { cluster: c }).await?;
            env.log(format!("node certificates live {l} s from now on"));
        }
        let lifetime = env.cfg().cluster.node_certificate_lifetime;
        if op.new_cluster_cert {
            Self::roll_ca(env, plan, lifetime).await?;
            result.insert("cluster_certificate".into(), json!(true));
        } else if op.node_certificates || op.node_certificate_lifetime.is_some() {
            let renewed = Self::node_certificates(env, plan, false, lifetime).await?;
            result.insert("renewed".into(), renewed);
        }
        if op.new_rapi_cert || op.rapi_cert_file.is_some() {
            let mut ips = node_ips(&master);
            if let Some(mip) = &env.cfg().cluster.master_ip {
                let ip = mip.ip.to_string();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            let fp: String = env
                .rpc(
                    &master,
                    NodeRequest::RapiCertificateRenew {
                        file: op.rapi_cert_file.clone(),
                        ips,
                    },
                )
                .await?;
            env.log(format!("new RAPI certificate {fp}"));
            result.insert("rapi_certificate".into(), json!(fp));
        }
        if op.new_drbd_secrets {
            let renewed = crate::drbd_secrets::renew_all(env).await?;
            result.insert("drbd_secrets".into(), json!(renewed));
        }
        if op.new_admin_cert || op.new_cluster_cert {
            let fp: String = env.rpc(&master, NodeRequest::AdminCertificateRenew).await?;
            env.log(format!(
                "new admin certificate {fp} (admin.pem on {}): the old one is refused",
                master.name
            ));
            result.insert("admin_certificate".into(), json!(fp));
        }
        if result.is_empty() {
            env.log("nothing to renew");
            result.insert("renewed".into(), json!([]));
        }
        Ok(Value::Object(result))
    }
}

impl ClusterRenewCrypto {
    /// A new cluster CA ([`maguey_rpc::ca_roll`]): made on the master, trusted beside the
    /// current one on every online node, every node's certificate from it (the master last),
    /// then trusted alone (the master last, its key becoming the CA key).
    async fn roll_ca(env: &Env<'_>, plan: Plan, lifetime: u64) -> Result<(), OpError> {
        let master = plan.master.clone();
        let others = plan.others.clone();
        let ca: String = env.rpc(&master, NodeRequest::CaPrepare).await?;
        let fp = maguey_rpc::fingerprint_pem(&ca)
            .map_err(|e| OpError::Exec(format!("the new CA: {e}")))?;
        env.log(format!(
            "new cluster CA {fp}: trusted beside the current one"
        ));
        for node in others.iter().chain([&master]) {
            let _: Value = env
                .rpc(node, NodeRequest::CaTrust { ca: ca.clone() })
                .await?;
        }
        Self::node_certificates(env, plan, true, lifetime).await?;
        for node in others.iter().chain([&master]) {
            let _: Value = env
                .rpc(node, NodeRequest::CaFinish { ca: ca.clone() })
                .await?;
            env.log(format!("node {}: trusts the new CA only", node.name));
        }
        env.log(format!(
            "cluster CA {fp} in place: certificates of the old CA are refused"
        ));
        Ok(())
    }

    /// New certificates for every online node, the master last (from the new CA of a CA
    /// roll with `next_ca`); answers their names.
    async fn node_certificates(
        env: &Env<'_>,
        plan: Plan,
        next_ca: bool,
        lifetime_secs: u64,
    ) -> Result<Value, OpError> {
        let Plan { others, master } = plan;
        let mut renewed = Vec::new();
        for node in &others {
            // A node that cannot be reached at all (e.g. the old master of a replicated
            // cluster, dead) keeps its certificate: it is re-added when it comes back. A CA
            // roll needs every online node.
            if !next_ca {
                let addr = node_addr(&env.cfg(), node);
                let probe = env
                    .master
                    .rpc
                    .call::<Value>(&addr, &NodeRequest::Version)
                    .await;
                if let Err(maguey_rpc::RpcError::Unreachable(e)) = probe {
                    env.log(format!(
                        "node {}: unreachable ({e}), skipped: it keeps its certificate (re-add \
                         it if that ends first: maguey node add {} --readd)",
                        node.name, node.name
                    ));
                    continue;
                }
            }
            let cert = Self::signed(env, &master, node, next_ca, lifetime_secs).await?;
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
        let cert = Self::signed(env, &master, &master, next_ca, lifetime_secs).await?;
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
        let mut c = env.cfg().cluster.clone();
        c.node_certificates_renewed = maguey_model::now();
        env.apply(Command::UpdateCluster { cluster: c }).await?;
        Ok(json!(renewed))
    }
}
