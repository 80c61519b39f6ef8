//! Block devices of instances: `file` and `sharedfile` (image files), `plain` (LVM logical
//! volumes, [`lvm`]) and `drbd` (DRBD 8.4 or 9 over two LVs per node, [`drbd`]). `diskless`
//! instances have no disks at all.
//!
//! Everything that runs a command or reads a kernel status file goes through the context's
//! [`CommandRunner`] ([`runner`]), so the same code runs for real on a node and against
//! recorded outputs in tests.
//!
//! A node RPC handler builds one context per request and calls the disk's implementation, or
//! the DRBD step functions directly:
//!
//! ```no_run
//! use maguey_node::storage::{self, drbd, StorageContext};
//! # fn handler(disk: maguey_model::Disk) -> maguey_node::NodeResult<()> {
//! # let ip = |s: &str| s.parse().map_err(|_| maguey_node::NodeError::bad_request("ip"));
//! let ctx = StorageContext::new("/var/lib/maguey".as_ref(), "")
//!     .with_vg("xenvg") // the cluster's volume group (node info, orphan checks)
//!     .with_node("uuid-of-this-node") // which end of a DRBD disk is local
//!     .with_owner("web1.example.com") // LV tag originstname+web1.example.com
//!     .with_secondary_ip("uuid-of-this-node", ip("192.0.2.1")?)
//!     .with_secondary_ip("uuid-of-the-peer", ip("192.0.2.2")?);
//! // blockdev_create: LVs (+ DRBD metadata, device up and connected)
//! let info = storage::for_disk(&disk)?.create(&ctx, &disk)?;
//! // on the primary of a new DRBD disk: the first promotion starts the initial sync
//! drbd::drbd_set_primary(&ctx, &disk, true)?;
//! // drbd_wait_sync: one read per poll
//! let progress = drbd::drbd_sync_progress(&ctx, std::slice::from_ref(&disk))?;
//! # let _ = (info, progress);
//! # Ok(())
//! # }
//! ```

use crate::error::{NodeError, NodeResult};
pub mod drbd;
pub mod file;
pub mod lvm;
pub mod paths;
pub mod pattern;
pub mod runner;
#[cfg(test)]
mod test_support;

use maguey_model::Disk;
use maguey_rpc::{BlockdevInfo, StorageInfo};
use runner::{CommandRunner, SystemRunner};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Used when the cluster's file storage directory is empty.
pub const DEFAULT_FILE_STORAGE_DIR: &str = "file-storage";

/// Where the storage of one request lives.
#[derive(Debug, Clone)]
pub struct StorageContext {
    /// The node daemon's state directory.
    pub state_dir: PathBuf,
    /// The cluster's file storage directory as the master sent it (relative: under
    /// `state_dir`).
    pub file_storage_dir: String,
    /// The volume group for node-wide LVM questions ([`BlockStorage::info`],
    /// [`BlockStorage::list`] of `plain`/`drbd`); disks name their own VG in their logical id.
    pub vg_name: Option<String>,
    /// This node's uuid: which end of a DRBD disk (`node_a`/`node_b`) is local.
    pub node_uuid: Option<String>,
    /// Secondary (replication) IPs by node uuid, for DRBD connections.
    pub secondary_ips: BTreeMap<String, IpAddr>,
    /// The instance owning the disks of this request: LVs get the tag
    /// `originstname+<owner>` when created.
    pub owner: Option<String>,
    /// Runs LVM/DRBD commands and reads kernel status files.
    pub runner: Arc<dyn CommandRunner>,
}

impl StorageContext {
    /// A context with the real [`SystemRunner`] and no LVM/DRBD details (add them with the
    /// `with_*` methods).
    pub fn new(state_dir: &Path, file_storage_dir: &str) -> Self {
        StorageContext {
            state_dir: state_dir.to_path_buf(),
            file_storage_dir: file_storage_dir.to_string(),
            vg_name: None,
            node_uuid: None,
            secondary_ips: BTreeMap::new(),
            owner: None,
            runner: Arc::new(SystemRunner::default()),
        }
    }

    /// A context for node `node_name` filled from the ssconf the master last wrote in
    /// `state_dir`: the cluster's volume group, this node's uuid and every node's secondary
    /// IP (what `plain` and `drbd` disks need). Without an ssconf it is [`StorageContext::new`].
    pub fn for_node(state_dir: &Path, file_storage_dir: &str, node_name: &str) -> Self {
        let ctx = Self::new(state_dir, file_storage_dir);
        match crate::read_ssconf(state_dir) {
            Some(ss) => ctx.with_ssconf(&ss, node_name),
            None => ctx,
        }
    }

    /// Fills the volume group, this node's uuid and the secondary IPs from an ssconf.
    pub fn with_ssconf(mut self, ss: &maguey_model::Ssconf, node_name: &str) -> Self {
        if !ss.vg_name.is_empty() {
            self.vg_name = Some(ss.vg_name.clone());
        }
        if let Some(uuid) = ss.node_uuids.get(node_name) {
            self.node_uuid = Some(uuid.clone());
        }
        for (name, ip) in &ss.node_secondary_ips {
            if let (Some(uuid), Ok(ip)) = (ss.node_uuids.get(name), ip.parse::<IpAddr>()) {
                self.secondary_ips.insert(uuid.clone(), ip);
            }
        }
        self
    }

    /// Sets the volume group for node-wide LVM questions.
    pub fn with_vg(mut self, vg: &str) -> Self {
        self.vg_name = Some(vg.to_string());
        self
    }

    /// Sets this node's uuid.
    pub fn with_node(mut self, node_uuid: &str) -> Self {
        self.node_uuid = Some(node_uuid.to_string());
        self
    }

    /// Records a node's secondary IP.
    pub fn with_secondary_ip(mut self, node_uuid: &str, ip: IpAddr) -> Self {
        self.secondary_ips.insert(node_uuid.to_string(), ip);
        self
    }

    /// Sets the instance owning the disks (LV tag on creation).
    pub fn with_owner(mut self, instance: &str) -> Self {
        self.owner = Some(instance.to_string());
        self
    }

    /// Replaces the command runner (tests: a [`runner::ScriptedRunner`]).
    pub fn with_runner(mut self, runner: Arc<dyn CommandRunner>) -> Self {
        self.runner = runner;
        self
    }

    /// The command runner.
    pub fn runner(&self) -> &dyn CommandRunner {
        self.runner.as_ref()
    }

    /// The absolute, lexically normalised file storage directory.
    pub fn file_storage_path(&self) -> PathBuf {
        let dir = if self.file_storage_dir.trim().is_empty() {
            DEFAULT_FILE_STORAGE_DIR
        } else {
            self.file_storage_dir.as_str()
        };
        let state = if self.state_dir.is_absolute() {
            self.state_dir.clone()
        } else {
            std::env::current_dir()
                .unwrap_or_else(|_| PathBuf::from("/"))
                .join(&self.state_dir)
        };
        normalize(&state.join(dir))
    }
}

/// Lexical normalisation: drops `.`, resolves `..` against the preceding component.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One kind of block device.
pub trait BlockStorage: Send + Sync {
    /// Ganeti's `dev_type`: `file`, `sharedfile`, `plain`, `drbd`.
    fn dev_type(&self) -> maguey_model::DevType;
    /// Creates the device; creating an identical existing device succeeds.
    fn create(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<BlockdevInfo>;
    /// Removes the device; removing a missing device succeeds.
    fn remove(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<()>;
    /// Looks the device up.
    fn find(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<Option<BlockdevInfo>>;
    /// Every device of this kind on the node (for orphan checks), as names/paths relative to
    /// the storage root.
    fn list(&self, ctx: &StorageContext) -> NodeResult<Vec<String>>;
    /// The path a hypervisor or OS script uses to access the device.
    fn device_path(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<PathBuf>;
    /// Space of this storage, for node info.
    fn info(&self, ctx: &StorageContext) -> NodeResult<StorageInfo>;
}

/// The implementation for a disk's `dev_type`.
pub fn for_disk(disk: &Disk) -> NodeResult<&'static dyn BlockStorage> {
    use maguey_model::DevType;
    match disk.dev_type {
        DevType::File => Ok(&file::FileStorage),
        // The same images in the cluster's shared directory, which the master sends as the
        // request's storage directory for `sharedfile` instances (every node sees the same
        // files, so instances can migrate anywhere).
        DevType::Sharedfile => Ok(&file::FileStorage),
        DevType::Plain => Ok(&lvm::LvmStorage),
        DevType::Drbd => Ok(&drbd::DrbdStorage),
    }
}

/// Total and available space (MiB) of the filesystem holding `path`.
pub fn statvfs_mib(path: &Path) -> NodeResult<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| NodeError::bad_request(format!("invalid path {}", path.display())))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(NodeError::io(format!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    let frsize = st.f_frsize as u64;
    let mib = 1024 * 1024;
    Ok((
        (st.f_blocks as u64).saturating_mul(frsize) / mib,
        (st.f_bavail as u64).saturating_mul(frsize) / mib,
    ))
}
