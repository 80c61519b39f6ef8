//! The live migration proper: DRBD's dual-primary window or the local disks mirrored over
//! NBD, the memory moved by QEMU, the config switched, the old side cleaned; undone on failure.

use super::target::{mib, progress_line, set_primary};
use crate::disks::remove_disks;
use crate::util::{filled_hvparams, instance_runtime, node_addr, storage_dir};
use crate::{prereq, Env};
use maguey_jobs::OpError;
use maguey_model::{Instance, Node};
use maguey_rpc::{AcceptedPorts, InstanceRunInfo, MigrationProgress, MigrationStatus, NodeRequest};
use serde_json::Value;
use std::time::Duration;

/// Checks that every disk is present on `node` before anything moves.
async fn check_disks(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let cfg = env.cfg();
    for disk in &inst.disks {
        let found: Option<Value> = env
            .rpc(
                node,
                NodeRequest::BlockdevFind {
                    disk: disk.clone(),
                    file_storage_dir: storage_dir(&cfg, disk.dev_type.template()),
                },
            )
            .await?;
        if found.is_none() {
            return Err(prereq(format!(
                "disk {} of instance {} is missing on node {}",
                disk.iv_name, inst.name, node.name
            )));
        }
    }
    Ok(())
}

/// The live migration proper, undone on failure: the instance then keeps running on `src`
/// and the config is unchanged.
pub(super) async fn live_migrate(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<MigrationStatus, OpError> {
    let cfg = env.cfg();
    let local = inst.disk_template.has_local_disks();
    let drbd = inst.disk_template.is_internally_mirrored();
    check_disks(env, inst, src).await?;
    if drbd {
        crate::drbd::check_in_sync(env, inst, src).await?;
        crate::drbd::check_in_sync(env, inst, dst).await?;
    }
    let mut rt = instance_runtime(&cfg, inst);
    // The target runs the guest on the source's accelerator: QEMU cannot load the state of a
    // KVM guest into TCG (nor the reverse), and `auto` may resolve differently on the target.
    let info: Option<InstanceRunInfo> = env
        .rpc(
            src,
            NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if let Some(accel) = info.and_then(|i| i.accel) {
        rt.hvparams.insert("accel".into(), Value::String(accel));
    }
    let hv = filled_hvparams(&cfg, inst);
    let int = |k: &str, d: u64| hv.get(k).and_then(|v| v.as_u64()).unwrap_or(d);
    let (bandwidth, downtime) = (
        int("migration_bandwidth", 32),
        int("migration_downtime", 30),
    );
    env.log(format!(
        "migrating instance {} from {} to {} ({}, {bandwidth} MiB/s, {downtime} ms downtime)",
        inst.name,
        src.name,
        dst.name,
        if local {
            "memory and local disks"
        } else if drbd {
            "memory; DRBD dual-primary for the duration"
        } else {
            "memory; the disks are shared"
        }
    ));
    if drbd {
        if let Err(e) = drbd_dual_primary(env, inst, src, dst).await {
            drbd_single_primary(env, inst, src, dst).await;
            return Err(e);
        }
    }
    let mut created = Vec::new();
    if local {
        for disk in &inst.disks {
            let r: Result<Value, OpError> = env
                .rpc(
                    dst,
                    NodeRequest::BlockdevCreate {
                        disk: disk.clone(),
                        instance_name: inst.name.clone(),
                        file_storage_dir: storage_dir(&cfg, disk.dev_type.template()),
                    },
                )
                .await;
            match r {
                Ok(_) => created.push(disk.clone()),
                Err(e) => {
                    crate::disks::undo_disks(env, dst, &created).await;
                    return Err(e);
                }
            }
        }
    }
    let accepted: Result<AcceptedPorts, OpError> = env
        .rpc(
            dst,
            NodeRequest::AcceptInstance {
                instance: rt.clone(),
                address: dst.primary_ip.clone(),
                port: 0,
                nbd_port: local.then_some(0),
                tls_peer: Some(src.name.clone()),
            },
        )
        .await;
    let ports = match accepted {
        Ok(p) => p,
        Err(e) => {
            // E.g. the target's QEMU died while it started: nothing moved yet.
            env.log(format!(
                "migration failed: {e}; instance {} keeps running on {}",
                inst.name, src.name
            ));
            crate::disks::undo_disks(env, dst, &created).await;
            if drbd {
                drbd_single_primary(env, inst, src, dst).await;
            }
            return Err(e);
        }
    };
    let migrate = env.rpc::<MigrationStatus>(
        src,
        NodeRequest::InstanceMigrate {
            name: inst.name.clone(),
            hypervisor: inst.hypervisor.to_string(),
            target: dst.primary_ip.clone(),
            port: ports.port,
            bandwidth,
            downtime,
            caps: crate::util::migration_caps(&hv),
            nbd_port: ports.nbd_port,
            tls_peer: Some(dst.name.clone()),
        },
    );
    let result = with_progress(env, inst, src, migrate).await;
    let result = match result {
        Ok(st) if st.status == "completed" => Ok(st),
        Ok(st) => Err(OpError::Exec(format!(
            "the migration ended with status '{}'",
            st.status
        ))),
        Err(e) => Err(e),
    };
    let st = match result {
        Ok(st) => st,
        Err(e) => {
            env.log(format!(
                "migration failed: {e}; instance {} keeps running on {}",
                inst.name, src.name
            ));
            let r: Result<Value, OpError> = env
                .rpc(
                    dst,
                    NodeRequest::FinalizeMigrationDst {
                        instance: rt.clone(),
                        success: false,
                    },
                )
                .await;
            if let Err(e) = r {
                env.log(format!("could not stop the copy on {}: {e}", dst.name));
            }
            let r: Result<Value, OpError> = env
                .rpc(
                    src,
                    NodeRequest::FinalizeMigrationSrc {
                        name: inst.name.clone(),
                        hypervisor: inst.hypervisor.to_string(),
                        success: false,
                    },
                )
                .await;
            if let Err(e) = r {
                env.log(format!(
                    "could not resume the instance on {}: {e}; run 'instance migrate --cleanup'",
                    src.name
                ));
            }
            crate::disks::undo_disks(env, dst, &created).await;
            if drbd {
                drbd_single_primary(env, inst, src, dst).await;
            }
            return Err(OpError::Exec(format!(
                "migration of instance {} to node {} failed: {e}",
                inst.name, dst.name
            )));
        }
    };
    // The memory is on the target: from now on the target is the primary.
    set_primary(env, inst, dst).await?;
    let r: Result<Value, OpError> = env
        .rpc(
            dst,
            NodeRequest::FinalizeMigrationDst {
                instance: rt.clone(),
                success: true,
            },
        )
        .await;
    if let Err(e) = r {
        return Err(OpError::Exec(format!(
            "instance {} arrived on {} but could not be resumed: {e}; run 'instance migrate \
             --cleanup'",
            inst.name, dst.name
        )));
    }
    let r: Result<Value, OpError> = env
        .rpc(
            src,
            NodeRequest::FinalizeMigrationSrc {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
                success: true,
            },
        )
        .await;
    if let Err(e) = r {
        env.log(format!(
            "could not stop the old copy on {}: {e}; run 'instance migrate --cleanup'",
            src.name
        ));
    }
    if local {
        remove_disks(env, inst, src).await;
    }
    if drbd {
        // Back to one primary: the new node.
        drbd_single_primary(env, inst, dst, src).await;
    }
    env.log(format!(
        "migration done: {} ms in all, {} ms downtime, {} MiB of memory{}",
        st.total_time,
        st.downtime,
        mib(st.transferred),
        if local {
            format!(", {} MiB of disk", mib(st.disk_transferred))
        } else {
            String::new()
        }
    ));
    Ok(st)
}

/// DRBD before a live migration: two primaries allowed on both ends, the target promoted
/// (QEMU on the target opens the disks while the source still writes).
async fn drbd_dual_primary(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    env.log(format!(
        "DRBD: allowing two primaries on {} and {}, promoting {}",
        src.name, dst.name, dst.name
    ));
    crate::drbd::set_dual(env, inst, src, true).await?;
    crate::drbd::set_dual(env, inst, dst, true).await?;
    crate::drbd::set_role(env, inst, dst, true, false).await
}

/// DRBD after a live migration (or its failure): `keep` stays primary, `other` is demoted,
/// and two primaries are forbidden again. Failures are logged (the instance runs on `keep`).
async fn drbd_single_primary(env: &Env<'_>, inst: &Instance, keep: &Node, other: &Node) {
    env.log(format!(
        "DRBD: back to a single primary on {} ({} secondary)",
        keep.name, other.name
    ));
    if let Err(e) = crate::drbd::set_role(env, inst, other, false, false).await {
        env.log(format!("could not demote the disks on {}: {e}", other.name));
    }
    for n in [other, keep] {
        if let Err(e) = crate::drbd::set_dual(env, inst, n, false).await {
            env.log(format!("could not forbid two primaries on {}: {e}", n.name));
        }
    }
}

/// Runs `fut` (the source's migrate RPC) and logs the source's progress every second.
async fn with_progress<F>(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    fut: F,
) -> Result<MigrationStatus, OpError>
where
    F: std::future::Future<Output = Result<MigrationStatus, OpError>>,
{
    tokio::pin!(fut);
    let cfg = env.cfg();
    let addr = node_addr(&cfg, src);
    let mut last = String::new();
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let p: Result<Option<MigrationProgress>, _> = env
                    .master
                    .rpc
                    .call(
                        &addr,
                        &NodeRequest::InstanceMigrationProgress {
                            name: inst.name.clone(),
                            hypervisor: inst.hypervisor.to_string(),
                        },
                    )
                    .await;
                if let Ok(Some(p)) = p {
                    let line = progress_line(&p);
                    if line != last {
                        env.log(line.clone());
                        last = line;
                    }
                }
            }
        }
    }
}
