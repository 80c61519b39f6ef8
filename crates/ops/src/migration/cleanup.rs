//! `migrate --cleanup`: after a failed migration, find where the instance really runs and make
//! the config and the nodes agree again.

use super::target::set_primary;
use crate::util::{instance_runtime, node_addr, node_by_uuid};
use crate::Env;
use maguey_jobs::OpError;
use maguey_model::{Instance, Node};
use maguey_rpc::{InstanceRunInfo, NodeRequest};
use serde_json::{json, Value};

/// `migrate --cleanup`: finds where the instance runs and makes the config and the nodes
/// agree again.
pub(super) async fn cleanup(env: &Env<'_>, inst: &Instance) -> Result<Value, OpError> {
    let cfg = env.cfg();
    let nodes: Vec<Node> = cfg.nodes.values().filter(|n| !n.offline).cloned().collect();
    let addrs: Vec<String> = nodes.iter().map(|n| node_addr(&cfg, n)).collect();
    let infos = env
        .master
        .rpc
        .call_many::<Option<InstanceRunInfo>>(
            &addrs,
            &NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await;
    let mut found: Vec<(Node, InstanceRunInfo)> = Vec::new();
    for (n, r) in nodes.into_iter().zip(infos) {
        match r {
            Ok(Some(info)) => found.push((n, info)),
            Ok(None) => {}
            Err(e) => env.log(format!("node {} did not answer: {e}", n.name)),
        }
    }
    let primary = node_by_uuid(&cfg, &inst.primary_node)?.clone();
    let rt = instance_runtime(&cfg, inst);
    let where_ = found
        .iter()
        .map(|(n, i)| format!("{} ({})", n.name, i.state))
        .collect::<Vec<_>>()
        .join(", ");
    env.log(format!(
        "instance {} found on: {}",
        inst.name,
        if where_.is_empty() {
            "no node"
        } else {
            &where_
        }
    ));
    let running = |i: &InstanceRunInfo| i.state == "running";
    // The copy that runs wins; a paused copy elsewhere is a leftover.
    let winner = found
        .iter()
        .find(|(_, i)| running(i))
        .or_else(|| found.iter().find(|(n, _)| n.uuid == primary.uuid))
        .or(found.first())
        .cloned();
    let Some((win, _)) = winner else {
        env.log(format!(
            "instance {} runs nowhere; nothing to clean up",
            inst.name
        ));
        return Ok(json!({"node": Value::Null}));
    };
    for (n, _) in found.iter().filter(|(n, _)| n.uuid != win.uuid) {
        env.log(format!("stopping the stray copy on {}", n.name));
        let req = if n.uuid == primary.uuid {
            NodeRequest::FinalizeMigrationSrc {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                success: true,
            }
        } else {
            NodeRequest::FinalizeMigrationDst {
                instance: rt.clone(),
                success: false,
            }
        };
        let _: Value = env.rpc(n, req).await?;
    }
    if win.uuid != primary.uuid {
        env.log(format!(
            "instance {} runs on {}: making it the primary node",
            inst.name, win.name
        ));
        set_primary(env, inst, &win).await?;
        let _: Value = env
            .rpc(
                &win,
                NodeRequest::FinalizeMigrationDst {
                    instance: rt.clone(),
                    success: true,
                },
            )
            .await?;
        if inst.disk_template.has_local_disks() {
            env.log(format!(
                "the old disks on {} are left in place; 'cluster verify' lists them",
                primary.name
            ));
        }
    } else {
        // A failed migration may have left the source paused.
        let _: Value = env
            .rpc(
                &win,
                NodeRequest::FinalizeMigrationSrc {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.to_string(),
                    success: false,
                },
            )
            .await?;
    }
    Ok(json!({"node": win.name}))
}
