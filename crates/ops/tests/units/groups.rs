//! Node groups: add, modify, rename, remove, assign-nodes; allocation policies; instance
//! policies at create, modify and grow.

use crate::refused;
use maguey_test_infra::inprocess::{InProcessCluster, TEST_OS};
use serde_json::{json, Value};

async fn add_group(c: &InProcessCluster, name: &str, extra: Value) {
    let mut op = json!({"OP_ID": "OP_GROUP_ADD", "group_name": name});
    if let (Some(o), Some(e)) = (op.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    c.run(op).await.ok();
}

async fn assign(c: &InProcessCluster, group: &str, nodes: &[&str]) {
    c.run(json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": group, "nodes": nodes}))
        .await
        .ok();
}

fn group_of(c: &InProcessCluster, node: &str) -> String {
    let cfg = c.config();
    let n = cfg.node_by_name(node).expect("the node");
    cfg.nodegroups[&n.group].name.clone()
}

/// A DRBD instance between `p` and `s`, in the config only (in-process nodes have no DRBD).
fn add_drbd_instance(c: &InProcessCluster, name: &str, p: &str, s: &str) {
    let cfg = c.config();
    let (p, s) = (
        cfg.node_by_name(p).expect("p").uuid.clone(),
        cfg.node_by_name(s).expect("s").uuid.clone(),
    );
    let inst: maguey_model::Instance = serde_json::from_value(json!({
        "uuid": maguey_model::new_uuid(), "name": name, "primary_node": p, "os": TEST_OS,
        "hypervisor": "fake", "admin_state": "down", "disk_template": "drbd",
        "beparams": {}, "hvparams": {}, "osparams": {}, "nics": [], "tags": [],
        "serial_no": 0, "ctime": 0.0, "mtime": 0.0,
        "disks": [{"uuid": maguey_model::new_uuid(), "dev_type": "drbd", "size": 64,
                   "mode": "rw", "nodes": [p, s], "iv_name": "disk/0",
                   "serial_no": 0, "ctime": 0.0, "mtime": 0.0,
                   "logical_id": {"type": "drbd", "node_a": p, "node_b": s, "port": 11000,
                                  "minor_a": 0, "minor_b": 0, "secret": "s3cret"}}]
    }))
    .expect("an instance");
    c.apply(maguey_config::Command::AddInstance { instance: inst })
        .expect("the instance in the config");
}

/// An instance placed by the allocator (no node given).
fn alloc_op(name: &str) -> Value {
    json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "disk_template": "diskless",
           "os_type": TEST_OS, "iallocator": "hail",
           "beparams": {"maxmem": 128, "minmem": 128, "vcpus": 1}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_added_renamed_modified_and_removed_only_when_empty() {
    let c = InProcessCluster::new(2).await;
    add_group(
        &c,
        "rack2",
        json!({"alloc_policy": "last_resort", "tags": ["a"]}),
    )
    .await;
    let cfg = c.config();
    let g = cfg.group_by_name("rack2").expect("the new group");
    assert_eq!(g.alloc_policy.as_str(), "last_resort");
    assert_eq!(g.tags, vec!["a".to_string()]);
    refused(
        &c,
        json!({"OP_ID": "OP_GROUP_ADD", "group_name": "rack2"}),
        "already exists",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_GROUP_ADD", "group_name": "g3", "ipolicy": {"std": {"cpu-count": 2}}}),
        "cluster level",
    )
    .await;

    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "rack2",
                 "alloc_policy": "unallocable", "ndparams": {"spindle_count": 4},
                 "ipolicy": {"vcpu-ratio": 2.0}}),
    )
    .await
    .ok();
    let cfg = c.config();
    let g = cfg.group_by_name("rack2").expect("the group");
    assert_eq!(g.alloc_policy.as_str(), "unallocable");
    assert_eq!(g.ndparams.get("spindle_count"), Some(&json!(4)));
    assert_eq!(cfg.ipolicy_for_group(Some(&g.uuid)).vcpu_ratio, 2.0);
    // `default` removes the override: the cluster's value again.
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "rack2",
                 "ipolicy": {"vcpu-ratio": "default"}}),
    )
    .await
    .ok();
    let cfg = c.config();
    let g = cfg.group_by_name("rack2").expect("the group");
    assert!(g.ipolicy.vcpu_ratio.is_none());
    refused(
        &c,
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "rack2"}),
        "no changes",
    )
    .await;

    c.run(json!({"OP_ID": "OP_GROUP_RENAME", "group_name": "rack2", "new_name": "rackB"}))
        .await
        .ok();
    assert!(c.config().group_by_name("rackB").is_some());
    refused(
        &c,
        json!({"OP_ID": "OP_GROUP_RENAME", "group_name": "rackB", "new_name": "default"}),
        "already exists",
    )
    .await;

    assign(&c, "rackB", &["node2"]).await;
    assert_eq!(group_of(&c, "node2"), "rackB");
    refused(
        &c,
        json!({"OP_ID": "OP_GROUP_REMOVE", "group_name": "rackB"}),
        "not empty",
    )
    .await;
    assign(&c, "default", &["node2"]).await;
    c.run(json!({"OP_ID": "OP_GROUP_REMOVE", "group_name": "rackB"}))
        .await
        .ok();
    assert!(c.config().group_by_name("rackB").is_none());
    refused(
        &c,
        json!({"OP_ID": "OP_GROUP_REMOVE", "group_name": "default"}),
        "not empty",
    )
    .await;
    // Tags of a group.
    c.run(json!({"OP_ID": "OP_TAGS_SET", "kind": "nodegroup", "name": "default", "tags": ["x"]}))
        .await
        .ok();
    assert_eq!(
        c.config().group_by_name("default").map(|g| g.tags.clone()),
        Some(vec!["x".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_nodes_refuses_to_split_a_drbd_instance_without_force() {
    let c = InProcessCluster::new(3).await;
    add_drbd_instance(&c, "d1", "node2", "node3");
    add_group(&c, "other", json!({})).await;
    let msg = refused(
        &c,
        json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "other", "nodes": ["node3"]}),
        "would split instance(s) d1",
    )
    .await;
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(group_of(&c, "node3"), "default");
    // Both nodes together: not split.
    assign(&c, "other", &["node2", "node3"]).await;
    assert_eq!(group_of(&c, "node2"), "other");
    // With force, the split is made and reported by cluster verify.
    let run = c
        .run(
            json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "default",
                    "nodes": ["node3"], "force": true}),
        )
        .await;
    assert!(
        run.log.iter().any(|l| l.contains("now split")),
        "{:?}",
        run.log
    );
    run.ok();
    assert_eq!(group_of(&c, "node3"), "default");
    let v = c.run(json!({"OP_ID": "OP_CLUSTER_VERIFY"})).await;
    let log = v.log.join("\n");
    assert!(
        log.contains("EINSTANCESPLITGROUPS") && log.contains("d1"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_follows_the_group_policies() {
    let c = InProcessCluster::new(3).await;
    add_group(&c, "g2", json!({})).await;
    assign(&c, "g2", &["node3"]).await;
    // default is used only when nothing else fits.
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default",
                 "alloc_policy": "last_resort"}),
    )
    .await
    .ok();
    c.run(alloc_op("a1")).await.ok();
    assert_eq!(c.primary_of("a1"), "node3");
    // g2 unallocable: the last resort is used.
    c.run(json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "g2",
                 "alloc_policy": "unallocable"}))
        .await
        .ok();
    c.run(alloc_op("a2")).await.ok();
    assert_ne!(c.primary_of("a2"), "node3");
    // -g: only that group; an unallocable group is never used.
    let mut op = alloc_op("a3");
    op["group_name"] = json!("g2");
    let msg = c.run(op).await.refused();
    assert!(msg.contains("no node"), "{msg}");
    // Nothing allocable left: refused.
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default",
                 "alloc_policy": "unallocable"}),
    )
    .await
    .ok();
    refused(&c, alloc_op("a4"), "no node").await;
    assert!(c.config().instance_by_name("a4").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_policies_are_enforced_unless_ignored() {
    let c = InProcessCluster::new(2).await;
    let pol = json!({"minmax": [{"min": {"memory-size": 128, "disk-size": 32},
                                 "max": {"memory-size": 256, "disk-size": 128}}],
                     "disk-templates": ["file", "plain"]});
    c.run(json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default", "ipolicy": pol}))
        .await
        .ok();
    let create = |name: &str, mem: u64, template: &str, ignore: bool| {
        json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name,
               "disk_template": template, "disks": [{"size": 64}], "pnode": "node2",
               "os_type": TEST_OS, "beparams": {"maxmem": mem, "minmem": mem},
               "ignore_ipolicy": ignore})
    };
    let msg = refused(
        &c,
        create("big", 512, "file", false),
        "memory value 512 is above the maximum 256",
    )
    .await;
    assert!(msg.contains("--ignore-ipolicy"), "{msg}");
    refused(
        &c,
        create("t1", 128, "sharedfile", false),
        "disk template sharedfile is not allowed",
    )
    .await;
    let run = c.run(create("big", 512, "file", true)).await;
    assert!(
        run.log.iter().any(|l| l.contains("--ignore-ipolicy")),
        "{:?}",
        run.log
    );
    run.ok();
    c.create_instance("ok1", "file", "node2").await;
    // modify: maxmem over the bound.
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "ok1",
               "beparams": {"maxmem": 1024}}),
        "above the maximum 256",
    )
    .await;
    c.run(
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "ok1",
                 "beparams": {"maxmem": 1024}, "ignore_ipolicy": true}),
    )
    .await
    .ok();
    // grow: the disk over the bound.
    c.create_instance("ok2", "file", "node2").await;
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "ok2", "disk": 0,
               "amount": 128}),
        "disk/0 size value 192 is above the maximum 128",
    )
    .await;
    c.run(
        json!({"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "ok2", "disk": 0,
                 "amount": 128, "ignore_ipolicy": true}),
    )
    .await
    .ok();
    // A tighter policy lists the instances that would break it; cluster verify reports them.
    let run = c
        .run(json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default",
                    "ipolicy": {"minmax": [{"min": {"memory-size": 200}, "max": {"memory-size": 4096}}]}}))
        .await;
    let log = run.log.join("\n");
    assert!(log.contains("instance ok2 violates"), "{log}");
    assert!(!log.contains("instance big violates"), "{log}");
    run.ok();
    let v = c.run(json!({"OP_ID": "OP_CLUSTER_VERIFY"})).await;
    let log = v.log.join("\n");
    assert!(
        log.contains("EINSTANCEPOLICY") && log.contains("ok2"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_group_meets_its_instance_policy() {
    let c = InProcessCluster::new(3).await;
    add_group(
        &c,
        "small",
        json!({"ipolicy": {"minmax": [{"min": {}, "max": {"memory-size": 100}}]}}),
    )
    .await;
    assign(&c, "small", &["node3"]).await;
    c.create_instance("m1", "file", "node2").await;
    let op = |ignore: bool| {
        json!({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": "m1", "target_node": "node3",
               "ignore_ipolicy": ignore})
    };
    refused(&c, op(false), "instance policy of group small").await;
    // Within the instance's own group the target group's policy is not asked.
    c.run(json!({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": "m1", "target_node": "node1"}))
        .await
        .ok();
    c.run(op(true)).await.ok();
    assert_eq!(c.primary_of("m1"), "node3");
}
