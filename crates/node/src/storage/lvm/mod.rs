//! The `plain` disk template: LVM logical volumes (also the data and meta children of `drbd`
//! disks).
//!
//! Ganeti's layout: LV `<uuid>.diskN` (`_data`/`_meta` for DRBD) in the VG of the disk's
//! logical id, tagged `originstname+<instance>`. Commands run with `LVM_SUPPRESS_FD_WARNINGS=1`
//! (a daemon's inherited descriptors make LVM complain) and ask LVM for JSON reports in MiB.
//! Nodes without udev need `udev_sync=0 udev_rules=0` in `lvm.conf` (then LVM makes the
//! `/dev/VG/LV` links itself); the commands here assume nothing about udev.

use crate::error::{NodeError, NodeResult};
pub mod report;

use super::pattern::Pattern;
use super::runner::{run_checked, Cmd, CommandRunner, StorageError};
use super::{BlockStorage, StorageContext};
use maguey_model::{Disk, LogicalId};
use maguey_rpc::{BlockdevInfo, StorageInfo};
pub use report::{LvInfo, VgInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Ganeti's instance tag prefix on LVs.
pub const OWNER_TAG_PREFIX: &str = "originstname+";
/// Ganeti's limit on the tag's length.
pub const MAX_TAG_LEN: usize = 128;
/// `lvs`/`lvs` fields read by [`find`] and [`list`].
pub const LVS_FIELDS: &str = "lv_name,vg_name,lv_size,lv_attr,lv_tags";
/// `vgs` fields read by [`vg_info`].
pub const VGS_FIELDS: &str = "vg_name,vg_size,vg_free";

/// A logical volume: `vg/lv`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LvId {
    pub vg: String,
    pub lv: String,
}

impl LvId {
    /// Checks both names against LVM's rules.
    pub fn new(vg: &str, lv: &str) -> Result<Self, StorageError> {
        check_name("volume group", vg)?;
        check_name("logical volume", lv)?;
        Ok(LvId {
            vg: vg.to_string(),
            lv: lv.to_string(),
        })
    }

    /// The LV of a `plain` disk (or of a DRBD child).
    pub fn of_disk(disk: &Disk) -> Result<Self, StorageError> {
        match &disk.logical_id {
            LogicalId::Plain { vg, lv } => LvId::new(vg, lv),
            other => Err(StorageError::Invalid(format!(
                "disk {} is not an LVM volume: {other:?}",
                disk.iv_name
            ))),
        }
    }

    /// `/dev/VG/LV`.
    pub fn device_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{}", self.vg, self.lv))
    }

    /// `VG/LV`, as LVM commands take it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }
}

/// LVM's naming rules (the part that matters for safety): 1–127 characters of
/// `[A-Za-z0-9+_.-]`, not starting with `-`, not `.` or `..`.
pub fn check_name(kind: &str, name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "invalid {kind} name '{name}'"
        )))
    }
}

/// `originstname+<instance>` with characters LVM refuses in tags replaced by `_`, cut to
/// Ganeti's 128 characters.
pub fn owner_tag(instance: &str) -> String {
    let clean: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+.-/=!:&#".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut tag = format!("{OWNER_TAG_PREFIX}{clean}");
    tag.truncate(MAX_TAG_LEN);
    tag
}

/// An LVM command with the environment LVM needs in a daemon.
fn lvm_cmd<S: AsRef<str>>(program: &str, args: &[S]) -> Cmd {
    Cmd::new(program, args).env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

/// Does this LVM error say the LV (or its whole VG) does not exist?
fn is_missing(err: &StorageError) -> bool {
    let e = err.stderr();
    e.contains("Failed to find logical volume")
        || (e.contains("Volume group") && e.contains("not found"))
}

/// `lvcreate --yes -Wy -L <size>m -n LV [--addtag originstname+<owner>] VG`.
pub fn create_argv(id: &LvId, size_mib: u64, owner: Option<&str>) -> Cmd {
    let mut cmd = lvm_cmd(
        "lvcreate",
        &[
            "--yes".to_string(),
            "-Wy".to_string(),
            "-L".to_string(),
            format!("{size_mib}m"),
            "-n".to_string(),
            id.lv.clone(),
        ],
    );
    if let Some(owner) = owner {
        cmd = cmd.arg("--addtag").arg(owner_tag(owner));
    }
    cmd.arg(id.vg.clone())
}

/// Creates the LV unless one of at least `size_mib` exists already (LVM rounds sizes up to
/// whole extents). Returns whether it was created now; a created LV is active.
///
/// `lvcreate` runs first (a new disk's LVs do not exist: no `lvs` before it, one LVM command
/// per LV as by hand); only when it refuses because the LV exists (a retried create) is the
/// existing LV read, checked for size and activated.
pub fn create(
    runner: &dyn CommandRunner,
    id: &LvId,
    size_mib: u64,
    owner: Option<&str>,
) -> Result<bool, StorageError> {
    if size_mib == 0 {
        return Err(StorageError::Invalid(format!(
            "{}: size must be positive",
            id.full_name()
        )));
    }
    let err = match run_checked(runner, &create_argv(id, size_mib, owner)) {
        Ok(_) => return Ok(true),
        Err(e) if exists_already(&e) => e,
        Err(e) => return Err(e),
    };
    let Some(existing) = find(runner, id)? else {
        // Gone again between the two commands: report lvcreate's refusal.
        return Err(err);
    };
    if existing.size_mib < size_mib {
        return Err(StorageError::Invalid(format!(
            "{} already exists with size {} MiB (wanted {size_mib} MiB)",
            id.full_name(),
            existing.size_mib
        )));
    }
    if !existing.is_active() {
        activate(runner, id)?;
    }
    Ok(false)
}

/// `lvcreate` refused because the LV exists (`Logical Volume "LV" already exists in volume
/// group "VG"`; the capital varies between LVM versions).
fn exists_already(err: &StorageError) -> bool {
    let e = err.stderr().to_ascii_lowercase();
    e.contains("logical volume") && e.contains("already exists")
}

/// Removes the LV (`lvremove -f VG/LV`); a missing LV or VG is success.
pub fn remove(runner: &dyn CommandRunner, id: &LvId) -> Result<(), StorageError> {
    match run_checked(runner, &lvm_cmd("lvremove", &["-f", &id.full_name()])) {
        Err(e) if is_missing(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}

fn lvs(runner: &dyn CommandRunner, target: &str) -> Result<Vec<LvInfo>, StorageError> {
    let out = run_checked(
        runner,
        &lvm_cmd(
            "lvs",
            &[
                "--reportformat",
                "json",
                "--units",
                "m",
                "--nosuffix",
                "-o",
                LVS_FIELDS,
                target,
            ],
        ),
    )?;
    report::parse_lvs(&out)
}

/// Looks the LV up; `None` when it (or its VG) does not exist.
pub fn find(runner: &dyn CommandRunner, id: &LvId) -> Result<Option<LvInfo>, StorageError> {
    match lvs(runner, &id.full_name()) {
        Ok(list) => Ok(list.into_iter().find(|l| l.vg == id.vg && l.name == id.lv)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Activates the LV (`lvchange -ay VG/LV`) so that `/dev/VG/LV` exists; an active LV stays
/// as it is.
pub fn activate(runner: &dyn CommandRunner, id: &LvId) -> Result<(), StorageError> {
    run_checked(runner, &lvm_cmd("lvchange", &["-ay", &id.full_name()])).map(|_| ())
}

/// Renames the LV within its VG (`lvrename VG OLD NEW`: replace-disks keeps the old LVs as
/// `<name>_replaced-<timestamp>`, template conversion renames plain LVs to DRBD children).
pub fn rename(runner: &dyn CommandRunner, id: &LvId, new_name: &str) -> Result<LvId, StorageError> {
    let new = LvId::new(&id.vg, new_name)?;
    run_checked(runner, &lvm_cmd("lvrename", &[&id.vg, &id.lv, &new.lv]))?;
    Ok(new)
}

/// Sets the owner tag to `originstname+<instance>` (instance rename), dropping the LV's other
/// owner tags (`lvchange --deltag ... --addtag ... VG/LV`). Reads the current tags first.
pub fn set_owner(
    runner: &dyn CommandRunner,
    id: &LvId,
    instance: &str,
) -> Result<(), StorageError> {
    let lv = find(runner, id)?.ok_or_else(|| {
        StorageError::Invalid(format!("logical volume {} does not exist", id.full_name()))
    })?;
    let tag = owner_tag(instance);
    let mut args = Vec::new();
    for old in lv
        .tags
        .iter()
        .filter(|t| t.starts_with(OWNER_TAG_PREFIX) && **t != tag)
    {
        args.push("--deltag".to_string());
        args.push(old.clone());
    }
    if !lv.tags.contains(&tag) {
        args.push("--addtag".to_string());
        args.push(tag);
    }
    if args.is_empty() {
        return Ok(());
    }
    args.push(id.full_name());
    run_checked(runner, &lvm_cmd("lvchange", &args)).map(|_| ())
}

/// Every LV of the VG (for orphan checks).
pub fn list(runner: &dyn CommandRunner, vg: &str) -> Result<Vec<LvInfo>, StorageError> {
    check_name("volume group", vg)?;
    Ok(lvs(runner, vg)?
        .into_iter()
        .filter(|l| l.vg == vg)
        .collect())
}

/// Every LV of every VG on the node (Ganeti's `node_volumes`).
pub fn list_all(runner: &dyn CommandRunner) -> Result<Vec<LvInfo>, StorageError> {
    let out = run_checked(
        runner,
        &lvm_cmd(
            "lvs",
            &[
                "--reportformat",
                "json",
                "--units",
                "m",
                "--nosuffix",
                "-o",
                LVS_FIELDS,
            ],
        ),
    )?;
    report::parse_lvs(&out)
}

/// Grows the LV by `by_mib` (`lvextend -L +<n>m VG/LV`).
pub fn grow(runner: &dyn CommandRunner, id: &LvId, by_mib: u64) -> Result<(), StorageError> {
    if by_mib == 0 {
        return Ok(());
    }
    run_checked(
        runner,
        &lvm_cmd("lvextend", &["-L", &format!("+{by_mib}m"), &id.full_name()]),
    )
    .map(|_| ())
}

/// A snapshot of `origin` named `name` with `size_mib` of copy-on-write space
/// (`lvcreate -s -L <size>m -n NAME VG/LV`), in the origin's VG.
pub fn snapshot(
    runner: &dyn CommandRunner,
    origin: &LvId,
    name: &str,
    size_mib: u64,
) -> Result<LvId, StorageError> {
    let snap = LvId::new(&origin.vg, name)?;
    if size_mib == 0 {
        return Err(StorageError::Invalid(format!(
            "snapshot {}: size must be positive",
            snap.full_name()
        )));
    }
    run_checked(
        runner,
        &lvm_cmd(
            "lvcreate",
            &[
                "--yes".to_string(),
                "-s".to_string(),
                "-L".to_string(),
                format!("{size_mib}m"),
                "-n".to_string(),
                name.to_string(),
                origin.full_name(),
            ],
        ),
    )?;
    Ok(snap)
}

/// Size and free space of the VG.
pub fn vg_info(runner: &dyn CommandRunner, vg: &str) -> Result<VgInfo, StorageError> {
    check_name("volume group", vg)?;
    let out = run_checked(
        runner,
        &lvm_cmd(
            "vgs",
            &[
                "--reportformat",
                "json",
                "--units",
                "m",
                "--nosuffix",
                "-o",
                VGS_FIELDS,
                vg,
            ],
        ),
    )?;
    report::parse_vgs(&out)?
        .into_iter()
        .find(|v| v.name == vg)
        .ok_or_else(|| StorageError::parse("vgs report", format!("volume group {vg} missing")))
}

/// The cluster's `reserved_lvs`: regular expressions over `vg/lv` that the orphan check
/// ignores, with Ganeti's semantics (see [`Pattern::ganeti_field`]).
#[derive(Debug, Clone, Default)]
pub struct ReservedLvs {
    patterns: Vec<Pattern>,
}

impl ReservedLvs {
    /// Compiles every pattern; an invalid one is an error naming it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> NodeResult<Self> {
        Ok(ReservedLvs {
            patterns: patterns
                .iter()
                .map(|p| Pattern::ganeti_field(p.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Does a pattern match `vg/lv`?
    pub fn is_reserved(&self, full_name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches_at_start(full_name))
    }
}

/// The LVs present on a node that no disk expects and no reserved pattern covers
/// (`vg/lv` names, sorted): Ganeti's ENODEORPHANLV.
pub fn orphans(
    present: &[LvInfo],
    expected: &BTreeSet<String>,
    reserved: &ReservedLvs,
) -> Vec<String> {
    let mut out: Vec<String> = present
        .iter()
        .map(LvInfo::full_name)
        .filter(|n| !expected.contains(n) && !reserved.is_reserved(n))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// [`BlockStorage`] for `plain` disks.
pub struct LvmStorage;

impl LvmStorage {
    /// Grows a `plain` disk by `by_mib`.
    pub fn grow(&self, ctx: &StorageContext, disk: &Disk, by_mib: u64) -> NodeResult<()> {
        Ok(grow(ctx.runner(), &LvId::of_disk(disk)?, by_mib)?)
    }

    /// Snapshots a `plain` disk (for exports) as `<lv>.snap`; returns the snapshot's LV.
    pub fn snapshot(&self, ctx: &StorageContext, disk: &Disk, size_mib: u64) -> NodeResult<LvId> {
        let id = LvId::of_disk(disk)?;
        Ok(snapshot(
            ctx.runner(),
            &id,
            &format!("{}.snap", id.lv),
            size_mib,
        )?)
    }

    fn vg<'a>(&self, ctx: &'a StorageContext) -> NodeResult<&'a str> {
        ctx.vg_name
            .as_deref()
            .ok_or_else(|| NodeError::bad_request("no volume group given for LVM storage"))
    }
}

impl BlockStorage for LvmStorage {
    fn dev_type(&self) -> maguey_model::DevType {
        maguey_model::DevType::Plain
    }

    fn create(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<BlockdevInfo> {
        let id = LvId::of_disk(disk)?;
        create(ctx.runner(), &id, disk.size, ctx.owner.as_deref())?;
        Ok(BlockdevInfo {
            path: id.device_path().display().to_string(),
            size: disk.size,
        })
    }

    fn remove(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<()> {
        Ok(remove(ctx.runner(), &LvId::of_disk(disk)?)?)
    }

    fn find(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<Option<BlockdevInfo>> {
        let id = LvId::of_disk(disk)?;
        Ok(find(ctx.runner(), &id)?.map(|lv| BlockdevInfo {
            path: id.device_path().display().to_string(),
            size: lv.size_mib,
        }))
    }

    /// `vg/lv` of every LV in the context's VG.
    fn list(&self, ctx: &StorageContext) -> NodeResult<Vec<String>> {
        let mut names: Vec<String> = list(ctx.runner(), self.vg(ctx)?)?
            .iter()
            .map(LvInfo::full_name)
            .collect();
        names.sort();
        Ok(names)
    }

    fn device_path(&self, _ctx: &StorageContext, disk: &Disk) -> NodeResult<PathBuf> {
        Ok(LvId::of_disk(disk)?.device_path())
    }

    /// The context's VG as `lvm-vg`.
    fn info(&self, ctx: &StorageContext) -> NodeResult<StorageInfo> {
        let vg = vg_info(ctx.runner(), self.vg(ctx)?)?;
        Ok(StorageInfo {
            storage_type: "lvm-vg".into(),
            name: vg.name,
            storage_size: vg.size_mib,
            storage_free: vg.free_mib,
        })
    }
}

#[cfg(test)]
mod tests;
