//! Rooms: failure domains (a server room, a site). A node is in at most one room
//! ([`crate::Node::room`], empty = none). To the placement engine and to Ganeti's htools
//! a room is a location tag: the cluster tag [`ROOM_LOCATION_TAG`] makes every node tag
//! `room:NAME` a location.

use crate::ConfigData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// How a room's instances left it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEvacKind {
    /// `room evacuate`: live, the room stays up.
    #[default]
    Evacuate,
    /// `room failover`: the room went dark, its nodes were marked offline.
    Failover,
}

impl RoomEvacKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomEvacKind::Evacuate => "evacuate",
            RoomEvacKind::Failover => "failover",
        }
    }
}

/// Where the instances that left a room came from: what `room return` reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomEvacuation {
    #[serde(default)]
    pub kind: RoomEvacKind,
    /// Instance uuid → uuid of the primary node it had in the room.
    #[serde(default)]
    pub origins: BTreeMap<String, String>,
    /// When the first instance left.
    #[serde(default)]
    pub ctime: f64,
}

/// The cluster tag that declares `room:` node tags as htools location tags.
pub const ROOM_LOCATION_TAG: &str = "htools:nlocation:room";
/// The prefix of a node's room tag (`room:NAME`).
pub const ROOM_TAG_PREFIX: &str = "room:";

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid room name '{name}': {why}")]
pub struct RoomError {
    pub name: String,
    pub why: &'static str,
}

/// A room name: 1 to 63 letters, digits, '-', '_' or '.' (it becomes a tag and a word
/// in htools' text files, so no ':', '|', ',' or spaces).
pub fn validate_room(name: &str) -> Result<(), RoomError> {
    let bad = |why| {
        Err(RoomError {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 63 {
        return bad("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return bad("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// The room tag of a node in room `room` (`room:NAME`).
pub fn room_tag(room: &str) -> String {
    format!("{ROOM_TAG_PREFIX}{room}")
}

/// The room named by a node's tags (`room:NAME`), when the cluster tags declare rooms as
/// locations (how rooms come back from htools files and iallocator requests).
pub fn room_from_tags<'a>(cluster_tags: &[String], node_tags: &'a [String]) -> Option<&'a str> {
    if !cluster_tags.iter().any(|t| t == ROOM_LOCATION_TAG) {
        return None;
    }
    node_tags
        .iter()
        .find_map(|t| t.strip_prefix(ROOM_TAG_PREFIX))
        .filter(|r| validate_room(r).is_ok())
}

/// The room of a node (by uuid); `None` for no room or an unknown node.
pub fn node_room<'a>(cfg: &'a ConfigData, node_uuid: &str) -> Option<&'a str> {
    cfg.nodes
        .get(node_uuid)
        .map(|n| n.room.as_str())
        .filter(|r| !r.is_empty())
}

/// The rooms of the cluster and the uuids of their nodes, by room name.
pub fn rooms(cfg: &ConfigData) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in cfg.nodes.values().filter(|n| !n.room.is_empty()) {
        m.entry(n.room.clone()).or_default().push(n.uuid.clone());
    }
    m
}

/// Whether two nodes are in the same (named) room.
pub fn same_room(cfg: &ConfigData, a: &str, b: &str) -> bool {
    matches!((node_room(cfg, a), node_room(cfg, b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(validate_room("room-a").is_ok());
        assert!(validate_room("site_2.east").is_ok());
        assert!(validate_room("").is_err());
        assert!(validate_room("a:b").is_err());
        assert!(validate_room("a b").is_err());
        assert!(validate_room(&"x".repeat(64)).is_err());
    }

    #[test]
    fn rooms_read_back_from_tags() {
        let ct = vec![ROOM_LOCATION_TAG.to_string()];
        let nt = vec!["other".to_string(), room_tag("room-b")];
        assert_eq!(room_from_tags(&ct, &nt), Some("room-b"));
        assert_eq!(room_from_tags(&[], &nt), None);
        assert_eq!(room_from_tags(&ct, &["x".to_string()]), None);
    }
}
