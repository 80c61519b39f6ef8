//! Room evacuation records and node rooms in the state machine.

mod common;

use common::*;
use maguey_config::{apply, Command};
use maguey_model::rooms::{RoomEvacKind, RoomEvacuation};

fn record(inst: &str, node: &str) -> RoomEvacuation {
    RoomEvacuation {
        kind: RoomEvacKind::Evacuate,
        origins: [(inst.to_string(), node.to_string())].into(),
        ctime: ts(5),
    }
}

#[test]
fn room_records_are_checked_set_and_forgotten() {
    let mut s = build(&[init(), add_instance(1, MASTER_UUID)]);
    let inst = instance(1, MASTER_UUID).uuid;
    let set = |r: Option<RoomEvacuation>| Command::SetRoomEvacuation {
        room: "room-a".into(),
        record: r,
    };
    // Unknown objects and bad room names are refused, the state unchanged.
    let before = s.clone();
    for (cmd, needle) in [
        (set(Some(record("nosuch", MASTER_UUID))), "unknown instance"),
        (set(Some(record(&inst, "nosuch"))), "unknown node"),
        (
            Command::SetRoomEvacuation {
                room: "a b".into(),
                record: None,
            },
            "invalid room name",
        ),
    ] {
        let e = apply(&mut s, ts(9), &cmd).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
        assert_eq!(s, before);
    }
    apply(&mut s, ts(10), &set(Some(record(&inst, MASTER_UUID)))).unwrap();
    assert_eq!(s.room_evacuations["room-a"].origins[&inst], MASTER_UUID);
    // Removing the instance forgets it (and the then empty record).
    apply(&mut s, ts(11), &Command::RemoveInstance { uuid: inst }).unwrap();
    assert!(s.room_evacuations.is_empty());
    // A node's room must be a valid name.
    let mut n = s.nodes[MASTER_UUID].clone();
    n.room = "room:x".into();
    let e = apply(&mut s, ts(12), &Command::UpdateNode { node: n.clone() }).unwrap_err();
    assert!(e.to_string().contains("invalid room name"), "{e}");
    n.room = "room-a".into();
    apply(&mut s, ts(13), &Command::UpdateNode { node: n }).unwrap();
    assert_eq!(s.nodes[MASTER_UUID].room, "room-a");
}
