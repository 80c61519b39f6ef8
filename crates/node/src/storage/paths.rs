//! Which directories may hold file disks (docs/security.md).
//!
//! A file storage directory comes from the cluster's parameters, through the master. Whatever
//! it says, a node never puts disks into `/`, a system directory, its own state directory (the
//! certificates and keys live there) or one of its ancestors, nor a path with `..`. Relative
//! directories live under the state directory. When the node has a `file-storage-paths` file
//! in its state directory (Ganeti's name: one absolute directory a line, `#` comments), an
//! absolute directory must be one of them or under one.

use super::{normalize, StorageContext, DEFAULT_FILE_STORAGE_DIR};
use crate::error::{NodeError, NodeResult};
use std::path::{Component, Path, PathBuf};

/// The node's own list of allowed absolute file storage roots, in its state directory.
pub const FILE_STORAGE_PATHS_FILE: &str = "file-storage-paths";

/// Directories (and everything under them) that never hold file disks.
const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
    "/run", "/sbin", "/sys", "/usr",
];

/// The allowed absolute roots listed in `state_dir/file-storage-paths`, if the file exists.
pub fn allowed_roots(state_dir: &Path) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(state_dir.join(FILE_STORAGE_PATHS_FILE)).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| normalize(Path::new(l)))
            .filter(|p| p.is_absolute())
            .collect(),
    )
}

/// Checks the file storage directory `dir` (as the master sent it) of a node whose state
/// directory is `state` (absolute); answers the absolute, normalised directory.
pub fn check_file_storage_dir(state: &Path, dir: &str) -> NodeResult<PathBuf> {
    let dir = if dir.trim().is_empty() {
        DEFAULT_FILE_STORAGE_DIR
    } else {
        dir
    };
    let refuse = |why: &str| {
        Err(NodeError::bad_request(format!(
            "file storage directory '{dir}' refused: {why}"
        )))
    };
    let raw = Path::new(dir);
    if raw.components().any(|c| c == Component::ParentDir) {
        return refuse("it must not contain '..'");
    }
    let full = normalize(&state.join(raw));
    if full.parent().is_none() {
        return refuse("it is the root directory");
    }
    if let Some(sys) = SYSTEM_DIRS.iter().find(|s| full.starts_with(s)) {
        return refuse(&format!("{sys} is a system directory"));
    }
    let state = normalize(state);
    if state.starts_with(&full) {
        return refuse("it holds the node's state directory (certificates and keys)");
    }
    if raw.is_absolute() {
        if let Some(roots) = allowed_roots(&state) {
            if !roots.iter().any(|r| full.starts_with(r)) {
                return refuse(&format!(
                    "not under a directory of {}",
                    state.join(FILE_STORAGE_PATHS_FILE).display()
                ));
            }
        }
    }
    Ok(full)
}

impl StorageContext {
    /// [`StorageContext::file_storage_path`], checked by [`check_file_storage_dir`].
    pub fn checked_file_storage_path(&self) -> NodeResult<PathBuf> {
        check_file_storage_dir(&self.absolute_state_dir(), &self.file_storage_dir)
    }

    fn absolute_state_dir(&self) -> PathBuf {
        if self.state_dir.is_absolute() {
            self.state_dir.clone()
        } else {
            std::env::current_dir()
                .unwrap_or_else(|_| PathBuf::from("/"))
                .join(&self.state_dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_directories_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("node1");
        std::fs::create_dir_all(&state).unwrap();
        let ok = |d: &str| check_file_storage_dir(&state, d).unwrap();
        assert_eq!(ok(""), state.join("file-storage"));
        assert_eq!(ok("fs/a"), state.join("fs/a"));
        let shared = tmp.path().join("shared");
        assert_eq!(ok(shared.to_str().unwrap()), shared);
        assert_eq!(
            ok("/srv/maguey/file-storage"),
            Path::new("/srv/maguey/file-storage")
        );
        for bad in [
            "/",
            "/etc",
            "/etc/ssl",
            "/usr/lib",
            "/root",
            "/proc/1",
            "..",
            "../node2",
            "fs/../../x",
            "/srv/../etc",
            ".",
            "./",
            tmp.path().to_str().unwrap(),
            state.to_str().unwrap(),
        ] {
            let e = check_file_storage_dir(&state, bad).unwrap_err().to_string();
            assert!(e.contains("refused"), "{bad}: {e}");
        }
        // With a node-local list, absolute directories must be under one of its entries.
        std::fs::write(
            state.join(FILE_STORAGE_PATHS_FILE),
            format!("# allowed\n{}\n", shared.display()),
        )
        .unwrap();
        assert_eq!(ok(&format!("{}/x", shared.display())), shared.join("x"));
        assert_eq!(ok("file-storage"), state.join("file-storage"));
        let e = check_file_storage_dir(&state, "/srv/maguey")
            .unwrap_err()
            .to_string();
        assert!(e.contains("file-storage-paths"), "{e}");
    }
}
