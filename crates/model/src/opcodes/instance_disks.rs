//! Opcodes on an instance's disks.

use super::yes;
use crate::vocab::ReplaceDisksMode;
use serde::{Deserialize, Serialize};

/// Brings an instance's disks up on its nodes without starting it (Ganeti's
/// OpInstanceActivateDisks); DRBD disks connect and the primary side is promoted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceActivateDisks {
    pub instance_name: String,
    #[serde(default)]
    pub ignore_size: bool,
    #[serde(default)]
    pub wait_for_sync: bool,
    /// Maguey: a DRBD split brain is resolved in favour of the configured primary (the
    /// secondary's diverging writes are discarded, then it resyncs).
    #[serde(default)]
    pub resolve_split_brain: bool,
}

/// Shuts an instance's disks down on its nodes (Ganeti's OpInstanceDeactivateDisks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceDeactivateDisks {
    pub instance_name: String,
    #[serde(default)]
    pub force: bool,
}

/// Grows one disk (Ganeti's OpInstanceGrowDisk): storage on every node of the disk, DRBD,
/// then the running guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceGrowDisk {
    pub instance_name: String,
    /// Disk index.
    pub disk: usize,
    /// MiB to add, or the new size with `absolute`.
    pub amount: u64,
    #[serde(default)]
    pub absolute: bool,
    #[serde(default = "yes")]
    pub wait_for_sync: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_ipolicy: bool,
}

/// Replaces the storage under an instance's DRBD disks (Ganeti's OpInstanceReplaceDisks):
/// `replace_on_primary`, `replace_on_secondary`, `replace_new_secondary` (with
/// `remote_node` or `iallocator`) or `replace_auto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceReplaceDisks {
    pub instance_name: String,
    pub mode: ReplaceDisksMode,
    /// Disk indices; empty: all (for `replace_new_secondary` and `replace_auto`, always all).
    #[serde(default)]
    pub disks: Vec<usize>,
    #[serde(default)]
    pub remote_node: Option<String>,
    #[serde(default)]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub early_release: bool,
    #[serde(default)]
    pub ignore_ipolicy: bool,
    /// Maguey: accept a new secondary in the primary's room (failure domain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Creates an instance's missing disks again, empty, optionally on other nodes (Ganeti's
/// OpInstanceRecreateDisks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceRecreateDisks {
    pub instance_name: String,
    /// Disk indices; empty: all.
    #[serde(default)]
    pub disks: Vec<usize>,
    /// New nodes (primary first), or empty to keep the current ones.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub iallocator: Option<String>,
}
