//! Maguey's job queue.
//!
//! A job is an ordered list of opcodes ([`maguey_model::OpCode`]) that run one after another;
//! the first failure fails the job. Jobs are persisted in a redb file, scheduled by
//! (priority, id) with a limit on concurrently running jobs, and take locks from a lock manager
//! with Ganeti's levels ([`LockLevel`]). Opcodes themselves are run by an [`OpExecutor`]
//! (implemented by the `ops` crate), which gets an [`OpContext`] to log and to take locks.

mod context;
mod locks;
mod queue;
mod store;
pub mod submit;

pub use context::OpContext;
pub use locks::{LockInfo, LockLevel, LockMode, LockNames, LOCKSET_NAME};
pub use queue::JobQueue;

use maguey_model::OpCode;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use maguey_model::{Job, JobStatus, LogEntry, OpStatus};

/// Default limit on concurrently running jobs.
pub const DEFAULT_MAX_RUNNING: usize = 20;
/// Default age after which finished jobs are archived.
pub const DEFAULT_ARCHIVE_AGE: Duration = Duration::from_secs(6 * 3600);
/// How often finished jobs are archived automatically.
pub const ARCHIVE_INTERVAL: Duration = Duration::from_secs(60);
/// Result of jobs (and their unfinished opcodes) found unfinished when the queue is opened.
pub const MASTER_STOPPED_MESSAGE: &str =
    "the master daemon stopped while this job was running; it did not complete";
/// Result of canceled opcodes.
pub const CANCELED_MESSAGE: &str = "job canceled";

/// Why an opcode failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    /// A check failed; nothing was changed.
    #[error("{0}")]
    Prereq(String),
    /// Failed while executing.
    #[error("{0}")]
    Exec(String),
    /// The job was canceled (while waiting for locks).
    #[error("job canceled")]
    Canceled,
}

/// Errors of the queue's own operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("job {0} not found")]
    NotFound(u64),
    #[error("a job needs at least one opcode")]
    EmptyJob,
    /// The job cannot be canceled (it is running or finished); the reason says which.
    #[error("{reason}")]
    NotCancelable { id: u64, reason: String },
    #[error("job queue storage error: {0}")]
    Storage(String),
}

/// What [`JobQueue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job is canceled (final).
    Canceled,
    /// The job had just been granted its locks; it is `canceling` and becomes `canceled` as
    /// soon as its opcode notices (rare race; wait with [`JobQueue::wait_for_change`]).
    Canceling,
}

/// One durable change of the queue, as replicated: a job's whole record (JSON of
/// [`Job`]), live or moved to the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWrite {
    pub id: u64,
    pub json: String,
    pub archived: bool,
}

/// Where a replicated master's queue sends its durable changes before writing them to its
/// own file (magueyd: the Raft log of the master candidates). Called from the queue's writer
/// thread, one batch at a time (a group commit); returns once the batch is committed, or why
/// not (the queue then reports a storage error, as when its disk fails).
pub trait JobReplication: Send + Sync + 'static {
    fn replicate(&self, batch: Vec<JobWrite>) -> Result<(), String>;
}

/// Runs one opcode. Implemented by the `ops` crate.
pub trait OpExecutor: Send + Sync + 'static {
    fn execute<'a>(
        &'a self,
        op: &'a OpCode,
        ctx: &'a OpContext,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, OpError>> + Send + 'a>>;
}
