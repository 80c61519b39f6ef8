//! A job queue whose store fills up (a real full file system: a small tmpfs) acknowledges
//! only what it stored: after a restart every acknowledged job is there, none that was
//! refused appears, and nothing is written after the first failure.

use maguey_jobs::{JobError, JobQueue};
use maguey_model::OpCode;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(st.success(), "mounting a tmpfs needs root");
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn delay(reason: &str) -> Vec<OpCode> {
    vec![serde_json::from_value(json!({
        "OP_ID": "OP_TEST_DELAY", "duration": 0.0, "on_master": true,
        "on_nodes": [reason]
    }))
    .unwrap()]
}

/// Fills the file system with one file, leaving about `keep` bytes free.
fn fill(dir: &Path, keep: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let stat = nix_free(dir);
        if stat <= keep {
            break;
        }
        let n = ((stat - keep) as usize).min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

/// Free bytes of the file system holding `dir` (`df` in bytes).
fn nix_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_full_disk_loses_and_invents_no_job() {
    let fs = Tmpfs::mount("32m");
    let db = fs.path().join("jobs.db");
    let big = "x".repeat(16 * 1024);
    let (acked, refused) = {
        let q = JobQueue::open(&db, 1).unwrap();
        let first = q.submit_by(delay("before"), 0, "test", "").unwrap();
        let filler = fill(fs.path(), 512 * 1024);
        let mut acked = vec![first];
        let mut refused = Vec::new();
        for i in 0..2000 {
            match q.submit_by(delay(&format!("{i} {big}")), 0, "test", &big) {
                Ok(id) => acked.push(id),
                Err(e) => {
                    assert!(matches!(e, JobError::Storage(_)), "{e}");
                    refused.push(i);
                    break;
                }
            }
        }
        assert!(!refused.is_empty(), "the file system never filled up");
        assert!(
            acked.len() > 1,
            "nothing was stored before the disk was full"
        );
        // Space comes back, but the queue that failed refuses every change until restart:
        // nothing it refused may be stored after all.
        std::fs::remove_file(filler).unwrap();
        for i in 0..3 {
            assert!(
                q.submit_by(delay(&format!("after {i}")), 0, "test", "")
                    .is_err(),
                "a queue whose store failed accepted a job"
            );
        }
        (acked, refused)
    };
    // The restarted queue has exactly the acknowledged jobs.
    let q = JobQueue::open(&db, 1).unwrap();
    let ids: Vec<u64> = q.list(false).iter().map(|j| j.id).collect();
    assert_eq!(ids, acked, "refused: {refused:?}");
    // And it works again.
    let id = q.submit_by(delay("again"), 0, "test", "").unwrap();
    assert!(id > *acked.last().unwrap());
}
