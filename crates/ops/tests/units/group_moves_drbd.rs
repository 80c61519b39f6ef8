//! `drbd` instances between node groups: the plan names a new DRBD pair in the target group
//! and runs a child OP_INSTANCE_CHANGE_GROUP naming it; the child's checks and locks; a
//! failure while the new pair is built leaves nothing behind (config, nodes, reservations).
//! In-process nodes have no DRBD: the move itself runs in the node-VM test
//! (crates/lab/tests/vm_groups.rs).

use crate::refused;
use maguey_config::Command;
use maguey_model::Instance;
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::{json, Value};

async fn group_with(c: &InProcessCluster, name: &str, policy: &str, nodes: &[&str]) {
    c.run(json!({"OP_ID": "OP_GROUP_ADD", "group_name": name, "alloc_policy": policy}))
        .await
        .ok();
    c.run(json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": name, "nodes": nodes}))
        .await
        .ok();
}

/// A `drbd` instance record between `p` and `s` with `state`, port 11000 + `n` and minors
/// `n` (config only: in-process nodes have no DRBD).
fn add_drbd_record(c: &InProcessCluster, name: &str, p: &str, s: &str, state: &str, n: u32) {
    let cfg = c.config();
    let pu = cfg.node_by_name(p).expect("p").uuid.clone();
    let su = cfg.node_by_name(s).expect("s").uuid.clone();
    let duuid = maguey_model::new_uuid();
    let lv = |suffix: &str, size: u64| {
        json!({"uuid": maguey_model::new_uuid(), "dev_type": "plain", "size": size,
            "mode": "rw", "logical_id": {"type": "plain", "vg": "xenvg",
            "lv": format!("{duuid}.disk0_{suffix}")}, "children": [], "nodes": [pu],
            "iv_name": "disk/0", "serial_no": 1, "ctime": 0.0, "mtime": 0.0})
    };
    let disk = json!({"uuid": duuid, "dev_type": "drbd", "size": 64,
        "mode": "rw", "logical_id": {"type": "drbd", "node_a": pu, "node_b": su, "port": 11000 + n,
        "minor_a": n, "minor_b": n, "secret": "s3cret"},
        "children": [lv("data", 64), lv("meta", 128)],
        "nodes": [pu, su], "iv_name": "disk/0", "serial_no": 1, "ctime": 0.0, "mtime": 0.0});
    let inst: Instance = serde_json::from_value(json!({
        "uuid": maguey_model::new_uuid(), "name": name, "primary_node": pu,
        "os": maguey_test_infra::inprocess::TEST_OS, "hypervisor": "fake",
        "admin_state": state, "disk_template": "drbd", "beparams": {}, "hvparams": {},
        "osparams": {}, "disks": [disk], "nics": [], "tags": [], "serial_no": 1,
        "ctime": 0.0, "mtime": 0.0,
    }))
    .expect("an instance");
    c.apply(Command::AddInstance { instance: inst })
        .expect("the drbd record");
}

/// node1, node2 in `default` with `mirror1` (drbd, stopped) and `live1` (drbd, admin up
/// but not running: in-process nodes cannot run it); node3, node4 in `rack2`; node5 alone
/// in `solo`.
async fn cluster() -> InProcessCluster {
    let c = InProcessCluster::new(5).await;
    group_with(&c, "rack2", "preferred", &["node3", "node4"]).await;
    group_with(&c, "solo", "last_resort", &["node5"]).await;
    add_drbd_record(&c, "mirror1", "node1", "node2", "down", 0);
    add_drbd_record(&c, "live1", "node2", "node1", "up", 1);
    c
}

fn pair_op(inst: &str, p: &str, s: &str) -> Value {
    json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": inst,
           "target_node": p, "remote_node": s})
}

fn disks_of(c: &InProcessCluster, inst: &str) -> Value {
    c.instance(inst).expect("instance")["disks"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_names_a_new_pair_in_the_target_group() {
    let c = cluster().await;
    let (serial, jobs) = (c.serial(), c.jobs().len());
    let r = c
        .run(json!({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "default", "dry_run": true}))
        .await;
    let log = r.log.join("\n");
    let v = r.ok();
    assert_eq!((c.serial(), c.jobs().len()), (serial, jobs + 1), "{log}");
    let moves = v["moves"].as_array().cloned().unwrap_or_default();
    assert_eq!(moves.len(), 2, "{v}\n{log}");
    for m in &moves {
        let what = m[1].as_str().unwrap_or_default();
        // Both nodes of the pair in rack2 (the preferred group; `solo` has one node).
        assert!(
            (what.starts_with("new DRBD pair on node3 and node4")
                || what.starts_with("new DRBD pair on node4 and node3"))
                && what.contains("(group rack2)"),
            "{v}"
        );
    }
    assert!(
        log.contains("plan: mirror1: new DRBD pair on") && log.contains("stopped: disks copied"),
        "{log}"
    );
    assert!(
        log.contains("plan: live1: new DRBD pair on")
            && log.contains("disks mirrored live, then memory"),
        "{log}"
    );
    // Only to `solo` (one node): no pair fits, nothing moves.
    let msg = refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "mirror1",
               "target_groups": ["solo"]}),
        "not every instance can change group, nothing moved: mirror1",
    )
    .await;
    assert!(!msg.contains("not supported"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pair_move_checks_its_nodes_before_anything() {
    let c = cluster().await;
    c.create_instance("web1", "file", "node1").await;
    for (op, needle) in [
        (
            pair_op("mirror1", "node1", "node3"),
            "node node1 already holds instance mirror1's disks",
        ),
        (
            pair_op("mirror1", "node3", "node3"),
            "the new pair needs two nodes, got node3 twice",
        ),
        (
            pair_op("mirror1", "node3", "node5"),
            "nodes node3 and node5 are in different groups",
        ),
        (
            pair_op("web1", "node3", "node4"),
            "a new pair is only built for drbd instances",
        ),
        (pair_op("mirror1", "node3", "nowhere"), "nowhere"),
        (
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "mirror1",
                   "target_node": "node3"}),
            "target_node and remote_node (a new DRBD pair) go together",
        ),
        (
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "mirror1",
                   "target_node": "node3", "remote_node": "node4", "dry_run": true}),
            "no dry run",
        ),
        // Admin up but not running on its primary: not moved behind the admin's back.
        (
            pair_op("live1", "node3", "node4"),
            "instance live1 should run but does not run on node2",
        ),
    ] {
        refused(&c, op, needle).await;
    }
    // A pair inside the instance's own group.
    c.run(
        json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "default",
                 "nodes": ["node3", "node4"]}),
    )
    .await
    .ok();
    refused(
        &c,
        pair_op("mirror1", "node3", "node4"),
        "node node3 is in the group instance mirror1 is in already",
    )
    .await;
    // The target group's policy holds.
    let c = cluster().await;
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "rack2",
                 "ipolicy": {"disk-templates": ["plain"]}}),
    )
    .await
    .ok();
    refused(&c, pair_op("mirror1", "node3", "node4"), "mirror1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_while_the_new_pair_is_built_leaves_nothing_behind() {
    let c = cluster().await;
    let (serial, disks, before) = (c.serial(), disks_of(&c, "mirror1"), c.node_states());
    // In-process nodes have no LVM: the new secondary's first LV fails.
    let r = c.run(pair_op("mirror1", "node3", "node4")).await;
    let log = r.log.join("\n");
    let msg = r.failed();
    assert!(
        msg.contains("node3") || log.contains("node3"),
        "{msg}\n{log}"
    );
    assert!(
        log.contains("disk disk/0: new DRBD pair, port 11002, minor 0 on node3 and 0 on node4"),
        "{log}"
    );
    assert!(
        log.contains("creating disk disk/0 (64 MiB) on node node4"),
        "{log}"
    );
    assert!(
        log.contains("undoing: removing the disks on node node4"),
        "{log}"
    );
    assert!(
        log.contains("instance mirror1 stays on its old pair node1/node2"),
        "{log}"
    );
    // Nothing changed: the instance's disks (the move's record, written before the new pair
    // was built, cleared again), every node.
    assert_eq!(c.serial(), serial + 2, "{log}");
    assert_eq!(disks_of(&c, "mirror1"), disks);
    assert!(c
        .instance("mirror1")
        .expect("mirror1")
        .get("pending_move")
        .is_none());
    assert_eq!(c.primary_of("mirror1"), "node1");
    assert_eq!(c.node_states(), before);
    // The ports and minors were given back: a second attempt gets the same ones.
    let r = c.run(pair_op("mirror1", "node3", "node4")).await;
    let log = r.log.join("\n");
    r.failed();
    assert!(
        log.contains("port 11002, minor 0 on node3 and 0 on node4"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_evacuate_runs_one_pair_move_per_drbd_instance_and_reports_failures() {
    let c = cluster().await;
    // live1 cannot run in process: the evacuation of mirror1 alone, through its group.
    c.run(
        json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "live1",
                 "ignore_failures": true}),
    )
    .await;
    let serial = c.serial();
    let r = c
        .run(
            json!({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "default",
                    "target_groups": ["rack2"]}),
        )
        .await;
    let log = r.log.join("\n");
    let msg = r.failed();
    assert!(msg.contains("1 of 1 moves failed: mirror1"), "{msg}\n{log}");
    // The child job is the pair move, with its own locks (instance, old and new nodes).
    let child = c
        .jobs()
        .into_iter()
        .flat_map(|j| j.ops)
        .find_map(|o| match o {
            maguey_model::OpCode::InstanceChangeGroup(o) if o.target_node.is_some() => Some(o),
            _ => None,
        })
        .expect("a child pair move");
    assert_eq!(child.instance_name, "mirror1");
    let mut pair = vec![
        child.target_node.clone().unwrap_or_default(),
        child.remote_node.clone().unwrap_or_default(),
    ];
    pair.sort();
    assert_eq!(pair, ["node3", "node4"]);
    assert_eq!(c.primary_of("mirror1"), "node1");
    // The child's record of its move, written and cleared again: nothing else changed.
    assert_eq!(c.serial(), serial + 2, "{log}");
    assert!(c
        .instance("mirror1")
        .expect("mirror1")
        .get("pending_move")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pair_move_waits_for_the_new_pair_nodes() {
    use maguey_jobs::JobStatus;
    use std::time::Duration;
    let c = cluster().await;
    let op = |v: Value| serde_json::from_value::<maguey_model::OpCode>(v).expect("an opcode");
    // A job holds node4 (a node of the new pair) for a while.
    let delay = c
        .queue
        .submit(
            vec![op(json!({"OP_ID": "OP_TEST_DELAY", "duration": 3.0,
                            "on_master": false, "on_nodes": ["node4"]}))],
            0,
        )
        .expect("submitted");
    for _ in 0..400 {
        if c.queue
            .locks()
            .iter()
            .any(|l| l.name == "node4" && l.owners.contains(&delay))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mv = c
        .queue
        .submit(vec![op(pair_op("mirror1", "node3", "node4"))], 0)
        .expect("submitted");
    for _ in 0..400 {
        if c.queue.get(mv).map(|j| j.status) == Some(JobStatus::Waiting) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Waiting with the instance held, nothing created yet.
    let job = c.queue.get(mv).expect("the job");
    assert_eq!(job.status, JobStatus::Waiting);
    assert!(c
        .queue
        .locks()
        .iter()
        .any(|l| l.name == "mirror1" && l.owners.contains(&mv)));
    assert!(!format!("{:?}", job.oplog).contains("creating disk"));
    assert_eq!(c.wait(delay).await.status, JobStatus::Success);
    // Then it runs (and fails here: in-process nodes have no LVM), the instance unmoved.
    assert_eq!(c.wait(mv).await.status, JobStatus::Error);
    assert_eq!(c.primary_of("mirror1"), "node1");
}

/// Records in the config that a move of `inst` onto node3/node4 (port 11002, minor 0 on
/// both) is under way, as a master that stopped in the middle of it leaves it.
fn record_left_move(c: &InProcessCluster, inst: &str) {
    let cfg = c.config();
    let (n3, n4) = (
        cfg.node_by_name("node3").expect("node3").uuid.clone(),
        cfg.node_by_name("node4").expect("node4").uuid.clone(),
    );
    let mut inst = cfg.instance_by_name(inst).expect("the instance").clone();
    let mut left = inst.disks.clone();
    for d in &mut left {
        if let maguey_model::LogicalId::Drbd {
            node_a,
            node_b,
            port,
            minor_a,
            minor_b,
            ..
        } = &mut d.logical_id
        {
            (*node_a, *node_b, *port, *minor_a, *minor_b) = (n3.clone(), n4.clone(), 11002, 0, 0);
        }
        d.nodes = vec![n3.clone(), n4.clone()];
    }
    inst.pending_move = Some(maguey_model::PendingPairMove {
        primary: n3,
        secondary: n4,
        disks: left,
    });
    c.apply(Command::UpdateInstance { instance: inst })
        .expect("the record of a move in progress");
}

/// A move a stopped master left in the middle: its new pair is recorded in the config, so
/// its port and minors stay taken, `cluster verify` names it, and the next move of the
/// instance removes that pair first, and stops when it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_left_in_the_middle_is_undone_by_the_next_one() {
    let c = cluster().await;
    let disks = disks_of(&c, "mirror1");
    record_left_move(&c, "mirror1");

    let r = c.run(json!({"OP_ID": "OP_CLUSTER_VERIFY"})).await;
    let log = r.log.join("\n");
    assert!(
        log.contains("EINSTANCEPENDINGMOVE")
            && log.contains("instance mirror1: a move to a new DRBD pair on node3/node4"),
        "{log}"
    );

    // The next move removes the left pair first. In-process nodes have no DRBD, so that
    // removal fails here: the move stops before anything else, the record kept (the removal
    // itself, and the move after it, run on the node-VM testbed: crates/lab/tests/vm_groups.rs).
    let serial = c.serial();
    let r = c.run(pair_op("mirror1", "node3", "node4")).await;
    let log = r.log.join("\n");
    let msg = r.failed();
    assert!(
        log.contains("an earlier move to a new pair on node3/node4 stopped in the middle"),
        "{log}"
    );
    for n in ["node4", "node3"] {
        assert!(
            log.contains(&format!(
                "undoing the interrupted move: removing the disks on node {n}"
            )),
            "{log}"
        );
    }
    assert!(msg.contains("could not be removed"), "{msg}");
    assert!(!log.contains("creating disk"), "{log}");
    assert_eq!(c.serial(), serial);
    assert!(c
        .instance("mirror1")
        .expect("mirror1")
        .get("pending_move")
        .is_some());
    assert_eq!(disks_of(&c, "mirror1"), disks);
    assert_eq!(c.primary_of("mirror1"), "node1");
}

/// While a move's new pair is recorded, its port and minors are not handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_move_keeps_its_port_and_minors() {
    let c = cluster().await;
    record_left_move(&c, "live1");
    let r = c.run(pair_op("mirror1", "node3", "node4")).await;
    let log = r.log.join("\n");
    r.failed();
    assert!(
        log.contains("disk disk/0: new DRBD pair, port 11003, minor 1 on node3 and 1 on node4"),
        "{log}"
    );
}
