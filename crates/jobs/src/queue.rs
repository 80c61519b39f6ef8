//! The queue: submission, scheduling, execution, cancelation, archiving, recovery.

use crate::context::OpContext;
use crate::locks::LockManager;
use crate::store::{storage, Store, Write, ARCHIVE, DRAINED, JOBS, META, NEXT_ID};
use crate::{
    CancelOutcome, JobError, JobReplication, JobWrite, LockInfo, OpError, OpExecutor,
    ARCHIVE_INTERVAL, CANCELED_MESSAGE, DEFAULT_ARCHIVE_AGE, MASTER_STOPPED_MESSAGE,
};
use maguey_model::{now, Job, JobStatus, LogEntry, OpCode};
use redb::ReadableTable;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

mod open;
mod schedule;

enum Recorded {
    /// The job is gone or already finished (canceled).
    Gone,
    /// Run the next opcode.
    Next,
    /// The job finished; durable once this write is committed.
    Finished(u64),
}

struct Entry {
    job: Job,
    /// Serial of the newest log entry.
    log_serial: u64,
    /// Cancelation was requested while the job was waiting for locks.
    cancel: bool,
    /// Index of the opcode being run.
    current_op: usize,
    /// The job was picked by the scheduler and counts against the running limit.
    holds_slot: bool,
    /// The job lent its slot while it waits for its child jobs ([`OpContext::wait_job`]).
    lent_slot: bool,
    /// The job was started with its submit (its first opcode's start written with it), not
    /// yet taken up by its task.
    started_at_submit: bool,
    /// The write that finalized the job: until it is committed, waiters are not told the job
    /// ended (an end is acknowledged only once committed).
    end_write: u64,
}

impl Entry {
    fn new(job: Job) -> Entry {
        let log_serial = job.all_log().map(|e| e.serial).max().unwrap_or(0);
        Entry {
            job,
            log_serial,
            cancel: false,
            current_op: 0,
            holds_slot: false,
            lent_slot: false,
            started_at_submit: false,
            end_write: 0,
        }
    }

    /// The job and its first opcode running, as its task would write before it runs it.
    fn start_first_op(&mut self) {
        self.job.status = JobStatus::Running;
        self.job.start_ts = Some(now());
        self.job.opstatus[0] = JobStatus::Running;
        self.current_op = 0;
        self.started_at_submit = true;
    }

    /// Marks every unfinished opcode from `from` on as canceled and the job as canceled.
    fn finish_canceled(&mut self, from: usize) {
        let job = &mut self.job;
        for i in from..job.ops.len() {
            if !job.opstatus[i].is_finalized() {
                job.opstatus[i] = JobStatus::Canceled;
                job.opresult[i] = Value::String(CANCELED_MESSAGE.to_string());
            }
        }
        job.status = JobStatus::Canceled;
        job.end_ts = Some(now());
    }
}

#[derive(Default)]
struct State {
    /// Live (not archived) jobs.
    jobs: BTreeMap<u64, Entry>,
    /// Queued jobs not yet picked, by (priority, id).
    pending: BTreeSet<(i32, u64)>,
    /// Jobs picked by the scheduler and not finished.
    running: usize,
    next_id: u64,
}

/// The job queue. See the crate documentation.
pub struct JobQueue {
    me: Weak<JobQueue>,
    state: Mutex<State>,
    pub(crate) locks: LockManager,
    store: Arc<Store>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Bumped on every change of any job (for `wait_for_change`).
    changes: watch::Sender<u64>,
    max_running: usize,
    runtime: OnceLock<(tokio::runtime::Handle, Arc<dyn OpExecutor>)>,
    archive_age: Mutex<Duration>,
    /// The drain flag (kept in the queue's database): submissions are refused while set.
    drained: std::sync::atomic::AtomicBool,
    /// Set by [`JobQueue::halt`]: nothing more is scheduled, the running jobs' tasks are gone.
    halted: std::sync::atomic::AtomicBool,
    /// The tasks of the running jobs (and the archiver), aborted by [`JobQueue::halt`].
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Jobs an opening queue ended as error (id, new record).
type Fixed = Vec<(u64, String)>;

fn to_json(job: &Job) -> String {
    serde_json::to_string(job).expect("a job serializes to JSON")
}

impl JobQueue {
    /// Sets or clears the drain flag (`cluster queue drain|undrain`), durably. Jobs already
    /// queued or running go on; new submissions from outside are refused while it is set.
    pub fn set_drained(&self, on: bool) -> Result<(), JobError> {
        let txn = self.store.db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert(DRAINED, u64::from(on)).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        self.drained.store(on, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Whether the drain flag is set.
    pub fn is_drained(&self) -> bool {
        self.drained.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts scheduling: queued jobs run on the current tokio runtime (call once, inside a
    /// runtime; later calls are ignored). Also starts archiving finished jobs every minute.
    pub fn start(self: &Arc<Self>, executor: Arc<dyn OpExecutor>) {
        let handle = tokio::runtime::Handle::current();
        if self.runtime.set((handle.clone(), executor)).is_err() {
            tracing::warn!("job queue: start called twice");
            return;
        }
        let weak = Arc::downgrade(self);
        let archiver = handle.spawn(async move {
            let mut tick = tokio::time::interval(ARCHIVE_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(q) = weak.upgrade() else { break };
                let age = *lock(&q.archive_age);
                let _ = tokio::task::spawn_blocking(move || q.archive_older_than(age)).await;
            }
        });
        lock(&self.tasks).push(archiver.abort_handle());
        self.schedule();
    }

    /// Stops this queue for good (a replicated master that lost its leadership): nothing more
    /// is scheduled and the running jobs' tasks are aborted where they stand. Their records
    /// stay as they were written; the next master that opens the queue ends them as error
    /// ([`MASTER_STOPPED_MESSAGE`]) and runs the queued ones, as after a master restart.
    pub fn halt(&self) {
        self.halted.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in std::mem::take(&mut *lock(&self.tasks)) {
            t.abort();
        }
        self.notify();
    }

    /// A replicated queue: how long a batch of writes that need no durability (log lines,
    /// waiting for locks) is held back at most, to go out with the next durable one (default
    /// 200 ms). Acknowledged transitions are never held back.
    pub fn set_carry_max(&self, max: Duration) {
        *self
            .store
            .carry_max
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = max;
        self.store.wake();
    }

    /// Sets the age after which the automatic archiving moves finished jobs (default 6 h).
    pub fn set_archive_age(&self, age: Duration) {
        *lock(&self.archive_age) = age;
    }

    /// Submits a job; it is durable when this returns. Empty jobs are refused.
    pub fn submit(&self, ops: Vec<OpCode>, priority: i32) -> Result<u64, JobError> {
        Ok(self.submit_many(vec![(ops, priority)])?[0])
    }

    /// Submits several jobs at once (consecutive ids, one durable write). If one is empty none
    /// is submitted.
    pub fn submit_many(&self, jobs: Vec<(Vec<OpCode>, i32)>) -> Result<Vec<u64>, JobError> {
        self.submit_many_by(jobs, "", "")
    }

    /// Submits a job recording who submitted it and why (shown by `job info`).
    pub fn submit_by(
        &self,
        ops: Vec<OpCode>,
        priority: i32,
        submitter: &str,
        reason: &str,
    ) -> Result<u64, JobError> {
        Ok(self.submit_many_by(vec![(ops, priority)], submitter, reason)?[0])
    }

    /// As [`JobQueue::submit_many`], every job recording `submitter` and `reason`.
    pub fn submit_many_by(
        &self,
        jobs: Vec<(Vec<OpCode>, i32)>,
        submitter: &str,
        reason: &str,
    ) -> Result<Vec<u64>, JobError> {
        if jobs.iter().any(|(ops, _)| ops.is_empty()) {
            return Err(JobError::EmptyJob);
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ts = now();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut st = lock(&self.state);
        // Jobs the scheduler would pick at once (nothing queued before them, free slots) are
        // started with their submit: one durable write (one Raft commit on a replicated
        // master) for both, instead of the submit's and then the first opcode's start.
        let start_now = self.runtime.get().is_some()
            && !self.halted.load(std::sync::atomic::Ordering::SeqCst)
            && st.pending.is_empty()
            && st.running + jobs.len() <= self.max_running;
        for (ops, priority) in jobs {
            let id = st.next_id;
            st.next_id += 1;
            let mut job = Job::new(id, ops, priority, ts);
            job.submitter = submitter.to_string();
            job.reason = reason.to_string();
            let mut entry = Entry::new(job);
            if start_now {
                entry.start_first_op();
                entry.holds_slot = true;
                st.running += 1;
            }
            self.store.queue(id, Write::Put(to_json(&entry.job)), true);
            st.jobs.insert(id, entry);
            ids.push(id);
        }
        let seq = self.store.queue_next_id(st.next_id);
        drop(st);
        if let Err(e) = self.store.wait(seq) {
            let mut st = lock(&self.state);
            for id in &ids {
                Self::free_slot(&mut st, *id);
                st.jobs.remove(id);
            }
            return Err(e);
        }
        let mut st = lock(&self.state);
        let mut started = Vec::new();
        for id in &ids {
            if let Some(e) = st.jobs.get(id) {
                if e.started_at_submit {
                    started.push(*id);
                } else if e.job.status == JobStatus::Queued {
                    let key = (e.job.priority, *id);
                    st.pending.insert(key);
                }
            }
        }
        drop(st);
        self.notify();
        for id in started {
            self.spawn_job(id);
        }
        self.schedule();
        Ok(ids)
    }

    /// A job, archived ones too.
    pub fn get(&self, id: u64) -> Option<Job> {
        if let Some(e) = lock(&self.state).jobs.get(&id) {
            return Some(e.job.clone());
        }
        let json = self.store.read_archived(id)?;
        serde_json::from_str(&json).ok()
    }

    /// All jobs by id; archived ones only if asked.
    pub fn list(&self, include_archived: bool) -> Vec<Job> {
        let mut all: BTreeMap<u64, Job> = lock(&self.state)
            .jobs
            .iter()
            .map(|(id, e)| (*id, e.job.clone()))
            .collect();
        if include_archived {
            for (id, json) in self.store.read_all_archived() {
                if all.contains_key(&id) {
                    continue;
                }
                match serde_json::from_str(&json) {
                    Ok(job) => {
                        all.insert(id, job);
                    }
                    Err(e) => tracing::warn!("job queue: archived job {id} unreadable: {e}"),
                }
            }
        }
        all.into_values().collect()
    }

    /// Waits until the job's status differs from `known_status`, it has a log entry with a
    /// serial above `known_log_serial`, or it is finalized, and returns it. `None` on timeout or
    /// for an unknown job.
    pub async fn wait_for_change(
        &self,
        id: u64,
        known_status: Option<JobStatus>,
        known_log_serial: u64,
        timeout: Duration,
    ) -> Option<Job> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changes.subscribe();
        loop {
            rx.borrow_and_update();
            {
                let st = lock(&self.state);
                match st.jobs.get(&id) {
                    // Ended, but the end is not committed yet: its writer notifies once it is.
                    Some(e)
                        if e.job.status.is_finalized()
                            && e.end_write > self.store.committed_seq() => {}
                    Some(e) => {
                        if Some(e.job.status) != known_status
                            || e.log_serial > known_log_serial
                            || e.job.status.is_finalized()
                        {
                            return Some(e.job.clone());
                        }
                    }
                    None => {
                        drop(st);
                        // Archived jobs are finalized; unknown jobs give None.
                        return self.get(id);
                    }
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Cancels a job: a queued one at once; one waiting for locks too (its `acquire` returns
    /// [`OpError::Canceled`]). Running and finished jobs are refused.
    pub fn cancel(&self, id: u64) -> Result<CancelOutcome, JobError> {
        let mut st = lock(&self.state);
        let Some(entry) = st.jobs.get_mut(&id) else {
            drop(st);
            return match self.get(id) {
                Some(job) => Err(JobError::NotCancelable {
                    id,
                    reason: format!("job has already finished ({})", job.status.as_str()),
                }),
                None => Err(JobError::NotFound(id)),
            };
        };
        let status = entry.job.status;
        let (outcome, seq) = match status {
            JobStatus::Queued => {
                entry.finish_canceled(0);
                let key = (entry.job.priority, id);
                let seq = self.store.queue(id, Write::Put(to_json(&entry.job)), true);
                entry.end_write = seq;
                st.pending.remove(&key);
                Self::free_slot(&mut st, id);
                (CancelOutcome::Canceled, seq)
            }
            JobStatus::Waiting => {
                entry.cancel = true;
                if self.locks.withdraw_owner(id) {
                    entry.finish_canceled(entry.current_op);
                    let seq = self.store.queue(id, Write::Put(to_json(&entry.job)), true);
                    entry.end_write = seq;
                    Self::free_slot(&mut st, id);
                    (CancelOutcome::Canceled, seq)
                } else {
                    // Granted an instant ago: the acquire sees the flag and gives up.
                    entry.job.status = JobStatus::Canceling;
                    entry.job.opstatus[entry.current_op] = JobStatus::Canceling;
                    (
                        CancelOutcome::Canceling,
                        self.store.queue(id, Write::Put(to_json(&entry.job)), true),
                    )
                }
            }
            JobStatus::Canceling => return Ok(CancelOutcome::Canceling),
            JobStatus::Running => {
                return Err(JobError::NotCancelable {
                    id,
                    reason: "job is running and cannot be canceled".into(),
                })
            }
            s => {
                return Err(JobError::NotCancelable {
                    id,
                    reason: format!("job has already finished ({})", s.as_str()),
                })
            }
        };
        drop(st);
        tracing::info!("job {id} canceled");
        let r = self.store.wait(seq);
        self.notify();
        self.schedule();
        r.map(|_| outcome)
    }

    /// Moves finished jobs whose end is older than `age` to the archive; returns how many.
    pub fn archive_older_than(&self, age: Duration) -> usize {
        let cutoff = now() - age.as_secs_f64();
        let mut st = lock(&self.state);
        let mut ids = Vec::new();
        let mut seq = 0;
        for (id, e) in st.jobs.iter_mut() {
            let end = e.job.end_ts.unwrap_or(e.job.received_ts);
            if e.job.status.is_finalized() && !e.job.archived && end <= cutoff {
                e.job.archived = true;
                seq = self.store.queue(*id, Write::Archive(to_json(&e.job)), true);
                ids.push(*id);
            }
        }
        drop(st);
        if ids.is_empty() {
            return 0;
        }
        if let Err(e) = self.store.wait(seq) {
            tracing::error!("job queue: archiving failed: {e}");
            let mut st = lock(&self.state);
            for id in &ids {
                if let Some(e) = st.jobs.get_mut(id) {
                    e.job.archived = false;
                }
            }
            return 0;
        }
        let mut st = lock(&self.state);
        for id in &ids {
            st.jobs.remove(id);
        }
        drop(st);
        tracing::debug!("job queue: archived {} jobs", ids.len());
        self.notify();
        ids.len()
    }

    /// Jobs queued and not yet picked by the scheduler.
    pub fn queued_count(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// Unfinished jobs whose submitter `matches`.
    pub fn unfinished_by(&self, matches: impl Fn(&str) -> bool) -> usize {
        lock(&self.state)
            .jobs
            .values()
            .filter(|e| !e.job.status.is_finalized() && matches(&e.job.submitter))
            .count()
    }

    /// Jobs picked by the scheduler and not finished.
    pub fn running_count(&self) -> usize {
        lock(&self.state).running
    }

    /// Held (and waited-for) locks with their owners.
    pub fn locks(&self) -> Vec<LockInfo> {
        self.locks.info()
    }

    /// Adds a timestamped entry to an opcode's log (and wakes `wait_for_change` callers).
    pub(crate) fn append_log(&self, id: u64, op_index: usize, message: String) {
        let mut st = lock(&self.state);
        let Some(e) = st.jobs.get_mut(&id) else {
            return;
        };
        if e.job.status.is_finalized() {
            return;
        }
        e.log_serial += 1;
        let entry = LogEntry {
            serial: e.log_serial,
            timestamp: now(),
            log_type: "message".to_string(),
            message,
        };
        e.job.oplog[op_index].push(entry);
        self.store.queue(id, Write::Put(to_json(&e.job)), false);
        drop(st);
        self.notify();
    }

    /// A live job's priority.
    pub(crate) fn priority(&self, id: u64) -> Option<i32> {
        lock(&self.state).jobs.get(&id).map(|e| e.job.priority)
    }

    pub(crate) fn notify(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn run_job(self: Arc<Self>, executor: Arc<dyn OpExecutor>, id: u64) {
        let started_at_submit;
        let ops = {
            let mut st = lock(&self.state);
            let Some(e) = st.jobs.get_mut(&id) else {
                drop(st);
                return self.job_done(id);
            };
            started_at_submit = std::mem::take(&mut e.started_at_submit);
            if e.job.status != JobStatus::Queued && !started_at_submit {
                drop(st);
                return self.job_done(id);
            }
            if !started_at_submit {
                // Written (durably) with the first opcode's start below.
                e.job.status = JobStatus::Running;
                e.job.start_ts = Some(now());
            }
            tracing::info!(
                submitter = e.job.submitter.as_str(),
                reason = e.job.reason.as_str(),
                "started: {}",
                e.job.summary.join(", ")
            );
            e.job.ops.clone()
        };

        for (i, op) in ops.iter().enumerate() {
            // Opcode start: durable before it executes, so that a restart never re-runs it.
            let seq = {
                let mut st = lock(&self.state);
                let Some(e) = st.jobs.get_mut(&id) else { break };
                if e.job.status.is_finalized() {
                    break;
                }
                e.current_op = i;
                e.job.status = JobStatus::Running;
                e.job.opstatus[i] = JobStatus::Running;
                // The first opcode's start of a job started at its submit is written already.
                (i > 0 || !started_at_submit)
                    .then(|| self.store.queue(id, Write::Put(to_json(&e.job)), true))
            };
            if let Some(seq) = seq {
                let written = self.store.wait_async(seq).await;
                self.notify();
                if let Err(e) = written {
                    tracing::error!("job {id}: not running opcode {i}: {e}");
                    break;
                }
            }

            let ctx = OpContext::new(self.clone(), id, i);
            let span = tracing::info_span!("opcode", index = i, op = op.op_id());
            let result = match catch_unwind(AssertUnwindSafe(|| executor.execute(op, &ctx))) {
                Ok(fut) => match tracing::Instrument::instrument(CatchUnwind { fut }, span).await {
                    Ok(r) => r,
                    Err(msg) => Err(OpError::Exec(format!("opcode panicked: {msg}"))),
                },
                Err(p) => Err(OpError::Exec(format!(
                    "opcode panicked: {}",
                    panic_message(&*p)
                ))),
            };
            drop(ctx);
            self.locks.release_all(id);
            match &result {
                Ok(_) => tracing::info!("opcode {i} ({}) succeeded", op.op_id()),
                Err(e) => tracing::info!("opcode {i} ({}) failed: {e}", op.op_id()),
            }

            let seq = match self.record(id, i, op, ops.len(), result) {
                Recorded::Gone => break,
                Recorded::Next => None,
                Recorded::Finished(seq) => Some(seq),
            };
            match seq {
                Some(seq) => {
                    let _ = self.store.wait_async(seq).await;
                    self.notify();
                    break;
                }
                None => self.notify(),
            }
        }
        tracing::info!("done");
        self.job_done(id);
    }

    /// Records an opcode's outcome.
    fn record(
        &self,
        id: u64,
        i: usize,
        op: &OpCode,
        n_ops: usize,
        result: Result<Value, OpError>,
    ) -> Recorded {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let recorded = self.record_locked(st, id, i, op, n_ops, result);
        if let Recorded::Finished(seq) = recorded {
            Self::free_slot(st, id);
            if let Some(e) = st.jobs.get_mut(&id) {
                e.end_write = seq;
            }
        }
        recorded
    }

    fn record_locked(
        &self,
        st: &mut State,
        id: u64,
        i: usize,
        op: &OpCode,
        n_ops: usize,
        result: Result<Value, OpError>,
    ) -> Recorded {
        let Some(e) = st.jobs.get_mut(&id) else {
            return Recorded::Gone;
        };
        if e.job.status.is_finalized() {
            // Canceled while it waited for locks; already recorded.
            return Recorded::Gone;
        }
        let last = i + 1 == n_ops;
        match result {
            Ok(v) => {
                e.job.opstatus[i] = JobStatus::Success;
                e.job.opresult[i] = v;
                if e.cancel {
                    e.finish_canceled(i + 1);
                } else if last {
                    e.job.status = JobStatus::Success;
                    e.job.end_ts = Some(now());
                }
                if e.job.status.is_finalized() {
                    Recorded::Finished(self.store.queue(id, Write::Put(to_json(&e.job)), true))
                } else {
                    Recorded::Next // the next opcode's start writes it
                }
            }
            Err(_) if e.cancel => {
                e.finish_canceled(i);
                Recorded::Finished(self.store.queue(id, Write::Put(to_json(&e.job)), true))
            }
            Err(OpError::Canceled) => {
                e.finish_canceled(i);
                Recorded::Finished(self.store.queue(id, Write::Put(to_json(&e.job)), true))
            }
            Err(err) => {
                let msg = err.to_string();
                tracing::info!("job {id}: opcode {} ({}) failed: {msg}", i, op.op_id());
                e.job.opstatus[i] = JobStatus::Error;
                e.job.opresult[i] = Value::String(msg);
                let note = format!(
                    "not run: an earlier opcode failed (opcode {}, {})",
                    i + 1,
                    op.op_id()
                );
                for j in i + 1..n_ops {
                    e.job.opstatus[j] = JobStatus::Error;
                    e.job.opresult[j] = Value::String(note.clone());
                }
                e.job.status = JobStatus::Error;
                e.job.end_ts = Some(now());
                Recorded::Finished(self.store.queue(id, Write::Put(to_json(&e.job)), true))
            }
        }
    }

    /// Sets the job waiting (for locks) or running again. False if the job was canceled.
    pub(crate) fn set_waiting(&self, id: u64, waiting: bool) -> bool {
        let mut st = lock(&self.state);
        let Some(e) = st.jobs.get_mut(&id) else {
            return false;
        };
        if e.cancel || e.job.status.is_finalized() {
            return false;
        }
        let status = if waiting {
            JobStatus::Waiting
        } else {
            JobStatus::Running
        };
        if e.job.status != status {
            e.job.status = status;
            e.job.opstatus[e.current_op] = status;
            self.store.queue(id, Write::Put(to_json(&e.job)), false);
            drop(st);
            self.notify();
        }
        true
    }

    pub(crate) fn cancel_requested(&self, id: u64) -> bool {
        lock(&self.state)
            .jobs
            .get(&id)
            .is_none_or(|e| e.cancel || e.job.status.is_finalized())
    }
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        self.store.stop();
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

type OpFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, OpError>> + Send + 'a>>;

/// Turns a panic while polling the opcode into an error.
struct CatchUnwind<'a> {
    fut: OpFuture<'a>,
}

impl Future for CatchUnwind<'_> {
    type Output = Result<Result<Value, OpError>, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.fut;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(&*p))),
        }
    }
}
