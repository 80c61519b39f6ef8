//! replace-disks on one node: new LVs under a DRBD device, the old ones set aside.

use super::*;

/// The LV names replace-disks uses on a node: the new LVs while they are made
/// (`<lv>_new-<suffix>`) and the old ones once set aside (`<lv>_replaced-<suffix>`).
fn replace_names(id: &LvId, suffix: &str) -> Result<(LvId, String), StorageError> {
    Ok((
        LvId::new(&id.vg, &format!("{}_new-{suffix}", id.lv))?,
        format!("{}_replaced-{suffix}", id.lv),
    ))
}

/// replace-disks on this node (Ganeti's `_ExecDrbd8DiskOnly` steps for one disk): new data
/// and meta LVs under temporary names with fresh DRBD metadata, the old backing detached
/// (the device keeps serving from the peer), the old LVs renamed `<lv>_replaced-<suffix>`,
/// the new ones renamed to the configured names and attached (connected to the peer when
/// the device was not configured). DRBD then resyncs the whole disk from the peer, which
/// must be UpToDate (the master checks). Missing old LVs are fine (a lost disk). Returns
/// the old LVs set aside (`vg/lv`), for the master to remove once in sync. On failure
/// before the attach, the old LVs are put back and attached again.
pub fn drbd_replace_backing(
    ctx: &StorageContext,
    disk: &Disk,
    suffix: &str,
) -> Result<Vec<String>, StorageError> {
    let dev = drbd_device(ctx, disk)?;
    let d = drbd_dialect(ctx)?;
    let r = ctx.runner();
    let (new_data, aside_data) = replace_names(&dev.data, suffix)?;
    let (new_meta, aside_meta) = replace_names(&dev.meta, suffix)?;
    LvId::new(&dev.data.vg, &aside_data)?;
    LvId::new(&dev.meta.vg, &aside_meta)?;
    let owner = ctx.owner.as_deref();
    // 1. New LVs and fresh metadata (drbdmeta on an unused minor, as Ganeti does: the
    //    device's own minor is in use).
    lvm::create(r, &new_data, dev.data_size_mib, owner)?;
    let made = lvm::create(r, &new_meta, dev.meta_size_mib, owner).and_then(|_| {
        let snap = Snapshot::read(r, d)?;
        let free = (0..=MAX_MINOR)
            .rev()
            .find(|m| !snap.devices.contains_key(m) && !snap.unconfigured.contains(m))
            .ok_or_else(|| StorageError::Invalid("no unused DRBD minor for drbdmeta".into()))?;
        let mut tmp = dev.clone();
        tmp.minor = free;
        tmp.meta = new_meta.clone();
        run(r, &cmd::create_md(d, &tmp))
    });
    if let Err(e) = made {
        let _ = lvm::remove(r, &new_data);
        let _ = lvm::remove(r, &new_meta);
        return Err(e);
    }
    // 2. The old backing off the device.
    let snap = Snapshot::read(r, d)?;
    if let Some(st) = snap.device(&dev) {
        if st.disk != DiskState::Diskless {
            run(r, &cmd::detach(&dev))?;
        }
    }
    // 3. Old LVs aside, new LVs in their place.
    let mut aside: Vec<(LvId, LvId)> = Vec::new();
    let mut swap = || -> Result<(), StorageError> {
        for (old, name) in [(&dev.data, &aside_data), (&dev.meta, &aside_meta)] {
            if lvm::find(r, old)?.is_some() {
                let moved = lvm::rename(r, old, name)?;
                aside.push((old.clone(), moved));
            }
        }
        lvm::rename(r, &new_data, &dev.data.lv)?;
        lvm::rename(r, &new_meta, &dev.meta.lv)?;
        Ok(())
    };
    if let Err(e) = swap() {
        // Put back what moved, attach the old backing again, drop the new LVs.
        for (orig, moved) in aside.iter().rev() {
            if lvm::find(r, orig).ok().flatten().is_none() {
                let _ = lvm::rename(r, moved, &orig.lv);
            }
        }
        for tmp in [&new_data, &new_meta] {
            let _ = lvm::remove(r, tmp);
        }
        if let Ok(snap) = Snapshot::read(r, d) {
            let _ = assemble_with(r, d, &dev, snap.device(&dev));
        }
        return Err(e);
    }
    // 4. Attach the new backing (the device resyncs it from the peer).
    let snap = Snapshot::read(r, d)?;
    assemble_with(r, d, &dev, snap.device(&dev))?;
    if let Ok(net) = drbd_net(ctx, &dev) {
        let snap = Snapshot::read(r, d)?;
        connect_with(r, d, &dev, &net, &snap, false)?;
    }
    Ok(aside
        .into_iter()
        .map(|(_, moved)| moved.full_name())
        .collect())
}
