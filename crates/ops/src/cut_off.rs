//! Nodes cut off by `cluster force-single` (docs/replication.md): until an admin confirms
//! such a node is off, its instances may still run there, so none of them is failed over,
//! migrated, moved or started elsewhere.

use crate::prereq;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Instance};

/// Refuses to act on `inst` when its primary node was cut off and is not confirmed off.
pub fn check(cfg: &ConfigData, inst: &Instance) -> Result<(), OpError> {
    if !cfg.cluster.cut_off_nodes.contains(&inst.primary_node) {
        return Ok(());
    }
    let node = cfg
        .nodes
        .get(&inst.primary_node)
        .map_or(inst.primary_node.as_str(), |n| n.name.as_str());
    Err(prereq(format!(
        "instance {}'s primary node {node} was cut off by `cluster force-single` and may \
         still run it; if {node} is off, confirm it with `maguey cluster force-single \
         --confirm-off {node}`",
        inst.name
    )))
}
