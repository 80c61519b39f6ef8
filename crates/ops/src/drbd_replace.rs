//! Replacing the storage under DRBD disks (the work of OP_INSTANCE_REPLACE_DISKS, Ganeti's
//! TLReplaceDisks): LVs replaced under a running device on one node, a new secondary node,
//! faulty-disk detection, the resync wait, and the undo of each step.

use crate::drbd::{assemble, drbd_disks, status};
use crate::util::storage_dir;
use crate::{prereq, Env};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Disk, Instance, LogicalId, Node};
use maguey_rpc::{DrbdDiskStatus, DrbdRole, NodeRequest};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long a replaced disk may stay neither resynchronising nor in sync before the wait
/// gives up (the resync itself may take as long as it needs).
const STALL_TIMEOUT: Duration = Duration::from_secs(90);

/// The instance with only the selected disks (RPCs that act on some disks).
pub(crate) fn with_disks(inst: &Instance, idx: &[usize]) -> Instance {
    let mut i = inst.clone();
    i.disks = idx
        .iter()
        .filter_map(|&n| inst.disks.get(n).cloned())
        .collect();
    i
}

/// Assembles the instance's devices on `node` unless they all are; answers whether it did
/// (the caller shuts them down again at the end for a stopped instance).
pub(crate) async fn ensure_active(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<bool, OpError> {
    let sts = status(env, inst, node).await?;
    if sts.iter().all(Option::is_some) {
        return Ok(false);
    }
    env.log(format!(
        "activating the disks of instance {} on node {}",
        inst.name, node.name
    ));
    assemble(env, inst, node, DrbdRole::Secondary).await?;
    Ok(true)
}

/// Shuts down what [`ensure_active`] activated, logging failures.
pub(crate) async fn deactivate(env: &Env<'_>, inst: &Instance, node: &Node) {
    env.log(format!(
        "deactivating the disks of instance {} on node {}",
        inst.name, node.name
    ));
    let res: Result<Value, OpError> = env
        .rpc(
            node,
            NodeRequest::DrbdShutdown {
                disks: drbd_disks(inst),
            },
        )
        .await;
    if let Err(e) = res {
        env.log(format!("warning: {e}"));
    }
}

/// The disks of `inst` that are faulty on `node`, with why: missing LVs, not configured,
/// Diskless, Failed, or Inconsistent without a resync.
pub(crate) async fn faulty_disks(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<Vec<(usize, String)>, OpError> {
    let volumes: Vec<String> = env.rpc(node, NodeRequest::NodeVolumes).await?;
    let sts = status(env, inst, node).await?;
    let mut out = Vec::new();
    for (i, (d, st)) in inst.disks.iter().zip(sts).enumerate() {
        let missing: Vec<String> = d
            .children
            .iter()
            .filter_map(|c| match &c.logical_id {
                LogicalId::Plain { vg, lv } => Some(format!("{vg}/{lv}")),
                _ => None,
            })
            .filter(|lv| !volumes.contains(lv))
            .collect();
        if !missing.is_empty() {
            out.push((i, format!("missing LVs {}", missing.join(", "))));
            continue;
        }
        match st {
            None => {}
            Some(s) if is_faulty(&s) => out.push((i, format!("{} {}", s.connection, s.disk))),
            Some(_) => {}
        }
    }
    Ok(out)
}

pub(crate) fn is_faulty(s: &DrbdDiskStatus) -> bool {
    match s.disk.as_str() {
        "Diskless" | "Failed" => true,
        "Inconsistent" => !s.replication.contains("Sync"),
        _ => false,
    }
}

/// Replaces the storage of disks `idx` on `target`; `peer` (UpToDate) is the sync source.
pub(crate) async fn replace_on(
    env: &Env<'_>,
    inst: &Instance,
    target: &Node,
    peer: &Node,
    idx: &[usize],
    early_release: bool,
) -> Result<(), OpError> {
    let sel = with_disks(inst, idx);
    let names: Vec<String> = sel.disks.iter().map(|d| d.iv_name.clone()).collect();
    env.log(format!(
        "replacing disks {} of instance {} on node {} (peer {})",
        names.join(", "),
        inst.name,
        target.name,
        peer.name
    ));
    let peer_activated = ensure_active(env, inst, peer).await?;
    let target_was_active = status(env, inst, target).await?.iter().all(Option::is_some);
    // The peer is the sync source: it must hold good data.
    let sts = status(env, &sel, peer).await?;
    for (d, st) in sel.disks.iter().zip(&sts) {
        if st.as_ref().map(|s| s.disk.as_str()) != Some("UpToDate") {
            if peer_activated {
                deactivate(env, inst, peer).await;
            }
            return Err(prereq(format!(
                "disk {} is not UpToDate on node {} ({}): it cannot be the sync source; \
                 replace the disks on that node instead",
                d.iv_name,
                peer.name,
                st.as_ref()
                    .map(|s| format!("{} {}/{}", s.connection, s.disk, s.peer_disk))
                    .unwrap_or_else(|| "not active".into())
            )));
        }
    }
    let suffix = format!("{}", maguey_model::now() as u64);
    env.log(format!(
        "creating new storage on node {} and swapping it in (old LVs kept as \
         *_replaced-{suffix} until the resync ends)",
        target.name
    ));
    let aside: Vec<String> = match env
        .rpc(
            target,
            NodeRequest::DrbdReplaceStorage {
                disks: sel.disks.clone(),
                instance_name: inst.name.clone(),
                suffix,
            },
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            if peer_activated {
                deactivate(env, inst, peer).await;
            }
            return Err(e);
        }
    };
    let cfg = env.cfg();
    if early_release {
        remove_lvs(env, &cfg, target, &aside).await;
    }
    let waited = wait_replaced(env, &sel, target).await;
    if waited.is_ok() && !early_release {
        remove_lvs(env, &cfg, target, &aside).await;
    } else if waited.is_err() && !aside.is_empty() {
        env.log(format!(
            "the old LVs stay on node {}: {}",
            target.name,
            aside.join(", ")
        ));
    }
    if !target_was_active {
        deactivate(env, inst, target).await;
    }
    if peer_activated {
        deactivate(env, inst, peer).await;
    }
    waited
}

/// Removes LVs (`vg/lv`) on `node`, logging failures.
pub(crate) async fn remove_lvs(env: &Env<'_>, cfg: &ConfigData, node: &Node, lvs: &[String]) {
    for full in lvs {
        let Some((vg, lv)) = full.split_once('/') else {
            continue;
        };
        env.log(format!("removing old LV {full} on node {}", node.name));
        let disk = Disk {
            uuid: maguey_model::new_uuid(),
            name: None,
            dev_type: maguey_model::DevType::Plain,
            size: 0,
            mode: maguey_model::DiskMode::ReadWrite,
            logical_id: LogicalId::Plain {
                vg: vg.to_string(),
                lv: lv.to_string(),
            },
            children: Vec::new(),
            nodes: vec![node.uuid.clone()],
            iv_name: full.clone(),
            serial_no: 1,
            ctime: 0.0,
            mtime: 0.0,
        };
        let res: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk,
                    file_storage_dir: storage_dir(cfg, maguey_model::DiskTemplate::Plain),
                },
            )
            .await;
        if let Err(e) = res {
            env.log(format!("warning: could not remove {full}: {e}"));
        }
    }
}

/// Waits until the disks of `inst` are Connected and UpToDate on both sides as `node` sees
/// them, logging the resync progress every 5 s. A disk that is neither resynchronising nor
/// in sync for [`STALL_TIMEOUT`] (or StandAlone, or gone) fails the wait.
pub(crate) async fn wait_replaced(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<(), OpError> {
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        let sts = status(env, inst, node).await?;
        let mut pending = Vec::new();
        let mut min_pct: Option<f64> = None;
        let mut syncing = false;
        for (d, st) in inst.disks.iter().zip(&sts) {
            match st {
                Some(s) if s.in_sync => {}
                Some(s) if s.connection == "StandAlone" => {
                    return Err(OpError::Exec(format!(
                        "disk {} on node {} is StandAlone: the peer did not connect",
                        d.iv_name, node.name
                    )))
                }
                Some(s) => {
                    if s.replication.contains("Sync") || s.sync_percent.is_some() {
                        syncing = true;
                    }
                    if let Some(p) = s.sync_percent {
                        min_pct = Some(min_pct.map_or(p, |m: f64| m.min(p)));
                    }
                    pending.push(format!(
                        "{}: {} {} {}/{}",
                        d.iv_name, s.connection, s.replication, s.disk, s.peer_disk
                    ));
                }
                None => {
                    return Err(OpError::Exec(format!(
                        "disk {} is not active on node {}",
                        d.iv_name, node.name
                    )))
                }
            }
        }
        if pending.is_empty() {
            env.log(format!(
                "disks of instance {} in sync ({:.1} s)",
                inst.name,
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if syncing {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_TIMEOUT {
            return Err(OpError::Exec(format!(
                "the disks did not resync within {} s: {}",
                STALL_TIMEOUT.as_secs(),
                pending.join("; ")
            )));
        }
        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            env.log(match min_pct {
                Some(p) => format!("- device resync: {p:.1}% done"),
                None => format!("- waiting for the resync: {}", pending.join("; ")),
            });
            last_log = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `replace_new_secondary`: moves the DRBD peer of every disk from `old` to `new`.
pub(crate) async fn new_secondary(
    env: &Env<'_>,
    inst: &Instance,
    pnode: &Node,
    old: &Node,
    new: &Node,
    early_release: bool,
) -> Result<(), OpError> {
    env.log(format!(
        "replacing the secondary node of instance {}: {} -> {}",
        inst.name, old.name, new.name
    ));
    let cfg = env.cfg();
    let p_activated = ensure_active(env, inst, pnode).await?;
    let fail = |e: OpError| async move {
        if p_activated {
            deactivate(env, inst, pnode).await;
        }
        Err::<(), _>(e)
    };
    // The primary is the sync source.
    let sts = status(env, inst, pnode).await?;
    for (d, st) in inst.disks.iter().zip(&sts) {
        if st.as_ref().map(|s| s.disk.as_str()) != Some("UpToDate") {
            return fail(prereq(format!(
                "disk {} is not UpToDate on the primary node {}: it cannot be the sync source",
                d.iv_name, pnode.name
            )))
            .await;
        }
    }
    // New minors on the new node; ports and the primary's minors stay.
    let (minors, reservation) =
        match crate::drbd::allocate_minors(&cfg, &new.uuid, inst.disks.len()) {
            Ok(x) => x,
            Err(e) => return fail(e).await,
        };
    let now = maguey_model::now();
    let mut new_disks = Vec::with_capacity(inst.disks.len());
    for (d, minor) in inst.disks.iter().zip(&minors) {
        let mut nd = d.clone();
        let LogicalId::Drbd {
            node_a,
            node_b,
            minor_a,
            minor_b,
            ..
        } = &mut nd.logical_id
        else {
            return fail(OpError::Exec(format!(
                "disk {} has no DRBD logical id",
                d.iv_name
            )))
            .await;
        };
        // The primary keeps its place (DRBD 9 node ids follow the positions).
        if *node_a == old.uuid {
            *node_a = new.uuid.clone();
            *minor_a = *minor;
        } else if *node_b == old.uuid {
            *node_b = new.uuid.clone();
            *minor_b = *minor;
        } else {
            return fail(OpError::Exec(format!(
                "disk {}: node {} is not an end of the DRBD disk",
                d.iv_name, old.name
            )))
            .await;
        }
        nd.nodes = vec![pnode.uuid.clone(), new.uuid.clone()];
        nd.serial_no += 1;
        nd.mtime = now;
        env.log(format!(
            "disk {}: minor {minor} on node {}",
            d.iv_name, new.name
        ));
        new_disks.push(nd);
    }
    let mut updated = inst.clone();
    updated.disks = new_disks;
    let fsd = storage_dir(&cfg, maguey_model::DiskTemplate::Drbd);

    // 1. Storage and devices on the new node (they wait for the primary).
    let mut created: Vec<Disk> = Vec::new();
    for d in &updated.disks {
        env.log(format!(
            "creating disk {} ({} MiB) on node {}",
            d.iv_name, d.size, new.name
        ));
        let res: Result<Value, OpError> = env
            .rpc(
                new,
                NodeRequest::BlockdevCreate {
                    disk: d.clone(),
                    instance_name: inst.name.clone(),
                    file_storage_dir: fsd.clone(),
                },
            )
            .await;
        match res {
            Ok(_) => created.push(d.clone()),
            Err(e) => {
                undo_new(env, new, &created, &fsd).await;
                return fail(e).await;
            }
        }
    }
    // 2. The old secondary's devices down (a dead node: just forget it).
    if old.offline {
        env.log(format!(
            "old secondary {} is offline: forgetting its disks",
            old.name
        ));
    } else {
        env.log(format!("shutting down DRBD on old secondary {}", old.name));
        let res: Result<Value, OpError> = env
            .rpc(
                old,
                NodeRequest::DrbdShutdown {
                    disks: drbd_disks(inst),
                },
            )
            .await;
        if let Err(e) = res {
            env.log(format!(
                "warning: could not shut down DRBD on the old secondary: {e}"
            ));
        }
    }
    // 3. The primary StandAlone.
    env.log(format!(
        "disconnecting the primary {} from the network",
        pnode.name
    ));
    let res: Result<Value, OpError> = env
        .rpc(
            pnode,
            NodeRequest::DrbdDisconnect {
                disks: drbd_disks(inst),
            },
        )
        .await;
    if let Err(e) = res {
        undo_new(env, new, &created, &fsd).await;
        reattach_old(env, inst, pnode, old).await;
        return fail(e).await;
    }
    // 4. The config names the new secondary.
    env.log("updating the instance's configuration");
    let mut fresh = match env.cfg().instances.get(&inst.uuid).cloned() {
        Some(i) => i,
        None => {
            undo_new(env, new, &created, &fsd).await;
            reattach_old(env, inst, pnode, old).await;
            return fail(OpError::Exec(format!("instance {} vanished", inst.name))).await;
        }
    };
    fresh.disks = updated.disks.clone();
    if let Err(e) = env
        .apply(Command::UpdateInstance {
            instance: fresh.clone(),
        })
        .await
    {
        undo_new(env, new, &created, &fsd).await;
        reattach_old(env, inst, pnode, old).await;
        return fail(e).await;
    }
    drop(reservation);
    // 5. The primary connects to the new node.
    env.log(format!(
        "connecting the primary {} to the new secondary {}",
        pnode.name, new.name
    ));
    assemble(env, &fresh, pnode, DrbdRole::Secondary).await?;
    crate::drbd::wait_connected(env, &fresh, pnode).await?;
    // 6. Resync, and the old secondary's storage removed.
    let remove_old = || async {
        if old.offline {
            return;
        }
        if let Err(e) = crate::drbd::remove_on(env, inst, old).await {
            env.log(format!(
                "warning: could not remove the disks on the old secondary {}: {e}",
                old.name
            ));
        }
    };
    if early_release {
        remove_old().await;
    }
    let waited = wait_replaced(env, &fresh, new).await;
    if !early_release {
        remove_old().await;
    }
    if p_activated {
        deactivate(env, &fresh, new).await;
        deactivate(env, &fresh, pnode).await;
    }
    waited
}

/// Removes what [`new_secondary`] created on the new node.
pub(crate) async fn undo_new(env: &Env<'_>, node: &Node, created: &[Disk], fsd: &str) {
    for d in created.iter().rev() {
        env.log(format!(
            "undoing: removing disk {} on node {}",
            d.iv_name, node.name
        ));
        let res: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: d.clone(),
                    file_storage_dir: fsd.to_string(),
                },
            )
            .await;
        if let Err(e) = res {
            env.log(format!("warning: {e}"));
        }
    }
}

/// Connects the primary and the old secondary again (undo before the config changed).
pub(crate) async fn reattach_old(env: &Env<'_>, inst: &Instance, pnode: &Node, old: &Node) {
    env.log("undoing: reconnecting the old secondary");
    if !old.offline {
        if let Err(e) = assemble(env, inst, old, DrbdRole::Secondary).await {
            env.log(format!("warning: {e}"));
        }
    }
    if let Err(e) = assemble(env, inst, pnode, DrbdRole::Secondary).await {
        env.log(format!("warning: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(disk: &str, replication: &str) -> DrbdDiskStatus {
        DrbdDiskStatus {
            minor: 0,
            connection: "Connected".into(),
            replication: replication.into(),
            role: "Secondary".into(),
            peer_role: "Primary".into(),
            disk: disk.into(),
            peer_disk: "UpToDate".into(),
            sync_percent: None,
            in_sync: false,
            degraded: true,
            sync_eta_secs: None,
        }
    }

    #[test]
    fn modes_and_faults_follow_ganeti() {
        use maguey_model::ReplaceDisksMode as Mode;
        assert_eq!("replace_auto".parse::<Mode>().ok(), Some(Mode::Auto));
        assert_eq!(
            "replace_new_secondary".parse::<Mode>().ok(),
            Some(Mode::NewSecondary)
        );
        assert!("replace_all".parse::<Mode>().is_err());
        assert!(is_faulty(&st("Diskless", "Established")));
        assert!(is_faulty(&st("Failed", "Off")));
        assert!(is_faulty(&st("Inconsistent", "Established")));
        assert!(!is_faulty(&st("Inconsistent", "SyncTarget")));
        assert!(!is_faulty(&st("UpToDate", "Established")));
        assert!(!is_faulty(&st("Outdated", "Off")));
    }
}
