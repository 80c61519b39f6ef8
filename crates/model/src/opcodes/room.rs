//! Room opcodes (Maguey's; Ganeti has no rooms): move every instance out of a room and
//! back. docs/rooms.md.

use super::default_max_parallel;
use serde::{Deserialize, Serialize};

/// Every instance whose primary node is in the room leaves it live (`drbd`: migrates to
/// its secondary in another room; other templates: live migration to nodes of other
/// rooms, as the placement engine plans). Each move is a child job; a failed move leaves
/// the others going. The origins are recorded for [`OpRoomReturn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRoomEvacuate {
    pub room: String,
    /// Only plan and report the moves.
    #[serde(default)]
    pub dry_run: bool,
    /// At most this many moves at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
}

/// Moves the instances that `room evacuate` or `room failover` took out of the room back
/// to their nodes there, live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRoomReturn {
    pub room: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
}

/// The room went dark (the admin says so): its nodes are marked offline and every
/// instance whose primary is there starts on its secondary in another room
/// (`ignore_consistency`), or, for shared storage, on a node of another room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRoomFailover {
    pub room: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
}
