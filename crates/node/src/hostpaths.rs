//! Host paths named by parameters (docs/security.md): the QEMU binary (`kvm_path`), kernel,
//! initrd and CD-ROM images, the `image` OS parameter. They come from the master, and a RAPI
//! write user may set most of them, so the node checks them against its own policy before
//! using them:
//!
//! * `kvm_path` must be one of [`DEFAULT_KVM_PATHS`] or a `kvm_path` line of the node's
//!   `hypervisor-paths` file;
//! * other paths must be absolute, without `..`, and (after following symlinks) outside the
//!   node's state directory (certificates, keys, stores), except its file storage directory
//!   (cloud-init seeds live beside the disks), and outside the system directories
//!   [`DENIED_DIRS`] unless under a `dir` line of the `hypervisor-paths` file;
//! * when that file has `dir` lines, paths must be under one of them (or in the file storage
//!   directory).
//!
//! The file (in the state directory, root's to write, like Ganeti's `file-storage-paths`)
//! holds `dir /ABSOLUTE/DIR` and `kvm_path /ABSOLUTE/PROGRAM` lines, `#` comments.

use crate::error::{NodeError, NodeResult};
use crate::storage::normalize;
use std::path::{Component, Path, PathBuf};

/// The node's hypervisor path policy file, in its state directory.
pub const HYPERVISOR_PATHS_FILE: &str = "hypervisor-paths";

/// QEMU binaries accepted as `kvm_path` without configuration.
pub const DEFAULT_KVM_PATHS: &[&str] = &[
    "/usr/bin/kvm",
    "/usr/bin/qemu-system-x86_64",
    "/usr/bin/qemu-kvm",
    "/usr/libexec/qemu-kvm",
];

/// Directories whose files parameters never name.
pub const DENIED_DIRS: &[&str] = &["/etc", "/proc", "/sys", "/root", "/run", "/dev", "/home"];

/// The node's policy: extra `kvm_path` values and allowed directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPathPolicy {
    pub kvm_paths: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

impl HostPathPolicy {
    /// Reads `state_dir/hypervisor-paths` (none: the defaults).
    pub fn load(state_dir: &Path) -> HostPathPolicy {
        let mut p = HostPathPolicy::default();
        let Ok(text) = std::fs::read_to_string(state_dir.join(HYPERVISOR_PATHS_FILE)) else {
            return p;
        };
        for line in text.lines().map(str::trim) {
            match line.split_once(char::is_whitespace) {
                Some(("dir", d)) if Path::new(d.trim()).is_absolute() => {
                    p.dirs.push(normalize(Path::new(d.trim())))
                }
                Some(("kvm_path", k)) if Path::new(k.trim()).is_absolute() => {
                    p.kvm_paths.push(normalize(Path::new(k.trim())))
                }
                _ => {}
            }
        }
        p
    }
}

fn refused(param: &str, path: &str, why: &str) -> NodeError {
    NodeError::bad_request(format!(
        "{param} '{path}' refused: {why} (docs/security.md)"
    ))
}

/// Checks `kvm_path`.
pub fn check_kvm_path(state_dir: &Path, path: &str) -> NodeResult<()> {
    let policy = HostPathPolicy::load(state_dir);
    let p = Path::new(path);
    let allowed: Vec<PathBuf> = DEFAULT_KVM_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(policy.kvm_paths)
        .collect();
    // A bare program name (found in root's PATH) may name an allowed binary's file name.
    let bare = p.components().count() == 1 && !p.is_absolute();
    if allowed
        .iter()
        .any(|k| k == p || (bare && k.file_name() == p.file_name()))
    {
        return Ok(());
    }
    Err(refused(
        "kvm_path",
        path,
        &format!(
            "not an allowed QEMU binary ({} or a kvm_path line of {})",
            DEFAULT_KVM_PATHS.join(", "),
            state_dir.join(HYPERVISOR_PATHS_FILE).display()
        ),
    ))
}

/// Checks a host path parameter `param` (`kernel_path`, `cdrom_image_path`, `image`, ...)
/// of a node whose state directory is `state_dir` and file storage directory `storage_dir`
/// (absolute); answers the path to use.
pub fn check_host_path(
    state_dir: &Path,
    storage_dir: Option<&Path>,
    param: &str,
    path: &str,
) -> NodeResult<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(refused(param, path, "not an absolute path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(refused(param, path, "it contains '..'"));
    }
    // Through symlinks: where the file really is.
    let real = p.canonicalize().unwrap_or_else(|_| normalize(p));
    let state = state_dir
        .canonicalize()
        .unwrap_or_else(|_| normalize(state_dir));
    let storage = storage_dir.map(|s| s.canonicalize().unwrap_or_else(|_| normalize(s)));
    let in_storage = storage.as_ref().is_some_and(|s| real.starts_with(s));
    if real.starts_with(&state) && !in_storage {
        return Err(refused(
            param,
            path,
            "it is in the node's state directory (certificates, keys, stores)",
        ));
    }
    let policy = HostPathPolicy::load(state_dir);
    // A directory the node's admin listed is allowed, even inside a system directory.
    if in_storage || policy.dirs.iter().any(|d| real.starts_with(d)) {
        return Ok(p.to_path_buf());
    }
    if let Some(d) = DENIED_DIRS.iter().find(|d| real.starts_with(d)) {
        return Err(refused(param, path, &format!("{d} is a system directory")));
    }
    if !policy.dirs.is_empty() {
        return Err(refused(
            param,
            path,
            &format!(
                "not under a dir of {}",
                state_dir.join(HYPERVISOR_PATHS_FILE).display()
            ),
        ));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("node1");
        let storage = state.join("file-storage");
        std::fs::create_dir_all(&storage).unwrap();
        std::fs::write(state.join("ca.key"), "k").unwrap();
        std::fs::write(storage.join("seed.iso"), "s").unwrap();
        let images = tmp.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("a.qcow2"), "q").unwrap();
        std::os::unix::fs::symlink(state.join("ca.key"), images.join("link.qcow2")).unwrap();
        let check =
            |p: &Path| check_host_path(&state, Some(&storage), "image", p.to_str().unwrap());
        assert!(check(&images.join("a.qcow2")).is_ok());
        assert!(check(&storage.join("seed.iso")).is_ok());
        for bad in [
            state.join("ca.key"),
            images.join("link.qcow2"),
            PathBuf::from("/etc/shadow"),
            PathBuf::from("/proc/self/environ"),
            PathBuf::from("/dev/vda"),
            images.join("../node1/ca.key"),
            PathBuf::from("relative.qcow2"),
        ] {
            let e = check(&bad).unwrap_err().to_string();
            assert!(e.contains("refused"), "{}: {e}", bad.display());
        }
        assert!(check_kvm_path(&state, "/usr/bin/kvm").is_ok());
        assert!(check_kvm_path(&state, "qemu-system-x86_64").is_ok());
        assert!(check_kvm_path(&state, "sh").is_err());
        assert!(check_kvm_path(&state, "bin/kvm").is_err());
        let e = check_kvm_path(&state, "/bin/sh").unwrap_err().to_string();
        assert!(e.contains("kvm_path '/bin/sh' refused"), "{e}");
        // The node's own policy: more binaries, fewer directories.
        std::fs::write(
            state.join(HYPERVISOR_PATHS_FILE),
            format!(
                "# policy\nkvm_path /opt/qemu/bin/qemu\ndir {}/other\n",
                tmp.path().display()
            ),
        )
        .unwrap();
        assert!(check_kvm_path(&state, "/opt/qemu/bin/qemu").is_ok());
        assert!(check(&images.join("a.qcow2")).is_err());
        assert!(check(&storage.join("seed.iso")).is_ok());
        // A listed directory inside a system directory is allowed; the state directory never.
        std::fs::write(
            state.join(HYPERVISOR_PATHS_FILE),
            format!("dir /root/.cache/maguey\ndir {}\n", tmp.path().display()),
        )
        .unwrap();
        assert!(check(Path::new("/root/.cache/maguey/guest/vmlinuz")).is_ok());
        assert!(check(Path::new("/root/.ssh/id_rsa")).is_err());
        assert!(check(&images.join("a.qcow2")).is_ok());
        assert!(check(&state.join("ca.key")).is_err());
    }
}
