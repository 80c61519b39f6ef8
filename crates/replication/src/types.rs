//! The openraft type configuration and the replicated state machine's entries.

use maguey_config::Command;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;

/// A voter's or learner's id in the Raft group (stable for the life of the node).
pub type NodeId = u64;

/// What the group knows of a member: its node name and where its magueyd listens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// `host:port` of the member's magueyd (the `/raft/...` routes).
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// One entry of the replicated log, applied to the state machine in log order.
// Config commands carry whole objects; entries are rare, boxing would only cost clarity.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// A config command, applied with [`maguey_config::apply`] at the proposer's timestamp.
    Config { ts: f64, command: Command },
    /// A job queue's durable transition (submitted, status, opcode result, log lines): the
    /// job's whole record after it, replacing the one stored under `id`.
    JobPut { id: u64, record: serde_json::Value },
    /// Moves job `id` from the live queue to the archive.
    JobArchive { id: u64 },
    /// Several of the above, proposed together by the leader's group commit (concurrent
    /// writes share one entry, one fsync per replica and one round trip): applied in order,
    /// answered by [`Response::Batch`]. Never nested. Peers older than this variant cannot
    /// decode it (docs/replication.md, "Group commit": upgrade the followers first).
    Batch { requests: Vec<Request> },
}

/// The state machine's answer to one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// A blank or membership entry.
    None,
    /// The config's new serial number, or why the command did not apply (nothing changed).
    Config { result: Result<u64, String> },
    /// Whether a job transition applied (archiving an unknown job does not).
    Job { result: Result<(), String> },
    /// The answers to a [`Request::Batch`], in its order.
    Batch { responses: Vec<Response> },
}

openraft::declare_raft_types!(
    /// Maguey's openraft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
