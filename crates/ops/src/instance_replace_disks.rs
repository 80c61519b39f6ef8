//! OP_INSTANCE_REPLACE_DISKS: replaces the storage under an instance's DRBD disks (Ganeti's
//! LUInstanceReplaceDisks / TLReplaceDisks).
//!
//! - `replace_on_primary` / `replace_on_secondary`: on that node, new data and meta LVs
//!   replace the old ones under the running DRBD device (old LVs set aside as
//!   `<lv>_replaced-<timestamp>`), DRBD resyncs them from the peer, which must be UpToDate;
//!   then the old LVs go.
//! - `replace_new_secondary` (`remote_node`, or `iallocator` for Ganeti's relocate request):
//!   the DRBD devices get a new peer: new minors and LVs there, the old secondary shut down,
//!   the primary disconnected, the config changed (one `UpdateInstance`), the primary
//!   connected to the new node, resync, the old secondary's devices and LVs removed.
//! - `replace_auto`: looks at both nodes and replaces on the one whose disks are faulty
//!   (missing LVs, Diskless, Failed, Inconsistent without a resync); nothing faulty: done.
//!
//! A stopped instance's disks are activated for the operation and deactivated afterwards.

use crate::drbd::{assemble, drbd_disks, secondary_of, status};
use crate::util::{check_node_usable, instance_by_name, node_by_name, node_by_uuid, storage_dir};
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{ConfigData, Disk, Instance, LogicalId, Node, OpCode};
use maguey_rpc::{DrbdDiskStatus, DrbdRole, NodeRequest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Ganeti's replace-disks modes.
pub(crate) use maguey_model::ReplaceDisksMode as Mode;

/// How long a replaced disk may stay neither resynchronising nor in sync before the wait
/// gives up (the resync itself may take as long as it needs).
const STALL_TIMEOUT: Duration = Duration::from_secs(90);

pub struct InstanceReplaceDisks {
    name: String,
    mode: Mode,
    disks: Vec<usize>,
    remote_node: Option<String>,
    iallocator: Option<String>,
    early_release: bool,
    /// Node names at expand time (locked; checked again after the locks).
    nodes: Vec<String>,
    instance: Option<Instance>,
}

impl LogicalUnit for InstanceReplaceDisks {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::InstanceReplaceDisks(maguey_model::OpInstanceReplaceDisks {
            instance_name,
            mode,
            disks,
            remote_node,
            iallocator,
            early_release,
            ..
        }) = op
        else {
            return Err(wrong_op(op));
        };
        let mode = *mode;
        match mode {
            Mode::NewSecondary => match (remote_node, iallocator) {
                (None, None) => {
                    return Err(prereq(
                        "changing the secondary needs a new node (-n NODE) or an allocator \
                         (-I NAME)",
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(prereq(
                        "give either the new secondary node or an allocator, not both",
                    ))
                }
                _ => {}
            },
            _ if remote_node.is_some() || iallocator.is_some() => {
                return Err(prereq(
                    "a new node or an allocator can only be given when changing the secondary \
                     (replace_new_secondary)",
                ))
            }
            _ => {}
        }
        if !disks.is_empty() && matches!(mode, Mode::NewSecondary | Mode::Auto) {
            return Err(prereq(
                "disks can only be chosen when replacing on the primary or the secondary \
                 (-p, -s); the other modes replace every disk",
            ));
        }
        if let Some(a) = iallocator {
            if !crate::iallocator::BUILTIN.contains(&a.as_str()) {
                return Err(prereq(format!(
                    "unknown allocator '{a}' (built in: {})",
                    crate::iallocator::BUILTIN.join(", ")
                )));
            }
        }
        let inst = instance_by_name(cfg, instance_name)?;
        let mut nodes = vec![node_by_uuid(cfg, &inst.primary_node)?.name.clone()];
        for s in inst.secondary_nodes() {
            nodes.push(node_by_uuid(cfg, s)?.name.clone());
        }
        let remote_node = match remote_node {
            Some(n) => {
                let name = node_by_name(cfg, n)?.name.clone();
                if !nodes.contains(&name) {
                    nodes.push(name.clone());
                }
                Some(name)
            }
            None => None,
        };
        Ok(InstanceReplaceDisks {
            name: inst.name.clone(),
            mode,
            disks: disks.clone(),
            remote_node,
            iallocator: iallocator.clone(),
            early_release: *early_release,
            nodes,
            instance: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        let names = if self.iallocator.is_some() {
            LockNames::All
        } else {
            LockNames::Names(self.nodes.clone())
        };
        vec![
            (
                LockLevel::Instance,
                LockNames::Names(vec![self.name.clone()]),
                LockMode::Exclusive,
            ),
            (LockLevel::Node, names.clone(), LockMode::Shared),
            (LockLevel::NodeRes, names, LockMode::Exclusive),
        ]
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if !inst.disk_template.is_internally_mirrored() {
            return Err(prereq(format!(
                "instance {} has disk template {}: replace-disks is only for drbd instances",
                self.name, inst.disk_template
            )));
        }
        let pnode = node_by_uuid(cfg, &inst.primary_node)?;
        let snode = secondary_of(cfg, inst)
            .ok_or_else(|| prereq(format!("instance {} has no secondary node", self.name)))?;
        if !self.nodes.contains(&pnode.name) || !self.nodes.contains(&snode.name) {
            return Err(prereq(format!(
                "the nodes of instance {} changed while this job waited for its locks",
                self.name
            )));
        }
        for &i in &self.disks {
            if i >= inst.disks.len() {
                return Err(prereq(format!(
                    "instance {} has no disk {i} (it has {} disks)",
                    self.name,
                    inst.disks.len()
                )));
            }
        }
        if inst
            .disks
            .iter()
            .any(|d| d.dev_type != maguey_model::DevType::Drbd)
        {
            return Err(prereq(format!(
                "instance {} has disks that are not drbd",
                self.name
            )));
        }
        match self.mode {
            Mode::OnPrimary | Mode::OnSecondary | Mode::Auto => {
                for n in [pnode, snode] {
                    if n.offline {
                        return Err(prereq(format!(
                            "node {} of instance {} is offline: replacing disks in place needs \
                             both nodes; use -n NODE to change the secondary",
                            n.name, self.name
                        )));
                    }
                }
            }
            Mode::NewSecondary => {
                if pnode.offline {
                    return Err(prereq(format!(
                        "the primary node {} is offline: fail the instance over first",
                        pnode.name
                    )));
                }
                if let Some(r) = &self.remote_node {
                    let new = node_by_name(cfg, r)?;
                    check_new_secondary(inst, pnode, snode, new)?;
                }
            }
        }
        self.instance = Some(inst.clone());
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        let inst = self
            .instance
            .clone()
            .ok_or_else(|| OpError::Exec("internal error: not checked".into()))?;
        let cfg = env.cfg();
        let pnode = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let snode = secondary_of(&cfg, &inst)
            .cloned()
            .ok_or_else(|| prereq(format!("instance {} has no secondary node", inst.name)))?;
        let all: Vec<usize> = (0..inst.disks.len()).collect();
        let selected = if self.disks.is_empty() {
            all.clone()
        } else {
            self.disks.clone()
        };
        match self.mode {
            Mode::OnPrimary => {
                replace_on(env, &inst, &pnode, &snode, &selected, self.early_release).await?;
                Ok(json!({"node": pnode.name, "disks": selected}))
            }
            Mode::OnSecondary => {
                replace_on(env, &inst, &snode, &pnode, &selected, self.early_release).await?;
                Ok(json!({"node": snode.name, "disks": selected}))
            }
            Mode::Auto => self.auto(env, &inst, &pnode, &snode).await,
            Mode::NewSecondary => {
                let new = match (&self.remote_node, &self.iallocator) {
                    (Some(r), _) => node_by_name(&cfg, r)?.clone(),
                    (None, Some(a)) => {
                        let name = relocate(env, &cfg, &inst, &snode).await?;
                        env.log(format!("allocator {a} chose node {name} as new secondary"));
                        node_by_name(&cfg, &name)?.clone()
                    }
                    (None, None) => return Err(prereq("no new secondary node given")),
                };
                check_new_secondary(&inst, &pnode, &snode, &new)?;
                new_secondary(env, &inst, &pnode, &snode, &new, self.early_release).await?;
                Ok(json!({"node": new.name, "old_node": snode.name}))
            }
        }
    }
}

impl InstanceReplaceDisks {
    /// `replace_auto`: finds the faulty side and replaces its faulty disks there.
    async fn auto(
        &self,
        env: &Env<'_>,
        inst: &Instance,
        pnode: &Node,
        snode: &Node,
    ) -> Result<Value, OpError> {
        let mut faulty = Vec::new();
        for node in [pnode, snode] {
            let bad = faulty_disks(env, inst, node).await?;
            if !bad.is_empty() {
                env.log(format!(
                    "node {} has faulty disks: {}",
                    node.name,
                    bad.iter()
                        .map(|(i, why)| format!("{} ({why})", inst.disks[*i].iv_name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            faulty.push(bad);
        }
        let (pbad, sbad) = (&faulty[0], &faulty[1]);
        match (pbad.is_empty(), sbad.is_empty()) {
            (true, true) => {
                env.log(format!(
                    "no disks of instance {} need replacement",
                    inst.name
                ));
                Ok(json!({"node": null, "disks": []}))
            }
            (false, false) => Err(OpError::Exec(format!(
                "both nodes of instance {} have faulty disks: cannot replace them \
                 automatically",
                inst.name
            ))),
            (false, true) => {
                let idx: Vec<usize> = pbad.iter().map(|(i, _)| *i).collect();
                replace_on(env, inst, pnode, snode, &idx, self.early_release).await?;
                Ok(json!({"node": pnode.name, "disks": idx}))
            }
            (true, false) => {
                let idx: Vec<usize> = sbad.iter().map(|(i, _)| *i).collect();
                replace_on(env, inst, snode, pnode, &idx, self.early_release).await?;
                Ok(json!({"node": snode.name, "disks": idx}))
            }
        }
    }
}

/// The new secondary must be another, usable node.
fn check_new_secondary(
    inst: &Instance,
    pnode: &Node,
    snode: &Node,
    new: &Node,
) -> Result<(), OpError> {
    if new.uuid == pnode.uuid {
        return Err(prereq(format!(
            "node {} is the primary node of instance {}: it cannot be its secondary",
            new.name, inst.name
        )));
    }
    if new.uuid == snode.uuid {
        return Err(prereq(format!(
            "instance {} already uses node {} as its secondary",
            inst.name, new.name
        )));
    }
    check_node_usable(new)
}

/// Ganeti's iallocator `relocate` request for the secondary, answered in-process.
async fn relocate(
    env: &Env<'_>,
    cfg: &ConfigData,
    inst: &Instance,
    snode: &Node,
) -> Result<String, OpError> {
    let mut req = crate::iallocator::cluster_request(env.master, cfg, inst.disk_template).await;
    req["request"] = json!({
        "type": "relocate",
        "name": inst.name,
        "required_nodes": 1,
        "relocate_from": [snode.name],
        "disk_space_total": crate::drbd::storage_needed(maguey_model::DiskTemplate::Drbd, inst.disks.iter().map(|d| d.size)),
    });
    let answer = maguey_placement::ialloc::answer(
        &req.to_string(),
        &maguey_placement::alloc::AllocOptions::default(),
    )
    .map_err(|e| OpError::Exec(format!("allocator: {e}")))?;
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| OpError::Exec(format!("allocator answer: {e}")))?;
    if v["success"] != json!(true) {
        return Err(prereq(format!(
            "the allocator found no new secondary for instance {}: {}",
            inst.name,
            v["info"].as_str().unwrap_or("no reason given")
        )));
    }
    v["result"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|n| n.as_str())
        .map(String::from)
        .ok_or_else(|| OpError::Exec(format!("allocator answered no node: {v}")))
}

/// The instance with only the selected disks (RPCs that act on some disks).
fn with_disks(inst: &Instance, idx: &[usize]) -> Instance {
    let mut i = inst.clone();
    i.disks = idx
        .iter()
        .filter_map(|&n| inst.disks.get(n).cloned())
        .collect();
    i
}

/// Assembles the instance's devices on `node` unless they all are; answers whether it did
/// (the caller shuts them down again at the end for a stopped instance).
async fn ensure_active(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<bool, OpError> {
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
async fn deactivate(env: &Env<'_>, inst: &Instance, node: &Node) {
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
async fn faulty_disks(
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

fn is_faulty(s: &DrbdDiskStatus) -> bool {
    match s.disk.as_str() {
        "Diskless" | "Failed" => true,
        "Inconsistent" => !s.replication.contains("Sync"),
        _ => false,
    }
}

/// Replaces the storage of disks `idx` on `target`; `peer` (UpToDate) is the sync source.
async fn replace_on(
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
async fn remove_lvs(env: &Env<'_>, cfg: &ConfigData, node: &Node, lvs: &[String]) {
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
async fn new_secondary(
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
    if let Err(e) = env.apply(Command::UpdateInstance {
        instance: fresh.clone(),
    }) {
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
async fn undo_new(env: &Env<'_>, node: &Node, created: &[Disk], fsd: &str) {
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
async fn reattach_old(env: &Env<'_>, inst: &Instance, pnode: &Node, old: &Node) {
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
        }
    }

    #[test]
    fn modes_and_faults_follow_ganeti() {
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
