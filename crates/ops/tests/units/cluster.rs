//! Cluster-wide opcodes: verify, verify-disks, destroy, tags, test delay, query data.

use crate::refused;
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_delay_sleeps_on_the_nodes_named() {
    let c = InProcessCluster::new(2).await;
    let serial = c.serial();
    let node2 = c.node("node2").addr.clone();
    let before = c.transport.calls().len();
    let t = std::time::Instant::now();
    let r = c
        .run(
            json!({"OP_ID": "OP_TEST_DELAY", "duration": 0.2, "on_master": false,
                    "on_nodes": ["node2"]}),
        )
        .await
        .ok();
    assert_eq!(r, json!(true));
    assert!(t.elapsed() >= std::time::Duration::from_millis(200));
    let calls = c.transport.calls()[before..].to_vec();
    assert_eq!(calls, vec![(node2, "test_delay".to_string())]);
    assert_eq!(c.serial(), serial);

    refused(
        &c,
        json!({"OP_ID": "OP_TEST_DELAY", "duration": -1.0}),
        "invalid duration",
    )
    .await;
    // `fail` fails after sleeping, while executing.
    let msg = c
        .run(json!({"OP_ID": "OP_TEST_DELAY", "duration": 0, "fail": true}))
        .await
        .failed();
    assert!(!msg.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_verify_finds_an_instance_stopped_behind_the_masters_back() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    let serial = c.serial();
    let r = c.run(json!({"OP_ID": "OP_CLUSTER_VERIFY"})).await.ok();
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(r["errors"], json!([]));
    assert_eq!(c.serial(), serial);

    // The instance dies on its node: verify reports it, and changes nothing.
    std::fs::remove_file(c.node("node2").dir.join("run/fake/inst1.json")).unwrap();
    let r = c.run(json!({"OP_ID": "OP_CLUSTER_VERIFY"})).await.ok();
    assert_eq!(r["ok"], json!(false), "{r}");
    let errors = r["errors"].to_string();
    assert!(errors.contains("inst1"), "{errors}");
    assert_eq!(c.serial(), serial);
    assert!(c.node("node2").running().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_verify_disks_finds_nothing_to_do_for_file_disks() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node1").await;
    let serial = c.serial();
    let r = c
        .run(json!({"OP_ID": "OP_CLUSTER_VERIFY_DISKS"}))
        .await
        .ok();
    assert_eq!(r["bad_nodes"], json!({}), "{r}");
    assert_eq!(r["offline_disk_instances"], json!([]), "{r}");
    assert_eq!(c.serial(), serial);

    refused(
        &c,
        json!({"OP_ID": "OP_CLUSTER_VERIFY_DISKS", "group_name": "nosuchgroup"}),
        "nosuchgroup",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_destroy_needs_an_empty_cluster() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "diskless", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_CLUSTER_DESTROY"}),
        "still has 1 instances",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "inst1"}))
        .await
        .ok();
    refused(&c, json!({"OP_ID": "OP_CLUSTER_DESTROY"}), "node2").await;
    c.run(json!({"OP_ID": "OP_NODE_REMOVE", "node_name": "node2"}))
        .await
        .ok();

    let destroyed = c.master.destroy.clone();
    let notified = tokio::spawn(async move { destroyed.notified().await });
    let r = c.run(json!({"OP_ID": "OP_CLUSTER_DESTROY"})).await.ok();
    assert_eq!(r, json!({"destroyed": true}));
    // The daemon is told to wipe its state and stop.
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("the master is told to stop")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_set_and_removed_on_every_kind_of_object() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "diskless", "node1").await;
    for (kind, name) in [
        ("cluster", None),
        ("node", Some("node1")),
        ("instance", Some("inst1")),
        ("nodegroup", Some("default")),
    ] {
        let serial = c.serial();
        c.run(json!({"OP_ID": "OP_TAGS_SET", "kind": kind, "name": name,
                     "tags": ["a:1", "b"]}))
            .await
            .ok();
        assert!(c.serial() > serial);
        let tags = |c: &InProcessCluster| -> Vec<String> {
            let cfg = c.config();
            match kind {
                "cluster" => cfg.cluster.tags.clone(),
                "node" => cfg.node_by_name("node1").unwrap().tags.clone(),
                "instance" => cfg.instance_by_name("inst1").unwrap().tags.clone(),
                _ => cfg.group_by_name("default").unwrap().tags.clone(),
            }
        };
        let mut t = tags(&c);
        t.sort();
        assert_eq!(t, ["a:1", "b"], "{kind}");
        c.run(json!({"OP_ID": "OP_TAGS_DEL", "kind": kind, "name": name, "tags": ["b"]}))
            .await
            .ok();
        assert_eq!(tags(&c), ["a:1"], "{kind}");
        refused(
            &c,
            json!({"OP_ID": "OP_TAGS_DEL", "kind": kind, "name": name, "tags": ["b"]}),
            "not found",
        )
        .await;
    }
    refused(
        &c,
        json!({"OP_ID": "OP_TAGS_SET", "kind": "instance", "name": "nosuch", "tags": ["x"]}),
        "nosuch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_query_data_reports_config_and_run_state() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    c.create_instance("inst2", "diskless", "node1").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst2"}))
        .await
        .ok();
    let serial = c.serial();
    let r = c.run(json!({"OP_ID": "OP_INSTANCE_QUERY_DATA"})).await.ok();
    assert_eq!(r["inst1"]["run_state"], json!("up"), "{r}");
    assert_eq!(r["inst2"]["run_state"], json!("down"), "{r}");
    assert_eq!(r["inst1"]["pnode"], json!("node2"), "{r}");
    let r = c
        .run(json!({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": ["inst1"], "static": true}))
        .await
        .ok();
    assert_eq!(r["inst1"]["run_state"], json!(null), "{r}");
    assert!(r.get("inst2").is_none());
    assert_eq!(c.serial(), serial);

    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": ["nosuch"]}),
        "nosuch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_set_params_merges_and_refuses_what_instances_use() {
    let c = InProcessCluster::new(1).await;
    c.create_instance("inst1", "file", "node1").await;
    let r = c
        .run(json!({"OP_ID": "OP_CLUSTER_SET_PARAMS",
            "hvparams": {"fake": {"migration_mode": "non-live"}},
            "beparams": {"memory": "256M"}, "nicparams": {"link": "br9"},
            "candidate_pool_size": 5, "mac_prefix": "AA:BB:CC", "vg_name": "vg0",
            "drbd_helper": "/usr/local/bin/drbd-helper", "reserved_lvs": ["vg0/keep"],
            "enabled_disk_templates": ["file", "diskless"]}))
        .await
        .ok();
    assert!(r.as_array().is_some_and(|a| a.len() >= 8), "{r}");
    let cfg = c.config();
    let cl = &cfg.cluster;
    assert_eq!(cl.hvparams["fake"]["migration_mode"], json!("non-live"));
    assert_eq!(cl.beparams["default"]["maxmem"], json!(256));
    assert_eq!(cl.beparams["default"]["minmem"], json!(256));
    assert_eq!(cl.nicparams["default"]["link"], json!("br9"));
    assert_eq!(cl.candidate_pool_size, 5);
    assert_eq!(cl.mac_prefix, "aa:bb:cc");
    assert_eq!(cl.vg_name, "vg0");
    assert_eq!(cl.drbd_usermode_helper, "/usr/local/bin/drbd-helper");
    assert_eq!(cl.reserved_lvs, vec!["vg0/keep".to_string()]);
    assert_eq!(cl.enabled_disk_templates.len(), 2);
    // A second key merges into the first.
    c.run(json!({"OP_ID": "OP_CLUSTER_SET_PARAMS", "beparams": {"vcpus": 2}}))
        .await
        .ok();
    let be = c.config().cluster.beparams["default"].clone();
    assert_eq!(
        (be["maxmem"].clone(), be["vcpus"].clone()),
        (json!(256), json!(2))
    );
    // The same values again: nothing changes.
    let serial = c.serial();
    let r = c
        .run(json!({"OP_ID": "OP_CLUSTER_SET_PARAMS", "candidate_pool_size": 5}))
        .await
        .ok();
    assert_eq!(r, json!([]));
    assert_eq!(c.serial(), serial);

    for (op, needle) in [
        (json!({}), "no parameters to change"),
        (
            json!({"hvparams": {"fake": {"bogus": "1"}}}),
            "unknown hvparams key 'bogus'",
        ),
        (
            json!({"hvparams": {"kvm": {"acpi": "perhaps"}}}),
            "expected a boolean",
        ),
        (json!({"hvparams": {"xen": {}}}), "unknown hypervisor 'xen'"),
        (
            json!({"beparams": {"minmem": "1G"}}),
            "minmem (1024) cannot exceed maxmem (256)",
        ),
        (json!({"nicparams": {"mode": "bogus"}}), "invalid value"),
        (
            json!({"enabled_disk_templates": ["diskless"]}),
            "instances use it: inst1",
        ),
        (
            json!({"enabled_hypervisors": ["kvm"]}),
            "instances use it: inst1",
        ),
        (
            json!({"enabled_hypervisors": []}),
            "at least one hypervisor",
        ),
        (
            json!({"file_storage_dir": "elsewhere"}),
            "while instances have disks there: inst1",
        ),
        (
            json!({"shared_file_storage_dir": "relative"}),
            "absolute path",
        ),
        (json!({"mac_prefix": "aa:bb"}), "invalid MAC prefix"),
        (json!({"vg_name": "-bad"}), "invalid volume group name"),
        (json!({"candidate_pool_size": 0}), "at least 1"),
        (json!({"drbd_helper": "no/abs"}), "absolute path"),
    ] {
        let mut op = op;
        op["OP_ID"] = json!("OP_CLUSTER_SET_PARAMS");
        refused(&c, op, needle).await;
    }
}
