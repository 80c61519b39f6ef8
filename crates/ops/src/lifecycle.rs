//! Instance lifecycle on a node: is it running, start (with its disks), stop. Shared by
//! every unit that starts or stops an instance.

use crate::util::*;
use crate::{prereq, Env};
use maguey_jobs::OpError;
use maguey_model::*;
use maguey_rpc::*;
use serde_json::Value;

pub(crate) async fn is_running(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<bool, OpError> {
    let info: Option<InstanceRunInfo> = env
        .rpc(
            node,
            NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    // A guest that powered itself off (kvm `user_shutdown`, USER_down) is not running.
    Ok(info.is_some_and(|i| i.state != "shutdown"))
}

pub(crate) async fn start(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    force_mem: bool,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let be = filled_beparams(&cfg, inst);
    let info: NodeInfo = env
        .rpc(
            node,
            NodeRequest::NodeInfo {
                file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if be.maxmem > info.memory_free && !force_mem {
        return Err(prereq(format!(
            "not enough memory on node {} to start instance {}: needed {} MiB, free {} MiB",
            node.name, inst.name, be.maxmem, info.memory_free
        )));
    }
    if inst.disk_template.is_internally_mirrored() {
        crate::drbd::activate_for_start(env, inst, node, false).await?;
    }
    start_activated(env, inst, node).await
}

/// Starts the instance on `node` whose disks are ready there (memory checked by the caller).
pub(crate) async fn start_activated(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    env.log(format!(
        "starting instance {} on node {}",
        inst.name, node.name
    ));
    let _: Value = env
        .rpc(
            node,
            NodeRequest::InstanceStart {
                instance: instance_runtime(&cfg, inst),
            },
        )
        .await?;
    Ok(())
}

pub(crate) async fn stop(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    timeout: u64,
) -> Result<(), OpError> {
    env.log(format!(
        "shutting down instance {} on node {}",
        inst.name, node.name
    ));
    let _: Value = env
        .rpc(
            node,
            NodeRequest::InstanceShutdown {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                timeout,
            },
        )
        .await?;
    if inst.disk_template.is_internally_mirrored() {
        // The disks stay connected; the node gives up the primary role.
        crate::drbd::set_role(env, inst, node, false, false).await?;
    }
    Ok(())
}
