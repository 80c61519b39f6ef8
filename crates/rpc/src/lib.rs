//! Node RPC: the protocol between master and node daemons, the cluster CA, mutual TLS.

pub mod protocol;
pub use protocol::*;
