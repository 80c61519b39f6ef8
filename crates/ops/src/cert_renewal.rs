//! Short-lived node certificates, renewed automatically (docs/security.md): when the cluster
//! sets a node certificate lifetime (`cluster renew-crypto --node-certificate-lifetime`), the
//! master submits OP_CLUSTER_RENEW_CRYPTO for every online node's certificate once two thirds
//! of it have passed since the last renewal (each node makes its own key and CSR, the master's
//! CA signs, as `--new-node-certificates` does). An offline node misses it; past its
//! certificate's end it is re-added (docs/security.md).

use crate::Master;
use maguey_jobs::submit::{submit, Origin};
use maguey_jobs::JobQueue;
use maguey_model::{Cluster, OpClusterRenewCrypto, OpCode, PRIORITY_HIGH};
use std::sync::Arc;
use std::time::Duration;

/// When the next automatic renewal is due (seconds since the epoch): two thirds of the
/// lifetime after the last renewal; `None` when the cluster sets no lifetime.
pub fn due_at(c: &Cluster) -> Option<f64> {
    if c.node_certificate_lifetime == 0 {
        return None;
    }
    Some(c.node_certificates_renewed + c.node_certificate_lifetime as f64 * 2.0 / 3.0)
}

/// How often the master looks: a twelfth of the lifetime, between 1 s and a minute.
pub fn period(c: &Cluster) -> Duration {
    Duration::from_secs((c.node_certificate_lifetime / 12).clamp(1, 60))
}

/// The master's renewal loop (runs until the task is dropped): one renewal job at a time,
/// at high priority.
pub async fn run(master: Arc<Master>, queue: Arc<JobQueue>) {
    let mut pending: Option<u64> = None;
    loop {
        let cluster = master.config.snapshot().cluster.clone();
        if let Some(due) = due_at(&cluster) {
            let busy = pending
                .and_then(|id| queue.get(id))
                .is_some_and(|j| !j.status.is_finalized());
            if !busy && maguey_model::now() >= due {
                let op = OpCode::ClusterRenewCrypto(OpClusterRenewCrypto::default());
                match submit(&queue, Origin::MasterApi, vec![op], PRIORITY_HIGH) {
                    Ok(id) => {
                        tracing::info!(
                            "node certificates: two thirds of their {} s lifetime passed, \
                             renewal job {id}",
                            cluster.node_certificate_lifetime
                        );
                        pending = Some(id);
                    }
                    Err(e) => tracing::warn!("node certificates: cannot submit the renewal: {e}"),
                }
            }
        }
        tokio::time::sleep(period(&cluster)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime() {
        let mut c = Cluster::default();
        assert_eq!(due_at(&c), None);
        c.node_certificate_lifetime = 90;
        c.node_certificates_renewed = 1000.0;
        assert_eq!(due_at(&c), Some(1060.0));
        assert_eq!(period(&c), Duration::from_secs(7));
        c.node_certificate_lifetime = 365 * 86_400;
        assert_eq!(period(&c), Duration::from_secs(60));
    }
}
