//! What an opcode's executor gets from the queue: its job, logging, locks and child jobs.

use crate::locks::{Request, LOCKSET_NAME};
use crate::queue::{lock, JobQueue};
use crate::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{Job, OpCode};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an opcode's executor gets: the job, logging, and locks.
pub struct OpContext {
    queue: Arc<JobQueue>,
    job_id: u64,
    op_index: usize,
    held: Mutex<BTreeMap<LockLevel, LockNames>>,
    /// [`OpContext::wait_job`] calls in progress (the slot is lent while there are any).
    waiting: std::sync::atomic::AtomicUsize,
}

/// The slot lent for one [`OpContext::wait_job`]; given back when the last wait ends.
struct SlotLoan<'a>(&'a OpContext);

impl<'a> SlotLoan<'a> {
    fn new(ctx: &'a OpContext) -> Self {
        use std::sync::atomic::Ordering;
        if ctx.waiting.fetch_add(1, Ordering::SeqCst) == 0 {
            ctx.queue.lend_slot(ctx.job_id);
        }
        SlotLoan(ctx)
    }
}

impl Drop for SlotLoan<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.queue.reclaim_slot(self.0.job_id);
        }
    }
}

impl OpContext {
    pub(crate) fn new(queue: Arc<JobQueue>, job_id: u64, op_index: usize) -> Self {
        OpContext {
            queue,
            job_id,
            op_index,
            held: Mutex::new(BTreeMap::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    /// Index of this opcode in its job.
    pub fn op_index(&self) -> usize {
        self.op_index
    }

    /// Adds a timestamped entry to this opcode's log (and wakes `wait_for_change` callers).
    pub fn log(&self, message: impl Into<String>) {
        self.queue
            .append_log(self.job_id, self.op_index, message.into());
    }

    /// Acquires locks at one level, all names atomically. Levels must be acquired in increasing
    /// order within an opcode (a level not above every held one gives [`OpError::Exec`]). While
    /// blocked the job is `waiting`, then `running` again. Gives [`OpError::Canceled`] if the
    /// job is canceled meanwhile.
    pub async fn acquire(
        &self,
        level: LockLevel,
        names: LockNames,
        mode: LockMode,
    ) -> Result<(), OpError> {
        if let Some(top) = lock(&self.held).keys().next_back().copied() {
            if level <= top {
                return Err(OpError::Exec(format!(
                    "internal error: locks at level {level} requested while holding level \
                     {top}; levels must be acquired in order"
                )));
            }
        }
        let q = &self.queue;
        if q.cancel_requested(self.job_id) {
            return Err(OpError::Canceled);
        }
        match q.locks.request(self.job_id, level, names.clone(), mode) {
            Request::Granted => {}
            Request::Pending(ticket, rx) => {
                let mut guard = Withdraw {
                    ctx: self,
                    level,
                    ticket,
                    armed: true,
                };
                q.set_waiting(self.job_id, true);
                let granted = rx.await.is_ok();
                guard.armed = false;
                if !granted {
                    return Err(OpError::Canceled);
                }
                if !q.set_waiting(self.job_id, false) {
                    q.locks.release(self.job_id, level);
                    return Err(OpError::Canceled);
                }
            }
        }
        lock(&self.held).insert(level, names);
        Ok(())
    }

    /// Submits jobs on behalf of this opcode (Ganeti's `ResultWithJobs`: node evacuation,
    /// node migration), at this job's priority. Returns their ids.
    pub fn submit_jobs(&self, jobs: Vec<Vec<OpCode>>) -> Result<Vec<u64>, OpError> {
        let priority = self.queue.priority(self.job_id).unwrap_or_default();
        let submitter = format!("job:{}", self.job_id);
        self.queue
            .submit_many_by(
                jobs.into_iter().map(|ops| (ops, priority)).collect(),
                &submitter,
                "",
            )
            .map_err(|e| OpError::Exec(format!("cannot submit jobs: {e}")))
    }

    /// Waits until job `id` is finalized and returns it (`None` for an unknown job). Gives
    /// [`OpError::Canceled`] if this job is canceled meanwhile.
    /// While it waits, the job's running slot is lent to the queue (its children need one).
    pub async fn wait_job(&self, id: u64) -> Result<Option<Job>, OpError> {
        let _loan = SlotLoan::new(self);
        let mut known = None;
        let mut serial = 0;
        loop {
            if self.queue.cancel_requested(self.job_id) {
                return Err(OpError::Canceled);
            }
            match self
                .queue
                .wait_for_change(id, known, serial, Duration::from_secs(1))
                .await
            {
                Some(job) if job.status.is_finalized() => return Ok(Some(job)),
                Some(job) => {
                    known = Some(job.status);
                    serial = job
                        .oplog
                        .iter()
                        .flatten()
                        .map(|l| l.serial)
                        .max()
                        .unwrap_or(0);
                }
                None => {
                    if self.queue.get(id).is_none() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Releases the locks held at a level early (all are released when the opcode ends).
    pub fn release(&self, level: LockLevel) {
        if lock(&self.held).remove(&level).is_some() {
            self.queue.locks.release(self.job_id, level);
        }
    }

    /// The names held at a level; `["[lockset]"]` if the whole level is held.
    pub fn owned(&self, level: LockLevel) -> Vec<String> {
        match lock(&self.held).get(&level) {
            None => Vec::new(),
            Some(LockNames::All) => vec![LOCKSET_NAME.to_string()],
            Some(LockNames::Names(n)) => {
                let mut v = n.clone();
                v.sort();
                v.dedup();
                v
            }
        }
    }

    /// True if `name` is covered by the locks held at `level` (by name or the whole level).
    pub fn owns(&self, level: LockLevel, name: &str) -> bool {
        match lock(&self.held).get(&level) {
            None => false,
            Some(LockNames::All) => true,
            Some(LockNames::Names(n)) => n.iter().any(|x| x == name),
        }
    }
}

impl Drop for OpContext {
    fn drop(&mut self) {
        self.queue.locks.release_all(self.job_id);
    }
}

/// Withdraws a pending lock request if the `acquire` future is dropped while waiting.
struct Withdraw<'a> {
    ctx: &'a OpContext,
    level: LockLevel,
    ticket: u64,
    armed: bool,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if self.armed {
            let locks = &self.ctx.queue.locks;
            if !locks.withdraw(self.level, self.ticket) {
                // Granted meanwhile: give it back.
                locks.release(self.ctx.job_id, self.level);
            }
            // The opcode gave up waiting (its future was dropped): it is no longer waiting.
            self.ctx.queue.set_waiting(self.ctx.job_id, false);
        }
    }
}
