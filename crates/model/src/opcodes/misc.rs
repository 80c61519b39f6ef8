//! Tags and test opcodes.

use super::yes;
use crate::vocab::TagKind;
use serde::{Deserialize, Serialize};

/// Adds tags to the cluster (`kind` = `cluster`, no name) or to a node, instance or node
/// group (Ganeti's OpTagsSet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTagsSet {
    pub kind: TagKind,
    #[serde(default)]
    pub name: Option<String>,
    pub tags: Vec<String>,
}

/// Removes tags (Ganeti's OpTagsDel); every tag must be present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTagsDel {
    pub kind: TagKind,
    #[serde(default)]
    pub name: Option<String>,
    pub tags: Vec<String>,
}

/// Sleeps on the master and/or nodes; used to test the job queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTestDelay {
    pub duration: f64,
    #[serde(default = "yes")]
    pub on_master: bool,
    #[serde(default)]
    pub on_nodes: Vec<String>,
    #[serde(default)]
    pub repeat: u32,
    /// When set, the opcode fails after sleeping (Ganeti's `fail`).
    #[serde(default)]
    pub fail: bool,
}
