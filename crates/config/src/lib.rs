//! The cluster configuration as a deterministic state machine, persisted with redb.
//!
//! Every change is a typed [`Command`]. [`apply`] validates it against a [`ConfigData`] and
//! applies it deterministically (on error nothing changes). [`ConfigStore`] keeps the config
//! in one redb file as a snapshot plus a log of [`Entry`]s, the very entries a later Raft log
//! will carry; readers get consistent `Arc<ConfigData>` snapshots.

mod checks;
pub mod commands;
pub mod error;
pub mod group;
pub mod network;
pub mod rapi_users;
mod readd;
mod rooms;
pub mod store;

pub use commands::{apply, is_initialised, is_valid_mac, validate, verify, Command, Entry};
pub use error::ConfigError;
pub use store::{ConfigStore, StoreOptions, DEFAULT_COMPACT_EVERY, FORMAT_VERSION};
