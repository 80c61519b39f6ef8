//! Rooms through the CLI and real daemons: `node modify --room`, the `room` column, `room
//! list`, `room evacuate` (dry run, then live) and `room return`, and the refusals.

mod common;
use common::*;

fn rooms_of(lab: &TestLab) -> Vec<(String, String)> {
    let r = lab
        .maguey(&["node", "list", "-o", "name,room", "--output", "json"])
        .ok();
    r.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["room"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn rooms_are_listed_evacuated_and_returned() {
    let lab = lab(4);
    // Bad input is refused before anything is sent.
    let r = lab.maguey(&["node", "add", "node9", "-a", "127.0.0.9", "--room", "a:b"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid room name"), "{}", r.stderr);
    let r = lab.maguey(&["room", "failover", "room-a"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--yes-do-it"), "{}", r.stderr);

    for (n, room) in [
        ("node1", "room-a"),
        ("node2", "room-a"),
        ("node3", "room-b"),
        ("node4", "room-b"),
    ] {
        lab.maguey(&["node", "modify", "--room", room, n]).ok();
    }
    assert_eq!(
        rooms_of(&lab),
        [
            ("node1".to_string(), "room-a".to_string()),
            ("node2".into(), "room-a".into()),
            ("node3".into(), "room-b".into()),
            ("node4".into(), "room-b".into()),
        ]
    );
    let table = lab.maguey(&["node", "list"]).ok().stdout;
    assert!(
        table.lines().next().unwrap_or_default().contains("room"),
        "{table}"
    );

    for (i, node) in [("web1", "node1"), ("web2", "node2"), ("api1", "node3")] {
        lab.maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=16M",
            "-o",
            "noop",
            "-n",
            node,
            i,
        ])
        .ok();
    }
    let list = lab.maguey(&["room", "list"]).ok().stdout;
    let line = |room: &str| {
        list.lines()
            .find(|l| l.starts_with(room))
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(line("room-a")[1..3], ["2", "2"], "{list}");
    assert_eq!(line("room-b")[1..3], ["2", "1"], "{list}");

    // The plan: nothing moves.
    let r = lab
        .maguey(&["room", "evacuate", "--dry-run", "room-a"])
        .ok();
    assert!(
        r.stdout.contains("plan: web1: live migration to node"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("master node node1 is in room room-a"),
        "{}",
        r.stdout
    );
    assert_eq!(pnode(&lab, "web1"), "node1");

    let r = lab.maguey(&["room", "evacuate", "room-a"]).ok();
    assert!(r.stdout.contains("[2/2]"), "{}", r.stdout);
    for i in ["web1", "web2"] {
        let p = pnode(&lab, i);
        assert!(p == "node3" || p == "node4", "{i} on {p}");
        assert_eq!(status(&lab, i), "running");
    }
    lab.maguey(&["room", "return", "room-a"]).ok();
    assert_eq!(pnode(&lab, "web1"), "node1");
    assert_eq!(pnode(&lab, "web2"), "node2");
    assert_eq!(status(&lab, "web2"), "running");
    // Nothing left to return.
    let r = lab.maguey(&["room", "return", "room-a"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("nothing to return") || r.stderr.contains("nothing to return"));
}
