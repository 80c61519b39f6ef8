//! Persistence: every job as JSON in a redb table keyed by id, written by one writer thread.
//!
//! Changes are queued (the newest snapshot of a job replaces an older unwritten one) and the
//! writer commits whatever has accumulated in one transaction: under load many jobs share one
//! fsync ("group commit"). A change that must be durable makes its whole batch
//! `Durability::Immediate`; log entries alone are committed with `Durability::None` (they become
//! durable with the next durable commit). A replicated queue carries such a batch and sends it
//! through Raft with the next durable one ([`Store::run`]).
//!
//! A file written by Maguey 0.1 (redb 2, file format v2) is upgraded when the queue opens it,
//! keeping a backup beside it (see [`maguey_redb`]).

use crate::{JobError, JobReplication, JobWrite};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::watch;

/// Live (not archived) jobs: id → JSON of `model::Job`.
pub(crate) const JOBS: TableDefinition<u64, &str> = TableDefinition::new("jobs");
/// Archived jobs: id → JSON of `model::Job`.
pub(crate) const ARCHIVE: TableDefinition<u64, &str> = TableDefinition::new("archive");
/// Counters; `next_id` is the id the next submitted job gets.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const NEXT_ID: &str = "next_id";
/// 1 while the queue is drained (Ganeti's drain flag): new jobs are refused.
pub(crate) const DRAINED: &str = "drained";

pub(crate) fn storage<E: std::fmt::Display>(e: E) -> JobError {
    JobError::Storage(e.to_string())
}

/// How long a replicated queue carries a batch without a durable change at most before it
/// replicates it alone, by default (see [`Store::run`]).
pub(crate) const CARRY_MAX: std::time::Duration = std::time::Duration::from_millis(200);

pub(crate) enum Write {
    /// Store the job in the live table.
    Put(String),
    /// Move the job to the archive table.
    Archive(String),
}

#[derive(Default)]
struct Pending {
    dirty: BTreeMap<u64, Write>,
    next_id: Option<u64>,
    durable: bool,
    /// Sequence number of the newest queued change.
    seq: u64,
    /// Sequence number of the newest committed change.
    committed: u64,
    error: Option<String>,
    stop: bool,
}

pub(crate) struct Store {
    pub(crate) db: Arc<Database>,
    /// A replicated master's queue: every batch is committed there first.
    replication: Option<Arc<dyn JobReplication>>,
    pending: Mutex<Pending>,
    cv: Condvar,
    committed: watch::Sender<u64>,
    /// How long a batch without a durable change is carried at most ([`Store::run`]).
    pub(crate) carry_max: Mutex<std::time::Duration>,
}

impl Store {
    pub(crate) fn new(
        db: Arc<Database>,
        replication: Option<Arc<dyn JobReplication>>,
    ) -> Arc<Store> {
        Arc::new(Store {
            db,
            replication,
            pending: Mutex::new(Pending::default()),
            cv: Condvar::new(),
            committed: watch::Sender::new(0),
            carry_max: Mutex::new(CARRY_MAX),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a write; returns its sequence number (see [`Store::wait`]).
    pub(crate) fn queue(&self, id: u64, write: Write, durable: bool) -> u64 {
        let mut p = self.lock();
        p.dirty.insert(id, write);
        p.durable |= durable;
        p.seq += 1;
        let seq = p.seq;
        drop(p);
        self.cv.notify_all();
        seq
    }

    /// Queues the new value of the job id counter.
    pub(crate) fn queue_next_id(&self, next: u64) -> u64 {
        let mut p = self.lock();
        p.next_id = Some(next);
        p.durable = true;
        p.seq += 1;
        let seq = p.seq;
        drop(p);
        self.cv.notify_all();
        seq
    }

    /// Blocks until the change `seq` (and everything before it) is committed. On a worker of
    /// a multi-threaded runtime the worker hands its other tasks over meanwhile: a replicated
    /// commit needs them (the Raft core and its network run there).
    pub(crate) fn wait(&self, seq: u64) -> Result<(), JobError> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.wait_here(seq))
        } else {
            self.wait_here(seq)
        }
    }

    fn wait_here(&self, seq: u64) -> Result<(), JobError> {
        let mut p = self.lock();
        while p.committed < seq && !p.stop {
            p = self.cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        match &p.error {
            Some(e) => Err(JobError::Storage(e.clone())),
            None => Ok(()),
        }
    }

    /// The sequence number up to which every change is committed.
    pub(crate) fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Async version of [`Store::wait`].
    pub(crate) async fn wait_async(&self, seq: u64) -> Result<(), JobError> {
        let mut rx = self.committed.subscribe();
        let _ = rx.wait_for(|c| *c >= seq).await;
        match &self.lock().error {
            Some(e) => Err(JobError::Storage(e.clone())),
            None => Ok(()),
        }
    }

    /// Wakes the writer (to look at its carried writes' deadline again).
    pub(crate) fn wake(&self) {
        let _p = self.lock();
        self.cv.notify_all();
    }

    /// Asks the writer to flush what is queued and exit.
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }

    /// The writer thread's loop.
    ///
    /// A replicated queue does not send a batch without a durable change (log lines, the
    /// waiting/running toggles) through Raft on its own: nobody waits for it, and its round
    /// would hold up the durable writes queued behind it in this single lane. It is carried
    /// and goes out with the next durable batch (a job's end at the latest: every record is
    /// the job's whole snapshot), or alone once it has waited `carry_max` with nothing
    /// durable coming. A single master commits such a batch at once, without fsync, as before.
    pub(crate) fn run(self: Arc<Self>) {
        let carry_max = || *self.carry_max.lock().unwrap_or_else(|e| e.into_inner());
        let mut carried: BTreeMap<u64, Write> = BTreeMap::new();
        let mut carried_since = std::time::Instant::now();
        loop {
            let mut p = self.lock();
            loop {
                if !p.dirty.is_empty() || p.next_id.is_some() || p.stop {
                    break;
                }
                if carried.is_empty() {
                    p = self.cv.wait(p).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let left = carry_max().saturating_sub(carried_since.elapsed());
                if left.is_zero() {
                    break;
                }
                p = self
                    .cv
                    .wait_timeout(p, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if p.dirty.is_empty() && p.next_id.is_none() && carried.is_empty() {
                // stop requested and nothing left
                break;
            }
            let newer = std::mem::take(&mut p.dirty);
            let next_id = p.next_id.take();
            let durable = std::mem::take(&mut p.durable);
            let seq = p.seq;
            let stopping = p.stop;
            drop(p);

            let carry = self.replication.is_some()
                && !durable
                && next_id.is_none()
                && !stopping
                && (carried.is_empty() || carried_since.elapsed() < carry_max());
            if carry {
                if carried.is_empty() {
                    carried_since = std::time::Instant::now();
                }
                carried.extend(newer);
                self.mark_committed(seq, Ok(()));
                continue;
            }
            // The carried snapshots first: the newer ones of the same jobs replace them.
            let mut batch = std::mem::take(&mut carried);
            batch.extend(newer);

            // After a failed write nothing more is written: the waiters of that batch were
            // told their change is not stored, and a later commit must not store it after all
            // (a refused job would come back at the next start). Every later write is refused
            // too, until the daemon restarts on a store that works.
            let failed = self.lock().error.is_some();
            let result = if failed {
                Ok(())
            } else {
                self.commit(batch, next_id, durable)
            };
            self.mark_committed(seq, result);
        }
        // Wake anybody still waiting.
        let seq = {
            let mut p = self.lock();
            p.committed = p.seq;
            p.seq
        };
        self.cv.notify_all();
        self.committed.send_replace(seq);
    }

    /// The changes up to `seq` are written (or failed: every later write is refused).
    fn mark_committed(&self, seq: u64, result: Result<(), JobError>) {
        let mut p = self.lock();
        p.committed = seq;
        if let Err(e) = result {
            tracing::error!(
                "job queue: writing to the database failed, refusing every change from now \
                 on (restart magueyd once the store works): {e}"
            );
            p.error = Some(e.to_string());
        }
        drop(p);
        self.cv.notify_all();
        self.committed.send_replace(seq);
    }

    fn commit(
        &self,
        batch: BTreeMap<u64, Write>,
        next_id: Option<u64>,
        durable: bool,
    ) -> Result<(), JobError> {
        if let Some(r) = &self.replication {
            let writes = batch
                .iter()
                .map(|(id, w)| match w {
                    Write::Put(json) => JobWrite {
                        id: *id,
                        json: json.clone(),
                        archived: false,
                    },
                    Write::Archive(json) => JobWrite {
                        id: *id,
                        json: json.clone(),
                        archived: true,
                    },
                })
                .collect::<Vec<_>>();
            if !writes.is_empty() {
                r.replicate(writes).map_err(JobError::Storage)?;
            }
        }
        let mut txn = self.db.begin_write().map_err(storage)?;
        // A replicated queue's file is a cache of the replicated records (rebuilt from them
        // when the queue opens): they are durable on a quorum already, no fsync here.
        txn.set_durability(if durable && self.replication.is_none() {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(storage)?;
        {
            let mut jobs = txn.open_table(JOBS).map_err(storage)?;
            let mut archive = txn.open_table(ARCHIVE).map_err(storage)?;
            for (id, write) in &batch {
                match write {
                    Write::Put(json) => {
                        jobs.insert(*id, json.as_str()).map_err(storage)?;
                    }
                    Write::Archive(json) => {
                        archive.insert(*id, json.as_str()).map_err(storage)?;
                        jobs.remove(*id).map_err(storage)?;
                    }
                }
            }
            if let Some(n) = next_id {
                let mut meta = txn.open_table(META).map_err(storage)?;
                meta.insert(NEXT_ID, n).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Reads one archived job.
    pub(crate) fn read_archived(&self, id: u64) -> Option<String> {
        let txn = self.db.begin_read().ok()?;
        let table = txn.open_table(ARCHIVE).ok()?;
        let value = table.get(id).ok()??;
        Some(value.value().to_string())
    }

    /// Reads every archived job.
    pub(crate) fn read_all_archived(&self) -> Vec<(u64, String)> {
        let read = || -> Result<Vec<(u64, String)>, JobError> {
            let txn = self.db.begin_read().map_err(storage)?;
            let table = txn.open_table(ARCHIVE).map_err(storage)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                out.push((k.value(), v.value().to_string()));
            }
            Ok(out)
        };
        read().unwrap_or_else(|e| {
            tracing::warn!("job queue: reading the archive failed: {e}");
            Vec::new()
        })
    }
}
