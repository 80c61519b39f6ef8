//! `plain` and `drbd` disks on the master side: LV names, DRBD port/minor/secret allocation,
//! and the node RPC steps the logical units share (assemble, roles, wait for sync).

use crate::util::node_by_uuid;
use crate::Env;
use maguey_jobs::OpError;
use maguey_model::{
    new_uuid, ConfigData, DevType, Disk, DiskMode, DiskTemplate, Instance, LogicalId, Node,
    DRBD_MAX_MINOR, DRBD_META_SIZE_MIB, DRBD_PORT_FIRST, DRBD_PORT_LAST, DRBD_SECRET_LEN,
};
use maguey_rpc::{DrbdDiskStatus, DrbdRole, DrbdSyncProgress, NodeRequest};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The node storage type that holds a template's disks (`node info` reports it; the
/// allocator and the free-space checks read it).
pub fn storage_type(template: DiskTemplate) -> &'static str {
    template.storage_type()
}

/// Space a template's disks take in their storage (DRBD adds its meta LV per disk).
pub fn storage_needed(template: DiskTemplate, sizes: impl Iterator<Item = u64>) -> u64 {
    sizes
        .map(|s| {
            if template.is_internally_mirrored() {
                s + DRBD_META_SIZE_MIB
            } else {
                s
            }
        })
        .sum()
}

/// Ports and minors handed out to jobs that have not added their instance to the config yet
/// (Ganeti's wconfd temporary reservations). Dropped with the [`DrbdReservation`].
static RESERVED: Mutex<Reserved> = Mutex::new(Reserved {
    ports: BTreeSet::new(),
    minors: BTreeSet::new(),
});

struct Reserved {
    ports: BTreeSet<u16>,
    minors: BTreeSet<(String, u32)>,
}

/// One DRBD disk's allocation: port, minor on the primary and on the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrbdAlloc {
    pub port: u16,
    pub minor_p: u32,
    pub minor_s: u32,
}

/// Reserved ports and minors; released when dropped (after the instance is in the config, or
/// when the job fails).
pub struct DrbdReservation {
    ports: Vec<u16>,
    minors: Vec<(String, u32)>,
}

impl Drop for DrbdReservation {
    fn drop(&mut self) {
        let mut r = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
        for p in &self.ports {
            r.ports.remove(p);
        }
        for m in &self.minors {
            r.minors.remove(m);
        }
    }
}

/// Ports and (node, minor) pairs the config uses.
fn used_in_config(cfg: &ConfigData) -> (BTreeSet<u16>, BTreeSet<(String, u32)>) {
    let mut ports = BTreeSet::new();
    let mut minors = BTreeSet::new();
    fn walk(d: &Disk, ports: &mut BTreeSet<u16>, minors: &mut BTreeSet<(String, u32)>) {
        if let LogicalId::Drbd {
            node_a,
            node_b,
            port,
            minor_a,
            minor_b,
            ..
        } = &d.logical_id
        {
            ports.insert(*port);
            minors.insert((node_a.clone(), *minor_a));
            minors.insert((node_b.clone(), *minor_b));
        }
        for c in &d.children {
            walk(c, ports, minors);
        }
    }
    for i in cfg.instances.values() {
        // The new pair of a move under way (or left by a stopped master) counts as used.
        let pending = i.pending_move.iter().flat_map(|p| &p.disks);
        for d in i.disks.iter().chain(pending) {
            walk(d, &mut ports, &mut minors);
        }
    }
    (ports, minors)
}

/// Allocates `count` DRBD disks between `pnode` and `snode`: the lowest free ports of the
/// pool and the lowest free minors of each node, not used by the config nor reserved by a
/// running job.
pub fn allocate(
    cfg: &ConfigData,
    pnode: &str,
    snode: &str,
    count: usize,
) -> Result<(Vec<DrbdAlloc>, DrbdReservation), OpError> {
    let (mut used_ports, mut used_minors) = used_in_config(cfg);
    let mut r = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
    used_ports.extend(r.ports.iter().copied());
    used_minors.extend(r.minors.iter().cloned());
    let mut out = Vec::with_capacity(count);
    let mut res = DrbdReservation {
        ports: Vec::new(),
        minors: Vec::new(),
    };
    let next_minor = |node: &str, used: &mut BTreeSet<(String, u32)>| {
        let m = (0..=DRBD_MAX_MINOR).find(|m| !used.contains(&(node.to_string(), *m)))?;
        used.insert((node.to_string(), m));
        Some(m)
    };
    for _ in 0..count {
        let port = (DRBD_PORT_FIRST..=DRBD_PORT_LAST)
            .find(|p| !used_ports.contains(p))
            .ok_or_else(|| {
                OpError::Prereq(format!(
                    "no free DRBD port left in {DRBD_PORT_FIRST}-{DRBD_PORT_LAST}"
                ))
            })?;
        used_ports.insert(port);
        let minor_p = next_minor(pnode, &mut used_minors)
            .ok_or_else(|| OpError::Prereq("no free DRBD minor on the primary node".into()))?;
        let minor_s = next_minor(snode, &mut used_minors)
            .ok_or_else(|| OpError::Prereq("no free DRBD minor on the secondary node".into()))?;
        out.push(DrbdAlloc {
            port,
            minor_p,
            minor_s,
        });
    }
    for a in &out {
        r.ports.insert(a.port);
        res.ports.push(a.port);
        for m in [
            (pnode.to_string(), a.minor_p),
            (snode.to_string(), a.minor_s),
        ] {
            r.minors.insert(m.clone());
            res.minors.push(m);
        }
    }
    Ok((out, res))
}

/// Allocates `count` DRBD minors on `node` (replace-disks with a new secondary keeps the
/// ports and the primary's minors): the lowest free ones, not used by the config nor reserved
/// by a running job; reserved until the returned [`DrbdReservation`] is dropped.
pub fn allocate_minors(
    cfg: &ConfigData,
    node: &str,
    count: usize,
) -> Result<(Vec<u32>, DrbdReservation), OpError> {
    let (_, mut used) = used_in_config(cfg);
    let mut r = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
    used.extend(r.minors.iter().cloned());
    let mut res = DrbdReservation {
        ports: Vec::new(),
        minors: Vec::new(),
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let m = (0..=DRBD_MAX_MINOR)
            .find(|m| !used.contains(&(node.to_string(), *m)))
            .ok_or_else(|| OpError::Prereq(format!("no free DRBD minor left on node {node}")))?;
        used.insert((node.to_string(), m));
        out.push(m);
    }
    for m in &out {
        r.minors.insert((node.to_string(), *m));
        res.minors.push((node.to_string(), *m));
    }
    Ok((out, res))
}

/// A random shared secret of Ganeti's length (hex digits: printable, no shell or DRBD
/// quoting issues).
pub fn generate_secret() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..DRBD_SECRET_LEN)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn plain_child(vg: &str, lv: String, size: u64, node: &str, iv_name: &str, now: f64) -> Disk {
    Disk {
        uuid: new_uuid(),
        name: None,
        dev_type: DevType::Plain,
        size,
        mode: DiskMode::ReadWrite,
        logical_id: LogicalId::Plain {
            vg: vg.to_string(),
            lv,
        },
        children: Vec::new(),
        nodes: vec![node.to_string()],
        iv_name: iv_name.to_string(),
        serial_no: 1,
        ctime: now,
        mtime: now,
    }
}

/// The logical id of a `plain` disk: LV `<uuid>.disk<N>` in `vg` (Ganeti's naming).
pub fn plain_logical_id(vg: &str, disk_uuid: &str, index: usize) -> LogicalId {
    LogicalId::Plain {
        vg: vg.to_string(),
        lv: format!("{disk_uuid}.disk{index}"),
    }
}

/// Turns a `drbd` disk skeleton (uuid, size, iv_name set) into the full disk between `pnode`
/// and `snode`: logical id and the two LV children `<uuid>.diskN_data`/`_meta` in `vg`.
pub fn make_drbd(
    disk: &mut Disk,
    index: usize,
    vg: &str,
    pnode: &str,
    snode: &str,
    alloc: DrbdAlloc,
    now: f64,
) {
    disk.logical_id = LogicalId::Drbd {
        node_a: pnode.to_string(),
        node_b: snode.to_string(),
        port: alloc.port,
        minor_a: alloc.minor_p,
        minor_b: alloc.minor_s,
        secret: generate_secret(),
    };
    disk.nodes = vec![pnode.to_string(), snode.to_string()];
    disk.children = vec![
        plain_child(
            vg,
            format!("{}.disk{index}_data", disk.uuid),
            disk.size,
            pnode,
            &disk.iv_name,
            now,
        ),
        plain_child(
            vg,
            format!("{}.disk{index}_meta", disk.uuid),
            DRBD_META_SIZE_MIB,
            pnode,
            &disk.iv_name,
            now,
        ),
    ];
}

/// The instance's DRBD disks.
pub fn drbd_disks(inst: &Instance) -> Vec<Disk> {
    inst.disks
        .iter()
        .filter(|d| d.dev_type == maguey_model::DevType::Drbd)
        .cloned()
        .collect()
}

/// The other end of the instance's DRBD disks (its secondary node), if any.
pub fn secondary_of<'a>(cfg: &'a ConfigData, inst: &Instance) -> Option<&'a Node> {
    inst.secondary_nodes()
        .first()
        .and_then(|u| cfg.nodes.get(*u))
}

/// Assembles the instance's DRBD disks on `node` with `role`.
pub async fn assemble(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    role: DrbdRole,
) -> Result<(), OpError> {
    let disks = drbd_disks(inst);
    if disks.is_empty() {
        return Ok(());
    }
    let _: Value = env
        .rpc(
            node,
            NodeRequest::DrbdAssemble {
                disks,
                instance_name: inst.name.clone(),
                role,
            },
        )
        .await?;
    Ok(())
}

/// Promotes (`primary`) or demotes the instance's DRBD disks on `node`.
pub async fn set_role(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    primary: bool,
    force: bool,
) -> Result<(), OpError> {
    let disks = drbd_disks(inst);
    if disks.is_empty() {
        return Ok(());
    }
    let _: Value = env
        .rpc(
            node,
            NodeRequest::DrbdSetRole {
                disks,
                primary,
                force,
            },
        )
        .await?;
    Ok(())
}

/// Allows or forbids two primaries on `node`'s connections.
pub async fn set_dual(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
    enable: bool,
) -> Result<(), OpError> {
    let _: Value = env
        .rpc(
            node,
            NodeRequest::DrbdSetDualPrimary {
                disks: drbd_disks(inst),
                enable,
            },
        )
        .await?;
    Ok(())
}

/// The status of the instance's DRBD disks on `node`, in disk order (`None`: not configured).
pub async fn status(
    env: &Env<'_>,
    inst: &Instance,
    node: &Node,
) -> Result<Vec<Option<DrbdDiskStatus>>, OpError> {
    env.rpc(
        node,
        NodeRequest::DrbdStatus {
            disks: drbd_disks(inst),
        },
    )
    .await
}

/// Checks that every DRBD disk of the instance is connected and up to date on `node`.
pub async fn check_in_sync(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let disks = drbd_disks(inst);
    for (d, st) in disks.iter().zip(status(env, inst, node).await?) {
        match st {
            Some(s) if s.in_sync => {}
            Some(s) => {
                return Err(OpError::Prereq(format!(
                    "disk {} of instance {} is degraded on node {}: {} {}/{} ({}/{})",
                    d.iv_name,
                    inst.name,
                    node.name,
                    s.connection,
                    s.disk,
                    s.peer_disk,
                    s.role,
                    s.peer_role
                )))
            }
            None => {
                return Err(OpError::Prereq(format!(
                    "disk {} of instance {} is not active on node {}",
                    d.iv_name, inst.name, node.name
                )))
            }
        }
    }
    Ok(())
}

/// How long a new DRBD disk may take to connect to its peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `node` until every DRBD disk of the instance is connected to its peer (before the
/// first promotion: Ganeti issue #846 is about promoting without waiting for the
/// connection). StandAlone (the peer refused us: wrong secret, split brain) fails at once.
pub async fn wait_connected(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let start = Instant::now();
    loop {
        let sts = status(env, inst, node).await?;
        let mut waiting = None;
        for (d, st) in inst.disks.iter().zip(&sts) {
            match st {
                Some(s) if s.connection == "Connected" => {}
                Some(s) if s.connection == "StandAlone" => {
                    return Err(OpError::Exec(format!(
                        "disk {} on node {} is StandAlone: the peer did not connect",
                        d.iv_name, node.name
                    )))
                }
                Some(s) => waiting = Some(format!("{} is {}", d.iv_name, s.connection)),
                None => {
                    return Err(OpError::Exec(format!(
                        "disk {} is not active on node {}",
                        d.iv_name, node.name
                    )))
                }
            }
        }
        let Some(why) = waiting else {
            env.log(format!(
                "DRBD connected on node {} ({:.1} s)",
                node.name,
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        };
        if start.elapsed() > CONNECT_TIMEOUT {
            return Err(OpError::Exec(format!(
                "DRBD did not connect within {} s on node {}: {why}",
                CONNECT_TIMEOUT.as_secs(),
                node.name
            )));
        }
        tokio::time::sleep(connect_poll_interval(start.elapsed())).await;
    }
}

/// The first promotion of new DRBD disks on `node` (creation, conversion, recreation):
/// one RPC, `drbd_promote_connected`, in which the node waits until every disk is
/// connected to its peer (reading its own status, with no round trip per read) and then
/// promotes them with `--force` (the full initial sync starts). A node that does not know
/// the procedure (an older build) gets the master's polls ([`wait_connected`]) and then
/// [`set_role`]. Never promotes before the connection (Ganeti issue #846).
pub async fn promote_new(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let disks = drbd_disks(inst);
    if disks.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let res: Result<Value, OpError> = env
        .rpc(
            node,
            NodeRequest::DrbdPromoteConnected {
                disks,
                timeout_secs: CONNECT_TIMEOUT.as_secs(),
            },
        )
        .await;
    match res {
        Ok(_) => {
            env.log(format!(
                "DRBD connected on node {} and made primary there ({:.1} s; the initial \
                 full sync starts)",
                node.name,
                start.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        Err(OpError::Exec(msg)) if unknown_procedure(&msg, "drbd_promote_connected") => {
            env.log(format!(
                "node {} cannot wait for DRBD itself (an older build): polling it",
                node.name
            ));
            wait_connected(env, inst, node).await?;
            set_role(env, inst, node, true, true).await
        }
        Err(e) => Err(e),
    }
}

/// Whether an RPC error is a node's refusal of `procedure` as unknown to it (the message
/// of `maguey_rpc::version::unknown_request`), not a failure of the procedure itself.
pub(crate) fn unknown_procedure(msg: &str, procedure: &str) -> bool {
    msg.contains(&format!("procedure '{procedure}'"))
        && (msg.contains("is not known here") || msg.contains("unknown request"))
}

/// The pause between two status reads while waiting for a connection: a fresh pair of ends
/// usually connects within a second of the second `connect`, so the first reads come fast
/// (each is one RPC round trip); a peer that takes longer is polled every 300 ms.
fn connect_poll_interval(waited: Duration) -> Duration {
    if waited < Duration::from_secs(3) {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(300)
    }
}

/// Polls the primary until the DRBD disks are in sync, logging the progress at most every
/// 5 seconds (Ganeti's `WaitForSync`).
pub async fn wait_for_sync(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let disks = drbd_disks(inst);
    if disks.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        let p: DrbdSyncProgress = env
            .rpc(
                node,
                NodeRequest::DrbdSyncProgress {
                    disks: disks.clone(),
                },
            )
            .await?;
        if p.all_done {
            env.log(format!(
                "instance {}'s disks are in sync ({:.1} s)",
                inst.name,
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            env.log(format!(
                "- device resync: {:.1}% done{}",
                p.min_percent,
                p.max_eta_secs
                    .map(|s| format!(", {s} s left"))
                    .unwrap_or_default()
            ));
            last_log = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Brings the instance's DRBD disks up for running on `primary`: secondary on the other
/// node (unless it is offline), then primary on `primary` (`force` when the peer is gone).
pub async fn activate_for_start(
    env: &Env<'_>,
    inst: &Instance,
    primary: &Node,
    force: bool,
) -> Result<(), OpError> {
    if drbd_disks(inst).is_empty() {
        return Ok(());
    }
    let cfg = env.cfg();
    let peer = inst
        .disks
        .iter()
        .flat_map(|d| d.nodes.iter())
        .find(|n| **n != primary.uuid)
        .map(|u| node_by_uuid(&cfg, u))
        .transpose()?
        .cloned();
    let mut peer_up = false;
    if let Some(peer) = &peer {
        if peer.offline {
            env.log(format!(
                "secondary node {} is offline: the disks run degraded",
                peer.name
            ));
        } else {
            assemble(env, inst, peer, DrbdRole::Secondary).await?;
            peer_up = true;
        }
    }
    if force || !peer_up {
        assemble(env, inst, primary, DrbdRole::Secondary).await?;
        set_role(env, inst, primary, true, true).await
    } else {
        assemble(env, inst, primary, DrbdRole::Primary).await
    }
}

/// Removes the instance's disks on `node` (both LVs and the DRBD device), logging failures.
pub async fn remove_on(env: &Env<'_>, inst: &Instance, node: &Node) -> Result<(), OpError> {
    let cfg = env.cfg();
    for disk in &inst.disks {
        env.log(format!(
            "removing disk {} on node {}",
            disk.iv_name, node.name
        ));
        let _: Value = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: disk.clone(),
                    file_storage_dir: crate::util::storage_dir(&cfg, disk.dev_type.template()),
                },
            )
            .await?;
    }
    Ok(())
}

/// Plain-to-drbd conversion (Ganeti's `_ConvertPlainToDrbd`): the `drbd` disk that takes over
/// the `plain` disk `old` (index `index`) of an instance on `pnode`, replicated to `snode`.
/// It keeps the disk's uuid, and its data child is the existing LV (on the primary it holds
/// the data; on the secondary an LV of the same name is created); the meta LV is
/// `<uuid>.disk<N>_meta` on both nodes.
pub fn drbd_from_plain(
    old: &Disk,
    index: usize,
    pnode: &str,
    snode: &str,
    alloc: DrbdAlloc,
    now: f64,
) -> Result<Disk, OpError> {
    let LogicalId::Plain { vg, .. } = &old.logical_id else {
        return Err(OpError::Prereq(format!(
            "disk {} is not a plain disk ({})",
            old.iv_name, old.dev_type
        )));
    };
    let mut d = Disk {
        uuid: old.uuid.clone(),
        name: old.name.clone(),
        dev_type: DevType::Drbd,
        size: old.size,
        mode: old.mode,
        logical_id: old.logical_id.clone(),
        children: Vec::new(),
        nodes: Vec::new(),
        iv_name: old.iv_name.clone(),
        serial_no: old.serial_no + 1,
        ctime: old.ctime,
        mtime: now,
    };
    make_drbd(&mut d, index, vg, pnode, snode, alloc, now);
    if let Some(data) = d.children.first_mut() {
        data.logical_id = old.logical_id.clone();
    }
    Ok(d)
}

/// Drbd-to-plain conversion (Ganeti's `_ConvertDrbdToPlain`): the `plain` disk on `pnode`
/// that the data LV of the `drbd` disk `d` becomes (same uuid, the data child's LV).
pub fn plain_from_drbd(d: &Disk, pnode: &str, now: f64) -> Result<Disk, OpError> {
    let data = d
        .children
        .first()
        .filter(|c| matches!(c.logical_id, LogicalId::Plain { .. }))
        .ok_or_else(|| {
            OpError::Prereq(format!("disk {} has no data LV in the config", d.iv_name))
        })?;
    Ok(Disk {
        uuid: d.uuid.clone(),
        name: d.name.clone(),
        dev_type: DevType::Plain,
        size: d.size,
        mode: d.mode,
        logical_id: data.logical_id.clone(),
        children: Vec::new(),
        nodes: vec![pnode.to_string()],
        iv_name: d.iv_name.clone(),
        serial_no: d.serial_no + 1,
        ctime: d.ctime,
        mtime: now,
    })
}

#[cfg(test)]
#[path = "drbd_tests.rs"]
mod tests;
