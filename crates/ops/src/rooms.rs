//! Rooms (failure domains) as the units see them: which DRBD pairs sit inside one room,
//! whether a new secondary would, and the location tags that tell the placement engine
//! (and Ganeti's htools) about rooms. docs/rooms.md.

use maguey_model::rooms::{node_room, room_tag, rooms, same_room, ROOM_LOCATION_TAG};
use maguey_model::{ConfigData, Instance};

/// The cluster tag that makes the placement engine treat location tags as a hard
/// constraint (Maguey's; Ganeti's htools ignore it): a DRBD pair never inside one room.
pub use maguey_placement::model::TAG_HARD_LOCATION;

/// Whether the cluster has at least two rooms.
pub fn has_rooms(cfg: &ConfigData) -> bool {
    rooms(cfg).len() >= 2
}

/// The room tag of a node for the placement engine and htools, if it is in a room.
pub fn node_location_tag(cfg: &ConfigData, node_uuid: &str) -> Option<String> {
    node_room(cfg, node_uuid).map(room_tag)
}

/// The cluster tags a placement request carries: the cluster's own, plus Ganeti's location
/// declaration for rooms, plus (when `hard`) the hard-constraint tag.
pub fn request_cluster_tags(cfg: &ConfigData, hard: bool) -> Vec<String> {
    let mut tags = cfg.cluster.tags.clone();
    if !rooms(cfg).is_empty() && !tags.iter().any(|t| t == ROOM_LOCATION_TAG) {
        tags.push(ROOM_LOCATION_TAG.to_string());
    }
    if hard && has_rooms(cfg) {
        tags.push(TAG_HARD_LOCATION.to_string());
    }
    tags
}

/// A node's tags for a placement request: its own plus `room:NAME`.
pub fn request_node_tags(cfg: &ConfigData, node_uuid: &str) -> Vec<String> {
    let mut tags = cfg
        .nodes
        .get(node_uuid)
        .map(|n| n.tags.clone())
        .unwrap_or_default();
    if let Some(t) = node_location_tag(cfg, node_uuid) {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    tags
}

/// Whether instance `i`'s primary and a secondary share a room.
pub fn pair_in_one_room(cfg: &ConfigData, i: &Instance) -> bool {
    i.secondary_nodes()
        .iter()
        .any(|s| same_room(cfg, &i.primary_node, s))
}

/// One line per DRBD instance whose primary and secondary share a room (only the ones
/// using `node`, when given); empty when the cluster has fewer than two rooms.
pub fn same_room_pairs(cfg: &ConfigData, node: Option<&str>) -> Vec<String> {
    if !has_rooms(cfg) {
        return Vec::new();
    }
    cfg.instances
        .values()
        .filter(|i| node.is_none_or(|n| i.primary_node == n || i.secondary_nodes().contains(&n)))
        .filter(|i| pair_in_one_room(cfg, i))
        .map(|i| {
            format!(
                "instance {}: primary and secondary are both in room {} (losing the room loses it)",
                i.name,
                node_room(cfg, &i.primary_node).unwrap_or_default()
            )
        })
        .collect()
}

/// Refuses a new secondary `new_sec` for an instance whose primary is `primary` when both
/// are in one room and the cluster has another room, unless `force`.
pub fn check_secondary_room(
    cfg: &ConfigData,
    instance: &str,
    primary: &str,
    new_sec: &str,
    force: bool,
) -> Result<(), String> {
    if force || !has_rooms(cfg) || !same_room(cfg, primary, new_sec) {
        return Ok(());
    }
    let room = node_room(cfg, primary).unwrap_or_default();
    let name = |u: &str| cfg.nodes.get(u).map(|n| n.name.clone()).unwrap_or_default();
    Err(format!(
        "node {} is in room {room}, like instance {instance}'s primary {}: losing the room \
         would lose the instance (choose a node of another room, or use --force)",
        name(new_sec),
        name(primary)
    ))
}

/// Master candidates and rooms: warnings when the cluster has rooms but the master
/// candidates all sit in one of them (losing that room loses every copy of the config).
pub fn control_plane_warnings(cfg: &ConfigData) -> Vec<String> {
    if !has_rooms(cfg) {
        return Vec::new();
    }
    let mut cand_rooms: Vec<&str> = cfg
        .nodes
        .values()
        .filter(|n| n.master_candidate && !n.offline)
        .filter_map(|n| node_room(cfg, &n.uuid))
        .collect();
    cand_rooms.sort();
    cand_rooms.dedup();
    if cand_rooms.len() >= 2 {
        return Vec::new();
    }
    vec![format!(
        "the master candidates are all in {}: spread them over the rooms \
         (node modify --master-candidate yes NODE)",
        cand_rooms
            .first()
            .map(|r| format!("room {r}"))
            .unwrap_or_else(|| "no room".into())
    )]
}
