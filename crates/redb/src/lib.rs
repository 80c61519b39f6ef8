//! Opening Maguey's redb stores (the config and the job queue).
//!
//! Maguey 0.1 wrote its stores with redb 2, in redb's file format v2. redb 3 and later read only
//! the v3 format, and only redb 2.6's `Database::upgrade()` converts a file, so this crate links
//! redb 2.6 beside the current redb for that one purpose. [`open`] opens a store with the current
//! redb; a file that redb refuses as format v2 is upgraded once, on the first start of a new
//! binary:
//!
//! 1. the original is locked (`flock`, as redb 2 locks it), so that an old daemon cannot open it
//!    meanwhile; it is never written;
//! 2. it is copied to `FILE.v2-backup` (written under a temporary name, fsync'd, renamed, the
//!    directory fsync'd), for an administrator who goes back to the old binary;
//! 3. it is copied to `FILE.v3-upgrade`, redb 2.6 opens that copy (repairing it first if the old
//!    daemon did not shut down cleanly) and upgrades it, and the copy is fsync'd;
//! 4. the upgraded copy is renamed over the original and the directory fsync'd.
//!
//! A crash before step 4 leaves the original as it was (the next start upgrades again and
//! replaces the leftovers); a crash after it leaves the complete upgraded file, a rename being
//! atomic. redb 2.6's in-place `upgrade()` alone rewrites the two commit slots of the original
//! one after the other, which is why it only ever runs on a copy here.
//!
//! There is no way back in place: once the current redb has written the upgraded file, the old
//! binary's redb 2.6 cannot use it (it panics). Going back to the old binary means restoring
//! `FILE.v2-backup`, and losing what changed since the upgrade.

use std::fs::{self, File, TryLockError};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Suffix of the copy of a v2 file kept beside the store when it is upgraded.
pub const BACKUP_SUFFIX: &str = ".v2-backup";
/// Suffix of the copy being upgraded (renamed over the store once complete).
const UPGRADE_SUFFIX: &str = ".v3-upgrade";
/// Suffix of a backup being written.
const TMP_SUFFIX: &str = ".tmp";
/// The only older redb file format this build upgrades (redb 2.x).
const UPGRADABLE_FORMAT: u8 = 2;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Database(#[from] redb::DatabaseError),
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
}

/// Why a v2 store could not be upgraded. The original file is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{} is open in another process (an older magueyd?); stop it first", .path.display())]
    Locked { path: PathBuf },
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("redb 2.6 could not upgrade a copy of {}: {source}", .path.display())]
    Redb2 {
        path: PathBuf,
        #[source]
        source: Box<redb2::Error>,
    },
    #[error("{} uses redb's file format v{version}, which this build cannot upgrade", .path.display())]
    UnsupportedFormat { path: PathBuf, version: u8 },
    #[error("{} still uses an old file format after its upgrade", .path.display())]
    NotUpgraded { path: PathBuf },
}

/// Opens the redb database at `path`, creating it if missing, after upgrading it from redb's
/// file format v2 if needed (see the crate docs).
pub fn open(path: &Path) -> Result<redb::Database, OpenError> {
    match redb::Database::create(path) {
        Err(redb::DatabaseError::UpgradeRequired(version)) => {
            upgrade(path, version)?;
            match redb::Database::create(path) {
                Err(redb::DatabaseError::UpgradeRequired(_)) => Err(UpgradeError::NotUpgraded {
                    path: path.to_path_buf(),
                }
                .into()),
                opened => Ok(opened?),
            }
        }
        opened => Ok(opened?),
    }
}

/// Where the copy of the v2 file at `path` is kept after its upgrade.
pub fn backup_path(path: &Path) -> PathBuf {
    sibling(path, BACKUP_SUFFIX)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UpgradeError {
    let path = path.to_path_buf();
    move |source| UpgradeError::Io {
        action,
        path,
        source,
    }
}

/// Upgrades the file at `path` from file format `version` to v3, keeping a backup.
fn upgrade(path: &Path, version: u8) -> Result<(), UpgradeError> {
    if version != UPGRADABLE_FORMAT {
        return Err(UpgradeError::UnsupportedFormat {
            path: path.to_path_buf(),
            version,
        });
    }
    let backup = backup_path(path);
    tracing::warn!(
        path = %path.display(),
        backup = %backup.display(),
        "store written by redb 2 (file format v2): upgrading it to the current format"
    );
    let original = File::open(path).map_err(io_error("opening", path))?;
    match original.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(UpgradeError::Locked {
                path: path.to_path_buf(),
            })
        }
        Err(TryLockError::Error(e)) => return Err(io_error("locking", path)(e)),
    }

    let backup_tmp = sibling(&backup, TMP_SUFFIX);
    copy_synced(&original, &backup_tmp)?;
    fs::rename(&backup_tmp, &backup).map_err(io_error("renaming", &backup_tmp))?;
    sync_parent(path)?;

    let work = sibling(path, UPGRADE_SUFFIX);
    copy_synced(&original, &work)?;
    {
        let redb2_error = |source: redb2::Error| UpgradeError::Redb2 {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let mut db = redb2::Database::open(&work).map_err(|e| redb2_error(e.into()))?;
        db.upgrade().map_err(|e| redb2_error(e.into()))?;
        // Dropping it writes redb's allocator state and closes the file.
    }
    File::open(&work)
        .and_then(|f| f.sync_all())
        .map_err(io_error("syncing", &work))?;
    fs::rename(&work, path).map_err(io_error("renaming", &work))?;
    sync_parent(path)?;
    tracing::warn!(path = %path.display(), "store upgraded");
    Ok(())
}

/// Writes a copy of `src` (from its start) to `dest`, with `src`'s permissions, and fsyncs it.
fn copy_synced(mut src: &File, dest: &Path) -> Result<(), UpgradeError> {
    let read = |e| io_error("reading the store to copy it to", dest)(e);
    src.seek(SeekFrom::Start(0)).map_err(read)?;
    let mut out = File::create(dest).map_err(io_error("creating", dest))?;
    io::copy(&mut src, &mut out).map_err(io_error("copying the store to", dest))?;
    let permissions = src.metadata().map_err(read)?.permissions();
    out.set_permissions(permissions)
        .map_err(io_error("setting the permissions of", dest))?;
    out.sync_all().map_err(io_error("syncing", dest))
}

/// Makes a rename in the directory of `path` durable.
fn sync_parent(path: &Path) -> Result<(), UpgradeError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing the directory", dir))
}

#[cfg(test)]
mod tests;
