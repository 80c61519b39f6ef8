//! The `drbd` disk template: a DRBD device between two nodes' secondary IPs, over a data LV
//! and a 128 MiB meta LV on each (Ganeti's layout: a `drbd` disk with two `plain` children).
//!
//! One node-side function per step of Ganeti's flows, each idempotent where Ganeti's is, each
//! running its commands through the context's runner (so tests assert the exact argv):
//!
//! | function | what it does on this node |
//! |---|---|
//! | [`drbd_create`] | data + meta LVs, fresh metadata |
//! | [`drbd_assemble`] | local device: LVs active, resource, minor, attach (no network) |
//! | [`drbd_attach_net`] | assemble if needed, connect to the peer, optionally promote |
//! | [`drbd_set_primary`] / [`drbd_set_secondary`] | role |
//! | [`drbd_disconnect`] / [`drbd_reconnect`] | network down (StandAlone) / up again |
//! | [`drbd_reconnect_discard_my_data`] | split brain: this side's changes discarded, resync |
//! | [`drbd_enable_dual_primary`] / [`drbd_disable_dual_primary`] | live migration window |
//! | [`drbd_status`] | one status read of one disk |
//! | [`drbd_sync_progress`] | one `drbd_wait_sync` step for several disks (the caller polls) |
//! | [`drbd_detach`] | backing disks off (device stays, Diskless) |
//! | [`drbd_grow_backing`] / [`drbd_resize`] | grow the data LV / the device |
//! | [`drbd_skip_initial_sync`] | new, identical sides: no full resync |
//! | [`drbd_shutdown`] | tear the device down (LVs stay) |
//! | [`drbd_remove`] | shutdown + remove both LVs |
//!
//! The dialect (8.4 or 9) comes from the loaded module ([`version`]); 8.4 status is read from
//! `/proc/drbd` ([`proc84`]), 9 status from `drbdsetup status --json` ([`status9`]).
//! The module must run `usermode_helper=/bin/true` ([`helper`]).

use crate::error::NodeResult;
pub mod cmd;
mod create;
pub mod helper;
pub mod proc84;
mod replace;
pub mod status;
pub mod status9;
pub mod version;

pub use cmd::DrbdNet;
pub use create::{drbd_create, drbd_create_up, drbd_promote_connected};
pub use replace::drbd_replace_backing;
pub use status::{
    split_brain_between, ConnectionState, DiskState, DrbdStatus, LocalDiskStatus, ReplicationState,
    Role,
};
pub use version::{Dialect, DrbdVersion};

use super::lvm::{self, LvId, LvmStorage};
use super::runner::{run_checked, Cmd, CommandRunner, StorageError};
use super::{BlockStorage, StorageContext};
use maguey_model::{Disk, LogicalId};
use maguey_rpc::{BlockdevInfo, StorageInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Ganeti's `DRBD_META_SIZE` (MiB).
pub const META_SIZE_MIB: u64 = 128;
/// DRBD's limit on the shared secret.
pub const MAX_SECRET_LEN: usize = 64;
/// Ganeti's limit of minors per node.
pub const MAX_MINOR: u32 = 255;

/// A DRBD disk as seen from one of its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdDevice {
    /// This node's minor (`/dev/drbd<minor>`, resource `resource<minor>`).
    pub minor: u32,
    pub peer_minor: u32,
    /// TCP port on both secondary IPs.
    pub port: u16,
    pub secret: String,
    pub local_node: String,
    pub peer_node: String,
    /// DRBD 9 node ids: `node_a` of the logical id is 0, `node_b` 1.
    pub node_id: u32,
    pub peer_node_id: u32,
    pub data: LvId,
    pub meta: LvId,
    pub data_size_mib: u64,
    pub meta_size_mib: u64,
    /// The device's size (the disk's size).
    pub size_mib: u64,
}

impl DrbdDevice {
    /// The local end of `disk` on node `local_node` (a node uuid of its logical id).
    pub fn from_disk(disk: &Disk, local_node: &str) -> Result<Self, StorageError> {
        let LogicalId::Drbd {
            node_a,
            node_b,
            port,
            minor_a,
            minor_b,
            secret,
        } = &disk.logical_id
        else {
            return Err(StorageError::Invalid(format!(
                "disk {} is not a DRBD disk: {:?}",
                disk.iv_name, disk.logical_id
            )));
        };
        let (minor, peer_minor, peer_node, node_id) = if local_node == node_a {
            (*minor_a, *minor_b, node_b, 0)
        } else if local_node == node_b {
            (*minor_b, *minor_a, node_a, 1)
        } else {
            return Err(StorageError::Invalid(format!(
                "disk {}: node {local_node} is neither end of the DRBD disk ({node_a}, {node_b})",
                disk.iv_name
            )));
        };
        if node_a == node_b {
            return Err(StorageError::Invalid(format!(
                "disk {}: both DRBD ends are node {node_a}",
                disk.iv_name
            )));
        }
        if minor > MAX_MINOR || peer_minor > MAX_MINOR {
            return Err(StorageError::Invalid(format!(
                "disk {}: DRBD minor out of range (0..={MAX_MINOR})",
                disk.iv_name
            )));
        }
        if *port == 0 {
            return Err(StorageError::Invalid(format!(
                "disk {}: DRBD port 0",
                disk.iv_name
            )));
        }
        if secret.is_empty()
            || secret.len() > MAX_SECRET_LEN
            || !secret.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(StorageError::Invalid(format!(
                "disk {}: the DRBD secret must be 1-{MAX_SECRET_LEN} printable ASCII characters",
                disk.iv_name
            )));
        }
        let [data, meta] = disk.children.as_slice() else {
            return Err(StorageError::Invalid(format!(
                "disk {}: a DRBD disk needs two children (data and meta LVs), has {}",
                disk.iv_name,
                disk.children.len()
            )));
        };
        if data.size < disk.size {
            return Err(StorageError::Invalid(format!(
                "disk {}: data LV of {} MiB is smaller than the disk ({} MiB)",
                disk.iv_name, data.size, disk.size
            )));
        }
        if meta.size < META_SIZE_MIB {
            return Err(StorageError::Invalid(format!(
                "disk {}: meta LV of {} MiB is smaller than {META_SIZE_MIB} MiB",
                disk.iv_name, meta.size
            )));
        }
        Ok(DrbdDevice {
            minor,
            peer_minor,
            port: *port,
            secret: secret.clone(),
            local_node: local_node.to_string(),
            peer_node: peer_node.clone(),
            node_id,
            peer_node_id: 1 - node_id,
            data: LvId::of_disk(data)?,
            meta: LvId::of_disk(meta)?,
            data_size_mib: data.size,
            meta_size_mib: meta.size,
            size_mib: disk.size,
        })
    }

    /// `resource<minor>` (Ganeti's naming; one volume per resource).
    pub fn resource(&self) -> String {
        format!("resource{}", self.minor)
    }

    /// `/dev/drbd<minor>`.
    pub fn device_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/drbd{}", self.minor))
    }
}

/// The local end of `disk` for this context's node.
pub fn drbd_device(ctx: &StorageContext, disk: &Disk) -> Result<DrbdDevice, StorageError> {
    let node = ctx
        .node_uuid
        .as_deref()
        .ok_or_else(|| StorageError::Invalid("this node's uuid is needed for DRBD disks".into()))?;
    DrbdDevice::from_disk(disk, node)
}

/// The connection's addresses from the context's secondary IPs.
pub fn drbd_net(ctx: &StorageContext, dev: &DrbdDevice) -> Result<DrbdNet, StorageError> {
    let ip = |node: &str| {
        ctx.secondary_ips
            .get(node)
            .copied()
            .ok_or_else(|| StorageError::Invalid(format!("no secondary IP known for node {node}")))
    };
    let (local, remote) = (ip(&dev.local_node)?, ip(&dev.peer_node)?);
    if local.is_ipv4() != remote.is_ipv4() {
        return Err(StorageError::Invalid(format!(
            "DRBD ends in different address families: {local} and {remote}"
        )));
    }
    Ok(DrbdNet {
        local,
        remote,
        port: dev.port,
    })
}

/// The dialect of the loaded module.
pub fn drbd_dialect(ctx: &StorageContext) -> Result<Dialect, StorageError> {
    version::detect_dialect(ctx.runner())
}

/// The loaded module's version (cluster verify compares them within a group).
pub fn drbd_version(ctx: &StorageContext) -> Result<DrbdVersion, StorageError> {
    version::detect(ctx.runner())
}

/// Cluster verify's usermode-helper check (see [`helper::check_usermode_helper`]).
pub fn drbd_check_helper(ctx: &StorageContext, expected: &str) -> Result<(), StorageError> {
    helper::check_usermode_helper(ctx.runner(), expected)
}

fn run(runner: &dyn CommandRunner, cmd: &Cmd) -> Result<(), StorageError> {
    run_checked(runner, cmd).map(|_| ())
}

fn run_all(runner: &dyn CommandRunner, cmds: &[Cmd]) -> Result<(), StorageError> {
    cmds.iter().try_for_each(|c| run(runner, c))
}

/// Everything the node knows about its DRBD devices in one read.
struct Snapshot {
    devices: BTreeMap<u32, DrbdStatus>,
    /// DRBD 9 only: the raw status, for resource/peer questions.
    json: Option<String>,
    /// DRBD 8.4 only: minors that exist unattached (`cs:Unconfigured`).
    unconfigured: Vec<u32>,
}

impl Snapshot {
    fn read(runner: &dyn CommandRunner, d: Dialect) -> Result<Self, StorageError> {
        match d {
            Dialect::V84 => {
                let text = runner
                    .read_file(Path::new(version::PROC_DRBD))
                    .map_err(|e| StorageError::Read {
                        path: version::PROC_DRBD.into(),
                        reason: e.to_string(),
                    })?;
                Ok(Snapshot {
                    devices: proc84::parse(&text)?,
                    json: None,
                    unconfigured: proc84::unconfigured_minors(&text),
                })
            }
            Dialect::V9 => {
                let text = run_checked(runner, &cmd::status9())?;
                Ok(Snapshot {
                    devices: status9::parse(&text)?,
                    json: Some(text),
                    unconfigured: Vec::new(),
                })
            }
        }
    }

    fn device(&self, dev: &DrbdDevice) -> Option<&DrbdStatus> {
        self.devices.get(&dev.minor)
    }

    /// DRBD 9: the peer is defined (new-peer done).
    fn peer_defined(&self, dev: &DrbdDevice) -> Result<bool, StorageError> {
        match &self.json {
            Some(text) => status9::peer_defined(text, &dev.resource()),
            None => Ok(false),
        }
    }
}

/// The status of every configured device on this node, by minor.
pub fn drbd_status_all(ctx: &StorageContext) -> Result<BTreeMap<u32, DrbdStatus>, StorageError> {
    let d = drbd_dialect(ctx)?;
    Ok(Snapshot::read(ctx.runner(), d)?.devices)
}

/// The minors configured on this node (Ganeti's `drbd_list_minors`, orphan checks).
pub fn drbd_minors_in_use(ctx: &StorageContext) -> Result<Vec<u32>, StorageError> {
    Ok(drbd_status_all(ctx)?.into_keys().collect())
}

/// One status read of the disk's local device; `None` when it is not configured.
pub fn drbd_status(ctx: &StorageContext, disk: &Disk) -> Result<Option<DrbdStatus>, StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    Ok(Snapshot::read(ctx.runner(), d)?.device(&dev).cloned())
}

/// DRBD's name of a state (`Failing("Timeout")` is `Timeout`, `Other(s)` is `s`).
fn state_name<T: std::fmt::Debug>(v: &T) -> String {
    let dbg = format!("{v:?}");
    match dbg.split_once("(\"") {
        Some((_, rest)) => rest.trim_end_matches("\")").to_string(),
        None => dbg,
    }
}

/// The status in the node RPC's form (DRBD's state names as strings).
pub fn rpc_status(st: &DrbdStatus) -> maguey_rpc::DrbdDiskStatus {
    maguey_rpc::DrbdDiskStatus {
        minor: st.minor,
        connection: state_name(&st.connection),
        replication: state_name(&st.replication),
        role: state_name(&st.role),
        peer_role: state_name(&st.peer_role),
        disk: state_name(&st.disk),
        peer_disk: state_name(&st.peer_disk),
        sync_percent: st.sync_percent,
        in_sync: st.is_in_sync(),
        degraded: st.is_degraded(),
        sync_eta_secs: st.sync_eta_secs,
    }
}

/// Ganeti's `drbd_wait_sync` answer for a set of disks: one status read; the caller polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// No device is resynchronising any more.
    pub all_done: bool,
    /// The lowest resync percentage (100 when none is resynchronising).
    pub min_percent: f64,
    /// The longest estimated time to finish, when the module tells it (8.4).
    pub max_eta_secs: Option<u64>,
}

/// The resync progress of `disks` (Ganeti's `drbd_wait_sync` step). A device that is not
/// configured, or neither connected nor resynchronising (StandAlone, waiting for the peer),
/// is an error naming the disk: waiting longer would not help.
pub fn drbd_sync_progress(
    ctx: &StorageContext,
    disks: &[Disk],
) -> Result<SyncProgress, StorageError> {
    let d = drbd_dialect(ctx)?;
    let snap = Snapshot::read(ctx.runner(), d)?;
    let mut progress = SyncProgress {
        all_done: true,
        min_percent: 100.0,
        max_eta_secs: None,
    };
    for disk in disks {
        let dev = drbd_device(ctx, disk)?;
        let st = snap.device(&dev).ok_or_else(|| {
            StorageError::Invalid(format!(
                "disk {}: DRBD minor {} is not configured",
                disk.iv_name, dev.minor
            ))
        })?;
        if !(st.is_connected() || st.is_syncing()) {
            return Err(StorageError::Invalid(format!(
                "disk {}: DRBD minor {} is not connected ({:?}, disk {:?})",
                disk.iv_name, dev.minor, st.connection, st.disk
            )));
        }
        if st.is_syncing() {
            progress.all_done = false;
        }
        if let Some(p) = st.sync_percent {
            progress.min_percent = progress.min_percent.min(p);
        }
        if let Some(eta) = st.sync_eta_secs {
            progress.max_eta_secs = Some(progress.max_eta_secs.map_or(eta, |m| m.max(eta)));
        }
    }
    Ok(progress)
}

/// Sets the local device up (resource, minor, backing disks) if it is not: a configured but
/// diskless device is attached again. On failure the half-made resource is torn down.
pub fn drbd_assemble(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let snap = Snapshot::read(ctx.runner(), d)?;
    assemble_with(ctx.runner(), d, &dev, snap.device(&dev))
}

fn assemble_with(
    r: &dyn CommandRunner,
    d: Dialect,
    dev: &DrbdDevice,
    current: Option<&DrbdStatus>,
) -> Result<(), StorageError> {
    match current {
        Some(st) if st.disk == DiskState::Diskless => {
            activate_backing(r, dev)?;
            attach(r, d, dev, &cmd::attach_only(d, dev))
        }
        Some(_) => Ok(()),
        None => {
            activate_backing(r, dev)?;
            bring_up(r, d, dev)
        }
    }
}

/// Sets up the resource, the minor and the attach on active backing LVs; a failure tears the
/// half-made resource down.
fn bring_up(r: &dyn CommandRunner, d: Dialect, dev: &DrbdDevice) -> Result<(), StorageError> {
    // 8.4 shows a minor that exists but is unattached, StandAlone and Secondary as
    // `Unconfigured`: its resource and minor may exist already, which is fine.
    let cmds = cmd::assemble(d, dev);
    let result = cmds.iter().enumerate().try_for_each(|(i, c)| {
        let last = i + 1 == cmds.len();
        let res = if last {
            attach(r, d, dev, c)
        } else {
            run(r, c)
        };
        match res {
            Err(e) if !last && e.stderr().contains("exists") => Ok(()),
            other => other,
        }
    });
    if result.is_err() {
        // Best effort: leave no half-configured resource behind.
        let _ = r.run(&cmd::down(dev));
    }
    result
}

/// Runs the `attach` command `c`; metadata left unclean by a power loss (the node died with
/// the device up) has its activity log applied first (`drbdmeta apply-al`), then the attach
/// is retried, as `drbdadm attach` does.
fn attach(
    r: &dyn CommandRunner,
    d: Dialect,
    dev: &DrbdDevice,
    c: &Cmd,
) -> Result<(), StorageError> {
    match run(r, c) {
        Err(e) if e.stderr().contains("apply-al") => {
            run(r, &cmd::apply_al(d, dev))?;
            run(r, c)
        }
        other => other,
    }
}

/// Makes sure both backing LVs are active (their `/dev/VG/LV` exist) before attaching.
fn activate_backing(r: &dyn CommandRunner, dev: &DrbdDevice) -> Result<(), StorageError> {
    lvm::activate(r, &dev.data)?;
    lvm::activate(r, &dev.meta)
}

/// The role a node takes in [`drbd_attach_net`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetRole {
    /// Connect only (the secondary, or a primary that stays as it is).
    Secondary,
    /// Connect, then promote (single primary).
    Primary,
    /// Connect allowing two primaries, then promote: both ends of a live migration (Ganeti's
    /// `multimaster`).
    DualPrimary,
}

/// Assembles the local device if needed, connects it to the peer, and promotes it for
/// [`NetRole::Primary`]/[`NetRole::DualPrimary`] (without `--force`: a brand-new disk's first
/// primary uses [`drbd_set_primary`] with `force`).
pub fn drbd_attach_net(
    ctx: &StorageContext,
    disk: &Disk,
    role: NetRole,
) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let net = drbd_net(ctx, &dev)?;
    let d = drbd_dialect(ctx)?;
    let r = ctx.runner();
    let snap = Snapshot::read(r, d)?;
    assemble_with(r, d, &dev, snap.device(&dev))?;
    let dual = role == NetRole::DualPrimary;
    connect_with(r, d, &dev, &net, &snap, dual)?;
    if role != NetRole::Secondary {
        run(r, &cmd::primary(d, &dev, false))?;
    }
    Ok(())
}

/// Connects unless already connected or connecting; with `dual`, also allows two primaries on
/// an existing connection.
fn connect_with(
    r: &dyn CommandRunner,
    d: Dialect,
    dev: &DrbdDevice,
    net: &DrbdNet,
    snap: &Snapshot,
    dual: bool,
) -> Result<(), StorageError> {
    let standalone = snap.device(dev).is_none_or(DrbdStatus::is_standalone);
    if !standalone {
        if dual {
            run(r, &cmd::dual_primary(d, dev, net, true))?;
        }
        return Ok(());
    }
    match d {
        Dialect::V9 if snap.peer_defined(dev)? => {
            run(r, &cmd::dual_primary(d, dev, net, dual))?;
            run(r, &cmd::connect_defined_peer(dev))
        }
        _ => run_all(r, &cmd::connect(d, dev, net, dual)),
    }
}

/// Connects a StandAlone device to its peer again (after [`drbd_disconnect`]); `dual` allows
/// two primaries (live migration). Nothing to do when already connected or connecting.
pub fn drbd_reconnect(ctx: &StorageContext, disk: &Disk, dual: bool) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let net = drbd_net(ctx, &dev)?;
    let d = drbd_dialect(ctx)?;
    let snap = Snapshot::read(ctx.runner(), d)?;
    if snap.device(&dev).is_none() {
        return Err(StorageError::Invalid(format!(
            "DRBD minor {} is not configured on this node",
            dev.minor
        )));
    }
    connect_with(ctx.runner(), d, &dev, &net, &snap, dual)
}

/// Resolves a split brain in favour of the peer: assembles the local device if needed,
/// drops its connection unless StandAlone, demotes it and connects again with
/// `--discard-my-data`, so that what this node changed since the split is discarded and it
/// resyncs from the peer. Nothing to do when the device is connected already.
pub fn drbd_reconnect_discard_my_data(
    ctx: &StorageContext,
    disk: &Disk,
) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let net = drbd_net(ctx, &dev)?;
    let d = drbd_dialect(ctx)?;
    let r = ctx.runner();
    let snap = Snapshot::read(r, d)?;
    let current = snap.device(&dev);
    if current.is_some_and(DrbdStatus::is_connected) {
        return Ok(());
    }
    assemble_with(r, d, &dev, current)?;
    if current.is_some_and(|s| !s.is_standalone()) {
        run(r, &cmd::disconnect(d, &dev, &net))?;
    }
    run(r, &cmd::secondary(d, &dev))?;
    let peer_defined = current.is_some() && snap.peer_defined(&dev)?;
    run_all(
        r,
        &cmd::connect_discard_my_data(d, &dev, &net, peer_defined),
    )
}

/// Drops the connection to the peer (the device goes StandAlone and keeps its disks). Nothing
/// to do when not configured or already StandAlone.
pub fn drbd_disconnect(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let snap = Snapshot::read(ctx.runner(), d)?;
    match snap.device(&dev) {
        Some(st) if !st.is_standalone() => {
            let net = drbd_net(ctx, &dev)?;
            run(ctx.runner(), &cmd::disconnect(d, &dev, &net))
        }
        _ => Ok(()),
    }
}

/// Promotes the local device; `force` for the first primary of a new disk (both sides
/// Inconsistent: starts the initial sync from here) or when the peer is gone.
pub fn drbd_set_primary(
    ctx: &StorageContext,
    disk: &Disk,
    force: bool,
) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    run(ctx.runner(), &cmd::primary(d, &dev, force))
}

/// Demotes the local device.
pub fn drbd_set_secondary(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    run(ctx.runner(), &cmd::secondary(d, &dev))
}

/// Allows two primaries on the live connection (start of a live migration).
pub fn drbd_enable_dual_primary(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    set_dual(ctx, disk, true)
}

/// Back to a single primary (end of a live migration; demote the old primary first). On 8.4
/// a device without a connection (StandAlone, not configured) has nothing to change: its
/// next connect is single-primary.
pub fn drbd_disable_dual_primary(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    if drbd_dialect(ctx)? == Dialect::V84 {
        let dev = drbd_device(ctx, disk)?;
        let snap = Snapshot::read(ctx.runner(), Dialect::V84)?;
        if snap.device(&dev).is_none_or(DrbdStatus::is_standalone) {
            return Ok(());
        }
    }
    set_dual(ctx, disk, false)
}

fn set_dual(ctx: &StorageContext, disk: &Disk, allow: bool) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let net = drbd_net(ctx, &dev)?;
    let d = drbd_dialect(ctx)?;
    run(ctx.runner(), &cmd::dual_primary(d, &dev, &net, allow))
}

/// Detaches the local backing disks (the device goes Diskless and keeps serving from the
/// peer; replace-disks swaps the LVs under it). Nothing to do when not configured or
/// already diskless.
pub fn drbd_detach(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let snap = Snapshot::read(ctx.runner(), d)?;
    match snap.device(&dev) {
        Some(st) if st.disk != DiskState::Diskless => run(ctx.runner(), &cmd::detach(&dev)),
        _ => Ok(()),
    }
}

/// Grows this node's data LV by `by_mib` (before [`drbd_resize`], on both nodes).
pub fn drbd_grow_backing(
    ctx: &StorageContext,
    disk: &Disk,
    by_mib: u64,
) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    lvm::grow(ctx.runner(), &dev.data, by_mib)
}

/// Sets the device's size to `size_mib` once both nodes' data LVs have grown (run on the
/// primary while connected).
pub fn drbd_resize(ctx: &StorageContext, disk: &Disk, size_mib: u64) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    if size_mib == 0 {
        return Err(StorageError::Invalid("DRBD resize to 0 MiB".into()));
    }
    run(ctx.runner(), &cmd::resize(&dev, size_mib))
}

/// Marks both sides of a brand-new, connected disk identical (no initial full sync); run on
/// one node before the first promotion.
pub fn drbd_skip_initial_sync(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    run(ctx.runner(), &cmd::skip_initial_sync(&dev))
}

/// Tears the local device down (`drbdsetup down resource<minor>`); the LVs stay. Nothing to
/// do when it is not configured.
pub fn drbd_shutdown(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let snap = Snapshot::read(ctx.runner(), d)?;
    let resource_exists = match &snap.json {
        Some(text) => status9::resource_names(text)?.contains(&dev.resource()),
        None => snap.device(&dev).is_some() || snap.unconfigured.contains(&dev.minor),
    };
    if resource_exists {
        run(ctx.runner(), &cmd::down(&dev))?;
    }
    Ok(())
}

/// Shuts the device down and removes both LVs (missing ones are fine).
pub fn drbd_remove(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    drbd_shutdown(ctx, disk)?;
    lvm::remove(ctx.runner(), &dev.data)?;
    lvm::remove(ctx.runner(), &dev.meta)
}

/// Drops the connection to the peer and, on DRBD 9, forgets the peer too (8.4's `disconnect`
/// already forgets it): the device can then connect to another node (replace-disks with a new
/// secondary). Nothing to do when the device is not configured.
pub fn drbd_disconnect_forget(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    drbd_disconnect(ctx, disk)?;
    let dev = drbd_device(ctx, disk)?;
    if drbd_dialect(ctx)? == Dialect::V9 {
        let snap = Snapshot::read(ctx.runner(), Dialect::V9)?;
        if snap.peer_defined(&dev)? {
            run(ctx.runner(), &cmd::del_peer(&dev))?;
        }
    }
    Ok(())
}

/// [`BlockStorage`] for `drbd` disks. `create` makes the LVs and metadata and brings the
/// device up, connected when both nodes' secondary IPs are in the context; promoting the
/// primary is the caller's step ([`drbd_set_primary`]).
pub struct DrbdStorage;

impl BlockStorage for DrbdStorage {
    fn dev_type(&self) -> maguey_model::DevType {
        maguey_model::DevType::Drbd
    }

    fn create(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<BlockdevInfo> {
        let dev = drbd_device(ctx, disk)?;
        drbd_create_up(ctx, disk, drbd_net(ctx, &dev).ok().as_ref())?;
        Ok(BlockdevInfo {
            path: dev.device_path().display().to_string(),
            size: disk.size,
        })
    }

    fn remove(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<()> {
        Ok(drbd_remove(ctx, disk)?)
    }

    /// The device when it is configured on this node.
    fn find(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<Option<BlockdevInfo>> {
        let dev = drbd_device(ctx, disk)?;
        Ok(drbd_status(ctx, disk)?.map(|_| BlockdevInfo {
            path: dev.device_path().display().to_string(),
            size: disk.size,
        }))
    }

    /// `/dev/drbd<minor>` of every configured minor.
    fn list(&self, ctx: &StorageContext) -> NodeResult<Vec<String>> {
        Ok(drbd_minors_in_use(ctx)?
            .into_iter()
            .map(|m| format!("/dev/drbd{m}"))
            .collect())
    }

    fn device_path(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<PathBuf> {
        Ok(drbd_device(ctx, disk)?.device_path())
    }

    /// The volume group holding the LVs.
    fn info(&self, ctx: &StorageContext) -> NodeResult<StorageInfo> {
        LvmStorage.info(ctx)
    }
}

#[cfg(test)]
mod tests;
