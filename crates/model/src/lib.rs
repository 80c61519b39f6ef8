//! Maguey's data model.
//!
//! Every object of the cluster configuration (Cluster, NodeGroup, Node, Instance, Disk, NIC),
//! the parameter dictionaries that are inherited cluster → group → instance, the opcodes that
//! jobs are made of and the job records themselves. Field names follow Ganeti's, so that the
//! JSON export, RAPI and iallocator payloads look familiar to a Ganeti admin.

pub mod ipolicy;
pub mod jobs;
pub mod names;
pub mod network;
pub mod objects;
pub mod opcodes;
pub mod params;
pub mod rooms;
pub mod units;
pub mod vocab;

pub use ipolicy::*;
pub use jobs::*;
pub use network::*;
pub use objects::*;
pub use opcodes::*;
pub use params::*;
pub use vocab::*;

/// Seconds since the Unix epoch, as a float (Ganeti's ctime/mtime convention).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A new random UUID as a string.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Maguey's version, reported by the RPC version handshake.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Protocol version of the node RPC and the master API, sent with every request (see
/// `maguey_rpc::version`): 1 sent no version header, 2 sends it. Peers one version apart work.
pub const PROTOCOL_VERSION: u32 = 2;
/// Default TCP port of the node daemon (Ganeti's noded port).
pub const DEFAULT_RPC_PORT: u16 = 1811;
