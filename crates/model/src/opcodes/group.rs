//! Node group opcodes (Ganeti's OpGroup*).

use crate::ipolicy::IPolicyChange;
use crate::params::Params;
use crate::vocab::AllocPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroupAdd {
    pub group_name: String,
    #[serde(default)]
    pub alloc_policy: Option<AllocPolicy>,
    #[serde(default)]
    pub ndparams: Params,
    /// Per disk template.
    #[serde(default)]
    pub diskparams: BTreeMap<String, Params>,
    #[serde(default)]
    pub ipolicy: IPolicyChange,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroupSetParams {
    pub group_name: String,
    #[serde(default)]
    pub alloc_policy: Option<AllocPolicy>,
    /// Keys set to `default` are removed (inherit from the cluster).
    #[serde(default)]
    pub ndparams: Option<Params>,
    #[serde(default)]
    pub diskparams: Option<BTreeMap<String, Params>>,
    #[serde(default)]
    pub ipolicy: Option<IPolicyChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroupRemove {
    pub group_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroupRename {
    pub group_name: String,
    pub new_name: String,
}

/// Moves nodes into a group; refused when it would split a DRBD instance between groups,
/// unless `force`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroupAssignNodes {
    pub group_name: String,
    #[serde(default)]
    pub force: bool,
    pub nodes: Vec<String>,
}
