//! The Raft log on redb (openraft's `RaftLogStorage`).
//!
//! Every write is one durable transaction: an appended batch, a truncation, a purge (with the
//! purged id), a vote. Only after an append has committed does openraft hear it is flushed.

use crate::db::{get_json, io_err, to_json, COMMITTED, LAST_PURGED, RAFT_LOG, RAFT_META, VOTE};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::Serialize;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// The log half of a replica's store; cheap to clone (it shares the database).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        self.put_meta_with(key, value, subject, Durability::Immediate)
    }

    fn put_meta_with<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        subject: ErrorSubject<NodeId>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let w = |e: &dyn std::fmt::Display| io_err(subject.clone(), ErrorVerb::Write, e);
        let bytes = to_json(value).map_err(|e| w(&e))?;
        let mut txn = self.db.begin_write().map_err(|e| w(&e))?;
        txn.set_durability(durability).map_err(|e| w(&e))?;
        {
            let mut t = txn.open_table(RAFT_META).map_err(|e| w(&e))?;
            t.insert(key, bytes.as_slice()).map_err(|e| w(&e))?;
        }
        txn.commit().map_err(|e| w(&e))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError> {
        get_json(&self.db, RAFT_META, key).map_err(|e| io_err(subject, ErrorVerb::Read, e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let r = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
        let txn = self.db.begin_read().map_err(|e| r(&e))?;
        let t = txn.open_table(RAFT_LOG).map_err(|e| r(&e))?;
        let Some((_, v)) = t.last().map_err(|e| r(&e))? else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_slice(v.value()).map_err(|e| r(&e))?;
        Ok(Some(entry.log_id))
    }

    /// Removes the entries in `range` and, with `purged`, records the last purged id, in one
    /// durable transaction.
    fn remove(
        &self,
        range: (Bound<u64>, Bound<u64>),
        purged: Option<&LogId>,
    ) -> Result<(), StorageError> {
        let w = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e);
        let mut txn = self.db.begin_write().map_err(|e| w(&e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| w(&e))?;
        {
            let mut t = txn.open_table(RAFT_LOG).map_err(|e| w(&e))?;
            t.retain_in(range, |_, _| false).map_err(|e| w(&e))?;
            if let Some(id) = purged {
                let bytes = to_json(id).map_err(|e| w(&e))?;
                let mut m = txn.open_table(RAFT_META).map_err(|e| w(&e))?;
                m.insert(LAST_PURGED, bytes.as_slice()).map_err(|e| w(&e))?;
            }
        }
        txn.commit().map_err(|e| w(&e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let r = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
        let txn = self.db.begin_read().map_err(|e| r(&e))?;
        let t = txn.open_table(RAFT_LOG).map_err(|e| r(&e))?;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        if is_empty(&bounds) {
            return Ok(out);
        }
        for item in t.range(bounds).map_err(|e| r(&e))? {
            let (k, v) = item.map_err(|e| r(&e))?;
            let entry: Entry = serde_json::from_slice(v.value()).map_err(|e| r(&e))?;
            if entry.log_id.index != k.value() {
                return Err(r(&format!(
                    "log entry stored under {} has index {}",
                    k.value(),
                    entry.log_id.index
                )));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(LAST_PURGED, ErrorSubject::Logs)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // A hint for the restart (apply up to here at once): not synced, it becomes durable
        // with the next log append; an older value only means the leader tells it again.
        self.put_meta_with(COMMITTED, &committed, ErrorSubject::Store, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let w = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Write, e);
        let written = (|| -> Result<(), StorageError> {
            let mut txn = self.db.begin_write().map_err(|e| w(&e))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| w(&e))?;
            {
                let mut t = txn.open_table(RAFT_LOG).map_err(|e| w(&e))?;
                for entry in entries {
                    let bytes = to_json(&entry).map_err(|e| w(&e))?;
                    t.insert(entry.log_id.index, bytes.as_slice())
                        .map_err(|e| w(&e))?;
                }
            }
            txn.commit().map_err(|e| w(&e))
        })();
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "raft log truncated");
        self.remove((Bound::Included(log_id.index), Bound::Unbounded), None)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "raft log purged");
        self.remove(
            (Bound::Unbounded, Bound::Included(log_id.index)),
            Some(&log_id),
        )
    }
}

/// Records `log_id` as purged in a fresh store (the upgrade's first snapshot stands for it).
pub(crate) fn seed_purged(db: &Database, log_id: &LogId) -> Result<(), String> {
    let bytes = to_json(log_id).map_err(|e| e.to_string())?;
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| e.to_string())?;
    {
        let mut m = txn.open_table(RAFT_META).map_err(|e| e.to_string())?;
        m.insert(LAST_PURGED, bytes.as_slice())
            .map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())
}

/// True if no index lies in `bounds` (redb, like a BTreeMap, refuses a start after the end).
fn is_empty(bounds: &(Bound<u64>, Bound<u64>)) -> bool {
    let start = match bounds.0 {
        Bound::Included(s) => s,
        Bound::Excluded(s) => match s.checked_add(1) {
            Some(s) => s,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match bounds.1 {
        Bound::Included(e) => start > e,
        Bound::Excluded(e) => start >= e,
        Bound::Unbounded => false,
    }
}
