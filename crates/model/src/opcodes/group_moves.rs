//! Moving instances between node groups (Ganeti's OpInstanceChangeGroup and
//! OpGroupEvacuate). docs/groups.md.

use serde::{Deserialize, Serialize};

/// Moves an instance to another node group: the placement engine chooses the group (among
/// `target_groups`, or any other group; preferred before last_resort, never unallocable,
/// as hail does) and the nodes; the move is a child job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceChangeGroup {
    pub instance_name: String,
    /// Ganeti's field; Maguey's moves never keep two copies apart, so it changes nothing.
    #[serde(default)]
    pub early_release: bool,
    /// `hail` (or none): Maguey's placement engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iallocator: Option<String>,
    /// Group names (or uuids) the instance may go to; empty: any other group.
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// Only plan and report the move (Maguey).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Maguey, set by the plan in the child job of a `drbd` instance: the primary node of
    /// the new DRBD pair in the target group (no planning; the pair is built, the guest
    /// mirrored into it and migrated, the old pair removed). docs/groups.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    /// With `target_node`: the secondary node of the new DRBD pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_node: Option<String>,
}

/// Moves every instance whose primary node is in a group to other groups (one child job
/// per instance).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpGroupEvacuate {
    pub group_name: String,
    #[serde(default)]
    pub early_release: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// One move at a time (Maguey's default runs up to four at once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sequential: bool,
    /// Stop and restart the instances on their new nodes instead of migrating them live.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_failover: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}
