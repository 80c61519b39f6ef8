//! Room evacuation records ([`Command::SetRoomEvacuation`](crate::Command)): validation and
//! mutation.

use crate::ConfigError;
use maguey_model::rooms::{validate_room, RoomEvacuation};
use maguey_model::ConfigData;

/// A record names a valid room and only known instances and nodes.
pub(crate) fn validate(
    state: &ConfigData,
    room: &str,
    record: Option<&RoomEvacuation>,
) -> Result<(), ConfigError> {
    validate_room(room).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let Some(r) = record else {
        return Ok(());
    };
    for (inst, node) in &r.origins {
        if !state.instances.contains_key(inst) {
            return Err(ConfigError::Invalid(format!(
                "room {room}: unknown instance uuid '{inst}'"
            )));
        }
        if !state.nodes.contains_key(node) {
            return Err(ConfigError::Invalid(format!(
                "room {room}: unknown node uuid '{node}'"
            )));
        }
    }
    Ok(())
}

/// Sets (or with `None` or an empty record, removes) the room's record.
pub(crate) fn mutate(state: &mut ConfigData, room: &str, record: Option<&RoomEvacuation>) {
    match record {
        Some(r) if !r.origins.is_empty() => {
            state.room_evacuations.insert(room.to_string(), r.clone());
        }
        _ => {
            state.room_evacuations.remove(room);
        }
    }
}

/// Drops the origins of a removed instance or node from every record.
pub(crate) fn forget(state: &mut ConfigData, uuid: &str) {
    for r in state.room_evacuations.values_mut() {
        r.origins.retain(|i, n| i != uuid && n != uuid);
    }
    state.room_evacuations.retain(|_, r| !r.origins.is_empty());
}
