//! Files of the node's state directory: atomic writes, the ssconf, the boot id.

use crate::error::{NodeError, NodeResult};
use crate::SSCONF_FILE;
use maguey_model::Ssconf;
use std::path::Path;

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> NodeResult<()> {
    write_atomic_mode(path, data, 0o666)
}

/// [`write_atomic`] of a file only its owner may read and write (mode 0600 from its
/// creation, whatever the umask).
pub fn write_atomic_private(path: &Path, data: &[u8]) -> NodeResult<()> {
    write_atomic_mode(path, data, 0o600)
}

fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> NodeResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::io(format!("cannot create {}: {e}", dir.display())))?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(NodeError::io(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    Ok(())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The ssconf last written by the master, if any (and readable).
pub fn read_ssconf(state_dir: &Path) -> Option<Ssconf> {
    let bytes = std::fs::read(state_dir.join(SSCONF_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The node's boot id (changes at every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
