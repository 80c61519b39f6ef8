//! Moving instances between nodes: migrate, failover, move.

use crate::{head, refused, size_mib};
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_migrate_moves_a_running_file_instance_with_its_disk() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "inst1", "target_node": "node1"}),
        "already on node node1",
    )
    .await;
    let r = c
        .run(
            json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "inst1",
                     "target_node": "node2"}),
        )
        .await;
    assert!(r.log.iter().any(|l| l.contains("migrating")), "{r}");
    r.ok();
    assert_eq!(c.primary_of("inst1"), "node2");
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("up"));
    assert_eq!(c.node("node2").running(), ["inst1"]);
    // The target's copy is no longer an incoming one (paused), the source's is gone.
    assert!(c.node("node1").running().is_empty());
    let rf = c.node("node2").run_file("inst1").unwrap();
    assert_eq!(rf["incoming"], json!(false));
    assert_eq!(rf["memory"], json!(128));
    // The disk moved: created on node2, removed from node1.
    assert_eq!(size_mib(&c.disk_file("inst1", 0, "node2")), 64);
    assert!(c.node("node1").files().is_empty());
    let disk = &c.instance("inst1").unwrap()["disks"][0]["nodes"];
    let n2 = c.config().node_by_name("node2").unwrap().uuid.clone();
    assert_eq!(disk, &json!([n2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_migrate_of_a_stopped_instance_fails_over_unless_forbidden() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "sharedfile", "node1").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "inst1",
               "target_node": "node2", "allow_failover": false}),
        "not running",
    )
    .await;
    c.run(
        json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "inst1",
                 "target_node": "node2"}),
    )
    .await
    .ok();
    assert_eq!(c.primary_of("inst1"), "node2");
    assert!(c.node("node1").running().is_empty());
    assert!(c.node("node2").running().is_empty());
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_failover_restarts_a_sharedfile_instance_on_the_target() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "sharedfile", "node1").await;
    c.create_instance("inst2", "file", "node1").await;
    // Local disks cannot fail over: nobody else sees them.
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": "inst2",
               "target_node": "node2"}),
        "failover needs disks every node sees",
    )
    .await;
    let disk = c.disk_file("inst1", 0, "node1");
    c.run(
        json!({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": "inst1",
                 "target_node": "node2"}),
    )
    .await
    .ok();
    assert_eq!(c.primary_of("inst1"), "node2");
    assert_eq!(c.node("node1").running(), ["inst2"]);
    assert_eq!(c.node("node2").running(), ["inst1"]);
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("up"));
    // Same shared disk, data intact.
    assert_eq!(c.disk_file("inst1", 0, "node2"), disk);
    assert_eq!(head(&disk, 14), "created inst1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_failover_with_the_primary_down_ignoring_consistency() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "sharedfile", "node1").await;
    // node1 is down: unreachable, its (fake) instance stays as it was.
    c.transport.set_reachable(&c.node("node1").addr, false);
    c.run(
        json!({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": "inst1",
                 "target_node": "node2", "ignore_consistency": true}),
    )
    .await
    .ok();
    assert_eq!(c.primary_of("inst1"), "node2");
    assert_eq!(c.node("node2").running(), ["inst1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_move_copies_the_disks_of_a_stopped_instance() {
    let c = InProcessCluster::new(2).await;
    // A small disk: the copy goes through the master in base64 chunks.
    c.create_instance_sized("inst1", "file", "node1", 4).await;
    c.create_instance("inst2", "sharedfile", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": "inst2", "target_node": "node2"}),
        "copies file disks only",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    // Data past the first copy chunk, to see the whole image travel.
    let at = 3 * 1024 * 1024 + 5;
    write_at(&c.disk_file("inst1", 0, "node1"), at, b"tail marker");
    c.run(json!({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": "inst1", "target_node": "node2"}))
        .await
        .ok();
    assert_eq!(c.primary_of("inst1"), "node2");
    let disk = c.disk_file("inst1", 0, "node2");
    // The data came along; the source copy is gone.
    assert_eq!(head(&disk, 14), "created inst1\n");
    assert_eq!(size_mib(&disk), 4);
    assert_eq!(read_at(&disk, at, 11), b"tail marker");
    assert_eq!(c.node("node1").files(), Vec::<String>::new());
    assert_eq!(c.node("node1").running(), ["inst2"]);
    assert!(c.node("node2").running().is_empty());
}

fn write_at(path: &std::path::Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
}

fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_migrate_target_keeps_the_accelerator_the_source_runs_on() {
    // QEMU cannot load a KVM guest's state into TCG: the target must run the guest on the
    // source's accelerator, whatever the config says now or `auto` resolves to there.
    let c = InProcessCluster::new(2).await;
    c.run(json!({
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst1", "disk_template": "file",
        "disks": [{"size": 64}], "pnode": "node1", "os_type": maguey_test_infra::inprocess::TEST_OS,
        "beparams": {"maxmem": 128, "minmem": 128, "vcpus": 1},
        "hvparams": {"accel": "tcg"},
    }))
    .await
    .ok();
    let rf = c.node("node1").run_file("inst1").unwrap();
    assert_eq!(rf["accel"], json!("tcg"));
    c.run(
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1",
                 "hvparams": {"accel": "kvm"}}),
    )
    .await
    .ok();
    c.run(
        json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "inst1",
                 "target_node": "node2"}),
    )
    .await
    .ok();
    assert_eq!(c.node("node2").running(), ["inst1"]);
    let rf = c.node("node2").run_file("inst1").unwrap();
    assert_eq!(rf["accel"], json!("tcg"), "{rf}");
}
