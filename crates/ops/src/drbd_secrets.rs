//! New DRBD shared secrets (`maguey cluster renew-crypto --new-drbd-secrets`,
//! docs/security.md), one instance at a time, while its guest writes.
//!
//! DRBD checks the secret only when a connection is made (`cram-hmac-alg`), so a running pair
//! must reconnect (DRBD 8.4 cannot change it on a live connection). Per instance: both ends
//! disconnect (the primary keeps serving the guest alone; DRBD's bitmap records what it
//! writes), the config takes the new secrets, the primary connects with them, then the
//! secondary; once connected, the primary resyncs what the secondary missed and the step
//! waits for the pair to be in sync. Ends that are not active get the new secret from the
//! config when they are activated next. A pair with an offline node is left alone (its other
//! end would not reconnect to it). Secrets never appear in a message: commands show them
//! redacted, and the log and result name instances only.

use crate::drbd::{drbd_disks, generate_secret, secondary_of};
use crate::util::node_by_uuid;
use crate::Env;
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{Instance, LogicalId, Node};
use maguey_rpc::{DrbdRole, NodeRequest};
use serde_json::Value;

/// `inst` with a new secret on every DRBD disk.
fn with_new_secrets(inst: &Instance) -> Instance {
    let mut updated = inst.clone();
    for d in &mut updated.disks {
        if let LogicalId::Drbd { secret, .. } = &mut d.logical_id {
            *secret = generate_secret();
        }
    }
    updated
}

/// What each end of the pair is: `None` when no disk is active there, else whether it is
/// the DRBD primary.
async fn active_role(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<Option<bool>, OpError> {
    let sts = crate::drbd::status(env, inst, node).await?;
    if sts.iter().all(Option::is_none) {
        return Ok(None);
    }
    Ok(Some(sts.iter().flatten().any(|s| s.role == "Primary")))
}

/// Renews the secrets of one instance's DRBD disks; `false` when it was left alone.
async fn renew_one(env: &Env<'_>, inst: &Instance) -> Result<bool, OpError> {
    let cfg = env.cfg();
    let primary = node_by_uuid(&cfg, &inst.primary_node)?.clone();
    let Some(secondary) = secondary_of(&cfg, inst).cloned() else {
        return Ok(false);
    };
    if primary.offline || secondary.offline {
        env.log(format!(
            "instance {}: a node of its DRBD pair is offline: secrets kept",
            inst.name
        ));
        return Ok(false);
    }
    let ends = [
        (primary.clone(), active_role(env, inst, &primary).await?),
        (secondary.clone(), active_role(env, inst, &secondary).await?),
    ];
    for (node, role) in ends.iter().rev() {
        if role.is_some() {
            let _: Value = env
                .rpc(
                    node,
                    NodeRequest::DrbdDisconnect {
                        disks: drbd_disks(inst),
                    },
                )
                .await?;
        }
    }
    let updated = with_new_secrets(inst);
    env.apply(Command::UpdateInstance {
        instance: updated.clone(),
    })
    .await?;
    for (node, role) in &ends {
        let Some(is_primary) = role else { continue };
        let _: Value = env
            .rpc(
                node,
                NodeRequest::DrbdAssemble {
                    disks: drbd_disks(&updated),
                    instance_name: updated.name.clone(),
                    role: if *is_primary {
                        DrbdRole::Primary
                    } else {
                        DrbdRole::Secondary
                    },
                },
            )
            .await?;
    }
    if ends.iter().all(|(_, r)| r.is_some()) {
        crate::drbd::wait_connected(env, &updated, &primary).await?;
        crate::drbd::wait_for_sync(env, &updated, &primary).await?;
        env.log(format!(
            "instance {}: DRBD reconnected with new secrets, in sync",
            inst.name
        ));
    } else {
        env.log(format!(
            "instance {}: new DRBD secrets (used when its disks are activated)",
            inst.name
        ));
    }
    Ok(true)
}

/// Renews the secret of every DRBD disk in the cluster, one instance at a time; answers the
/// instances renewed.
pub async fn renew_all(env: &Env<'_>) -> Result<Vec<String>, OpError> {
    let instances: Vec<Instance> = env
        .cfg()
        .instances
        .values()
        .filter(|i| !drbd_disks(i).is_empty())
        .cloned()
        .collect();
    let mut renewed = Vec::new();
    for inst in &instances {
        // The config may have changed under the previous step (serials): use the current.
        let Some(current) = env.cfg().instances.get(&inst.uuid).cloned() else {
            continue;
        };
        if renew_one(env, &current).await? {
            renewed.push(current.name.clone());
        }
    }
    Ok(renewed)
}
