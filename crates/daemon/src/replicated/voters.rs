//! The leader's voter set: it follows the config's online master candidates, and each new
//! voter (not a witness) first gets the CA key and the admin certificate.

use super::{member, raft_id, Secrets};
use anyhow::{Context, Result};
use maguey_config::Command;
use maguey_ops::Master;
use maguey_replication::{Member, NodeId, Replica, Role};
use maguey_rpc::ca::{ClusterCa, NodeIdentity};
use maguey_rpc::RpcClient;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// On the leader: the voters follow the config's master candidates (online ones); each new
/// voter first gets the CA key and the admin certificate.
pub(super) async fn voters(replica: Arc<Replica>, master: Arc<Master>, dir: PathBuf) {
    let mut handed: BTreeSet<NodeId> = BTreeSet::new();
    // The CA key and admin certificate handed: a CA roll or a new admin certificate
    // (renew-crypto) hands them to every candidate again.
    let secrets = |dir: &Path| {
        ["ca.key", "admin.pem"].map(|f| std::fs::read(dir.join(f)).unwrap_or_default())
    };
    let mut handed_secrets = secrets(&dir);
    loop {
        let now = secrets(&dir);
        if now != handed_secrets {
            handed.clear();
            handed_secrets = now;
        }
        let cfg = replica.config();
        let status = replica.status();
        if status.role != Role::Leader {
            return;
        }
        let wanted: Vec<(NodeId, Member)> = cfg
            .nodes
            .values()
            .filter(|n| n.master_candidate && !n.offline)
            .map(|n| (raft_id(&n.uuid), member(&cfg, n)))
            .collect();
        for (id, m) in &wanted {
            if *id == status.id {
                continue;
            }
            // A witness is never the master: it gets no CA key and no admin certificate.
            let witness = cfg
                .nodes
                .values()
                .any(|n| n.witness && raft_id(&n.uuid) == *id);
            if witness {
                handed.insert(*id);
            }
            if !handed.contains(id) {
                match hand_secrets(&master.rpc, &dir, m).await {
                    Ok(()) => {
                        handed.insert(*id);
                    }
                    Err(e) => {
                        tracing::debug!("secrets to candidate {}: {e:#}", m.name);
                        continue;
                    }
                }
            }
            if !status.voters.contains_key(id) {
                tracing::info!("adding master candidate {} as a voter", m.name);
                match tokio::time::timeout(
                    Duration::from_secs(15),
                    replica.add_voter(*id, m.clone()),
                )
                .await
                {
                    Ok(Ok(())) => {
                        tracing::info!("{} is a voter", m.name);
                        // Added again after `force-single`: no longer cut off.
                        let cfg = replica.config();
                        let uuid = cfg.node_by_name(&m.name).map(|n| n.uuid.clone());
                        if let Some(uuid) = uuid.filter(|u| cfg.cluster.cut_off_nodes.contains(u)) {
                            let mut cluster = cfg.cluster.clone();
                            cluster.cut_off_nodes.retain(|u| *u != uuid);
                            if let Err(e) = replica.apply(Command::UpdateCluster { cluster }).await
                            {
                                tracing::warn!("{} is no longer cut off: {e}", m.name);
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("adding voter {}: {e}", m.name),
                    Err(_) => tracing::warn!("adding voter {}: timed out", m.name),
                }
            }
        }
        for (id, m) in &status.voters {
            if *id != status.id && !wanted.iter().any(|(w, _)| w == id) {
                tracing::info!("{} is no master candidate now: removing the voter", m.name);
                if let Err(e) = replica.remove_voter(*id).await {
                    tracing::warn!("removing voter {}: {e}", m.name);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn hand_secrets(rpc: &RpcClient, dir: &Path, to: &Member) -> Result<()> {
    let ca = ClusterCa::load(dir).context("the CA")?;
    let admin = NodeIdentity::load_admin(dir).context("the admin certificate")?;
    let body = Secrets {
        ca_key_pem: ca.key_pem,
        admin_cert_pem: admin.cert_pem,
        admin_key_pem: admin.key_pem,
    };
    let url = format!("https://{}/raft/secrets", to.addr);
    let resp = rpc
        .http_now()
        .post(&url)
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!("{url}: {}", resp.status());
    }
    Ok(())
}
