//! The `file` disk template: sparse raw image files under the file storage directory.

use super::{normalize, statvfs_mib, BlockStorage, StorageContext};
use crate::error::{NodeError, NodeResult};
use maguey_model::{Disk, LogicalId};
use maguey_rpc::{BlockdevInfo, StorageInfo};
use std::path::{Component, Path, PathBuf};

const MIB: u64 = 1024 * 1024;

pub struct FileStorage;

/// Resolves a disk path (relative: under `storage_dir`) and refuses any path outside
/// `storage_dir` (`..` components, other absolute paths, the directory itself).
pub fn resolve(storage_dir: &Path, path: &str) -> NodeResult<PathBuf> {
    let p = Path::new(path);
    if path.trim().is_empty() {
        return Err(NodeError::bad_request("empty file disk path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(NodeError::bad_request(format!(
            "file disk path '{path}' must not contain '..'"
        )));
    }
    let full = normalize(&if p.is_absolute() {
        p.to_path_buf()
    } else {
        storage_dir.join(p)
    });
    match full.strip_prefix(storage_dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(full),
        _ => Err(NodeError::bad_request(format!(
            "file disk path '{path}' is outside the file storage directory {}",
            storage_dir.display()
        ))),
    }
}

fn file_path(disk: &Disk) -> NodeResult<&str> {
    match &disk.logical_id {
        LogicalId::File { path, .. } | LogicalId::Sharedfile { path, .. } => Ok(path),
        other => Err(NodeError::bad_request(format!(
            "disk {} is not a file disk: {other:?}",
            disk.iv_name
        ))),
    }
}

/// Refuses paths whose existing ancestors lead outside the storage dir through symlinks.
fn check_real_parent(storage_dir: &Path, path: &Path) -> NodeResult<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let (Ok(real_parent), Ok(real_root)) = (parent.canonicalize(), storage_dir.canonicalize())
    else {
        return Ok(()); // nothing exists yet: nothing to follow
    };
    if real_parent.starts_with(&real_root) {
        Ok(())
    } else {
        Err(NodeError::bad_request(format!(
            "file disk path {} leads outside the file storage directory {}",
            path.display(),
            storage_dir.display()
        )))
    }
}

fn info_of(path: &Path) -> NodeResult<Option<BlockdevInfo>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(BlockdevInfo {
            path: path.display().to_string(),
            size: m.len() / MIB,
        })),
        Ok(_) => Err(NodeError::bad_request(format!(
            "{} exists but is not a regular file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeError::io(format!(
            "cannot stat {}: {e}",
            path.display()
        ))),
    }
}

impl FileStorage {
    fn locate(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<(PathBuf, PathBuf)> {
        let root = ctx.checked_file_storage_path()?;
        let path = resolve(&root, file_path(disk)?)?;
        check_real_parent(&root, &path)?;
        Ok((root, path))
    }

    /// Grows a disk image by `by_mib` (the file is extended sparsely; the data stays).
    pub fn grow(&self, ctx: &StorageContext, disk: &Disk, by_mib: u64) -> NodeResult<()> {
        let (_, path) = self.locate(ctx, disk)?;
        let cur = info_of(&path)?.ok_or_else(|| {
            NodeError::not_found(format!(
                "disk {}: {} does not exist",
                disk.iv_name,
                path.display()
            ))
        })?;
        let bytes = cur
            .size
            .checked_add(by_mib)
            .and_then(|m| m.checked_mul(MIB))
            .ok_or_else(|| {
                NodeError::bad_request(format!("disk {}: new size is too large", disk.iv_name))
            })?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| NodeError::io(format!("cannot open {}: {e}", path.display())))?;
        if f.metadata().map(|m| m.len()).unwrap_or(0) >= bytes {
            return Ok(());
        }
        f.set_len(bytes)
            .map_err(|e| NodeError::io(format!("cannot grow {}: {e}", path.display())))
    }
}

impl BlockStorage for FileStorage {
    fn dev_type(&self) -> maguey_model::DevType {
        maguey_model::DevType::File
    }

    fn create(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<BlockdevInfo> {
        let (root, path) = self.locate(ctx, disk)?;
        if disk.size == 0 {
            return Err(NodeError::bad_request(format!(
                "disk {}: size must be positive",
                disk.iv_name
            )));
        }
        let bytes = disk.size.checked_mul(MIB).ok_or_else(|| {
            NodeError::bad_request(format!(
                "disk {}: size {} MiB is too large",
                disk.iv_name, disk.size
            ))
        })?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| NodeError::io(format!("cannot create {}: {e}", parent.display())))?;
        }
        check_real_parent(&root, &path)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                if let Err(e) = f.set_len(bytes) {
                    let _ = std::fs::remove_file(&path);
                    return Err(NodeError::io(format!(
                        "cannot size {}: {e}",
                        path.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = info_of(&path)?.ok_or_else(|| {
                    NodeError::conflict(format!("{} vanished while being created", path.display()))
                })?;
                if existing.size != disk.size {
                    return Err(NodeError::conflict(format!(
                        "{} already exists with size {} MiB (wanted {} MiB)",
                        path.display(),
                        existing.size,
                        disk.size
                    )));
                }
            }
            Err(e) => {
                return Err(NodeError::io(format!(
                    "cannot create {}: {e}",
                    path.display()
                )))
            }
        }
        Ok(BlockdevInfo {
            path: path.display().to_string(),
            size: disk.size,
        })
    }

    fn remove(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<()> {
        let (root, path) = self.locate(ctx, disk)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(NodeError::io(format!(
                    "cannot remove {}: {e}",
                    path.display()
                )))
            }
        }
        // The image provider's cloud-init seed lives beside disk 0 and goes with it.
        let mut seed = path.clone().into_os_string();
        seed.push(".cidata.iso");
        let _ = std::fs::remove_file(seed);
        // Remove the instance's directory once it is empty (never the storage dir itself).
        if let Some(parent) = path.parent() {
            if parent != root && parent.starts_with(&root) {
                let _ = std::fs::remove_dir(parent);
            }
        }
        Ok(())
    }

    fn find(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<Option<BlockdevInfo>> {
        let (_, path) = self.locate(ctx, disk)?;
        info_of(&path)
    }

    fn list(&self, ctx: &StorageContext) -> NodeResult<Vec<String>> {
        let root = ctx.checked_file_storage_path()?;
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                    return Ok(out)
                }
                Err(e) => return Err(NodeError::io(format!("cannot list {}: {e}", dir.display()))),
            };
            for entry in entries.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let p = entry.path();
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() && !p.to_string_lossy().ends_with(".cidata.iso") {
                    // (cloud-init seeds belong to their disk 0, not orphans)
                    if let Ok(rel) = p.strip_prefix(&root) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn device_path(&self, ctx: &StorageContext, disk: &Disk) -> NodeResult<PathBuf> {
        Ok(self.locate(ctx, disk)?.1)
    }

    fn info(&self, ctx: &StorageContext) -> NodeResult<StorageInfo> {
        let root = ctx.checked_file_storage_path()?;
        std::fs::create_dir_all(&root)
            .map_err(|e| NodeError::io(format!("cannot create {}: {e}", root.display())))?;
        let (size, free) = statvfs_mib(&root)?;
        Ok(StorageInfo {
            storage_type: "file".into(),
            name: root.display().to_string(),
            storage_size: size,
            storage_free: free,
        })
    }
}
