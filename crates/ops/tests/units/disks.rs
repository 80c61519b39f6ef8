//! Disk opcodes on file disks: activate, deactivate, grow, recreate; replace-disks (DRBD
//! only) is refused for them.

use crate::{head, refused, size_mib};
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_activate_disks_reports_the_file_disks() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    let serial = c.serial();
    let r = c
        .run(json!({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS", "instance_name": "inst1"}))
        .await
        .ok();
    let path = c.disk_file("inst1", 0, "node2");
    assert_eq!(
        r,
        json!([["node2", "disk/0", path.display().to_string()]]),
        "{r}"
    );
    // Activating starts nothing and changes nothing.
    assert!(c.node("node2").running().is_empty());
    assert_eq!(c.serial(), serial);

    // A missing disk is reported, not made up.
    std::fs::remove_file(&path).unwrap();
    let msg = c
        .run(json!({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS", "instance_name": "inst1"}))
        .await
        .failed();
    assert!(msg.contains("recreate-disks"), "{msg}");
    assert!(!path.exists());

    // A split brain only exists between DRBD peers.
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS", "instance_name": "inst1",
               "resolve_split_brain": true}),
        "no DRBD disks",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_deactivate_disks_needs_a_stopped_instance() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "file", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_DEACTIVATE_DISKS", "instance_name": "inst1"}),
        "stop it",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    let serial = c.serial();
    c.run(json!({"OP_ID": "OP_INSTANCE_DEACTIVATE_DISKS", "instance_name": "inst1"}))
        .await
        .ok();
    // File disks have nothing to shut down: the image stays, the config too.
    assert_eq!(c.serial(), serial);
    assert!(c.disk_file("inst1", 0, "node1").exists());
    assert!(c.node("node1").running().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_grow_disk_grows_the_file_and_tells_the_running_guest() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "inst1", "disk": 0,
               "amount": 32, "absolute": true}),
        "cannot shrink",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "inst1", "disk": 1,
               "amount": 32}),
        "has no disk 1",
    )
    .await;
    let r = c
        .run(
            json!({"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "inst1", "disk": 0,
                     "amount": 64}),
        )
        .await
        .ok();
    assert_eq!(r["old_size"], json!(64), "{r}");
    assert_eq!(r["new_size"], json!(128), "{r}");
    assert_eq!(r["hypervisor_notified"], json!(true), "{r}");
    assert_eq!(c.instance("inst1").unwrap()["disks"][0]["size"], json!(128));
    let disk = c.disk_file("inst1", 0, "node2");
    assert_eq!(size_mib(&disk), 128);
    // The data stays; the hypervisor knows the new size.
    assert_eq!(head(&disk, 14), "created inst1\n");
    let rf = c.node("node2").run_file("inst1").unwrap();
    assert_eq!(rf["disk_sizes"]["0"], json!(128), "{rf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_grow_disk_refuses_a_diskless_instance() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "diskless", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "inst1", "disk": 0,
               "amount": 64}),
        "cannot grow",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_replace_disks_is_for_drbd_instances_only() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node1").await;
    for mode in ["replace_on_primary", "replace_auto"] {
        refused(
            &c,
            json!({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": "inst1",
                   "mode": mode}),
            "only for drbd instances",
        )
        .await;
    }
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": "inst1",
               "mode": "replace_new_secondary"}),
        "new node",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_recreate_disks_makes_missing_disks_again() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_RECREATE_DISKS", "instance_name": "inst1"}),
        "stop it first",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    let disk = c.disk_file("inst1", 0, "node1");
    std::fs::remove_file(&disk).unwrap();
    c.run(json!({"OP_ID": "OP_INSTANCE_RECREATE_DISKS", "instance_name": "inst1"}))
        .await
        .ok();
    // Made again, empty, of its size.
    assert_eq!(size_mib(&disk), 64);
    assert_eq!(head(&disk, 7), "\0\0\0\0\0\0\0");
    assert_eq!(c.primary_of("inst1"), "node1");

    // On another node: the instance goes with its new disk.
    c.run(
        json!({"OP_ID": "OP_INSTANCE_RECREATE_DISKS", "instance_name": "inst1",
                 "nodes": ["node2"]}),
    )
    .await
    .ok();
    assert_eq!(c.primary_of("inst1"), "node2");
    assert_eq!(size_mib(&c.disk_file("inst1", 0, "node2")), 64);
}
