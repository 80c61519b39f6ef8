//! The replicated state machine on redb (openraft's `RaftStateMachine`): the cluster config.
//!
//! Applying a batch is one durable transaction that records its config commands (table
//! `sm_log`) and the new applied state (last applied log id + membership) together; only then
//! is the in-memory config changed, with the same deterministic [`maguey_config::apply`] as the
//! single-master `ConfigStore`. A command that does not validate changes nothing, on every
//! replica alike, and answers its error. On open, the state is the `base` image with the
//! recorded commands after it replayed. A snapshot is the whole config (its export form) with
//! the applied state; building one also compacts `sm_log` into `base`.

use crate::db::{
    get_json, io_err, to_json, Applied, BaseRef, SmImage, StoredSnapshot, APPLIED, BASE,
    SM_ARCHIVE, SM_JOBS, SM_LOG, SM_META, SNAPSHOT,
};
use crate::types::{
    Entry, LogId, Request, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use maguey_model::ConfigData;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What the state machine shares with the replica's readers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    config: RwLock<Arc<ConfigData>>,
    applied: Mutex<Applied>,
}

impl Shared {
    /// The applied config: consistent, cheap (an `Arc` clone).
    pub(crate) fn config(&self) -> Arc<ConfigData> {
        self.config.read().expect("config lock poisoned").clone()
    }

    pub(crate) fn applied(&self) -> Applied {
        self.applied.lock().expect("applied lock poisoned").clone()
    }

    fn image(&self) -> (Applied, Arc<ConfigData>) {
        // Only the state machine's task changes both, so two reads are consistent here.
        (self.applied(), self.config())
    }
}

/// The state machine half of a replica's store.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    shared: Arc<Shared>,
    snapshots: Arc<AtomicU64>,
}

fn sm_err(verb: ErrorVerb) -> impl Fn(&dyn std::fmt::Display) -> StorageError {
    move |e| io_err(ErrorSubject::StateMachine, verb, e)
}

impl StateMachine {
    /// Loads the state: the base image, then every recorded command after it.
    pub(crate) fn open(db: Arc<Database>) -> Result<Self, StorageError> {
        let r = sm_err(ErrorVerb::Read);
        let base: SmImage = get_json(&db, SM_META, BASE)
            .map_err(|e| r(&e))?
            .unwrap_or_default();
        let applied: Applied = get_json(&db, SM_META, APPLIED)
            .map_err(|e| r(&e))?
            .unwrap_or_else(|| base.applied.clone());
        let mut config = base.config;
        let after = base.applied.last_applied.map_or(0, |id| id.index + 1);
        let txn = db.begin_read().map_err(|e| r(&e))?;
        let log = txn.open_table(SM_LOG).map_err(|e| r(&e))?;
        for item in log.range(after..).map_err(|e| r(&e))? {
            let (k, v) = item.map_err(|e| r(&e))?;
            let request: Request = serde_json::from_slice(v.value())
                .map_err(|e| r(&format!("state machine entry {}: {e}", k.value())))?;
            apply_request(&mut config, k.value(), &request);
        }
        drop(log);
        drop(txn);
        tracing::debug!(
            applied = ?applied.last_applied,
            serial_no = config.serial_no,
            "replicated state machine opened"
        );
        Ok(StateMachine {
            db,
            shared: Arc::new(Shared {
                config: RwLock::new(Arc::new(config)),
                applied: Mutex::new(applied),
            }),
            snapshots: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Records a snapshot just built (see [`write_image`]).
    fn write_image(&self, image: &SmImage, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        write_image(&self.db, image, Some(snapshot), false)
            .map_err(|e| sm_err(ErrorVerb::Write)(&e))
    }
}

/// Writes a state machine image in one transaction: with `install` (an installed snapshot, or
/// the seed of an upgraded store) it replaces the whole state (base, applied state, recorded
/// commands); without (a snapshot just built) it becomes the base unless a newer base exists,
/// and the recorded commands it covers are dropped. `snapshot` becomes the current snapshot.
pub(crate) fn write_image(
    db: &Database,
    image: &SmImage,
    snapshot: Option<&StoredSnapshot>,
    install: bool,
) -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let image_index = image.applied.last_applied.map(|id| id.index);
    let mut txn = db.begin_write().map_err(|e| s(&e))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| s(&e))?;
    {
        let mut meta = txn.open_table(SM_META).map_err(|e| s(&e))?;
        let mut log = txn.open_table(SM_LOG).map_err(|e| s(&e))?;
        if install {
            let applied = to_json(&image.applied).map_err(|e| s(&e))?;
            meta.insert(APPLIED, applied.as_slice())
                .map_err(|e| s(&e))?;
            log.retain(|_, _| false).map_err(|e| s(&e))?;
            for (table, records) in [(SM_JOBS, &image.jobs), (SM_ARCHIVE, &image.archive)] {
                let mut t = txn.open_table(table).map_err(|e| s(&e))?;
                t.retain(|_, _| false).map_err(|e| s(&e))?;
                for (id, record) in records {
                    let bytes = to_json(record).map_err(|e| s(&e))?;
                    t.insert(*id, bytes.as_slice()).map_err(|e| s(&e))?;
                }
            }
        }
        let base_index = match meta.get(BASE).map_err(|e| s(&e))? {
            Some(v) => serde_json::from_slice::<SmImage>(v.value())
                .map_err(|e| format!("base: {e}"))?
                .applied
                .last_applied
                .map(|id| id.index),
            None => None,
        };
        if install || image_index >= base_index {
            let base = to_json(&BaseRef {
                applied: &image.applied,
                config: &image.config,
            })
            .map_err(|e| s(&e))?;
            meta.insert(BASE, base.as_slice()).map_err(|e| s(&e))?;
            if let Some(i) = image_index {
                log.retain_in(..=i, |_, _| false).map_err(|e| s(&e))?;
            }
        }
        if let Some(snap) = snapshot {
            let bytes = to_json(snap).map_err(|e| s(&e))?;
            meta.insert(SNAPSHOT, bytes.as_slice()).map_err(|e| s(&e))?;
        }
    }
    txn.commit().map_err(|e| s(&e))
}

/// Applies one recorded request to `config` (a refused command changes nothing).
fn apply_request(config: &mut ConfigData, index: u64, request: &Request) -> Response {
    match request {
        Request::JobPut { .. } | Request::JobArchive { .. } => Response::None,
        Request::Config { ts, command } => {
            let result = maguey_config::apply(config, *ts, command)
                .map(|()| config.serial_no)
                .map_err(|e| {
                    tracing::debug!(index, command = command.name(), error = %e, "replicated command refused");
                    e.to_string()
                });
            Response::Config { result }
        }
        Request::Batch { requests } => Response::Batch {
            responses: requests
                .iter()
                .map(|r| apply_request(config, index, r))
                .collect(),
        },
    }
}

/// The requests of one entry: a batch's parts, or the request itself.
fn parts(request: &Request) -> &[Request] {
    match request {
        Request::Batch { requests } => requests,
        other => std::slice::from_ref(other),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.applied();
        Ok((a.last_applied, a.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let w = sm_err(ErrorVerb::Write);
        let mut applied = self.shared.applied();
        applied.last_applied = Some(last.log_id);
        for entry in &entries {
            if let EntryPayload::Membership(m) = &entry.payload {
                applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
        }
        // 1. Stored: the commands and the applied state, one transaction. Not synced here:
        // the log entries it covers are durable already (appended by an `Immediate` commit
        // of the same redb file), and redb makes this one durable with the next such commit;
        // after a crash the replica re-applies them from the log.
        let mut txn = self.db.begin_write().map_err(|e| w(&e))?;
        txn.set_durability(Durability::None).map_err(|e| w(&e))?;
        let mut job_results = std::collections::HashMap::new();
        {
            let mut log = txn.open_table(SM_LOG).map_err(|e| w(&e))?;
            let mut jobs = txn.open_table(SM_JOBS).map_err(|e| w(&e))?;
            let mut archive = txn.open_table(SM_ARCHIVE).map_err(|e| w(&e))?;
            for entry in &entries {
                let index = entry.log_id.index;
                let EntryPayload::Normal(request) = &entry.payload else {
                    continue;
                };
                let configs: Vec<&Request> = parts(request)
                    .iter()
                    .filter(|r| matches!(r, Request::Config { .. }))
                    .collect();
                let recorded = match configs.as_slice() {
                    [] => None,
                    [one] => Some(to_json(*one)),
                    many => Some(to_json(&Request::Batch {
                        requests: many.iter().map(|r| (*r).clone()).collect(),
                    })),
                };
                if let Some(bytes) = recorded {
                    let bytes = bytes.map_err(|e| w(&e))?;
                    log.insert(index, bytes.as_slice()).map_err(|e| w(&e))?;
                }
                for (k, part) in parts(request).iter().enumerate() {
                    match part {
                        Request::JobPut { id, record } => {
                            let bytes = to_json(record).map_err(|e| w(&e))?;
                            jobs.insert(*id, bytes.as_slice()).map_err(|e| w(&e))?;
                            job_results.insert((index, k), Ok(()));
                        }
                        Request::JobArchive { id } => {
                            let record = jobs
                                .remove(*id)
                                .map_err(|e| w(&e))?
                                .map(|v| v.value().to_vec());
                            let result = match record {
                                Some(bytes) => {
                                    archive.insert(*id, bytes.as_slice()).map_err(|e| w(&e))?;
                                    Ok(())
                                }
                                None => Err(format!("no job {id} in the queue")),
                            };
                            job_results.insert((index, k), result);
                        }
                        _ => {}
                    }
                }
            }
            let bytes = to_json(&applied).map_err(|e| w(&e))?;
            let mut meta = txn.open_table(SM_META).map_err(|e| w(&e))?;
            meta.insert(APPLIED, bytes.as_slice()).map_err(|e| w(&e))?;
        }
        txn.commit().map_err(|e| w(&e))?;

        // 2. Published: the same commands on the in-memory config.
        let mut replies = Vec::with_capacity(entries.len());
        {
            let mut guard = self.shared.config.write().expect("config lock poisoned");
            for entry in &entries {
                let index = entry.log_id.index;
                let mut answer = |k: usize, request: &Request| match request {
                    Request::JobPut { .. } | Request::JobArchive { .. } => Response::Job {
                        result: job_results.remove(&(index, k)).unwrap_or(Ok(())),
                    },
                    // Changes in place unless a reader still holds the previous config.
                    other => apply_request(Arc::make_mut(&mut guard), index, other),
                };
                replies.push(match &entry.payload {
                    EntryPayload::Normal(Request::Batch { requests }) => Response::Batch {
                        responses: requests
                            .iter()
                            .enumerate()
                            .map(|(k, r)| answer(k, r))
                            .collect(),
                    },
                    EntryPayload::Normal(request) => answer(0, request),
                    _ => Response::None,
                });
            }
            *self.shared.applied.lock().expect("applied lock poisoned") = applied;
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let (applied, config) = self.shared.image();
        // The job tables as of this moment, read later by the builder (redb's MVCC).
        let jobs = self.db.begin_read();
        SnapshotBuilder {
            sm: self.clone(),
            applied,
            config,
            jobs,
            seq: self.snapshots.fetch_add(1, Ordering::SeqCst) + 1,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let read_err = |e: &dyn std::fmt::Display| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        };
        let decoded: SmImage = serde_json::from_slice(&data).map_err(|e| read_err(&e))?;
        let image = SmImage {
            applied: Applied {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
            config: decoded.config,
            jobs: decoded.jobs,
            archive: decoded.archive,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        write_image(&self.db, &image, Some(&stored), true).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        // The whole image replaces the state; recorded commands after it were dropped.
        let mut guard = self.shared.config.write().expect("config lock poisoned");
        *guard = Arc::new(image.config);
        *self.shared.applied.lock().expect("applied lock poisoned") = image.applied;
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored: Option<StoredSnapshot> = get_json(&self.db, SM_META, SNAPSHOT)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    sm: StateMachine,
    applied: Applied,
    config: Arc<ConfigData>,
    jobs: Result<redb::ReadTransaction, redb::TransactionError>,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let r = sm_err(ErrorVerb::Read);
        let read = self.jobs.as_ref().map_err(|e| r(e))?;
        let image = SmImage {
            applied: self.applied.clone(),
            config: (*self.config).clone(),
            jobs: read_jobs(read, SM_JOBS).map_err(|e| r(&e))?,
            archive: read_jobs(read, SM_ARCHIVE).map_err(|e| r(&e))?,
        };
        let data = to_json(&image).map_err(|e| sm_err(ErrorVerb::Read)(&e))?;
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
            snapshot_id: snapshot_id(self.applied.last_applied.as_ref(), self.seq),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.sm.write_image(&image, &stored)?;
        tracing::debug!(snapshot = %meta.snapshot_id, "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// A snapshot id unique across restarts: position, build time and a sequence number.
pub(crate) fn snapshot_id(last: Option<&LogId>, seq: u64) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    match last {
        Some(id) => format!("{}-{}-{micros}-{seq}", id.leader_id, id.index),
        None => format!("--{micros}-{seq}"),
    }
}

/// Every record of a job table, as one read transaction sees it.
fn read_jobs(
    read: &redb::ReadTransaction,
    table: redb::TableDefinition<u64, &[u8]>,
) -> Result<std::collections::BTreeMap<u64, serde_json::Value>, String> {
    let t = read.open_table(table).map_err(|e| e.to_string())?;
    let mut out = std::collections::BTreeMap::new();
    for item in t.iter().map_err(|e| e.to_string())? {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let record =
            serde_json::from_slice(v.value()).map_err(|e| format!("job {}: {e}", k.value()))?;
        out.insert(k.value(), record);
    }
    Ok(out)
}
