//! Instance lifecycle: create, remove, startup, shutdown, reboot, set params, reinstall,
//! rename.

use crate::{head, refused, size_mib};
use maguey_test_infra::inprocess::{ClusterOptions, InProcessCluster, TEST_OS};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_create_file_installs_and_starts() {
    let c = InProcessCluster::new(2).await;
    let serial = c.serial();
    c.create_instance("inst1", "file", "node2").await;
    assert!(c.serial() > serial);
    let inst = c.instance("inst1").expect("inst1 in the config");
    assert_eq!(inst["disk_template"], json!("file"));
    assert_eq!(inst["admin_state"], json!("up"));
    assert_eq!(inst["os"], json!(TEST_OS));
    assert_eq!(inst["disks"][0]["size"], json!(64));
    assert_eq!(c.primary_of("inst1"), "node2");
    // Node 2 runs it with its memory; its disk is there, installed by the OS.
    let n2 = c.node("node2");
    assert_eq!(n2.running(), ["inst1"]);
    assert_eq!(n2.run_file("inst1").unwrap()["memory"], json!(128));
    let disk = c.disk_file("inst1", 0, "node2");
    assert_eq!(size_mib(&disk), 64);
    assert_eq!(head(&disk, 14), "created inst1\n");
    assert_eq!(n2.os_calls(), ["create inst1"]);
    // Node 1 has nothing.
    assert!(c.node("node1").running().is_empty());
    assert!(c.node("node1").files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_create_diskless_and_sharedfile() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "diskless", "node1").await;
    assert_eq!(c.instance("inst1").unwrap()["disks"], json!([]));
    assert_eq!(c.node("node1").running(), ["inst1"]);
    assert_eq!(c.node("node1").os_calls(), ["create inst1"]);

    c.create_instance("inst2", "sharedfile", "node2").await;
    let disk = c.disk_file("inst2", 0, "node2");
    assert!(disk.starts_with(&c.shared_dir), "{}", disk.display());
    assert_eq!(head(&disk, 14), "created inst2\n");
    assert!(c.node("node2").files().is_empty());
    assert_eq!(c.node("node2").running(), ["inst2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_create_refusals_leave_nothing_behind() {
    let c = InProcessCluster::with(ClusterOptions {
        nodes: 2,
        memory_mib: 1024,
        ..Default::default()
    })
    .await;
    let op = |name: &str, template: &str, mem: u64| {
        json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name,
               "disk_template": template, "disks": [{"size": 64}], "pnode": "node1",
               "snode": if template == "drbd" { Some("node2") } else { None },
               "os_type": TEST_OS, "beparams": {"maxmem": mem, "minmem": mem}})
    };
    // The node's memory (the fake hypervisor's) is checked before anything is created.
    refused(&c, op("big", "file", 2048), "has only 1024 MiB").await;
    // No LVM on these nodes: plain and drbd are refused before any volume is created.
    refused(&c, op("lv", "plain", 128), "no volume group").await;
    refused(&c, op("mirror", "drbd", 128), "no volume group").await;
    c.create_instance("inst1", "file", "node1").await;
    refused(&c, op("inst1", "file", 128), "already in use").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_remove_deletes_disks_and_stops_it() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "nosuch"}),
        "nosuch",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "inst1"}))
        .await
        .ok();
    assert!(c.instance("inst1").is_none());
    assert!(c.node("node2").running().is_empty());
    assert!(
        c.node("node2").files().is_empty(),
        "{:?}",
        c.node("node2").files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_shutdown_startup_reboot() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    let n2 = c.node("node2");

    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("down"));
    assert!(n2.running().is_empty());
    // The disk stays.
    assert!(c.disk_file("inst1", 0, "node2").exists());

    c.run(json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "inst1"}))
        .await
        .ok();
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("up"));
    assert_eq!(n2.running(), ["inst1"]);

    let started = n2.run_file("inst1").unwrap()["started"].as_f64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.run(json!({"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": "inst1", "reboot_type": "soft"}))
        .await
        .ok();
    let again = n2.run_file("inst1").unwrap()["started"].as_f64().unwrap();
    assert!(again > started, "rebooted: {started} -> {again}");
    assert_eq!(n2.running(), ["inst1"]);
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_instance_is_neither_started_nor_stopped_nor_rebooted() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "file", "node1").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    c.run(json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1", "offline": true}))
        .await
        .ok();
    assert_eq!(
        c.instance("inst1").unwrap()["admin_state"],
        json!("offline")
    );
    for op in [
        json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "inst1"}),
        json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}),
        json!({"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": "inst1"}),
    ] {
        refused(&c, op, "marked offline").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_startup_is_refused_without_memory() {
    let c = InProcessCluster::with(ClusterOptions {
        nodes: 1,
        memory_mib: 300,
        ..Default::default()
    })
    .await;
    c.create_instance("inst1", "diskless", "node1").await;
    c.run(
        json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst2",
                 "disk_template": "diskless", "pnode": "node1", "os_type": TEST_OS,
                 "start": false, "beparams": {"maxmem": 256, "minmem": 256}}),
    )
    .await
    .ok();
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "inst2"}),
        "not enough memory",
    )
    .await;
    assert_eq!(c.instance("inst2").unwrap()["admin_state"], json!("down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_set_params_changes_memory_in_config_and_at_runtime() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "file", "node1").await;
    c.run(
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1",
                 "beparams": {"maxmem": 256, "vcpus": 2}}),
    )
    .await
    .ok();
    let inst = c.instance("inst1").unwrap();
    assert_eq!(inst["beparams"]["maxmem"], json!(256));
    assert_eq!(inst["beparams"]["vcpus"], json!(2));
    // Ballooned at runtime: the running instance's memory changes now.
    c.run(
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1",
                 "runtime_mem": 200}),
    )
    .await
    .ok();
    assert_eq!(
        c.node("node1").run_file("inst1").unwrap()["memory"],
        json!(200)
    );

    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1",
               "beparams": {"maxmem": 100000}}),
        "above the maximum 32768",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1",
               "beparams": {"maxmem": 100000}, "ignore_ipolicy": true}),
        "larger than node",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1", "offline": true}),
        "shut it down",
    )
    .await;
    // Template conversions need LVM (plain <-> drbd): file disks are refused.
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst1",
               "disk_template": "drbd"}),
        "conversion from disk template 'file' to 'drbd' is not supported",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reinstall_runs_the_os_again_on_a_stopped_instance() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_REINSTALL", "instance_name": "inst1"}),
        "stop it before",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    let disk = c.disk_file("inst1", 0, "node2");
    std::fs::write(&disk, b"garbage garbage").unwrap();
    c.run(json!({"OP_ID": "OP_INSTANCE_REINSTALL", "instance_name": "inst1"}))
        .await
        .ok();
    assert_eq!(
        c.node("node2").os_calls(),
        ["create inst1", "reinstall inst1"]
    );
    assert_eq!(head(&disk, 14), "created inst1\n");
    assert!(c.node("node2").running().is_empty());
    assert_eq!(c.instance("inst1").unwrap()["admin_state"], json!("down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_rename_renames_in_config_and_through_the_os() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "file", "node1").await;
    c.create_instance("inst2", "diskless", "node1").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "inst1", "new_name": "inst2"}),
        "already in use",
    )
    .await;
    let uuid = c.instance("inst1").unwrap()["uuid"].clone();
    c.run(json!({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "inst1", "new_name": "web1"}))
        .await
        .ok();
    assert!(c.instance("inst1").is_none());
    assert_eq!(c.instance("web1").unwrap()["uuid"], uuid);
    assert_eq!(
        c.node("node1").os_calls(),
        ["create inst1", "create inst2", "rename inst1 web1"]
    );
    // The disk is still found (under its new owner's name or its old path).
    assert!(c.disk_file("web1", 0, "node1").exists());
}
