//! The replica's redb file: the Raft log, its vote, and the state machine, in one file.
//!
//! Tables:
//! * `raft_meta`: `"vote"`, `"last_purged"`, `"committed"` → JSON;
//! * `raft_log`: index → JSON `Entry` (openraft's, carrying a [`crate::Request`]);
//! * `sm_meta`: `"applied"` → JSON [`Applied`] (last applied log id + membership),
//!   `"base"` → JSON [`SmImage`] (the config at the last compaction or installed snapshot),
//!   `"snapshot"` → JSON [`StoredSnapshot`] (the current Raft snapshot, meta and data);
//! * `sm_log`: index → JSON [`crate::Request`], the config commands applied after `base`;
//! * `sm_jobs`, `sm_archive`: job id → the job's durable record (JSON), live and archived;
//!   written by the same transaction as the applied state.
//!
//! The applied state is rewritten in the same write transaction as the entries it covers, so
//! a restart resumes exactly where the last commit left it.

use crate::types::{LogId, NodeId, SnapshotMeta, StorageError, StoredMembership};
use maguey_model::ConfigData;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub(crate) const SM_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("sm_log");
pub(crate) const SM_JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("sm_jobs");
pub(crate) const SM_ARCHIVE: TableDefinition<u64, &[u8]> = TableDefinition::new("sm_archive");

pub(crate) const VOTE: &str = "vote";
pub(crate) const LAST_PURGED: &str = "last_purged";
pub(crate) const COMMITTED: &str = "committed";
pub(crate) const APPLIED: &str = "applied";
pub(crate) const BASE: &str = "base";
pub(crate) const SNAPSHOT: &str = "snapshot";

/// The state machine's position: what it has applied and the membership it last saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// A whole state machine image: the config (its export form), the job records, and where it
/// stands in the log. This is the data of a Raft snapshot; `base` keeps it without the jobs
/// (their tables are their state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SmImage {
    pub applied: Applied,
    pub config: ConfigData,
    #[serde(default)]
    pub jobs: BTreeMap<u64, serde_json::Value>,
    #[serde(default)]
    pub archive: BTreeMap<u64, serde_json::Value>,
}

/// [`SmImage`] without the jobs, as `base` stores it.
#[derive(Serialize)]
pub(crate) struct BaseRef<'a> {
    pub applied: &'a Applied,
    pub config: &'a ConfigData,
}

/// A Raft snapshot as kept in `sm_meta`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// Creates the tables if missing.
pub(crate) fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RAFT_META)?;
    txn.open_table(RAFT_LOG)?;
    txn.open_table(SM_META)?;
    txn.open_table(SM_LOG)?;
    txn.open_table(SM_JOBS)?;
    txn.open_table(SM_ARCHIVE)?;
    txn.commit()?;
    Ok(())
}

pub(crate) fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// Reads and decodes one JSON value of a `&str`-keyed table (`None` if absent).
pub(crate) fn get_json<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(table).map_err(|e| e.to_string())?;
    let Some(v) = t.get(key).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|e| format!("{key}: {e}"))
}
