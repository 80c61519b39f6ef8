//! Creating a `drbd` disk on this node: the LVs, fresh metadata, and (`blockdev_create`) the
//! device set up and connected in the same pass.

use super::{
    bring_up, cmd, connect_with, drbd_device, drbd_dialect, run, Dialect, DrbdDevice, DrbdNet,
    Snapshot,
};
use crate::storage::lvm;
use crate::storage::runner::{CommandRunner, StorageError};
use crate::storage::StorageContext;
use maguey_model::Disk;

/// Creates the data and meta LVs (tagged with the context's owner) and writes fresh DRBD
/// metadata on the meta LV. The metadata is only written when the meta LV was created by
/// this call: re-running on an existing disk never wipes its generation identifiers.
/// Refuses a minor that is in use.
pub fn drbd_create(ctx: &StorageContext, disk: &Disk) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let r = ctx.runner();
    if Snapshot::read(r, d)?.device(&dev).is_some() {
        return Err(StorageError::Invalid(format!(
            "DRBD minor {} is already in use on this node",
            dev.minor
        )));
    }
    make_backing(r, d, &dev, ctx.owner.as_deref())
}

/// The LVs (active afterwards: `lvcreate` activates, an existing LV is activated) and, on a
/// meta LV made now, fresh metadata.
fn make_backing(
    r: &dyn CommandRunner,
    d: Dialect,
    dev: &DrbdDevice,
    owner: Option<&str>,
) -> Result<(), StorageError> {
    lvm::create(r, &dev.data, dev.data_size_mib, owner)?;
    let meta_created = lvm::create(r, &dev.meta, dev.meta_size_mib, owner)?;
    if meta_created {
        run(r, &cmd::create_md(d, dev))?;
    }
    Ok(())
}

/// `blockdev_create` of a `drbd` disk in one pass: one status read, the LVs and metadata
/// ([`drbd_create`]), the device set up on them without activating them again, and, when
/// `net` is given, the `connect` (the node stays secondary: promoting is the caller's step).
/// Refuses a minor that is in use.
pub fn drbd_create_up(
    ctx: &StorageContext,
    disk: &Disk,
    net: Option<&DrbdNet>,
) -> Result<(), StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let r = ctx.runner();
    let snap = Snapshot::read(r, d)?;
    if snap.device(&dev).is_some() {
        return Err(StorageError::Invalid(format!(
            "DRBD minor {} is already in use on this node",
            dev.minor
        )));
    }
    make_backing(r, d, &dev, ctx.owner.as_deref())?;
    bring_up(r, d, &dev)?;
    match net {
        Some(net) => connect_with(r, d, &dev, net, &snap, false),
        None => Ok(()),
    }
}

/// How often [`drbd_promote_connected`] reads the local status while it waits: 8.4 reads
/// `/proc/drbd`, 9 runs `drbdsetup status`, both cheap next to DRBD's handshake.
const CONNECT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The first promotion of new disks, on the node (`drbd_promote_connected`): waits until
/// every device is `Connected` to its peer (never promoting before: Ganeti issue #846), then
/// makes them primary with `--force` (both sides Inconsistent: the full initial sync starts
/// from here). A device that is not configured or StandAlone (the peer refused us: wrong
/// secret, split brain) fails at once, one still connecting after `timeout` fails naming its
/// state; nothing is promoted then.
pub fn drbd_promote_connected(
    ctx: &StorageContext,
    disks: &[Disk],
    timeout: std::time::Duration,
) -> Result<(), StorageError> {
    let d = drbd_dialect(ctx)?;
    let r = ctx.runner();
    let devs = disks
        .iter()
        .map(|disk| Ok((disk, drbd_device(ctx, disk)?)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    let start = std::time::Instant::now();
    loop {
        let snap = Snapshot::read(r, d)?;
        let mut waiting = None;
        for (disk, dev) in &devs {
            match snap.device(dev) {
                None => {
                    return Err(StorageError::Invalid(format!(
                        "disk {}: DRBD minor {} is not configured on this node",
                        disk.iv_name, dev.minor
                    )))
                }
                Some(st) if st.is_standalone() => {
                    return Err(StorageError::Invalid(format!(
                        "disk {}: DRBD minor {} is StandAlone: the peer did not connect",
                        disk.iv_name, dev.minor
                    )))
                }
                Some(st) if st.is_connected() => {}
                Some(st) => {
                    waiting = Some(format!(
                        "disk {} is {}",
                        disk.iv_name,
                        super::rpc_status(st).connection
                    ))
                }
            }
        }
        let Some(why) = waiting else { break };
        if start.elapsed() >= timeout {
            return Err(StorageError::Invalid(format!(
                "DRBD did not connect within {} s: {why}",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(CONNECT_POLL);
    }
    for (_, dev) in &devs {
        run(r, &cmd::primary(d, dev, true))?;
    }
    Ok(())
}
