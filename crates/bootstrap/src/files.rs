//! Files in a node's state directory.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The node's own bootstrap settings (`daemon.json`), written by `cluster init` or a join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonFile {
    pub node_name: String,
    pub listen: SocketAddr,
    #[serde(default)]
    pub fake_memory_mib: Option<u64>,
    #[serde(default)]
    pub fake_cpus: Option<u32>,
    /// The node is a witness of a replicated cluster (`magueyd --witness` when it joined):
    /// no hypervisor or storage is used or needed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
}

impl DaemonFile {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("daemon.json")
    }
    pub fn load(dir: &Path) -> Result<Self> {
        let p = Self::path(dir);
        let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
    }
    pub fn save(&self, dir: &Path) -> Result<()> {
        // fsynced: after a power loss a node must still know who it is.
        maguey_node::write_atomic(&Self::path(dir), &serde_json::to_vec_pretty(self)?)
            .map_err(anyhow::Error::msg)
    }
}

pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.redb")
}
/// Left by `cluster init --replicated`: magueyd makes the config store the first snapshot of
/// a replicated config (docs/replication.md) when it starts.
pub const REPLICATE_MARKER: &str = "replicate";

/// Asks magueyd to replicate the config of the cluster initialised in `dir`.
pub fn mark_replicated(dir: &Path) -> Result<()> {
    std::fs::write(dir.join(REPLICATE_MARKER), b"")?;
    Ok(())
}

pub fn jobs_path(dir: &Path) -> PathBuf {
    dir.join("jobs.redb")
}
pub fn pidfile(dir: &Path) -> PathBuf {
    dir.join("magueyd.pid")
}

pub fn write_pidfile(dir: &Path) -> Result<()> {
    std::fs::write(pidfile(dir), format!("{}\n", std::process::id())).context("writing the pidfile")
}

pub fn remove_pidfile(dir: &Path) {
    let _ = std::fs::remove_file(pidfile(dir));
}

/// Removes the master's cluster state (config, jobs, the backups an upgrade of their format
/// kept, CA, certificates).
pub fn wipe_master_state(dir: &Path) {
    for f in [
        "config.redb",
        "jobs.redb",
        "config.redb.v2-backup",
        "jobs.redb.v2-backup",
        "ca.pem",
        "ca.key",
        "node.pem",
        "node.key",
        "admin.pem",
        "admin.key",
        "joined-master.json",
        "master-term.json",
        "ssconf.json",
        "daemon.json",
        // A replicated cluster's store (docs/replication.md).
        "raft.redb",
        "raft-id.json",
        "config.redb.single-master",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}
