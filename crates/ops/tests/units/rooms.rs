//! Rooms (failure domains): node rooms, their location tags in allocator requests,
//! same-room refusals, and `room evacuate` / `return` / `failover` on the fake hypervisor.
//! The in-process nodes have no LVM or DRBD: `drbd` instances here are config records
//! (enough for the placement checks, which refuse before touching any node).

use crate::refused;
use maguey_config::Command;
use maguey_model::{DiskTemplate, Instance};
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::{json, Value};

/// Four nodes: node1 (the master) and node2 in room-a, node3 and node4 in room-b.
async fn two_rooms() -> InProcessCluster {
    let c = InProcessCluster::new(4).await;
    for (n, room) in [
        ("node1", "room-a"),
        ("node2", "room-a"),
        ("node3", "room-b"),
        ("node4", "room-b"),
    ] {
        c.run(json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": n, "room": room}))
            .await
            .ok();
    }
    c
}

fn uuid_of(c: &InProcessCluster, node: &str) -> String {
    c.config().node_by_name(node).expect("node").uuid.clone()
}

fn room_of(c: &InProcessCluster, node_uuid: &str) -> String {
    c.config().nodes[node_uuid].room.clone()
}

/// A `drbd` instance record between `p` and `s` (the config only; no storage exists).
fn add_drbd_record(c: &InProcessCluster, name: &str, p: &str, s: &str, port: u16) {
    let (pu, su) = (uuid_of(c, p), uuid_of(c, s));
    let lv = |n: &str| {
        json!({"uuid": maguey_model::new_uuid(), "dev_type": "plain", "size": 64,
        "mode": "rw", "logical_id": {"type": "plain", "vg": "xenvg", "lv": n}, "children": [],
        "nodes": [pu, su], "iv_name": "", "serial_no": 1, "ctime": 0.0, "mtime": 0.0})
    };
    let disk = json!({"uuid": maguey_model::new_uuid(), "dev_type": "drbd", "size": 64,
        "mode": "rw", "logical_id": {"type": "drbd", "node_a": pu, "node_b": su, "port": port,
        "minor_a": port - 11000, "minor_b": port - 11000, "secret": "s3cret"},
        "children": [lv(&format!("{name}_data")), lv(&format!("{name}_meta"))],
        "nodes": [pu, su], "iv_name": "disk/0", "serial_no": 1, "ctime": 0.0, "mtime": 0.0});
    let inst: Instance = serde_json::from_value(json!({
        "uuid": maguey_model::new_uuid(), "name": name, "primary_node": pu, "os": "debootstrap",
        "hypervisor": "fake", "admin_state": "up", "disk_template": "drbd", "beparams": {},
        "hvparams": {}, "osparams": {}, "disks": [disk], "nics": [], "tags": [],
        "serial_no": 1, "ctime": 0.0, "mtime": 0.0,
    }))
    .expect("an instance");
    c.apply(Command::AddInstance { instance: inst })
        .expect("the drbd record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rooms_are_set_listed_and_exported_as_location_tags() {
    let c = two_rooms().await;
    assert_eq!(room_of(&c, &uuid_of(&c, "node2")), "room-a");
    assert_eq!(room_of(&c, &uuid_of(&c, "node4")), "room-b");
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "room": "a:b"}),
        "invalid room name",
    )
    .await;
    // The node list has the column.
    let q = maguey_ops::query::query(
        &c.master,
        &maguey_ops::query::QueryRequest {
            what: maguey_ops::query::Resource::Node,
            names: vec!["node3".into()],
            fields: vec!["name".into(), "room".into()],
        },
    )
    .await
    .expect("a query");
    assert_eq!(q.rows, vec![vec![json!("node3"), json!("room-b")]]);
    // Ganeti's location tags in the allocator's request, and Maguey's hard constraint.
    let cfg = c.config();
    let req = maguey_ops::iallocator::cluster_request(&c.master, &cfg, DiskTemplate::File).await;
    let tags: Vec<String> = serde_json::from_value(req["cluster_tags"].clone()).unwrap();
    assert!(
        tags.contains(&"htools:nlocation:room".to_string()),
        "{tags:?}"
    );
    assert!(tags.contains(&maguey_ops::rooms::TAG_HARD_LOCATION.to_string()));
    assert_eq!(req["nodes"]["node3"]["tags"], json!(["room:room-b"]));
    // And back: the room read from the tags.
    let nt: Vec<String> = serde_json::from_value(req["nodes"]["node1"]["tags"].clone()).unwrap();
    assert_eq!(
        maguey_model::rooms::room_from_tags(&tags, &nt),
        Some("room-a")
    );
    // Out of its room: the empty name.
    c.run(json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node4", "room": ""}))
        .await
        .ok();
    assert_eq!(room_of(&c, &uuid_of(&c, "node4")), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_room_secondary_is_refused_unless_forced_and_verify_warns() {
    let c = two_rooms().await;
    add_drbd_record(&c, "mirror1", "node1", "node3", 11001);
    add_drbd_record(&c, "mirror2", "node2", "node1", 11002);
    // replace-disks -n: node2 is in node1's room.
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": "mirror1",
               "mode": "replace_new_secondary", "remote_node": "node2"}),
        "is in room room-a, like instance mirror1's primary node1",
    )
    .await;
    // With --force the room check passes (the job then fails on these LVM-less nodes).
    let r = c
        .run(
            json!({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": "mirror1",
                    "mode": "replace_new_secondary", "remote_node": "node2", "force": true}),
        )
        .await;
    if let Err(maguey_jobs::OpError::Prereq(m)) = &r.result {
        assert!(!m.contains("room"), "{m}");
    }
    // node evacuate -n to a node of the primaries' room.
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node3", "mode": "secondary-only",
               "remote_node": "node2"}),
        "is in room room-a",
    )
    .await;
    // cluster verify: mirror2's two nodes share room-a.
    let v = c.run(json!({"OP_ID": "OP_CLUSTER_VERIFY"})).await;
    let w = v.log.join("\n");
    assert!(
        w.contains("mirror2: primary and secondary are both in room room-a"),
        "{w}"
    );
    assert!(!w.contains("mirror1: primary and secondary"), "{w}");
}

/// file instances on node1 and node2 (room-a), one sharedfile on node2, one file on node3.
async fn with_instances(c: &InProcessCluster) {
    c.create_instance("web1", "file", "node1").await;
    c.create_instance("web2", "file", "node2").await;
    c.create_instance("db1", "sharedfile", "node2").await;
    c.create_instance("other", "file", "node3").await;
}

fn placement(c: &InProcessCluster) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ["web1", "web2", "db1", "other"]
        .iter()
        .map(|i| (i.to_string(), c.primary_of(i)))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_evacuate_dry_run_plans_and_changes_nothing() {
    let c = two_rooms().await;
    with_instances(&c).await;
    let before = placement(&c);
    let jobs = c.jobs().len();
    let serial = c.serial();
    let r = c
        .run(json!({"OP_ID": "OP_ROOM_EVACUATE", "room": "room-a", "dry_run": true}))
        .await;
    let log = r.log.join("\n");
    let v = r.ok();
    assert_eq!(placement(&c), before);
    assert_eq!(c.jobs().len(), jobs + 1, "a dry run submits no child job");
    assert_eq!(c.serial(), serial);
    let moves = v["moves"].as_array().expect("moves").clone();
    assert_eq!(moves.len(), 3, "{v}");
    for m in &moves {
        let what = m[1].as_str().unwrap_or_default();
        assert!(what.contains("node3") || what.contains("node4"), "{what}");
    }
    assert!(
        log.contains("the master node node1 is in room room-a"),
        "{log}"
    );
    refused(
        &c,
        json!({"OP_ID": "OP_ROOM_EVACUATE", "room": "room-z"}),
        "no node is in room 'room-z'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_evacuate_moves_every_instance_out_live_and_return_brings_them_back() {
    let c = two_rooms().await;
    with_instances(&c).await;
    let before = placement(&c);
    let r = c
        .run(json!({"OP_ID": "OP_ROOM_EVACUATE", "room": "room-a"}))
        .await;
    let log = r.log.join("\n");
    r.ok();
    for i in ["web1", "web2", "db1"] {
        let p = c.primary_of(i);
        assert!(p == "node3" || p == "node4", "{i} on {p}\n{log}");
        assert!(c.node(&p).running().contains(&i.to_string()), "{i}");
        assert_eq!(c.instance(i).unwrap()["admin_state"], json!("up"));
    }
    assert!(c.node("node1").running().is_empty() && c.node("node2").running().is_empty());
    assert!(log.contains("[3/3]"), "{log}");
    assert!(log.contains("3 left the room, 0 failed"), "{log}");
    // The children were live migrations.
    let children: Vec<String> = c
        .jobs()
        .iter()
        .flat_map(|j| j.ops.iter().map(|o| o.op_id().to_string()))
        .filter(|id| id == "OP_INSTANCE_MIGRATE")
        .collect();
    assert_eq!(children.len(), 3);
    let rec = c.config().room_evacuations["room-a"].clone();
    assert_eq!(rec.origins.len(), 3);

    c.run(json!({"OP_ID": "OP_ROOM_RETURN", "room": "room-a"}))
        .await
        .ok();
    assert_eq!(placement(&c), before);
    assert_eq!(c.node("node1").running(), ["web1"]);
    assert_eq!(c.node("node2").running(), ["db1", "web2"]);
    assert!(!c.config().room_evacuations.contains_key("room-a"));
    refused(
        &c,
        json!({"OP_ID": "OP_ROOM_RETURN", "room": "room-a"}),
        "nothing to return to room room-a",
    )
    .await;
}

/// A stale run file of `instance` on `node`: the fake hypervisor then refuses to accept
/// the instance there (as a target that already runs it would).
fn block_target(c: &InProcessCluster, node: &str, instance: &str) {
    let path = c
        .node(node)
        .dir
        .join("run")
        .join("fake")
        .join(format!("{instance}.json"));
    let rf = json!({"name": instance, "uuid": "stale", "memory": 1, "vcpus": 1, "started": 0.0});
    std::fs::write(path, rf.to_string()).expect("a stale run file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_leaves_that_instance_running_and_the_others_going() {
    let c = two_rooms().await;
    with_instances(&c).await;
    // web2 cannot land anywhere in room-b.
    block_target(&c, "node3", "web2");
    block_target(&c, "node4", "web2");
    let r = c
        .run(json!({"OP_ID": "OP_ROOM_EVACUATE", "room": "room-a", "max_parallel": 1}))
        .await;
    let log = r.log.join("\n");
    let msg = r.failed();
    assert!(msg.contains("1 of 3 moves failed: web2"), "{msg}");
    assert!(log.contains("web2: FAILED"), "{log}");
    assert!(log.contains("2 left the room, 1 failed"), "{log}");
    // The others left; web2 still runs where it was, config and node agreeing.
    for i in ["web1", "db1"] {
        let p = c.primary_of(i);
        assert!(p == "node3" || p == "node4", "{i} on {p}");
    }
    assert_eq!(c.primary_of("web2"), "node2");
    assert_eq!(c.node("node2").running(), ["web2"]);
    assert_eq!(c.instance("web2").unwrap()["admin_state"], json!("up"));
    assert!(c.node("node2").files().iter().any(|f| f.contains("web2")));
    // Only the instances that left are recorded.
    let rec = c.config().room_evacuations["room-a"].clone();
    let web2 = c.instance("web2").unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rec.origins.len(), 2);
    assert!(!rec.origins.contains_key(&web2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_failover_restarts_instances_outside_the_dark_room_and_return_brings_them_back() {
    let c = two_rooms().await;
    c.create_instance("db1", "sharedfile", "node2").await;
    c.create_instance("db2", "sharedfile", "node2").await;
    c.create_instance("web2", "file", "node2").await;
    let r = c
        .run(json!({"OP_ID": "OP_ROOM_FAILOVER", "room": "room-a"}))
        .await;
    let log = r.log.join("\n");
    let v: Value = r.ok();
    assert!(
        log.contains("the master node node1 is in room room-a"),
        "{log}"
    );
    // node2 is offline (the master stays as it is); the sharedfile instances run in room-b.
    let cfg = c.config();
    assert!(cfg.node_by_name("node2").unwrap().offline);
    assert!(!cfg.node_by_name("node1").unwrap().offline);
    for i in ["db1", "db2"] {
        let p = c.primary_of(i);
        assert!(p == "node3" || p == "node4", "{i} on {p}\n{log}");
        assert!(c.node(&p).running().contains(&i.to_string()));
    }
    assert_ne!(
        c.primary_of("db1"),
        c.primary_of("db2"),
        "spread over room-b"
    );
    // The file instance's disk is in the dark room: it stays, reported.
    assert_eq!(c.primary_of("web2"), "node2");
    assert!(v["stuck"].to_string().contains("web2"), "{v}");
    assert_eq!(
        cfg.room_evacuations["room-a"].kind,
        maguey_model::rooms::RoomEvacKind::Failover
    );
    // The room comes back without power: nothing runs on node2 any more.
    for f in std::fs::read_dir(c.node("node2").dir.join("run").join("fake")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let r = c
        .run(json!({"OP_ID": "OP_ROOM_RETURN", "room": "room-a", "dry_run": true}))
        .await
        .ok();
    assert!(r["stuck"].to_string().contains("is offline"), "{r}");
    c.run(json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "offline": false}))
        .await
        .ok();
    c.run(json!({"OP_ID": "OP_ROOM_RETURN", "room": "room-a"}))
        .await
        .ok();
    assert_eq!(c.primary_of("db1"), "node2");
    assert_eq!(c.primary_of("db2"), "node2");
    assert_eq!(c.node("node2").running(), ["db1", "db2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocator_pairs_across_rooms_and_falls_back_to_one_room() {
    let c = two_rooms().await;
    add_drbd_record(&c, "template", "node1", "node3", 11001);
    let mut inst = c
        .config()
        .instance_by_name("template")
        .expect("the record")
        .clone();
    inst.name = "new1".into();
    inst.primary_node = String::new();
    inst.disks.clear();
    for _ in 0..5 {
        let nodes = maguey_ops::iallocator::allocate(&c.master, &c.config(), &inst)
            .await
            .expect("an allocation");
        let cfg = c.config();
        let rooms: Vec<&str> = nodes
            .iter()
            .map(|n| cfg.node_by_name(n).expect("a node").room.as_str())
            .collect();
        assert_eq!(rooms.len(), 2);
        assert_ne!(rooms[0], rooms[1], "{nodes:?}");
    }
    // Room-b is gone: a pair inside room-a is better than none.
    for n in ["node3", "node4"] {
        c.run(
            json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": n, "offline": true,
                     "force": true}),
        )
        .await
        .ok();
    }
    let nodes = maguey_ops::iallocator::allocate(&c.master, &c.config(), &inst)
        .await
        .expect("an allocation inside one room");
    let mut nodes = nodes.clone();
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_evacuation_keeps_pairs_across_rooms_unless_forced() {
    // node1 (master) in room-a; node2 and node3 in room-b; mirror on node2 + node1.
    let c = InProcessCluster::new(3).await;
    for (n, room) in [
        ("node1", "room-a"),
        ("node2", "room-b"),
        ("node3", "room-b"),
    ] {
        c.run(json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": n, "room": room}))
            .await
            .ok();
    }
    add_drbd_record(&c, "mirror", "node2", "node1", 11003);
    // The only other node is in the primary's room.
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node1", "mode": "secondary-only"}),
        "cannot move every instance off node1",
    )
    .await;
    // Forced, the plan takes node3 (the job then fails on these LVM-less nodes).
    let r = c
        .run(json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node1",
                    "mode": "secondary-only", "force": true}))
        .await;
    let log = r.log.join("\n");
    assert!(log.contains("plan: mirror → node2, node3"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_with_local_disks_is_copied_out_and_back() {
    let c = two_rooms().await;
    c.create_instance("cold", "file", "node2").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "cold"}))
        .await
        .ok();
    let r = c
        .run(json!({"OP_ID": "OP_ROOM_EVACUATE", "room": "room-a"}))
        .await;
    let log = r.log.join("\n");
    r.ok();
    assert!(log.contains("cold: stopped: disks copied to node"), "{log}");
    let p = c.primary_of("cold");
    assert!(p == "node3" || p == "node4", "{p}");
    assert!(c.node(&p).files().iter().any(|f| f.contains("cold")));
    assert_eq!(c.instance("cold").unwrap()["admin_state"], json!("down"));
    c.run(json!({"OP_ID": "OP_ROOM_RETURN", "room": "room-a"}))
        .await
        .ok();
    assert_eq!(c.primary_of("cold"), "node2");
    assert!(c.node("node2").files().iter().any(|f| f.contains("cold")));
}
