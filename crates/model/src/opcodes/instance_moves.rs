//! Opcodes that move an instance to another node.

use super::{default_shutdown_timeout, yes};
use crate::vocab::MigrationMode;
use serde::{Deserialize, Serialize};

/// Moves a running instance to another node without stopping it (Ganeti's
/// OpInstanceMigrate). `sharedfile` disks stay where they are; `file` disks move with the
/// instance (mirrored live over NBD). A stopped instance is failed over instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceMigrate {
    pub instance_name: String,
    /// `live` (default) or `non-live` (paused while its memory moves).
    #[serde(default)]
    pub mode: Option<MigrationMode>,
    /// Ganeti's deprecated flag: `false` means `non-live`.
    #[serde(default)]
    pub live: Option<bool>,
    #[serde(default)]
    pub target_node: Option<String>,
    /// Repairs the state after a failed migration instead of migrating.
    #[serde(default)]
    pub cleanup: bool,
    #[serde(default = "yes")]
    pub allow_failover: bool,
    #[serde(default)]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub ignore_ipolicy: bool,
    #[serde(default = "yes")]
    pub allow_runtime_changes: bool,
}

/// Stops an instance and starts it on another node (Ganeti's OpInstanceFailover); for
/// disks every node sees (`sharedfile`) or replicates (`drbd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceFailover {
    pub instance_name: String,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
    /// Go on although the primary node cannot be reached (it is down).
    #[serde(default)]
    pub ignore_consistency: bool,
    #[serde(default)]
    pub target_node: Option<String>,
    #[serde(default)]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub ignore_ipolicy: bool,
}

/// Copies a stopped instance's disks to another node and makes it the primary (Ganeti's
/// OpInstanceMove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceMove {
    pub instance_name: String,
    pub target_node: String,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
    #[serde(default)]
    pub ignore_consistency: bool,
    #[serde(default)]
    pub ignore_ipolicy: bool,
}
