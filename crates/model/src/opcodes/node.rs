//! Node opcodes.

use super::{default_max_parallel, yes};
use crate::vocab::{EvacMode, MigrationMode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNodeAdd {
    pub node_name: String,
    pub primary_ip: String,
    #[serde(default)]
    pub secondary_ip: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub master_capable: Option<bool>,
    #[serde(default)]
    pub vm_capable: Option<bool>,
    /// Maguey: the node's room (failure domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// SHA-256 (hex) of the certificate the master signed when the node joined; recorded in
    /// the config with the node. Only the join service may set it (refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_fingerprint: Option<String>,
    /// Maguey: the node is a witness of the replicated master (votes, never leads, runs no
    /// instances).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
    /// Ganeti's `readd`: the node is in the config already (kept offline, its certificate
    /// expired or revoked) and comes back with the certificate of a new join, keeping its
    /// instances. Only the join service submits it (it needs `certificate_fingerprint`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readd: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNodeRemove {
    pub node_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNodeSetParams {
    pub node_name: String,
    #[serde(default)]
    pub offline: Option<bool>,
    #[serde(default)]
    pub drained: Option<bool>,
    #[serde(default)]
    pub master_candidate: Option<bool>,
    #[serde(default)]
    pub master_capable: Option<bool>,
    #[serde(default)]
    pub vm_capable: Option<bool>,
    #[serde(default)]
    pub force: bool,
    /// Maguey: a new room (failure domain); the empty string takes the node out of its room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// Live-migrates every primary instance off a node, each as its own job (Ganeti's
/// OpNodeMigrate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpNodeMigrate {
    pub node_name: String,
    #[serde(default)]
    pub mode: Option<MigrationMode>,
    #[serde(default)]
    pub live: Option<bool>,
    #[serde(default)]
    pub target_node: Option<String>,
    #[serde(default)]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub ignore_ipolicy: bool,
    #[serde(default = "yes")]
    pub allow_runtime_changes: bool,
    /// Maguey: at most this many of the jobs run at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
}

/// Empties a node (Ganeti's OpNodeEvacuate): the placement engine plans where each
/// instance goes; each move runs as its own job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpNodeEvacuate {
    pub node_name: String,
    #[serde(default)]
    pub mode: EvacMode,
    #[serde(default)]
    pub remote_node: Option<String>,
    #[serde(default)]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub early_release: bool,
    /// Maguey: at most this many of the jobs run at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// Maguey: accept new secondaries in their primary's room (failure domain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}
