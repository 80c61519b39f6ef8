//! Two-node clusters (docs/replication.md): the witness that never leads, and
//! `cluster force-single`.

use super::{member, stop, Candidacy};
use anyhow::{Context, Result};
use maguey_config::Command;
use maguey_replication::{Replica, ReplicationError};
use std::sync::Arc;

impl Candidacy {
    /// `cluster force-single --yes-do-it` on this node (see `maguey_replication`'s
    /// `force_single`): refused while a quorum answers. Stops the master here if it runs,
    /// makes this node the only voter in a new epoch, and follows the new replica: it elects
    /// itself and becomes the master, which takes the other voters out of the candidates.
    pub(crate) async fn force_single(self: &Arc<Self>) -> Result<(u64, Vec<String>)> {
        let _opening = self.opening.lock().await;
        let replica = self.replica().context("this node holds no replica")?;
        refuse_beyond_two(&replica.status())?;
        match replica.read_config().await {
            Ok(_) => anyhow::bail!(
                "the master candidates have a quorum: nothing to force (use master-failover)"
            ),
            Err(ReplicationError::NoQuorum { .. }) => {}
            Err(e) => tracing::info!("force-single: the group answers {e}"),
        }
        let status = replica.status();
        if status.leader.is_some_and(|l| l != status.id) {
            anyhow::bail!("a master is elected: nothing to force");
        }
        let others: Vec<String> = status
            .voters
            .iter()
            .filter(|(id, _)| **id != status.id)
            .map(|(_, m)| m.name.clone())
            .collect();
        let cfg = replica.config();
        let me = cfg
            .node_by_name(&self.node_name)
            .with_context(|| format!("node {} is not in the config", self.node_name))?;
        anyhow::ensure!(!me.witness, "a witness cannot be the master");
        let m = member(&cfg, me);
        let old = self.active.write().ok().and_then(|mut a| a.take());
        if let Some(a) = old {
            stop(a).await;
        }
        if let Ok(mut cut) = self.cut_off.lock() {
            *cut = others.clone();
        }
        let (term, fresh) = replica.force_single(m).await?;
        tracing::warn!(
            "force-single: this node is the only voter now (term {term}); cut off: {}",
            others.join(", ")
        );
        if let Ok(mut slot) = self.replica.write() {
            *slot = Some(fresh.clone());
        }
        tokio::spawn(self.clone().follow(fresh));
        Ok((term, others))
    }

    /// After `cluster force-single`: the voters left behind are no master candidates now
    /// (their Raft messages are refused) and are offline; they stay marked as cut off until
    /// an admin confirms them off or adds them again.
    pub(super) async fn cut_off_voters(&self, replica: &Arc<Replica>) -> Result<()> {
        let cut: Vec<String> = self.cut_off.lock().map(|c| c.clone()).unwrap_or_default();
        if cut.is_empty() {
            return Ok(());
        }
        let cfg = replica.config();
        let mut cluster = cfg.cluster.clone();
        for name in &cut {
            let Some(n) = cfg.node_by_name(name) else {
                continue;
            };
            let mut node = n.clone();
            node.master_candidate = false;
            node.offline = true;
            replica.apply(Command::UpdateNode { node }).await?;
            if !cluster.cut_off_nodes.contains(&n.uuid) {
                cluster.cut_off_nodes.push(n.uuid.clone());
            }
        }
        replica.apply(Command::UpdateCluster { cluster }).await?;
        tracing::warn!("force-single: cut off {}", cut.join(", "));
        if let Ok(mut c) = self.cut_off.lock() {
            c.clear();
        }
        Ok(())
    }

    /// Whether this node is a witness (its daemon's flag, or the config's role).
    pub(super) fn is_witness(&self, replica: &Replica) -> bool {
        self.args.witness
            || replica
                .config()
                .node_by_name(&self.node_name)
                .is_some_and(|n| n.witness)
    }

    /// A witness that won an election never becomes the master: once a voter that may be
    /// master has its whole log (the witness leads until then, which is how that voter
    /// catches up from it), it steps down and asks that voter to campaign.
    pub(super) async fn hand_over(&self, replica: &Arc<Replica>) {
        let status = replica.status();
        let cfg = replica.config();
        let target = status.voters.iter().find(|(id, m)| {
            **id != status.id
                && cfg.node_by_name(&m.name).is_some_and(|n| !n.witness)
                && status.matched.get(id).copied().flatten() >= status.last_log_index
        });
        let Some((_, m)) = target else {
            return;
        };
        let name = m.name.clone();
        tracing::info!(
            "a witness leads in term {}: handing over to {name}",
            status.term
        );
        match self.master_failover(replica.clone(), Some(name)).await {
            Ok(to) => tracing::info!("the witness handed the leadership to {to}"),
            Err(e) => tracing::warn!("the witness could not hand over: {e:#}"),
        }
    }
}

/// `force-single` is for two-node clusters (a witness aside): with more than two voters a
/// majority can still be formed by bringing voters back, and a new epoch would throw away
/// a group that may be electing a master right now; refused, nothing changed.
fn refuse_beyond_two(status: &maguey_replication::Status) -> Result<()> {
    let n = status.voters.len();
    if n <= 2 {
        return Ok(());
    }
    let others: Vec<&str> = status
        .voters
        .iter()
        .filter(|(id, _)| **id != status.id)
        .map(|(_, m)| m.name.as_str())
        .collect();
    anyhow::bail!(
        "force-single is for two-node clusters, and this group has {n} voters: a majority \
         ({}) can still be formed; nothing was changed. Bring enough of the other voters back \
         ({}: start their magueyd, power them on, or heal their links); once a master is \
         elected, remove a voter that is gone for good with `maguey node modify \
         --master-candidate no NODE`",
        n / 2 + 1,
        others.join(", ")
    )
}
