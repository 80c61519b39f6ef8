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

/// `instance info`'s `disk.status`: each node of a DRBD instance reports its side from its
/// `/proc/drbd` (here DRBD 8.4's, recorded during a resync: minor 0 the source, minor 3
/// the target); a node that cannot answer is shown as unknown, not as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_info_shows_each_drbd_disks_live_state() {
    let c = InProcessCluster::new(3).await;
    let cfg = c.config();
    let uuid = |n: &str| cfg.node_by_name(n).expect("node").uuid.clone();
    let (p, s) = (uuid("node2"), uuid("node3"));
    let lv = |name: &str, size: u64| {
        json!({"uuid": maguey_model::new_uuid(), "dev_type": "plain", "size": size,
               "mode": "rw", "nodes": [p, s], "iv_name": "", "serial_no": 0, "ctime": 0.0,
               "mtime": 0.0, "logical_id": {"type": "plain", "vg": "xenvg", "lv": name}})
    };
    let inst: maguey_model::Instance = serde_json::from_value(json!({
        "uuid": maguey_model::new_uuid(), "name": "db1", "primary_node": p,
        "os": maguey_test_infra::inprocess::TEST_OS, "hypervisor": "fake",
        "admin_state": "down", "disk_template": "drbd",
        "beparams": {}, "hvparams": {}, "osparams": {}, "nics": [], "tags": [],
        "serial_no": 0, "ctime": 0.0, "mtime": 0.0,
        "disks": [{"uuid": maguey_model::new_uuid(), "dev_type": "drbd", "size": 512,
                   "mode": "rw", "nodes": [p, s], "iv_name": "disk/0",
                   "serial_no": 0, "ctime": 0.0, "mtime": 0.0,
                   "logical_id": {"type": "drbd", "node_a": p, "node_b": s, "port": 11000,
                                  "minor_a": 0, "minor_b": 3, "secret": "s3cret"},
                   "children": [lv("db1.disk0_data", 512), lv("db1.disk0_meta", 128)]}]
    }))
    .expect("an instance");
    c.apply(maguey_config::Command::AddInstance { instance: inst })
        .expect("the instance in the config");
    let recorded = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../node/tests/data/storage/drbd84/proc_drbd_syncing");
    std::fs::copy(&recorded, c.node("node2").dir.join("proc-drbd")).expect("copy");
    let query = || async {
        maguey_ops::query::query(
            &c.master,
            &maguey_ops::query::QueryRequest {
                what: maguey_ops::query::Resource::Instance,
                names: vec!["db1".into()],
                fields: vec!["disk.status".into()],
            },
        )
        .await
        .expect("the query")
        .rows[0][0]
            .clone()
    };
    let lines = query().await;
    let lines: Vec<&str> = lines
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        "disk/0 on node2: minor 0, Connected SyncSource, disks UpToDate/Inconsistent, \
         roles Primary/Secondary, 23.7% synced, 12s left, DEGRADED"
    );
    assert!(
        lines[1].starts_with("disk/0 on node3: unknown ("),
        "{lines:?}"
    );
    // The secondary's side, once it reads its module too.
    std::fs::copy(&recorded, c.node("node3").dir.join("proc-drbd")).expect("copy");
    let lines = query().await;
    assert!(
        lines[1]
            .as_str()
            .unwrap_or_default()
            .starts_with("disk/0 on node3: minor 3, Connected SyncTarget, disks Inconsistent/UpToDate, roles Secondary/Primary, 23.9% synced, 12s left"),
        "{lines}"
    );
}
