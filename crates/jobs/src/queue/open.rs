//! Opening the queue: its redb file (local, or rebuilt from replicated records) and the
//! recovery of jobs a stopped master left unfinished.

use super::*;

impl JobQueue {
    /// Opens (or creates) the queue's redb file. Jobs found waiting, running or canceling are
    /// finished as error ([`MASTER_STOPPED_MESSAGE`]), their unfinished opcodes too; queued jobs
    /// stay queued and run after [`JobQueue::start`]. At most `max_running` jobs (at least 1)
    /// execute at once.
    pub fn open(path: &Path, max_running: usize) -> Result<Arc<Self>, JobError> {
        let db = maguey_redb::open(path).map_err(storage)?;
        let (queue, _) = Self::open_db(db, max_running, None)?;
        Ok(queue)
    }

    /// A replicated master's queue: `path` is rewritten from the replicated `records` (every
    /// job, live and archived, as the new master has them), then opened as by
    /// [`JobQueue::open`]; from then on every durable change goes through `replication`
    /// first, the jobs it ends as error (they were running on the previous master) too.
    pub fn open_replicated(
        path: &Path,
        max_running: usize,
        records: Vec<JobWrite>,
        replication: Arc<dyn JobReplication>,
    ) -> Result<Arc<Self>, JobError> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage(e)),
        }
        let db = maguey_redb::open(path).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut jobs = txn.open_table(JOBS).map_err(storage)?;
            let mut archive = txn.open_table(ARCHIVE).map_err(storage)?;
            for w in &records {
                let table = if w.archived { &mut archive } else { &mut jobs };
                table.insert(w.id, w.json.as_str()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        let (queue, fixed) = Self::open_db(db, max_running, Some(replication))?;
        let mut seq = None;
        for (id, json) in fixed {
            seq = Some(queue.store.queue(id, Write::Put(json), true));
        }
        if let Some(seq) = seq {
            queue.store.wait(seq)?;
        }
        Ok(queue)
    }

    fn open_db(
        db: redb::Database,
        max_running: usize,
        replication: Option<Arc<dyn JobReplication>>,
    ) -> Result<(Arc<Self>, Fixed), JobError> {
        let mut state = State::default();
        let drained;
        let mut fixed = Vec::new();
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut jobs = txn.open_table(JOBS).map_err(storage)?;
            let archive = txn.open_table(ARCHIVE).map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            let mut next_id = meta.get(NEXT_ID).map_err(storage)?.map_or(1, |v| v.value());
            drained = meta
                .get(DRAINED)
                .map_err(storage)?
                .is_some_and(|v| v.value() != 0);
            if let Some((k, _)) = archive.last().map_err(storage)? {
                next_id = next_id.max(k.value() + 1);
            }
            let mut rows = Vec::new();
            for row in jobs.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                rows.push((k.value(), v.value().to_string()));
            }
            for (id, json) in rows {
                next_id = next_id.max(id + 1);
                let mut job: Job = match serde_json::from_str(&json) {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::warn!("job queue: job {id} cannot be read, ignoring it: {e}");
                        continue;
                    }
                };
                match job.status {
                    JobStatus::Waiting | JobStatus::Running | JobStatus::Canceling => {
                        for i in 0..job.ops.len() {
                            if !job.opstatus[i].is_finalized() {
                                job.opstatus[i] = JobStatus::Error;
                                job.opresult[i] = Value::String(MASTER_STOPPED_MESSAGE.into());
                            }
                        }
                        job.status = JobStatus::Error;
                        job.end_ts = Some(now());
                        tracing::warn!("job {id} was unfinished when the master stopped");
                        fixed.push((id, to_json(&job)));
                    }
                    JobStatus::Queued => {
                        state.pending.insert((job.priority, id));
                    }
                    _ => {}
                }
                state.jobs.insert(id, Entry::new(job));
            }
            for (id, json) in &fixed {
                jobs.insert(*id, json.as_str()).map_err(storage)?;
            }
            meta.insert(NEXT_ID, next_id).map_err(storage)?;
            state.next_id = next_id;
        }
        txn.commit().map_err(storage)?;

        let store = Store::new(Arc::new(db), replication);
        let writer = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("maguey-jobs-writer".into())
                .spawn(move || store.run())
                .map_err(storage)?
        };
        let queue = Arc::new_cyclic(|me| JobQueue {
            me: me.clone(),
            state: Mutex::new(state),
            locks: LockManager::default(),
            store,
            writer: Mutex::new(Some(writer)),
            changes: watch::Sender::new(0),
            max_running: max_running.max(1),
            runtime: OnceLock::new(),
            archive_age: Mutex::new(DEFAULT_ARCHIVE_AGE),
            drained: std::sync::atomic::AtomicBool::new(drained),
            halted: std::sync::atomic::AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        Ok((queue, fixed))
    }
}
