//! The cluster config replicated with Raft among the master candidates.
//!
//! Built on [openraft](https://docs.rs/openraft) 0.9.25, pinned to that exact version in
//! Cargo.toml and named nowhere outside this crate: the daemon and the tests see only
//! [`Replica`], [`Member`], [`RpcKind`], [`Transport`] and the errors here, so an upgrade (to
//! 0.10 for leadership transfer, say) is one place.
//!
//! * [`Replica`]: one Raft node with its store (one redb file: the log, the vote, the state
//!   machine). The state machine is the cluster config: the same [`maguey_config::Command`]s
//!   and deterministic [`maguey_config::apply`] as the single-master `ConfigStore`; the last
//!   applied log id and membership are written in the same transaction as the entries.
//! * Writes go to the leader; off the leader they are refused naming it
//!   ([`ReplicationError::NotLeader`]), without a quorum naming the voters seen
//!   ([`ReplicationError::NoQuorum`]).
//! * [`Transport`]: how RPCs reach peers (`/raft/{kind}` over the cluster's mTLS HTTPS in the
//!   daemon; [`local::LocalRouter`] in process, with faults, for tests).
//! * [`upgrade_config_store`]: a single-master store becomes the first snapshot of a
//!   one-voter group.

// openraft's storage traits return its `StorageError` (over 200 bytes): not ours to shrink.
#![allow(clippy::result_large_err)]

mod batch;
mod db;
mod force;
pub mod local;
mod log_store;
mod network;
mod replica;
mod state_machine;
mod types;
mod upgrade;

#[cfg(test)]
mod conformance;

pub use network::{BoxFuture, RpcKind, Transport, TransportError};
pub use replica::{Replica, ReplicaOptions, ReplicationError, Role, Status};
pub use types::{Member, NodeId};
pub use upgrade::upgrade_config_store;
