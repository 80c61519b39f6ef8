//! Job records, as the queue persists them and clients see them (Ganeti's job fields).

use crate::opcodes::OpCode;
use serde::{Deserialize, Serialize};

/// Status of a job (Ganeti's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Waiting,
    Running,
    Success,
    Error,
    Canceling,
    Canceled,
}

impl JobStatus {
    /// True for the states a job never leaves.
    pub fn is_finalized(self) -> bool {
        matches!(
            self,
            JobStatus::Success | JobStatus::Error | JobStatus::Canceled
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Waiting => "waiting",
            JobStatus::Running => "running",
            JobStatus::Success => "success",
            JobStatus::Error => "error",
            JobStatus::Canceling => "canceling",
            JobStatus::Canceled => "canceled",
        }
    }
}

/// Status of one opcode of a job; the same values as [`JobStatus`].
pub type OpStatus = JobStatus;

/// One timestamped message of an opcode's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Rises by one per message across the whole job.
    pub serial: u64,
    pub timestamp: f64,
    /// Ganeti's log types: `message` (ELOG_MESSAGE) and friends.
    pub log_type: String,
    pub message: String,
}

/// Job priorities: lower runs first, as in Ganeti (-20..19, default 0).
pub const PRIORITY_HIGH: i32 = -10;
pub const PRIORITY_NORMAL: i32 = 0;
pub const PRIORITY_LOW: i32 = 10;

/// A job: an ordered list of opcodes and what became of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub ops: Vec<OpCode>,
    pub priority: i32,
    pub status: JobStatus,
    pub opstatus: Vec<OpStatus>,
    /// One result per opcode (null until it ran; the error message if it failed).
    pub opresult: Vec<serde_json::Value>,
    pub oplog: Vec<Vec<LogEntry>>,
    pub received_ts: f64,
    pub start_ts: Option<f64>,
    pub end_ts: Option<f64>,
    pub summary: Vec<String>,
    #[serde(default)]
    pub archived: bool,
    /// Who submitted the job (`cli`, `rapi:USER`, `watcher`, `job:ID`, ...); empty for jobs
    /// stored before it was recorded.
    #[serde(default)]
    pub submitter: String,
    /// Why (Ganeti's reason trail, in one line), e.g. `watcher: restart of an instance down
    /// by error`.
    #[serde(default)]
    pub reason: String,
}

impl Job {
    /// A freshly received job, all opcodes queued.
    pub fn new(id: u64, ops: Vec<OpCode>, priority: i32, received_ts: f64) -> Self {
        let n = ops.len();
        Job {
            id,
            summary: ops.iter().map(OpCode::summary).collect(),
            ops,
            priority,
            status: JobStatus::Queued,
            opstatus: vec![JobStatus::Queued; n],
            opresult: vec![serde_json::Value::Null; n],
            oplog: vec![Vec::new(); n],
            received_ts,
            start_ts: None,
            end_ts: None,
            archived: false,
            submitter: String::new(),
            reason: String::new(),
        }
    }

    /// Every log entry of the job, in order.
    pub fn all_log(&self) -> impl Iterator<Item = &LogEntry> {
        self.oplog.iter().flatten()
    }
}
