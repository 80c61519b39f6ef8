//! Instances between node groups: `instance change-group` and `group evacuate` on the fake
//! hypervisor (live migration with the disks, or a copy for stopped instances), the target
//! group chosen as hail does (preferred before last_resort, never unallocable), dry runs,
//! and the refusals (config and nodes unchanged); the cluster's instance policy. `drbd`
//! instances: group_moves_drbd.rs.

use crate::refused;
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

fn group_of_instance(c: &InProcessCluster, inst: &str) -> String {
    let cfg = c.config();
    let p = cfg
        .node_by_name(&c.primary_of(inst))
        .expect("node")
        .group
        .clone();
    cfg.nodegroups[&p].name.clone()
}

fn child_ops(c: &InProcessCluster) -> Vec<String> {
    c.jobs()
        .iter()
        .flat_map(|j| j.ops.iter().map(|o| o.op_id().to_string()))
        .collect()
}

/// Four nodes: node1, node2 in `default`; node3, node4 in `rack2`. web1 (file) on node1,
/// web2 (diskless) and db1 (file, stopped) on node2.
async fn two_groups() -> InProcessCluster {
    let c = InProcessCluster::new(4).await;
    group_with(&c, "rack2", "preferred", &["node3", "node4"]).await;
    c.create_instance("web1", "file", "node1").await;
    c.create_instance("web2", "diskless", "node2").await;
    c.create_instance("db1", "file", "node2").await;
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "db1"}))
        .await
        .ok();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_group_migrates_live_with_the_disks_and_dry_run_changes_nothing() {
    let c = two_groups().await;
    // Dry run: the plan, no child job, nothing changed.
    let (serial, jobs) = (c.serial(), c.jobs().len());
    let r = c
        .run(
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1",
                    "dry_run": true}),
        )
        .await;
    let log = r.log.join("\n");
    let v = r.ok();
    assert_eq!((c.serial(), c.jobs().len()), (serial, jobs + 1), "{log}");
    assert_eq!(c.primary_of("web1"), "node1");
    let what = v["moves"][0][1].as_str().unwrap_or_default().to_string();
    assert!(
        what.starts_with("live migration to node") && what.contains("(group rack2)"),
        "{v}"
    );
    assert!(log.contains("plan: web1: live migration to"), "{log}");

    // The move: web1 runs in rack2, its disk went with it.
    let r = c
        .run(
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1",
                    "target_groups": ["rack2"]}),
        )
        .await;
    let log = r.log.join("\n");
    let v = r.ok();
    assert_eq!(v["done"], json!(["web1"]), "{log}");
    let p = c.primary_of("web1");
    assert_eq!(group_of_instance(&c, "web1"), "rack2");
    assert!(c.node(&p).running().contains(&"web1".to_string()));
    assert!(c.node("node1").running().is_empty());
    assert!(c.disk_file("web1", 0, &p).exists(), "the disk moved");
    assert!(child_ops(&c).contains(&"OP_INSTANCE_MIGRATE".to_string()));

    // A stopped instance with a file disk is copied; a diskless one migrates.
    for i in ["db1", "web2"] {
        c.run(json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": i}))
            .await
            .ok();
        assert_eq!(group_of_instance(&c, i), "rack2", "{i}");
    }
    assert!(child_ops(&c).contains(&"OP_INSTANCE_MOVE".to_string()));
    assert_eq!(c.instance("db1").unwrap()["admin_state"], json!("down"));
    assert!(c
        .node(&c.primary_of("web2"))
        .running()
        .contains(&"web2".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_group_refusals_leave_everything_as_it_was() {
    let c = two_groups().await;
    for (op, needle) in [
        (
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1",
                   "target_groups": ["nowhere"]}),
            "node group 'nowhere' is not known",
        ),
        (
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1",
                   "target_groups": ["default"]}),
            "group default cannot be a target",
        ),
        (
            json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1",
                   "iallocator": "other"}),
            "unknown iallocator 'other'",
        ),
        (
            json!({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "rack2",
                   "target_groups": ["rack2"]}),
            "group rack2 cannot be a target",
        ),
    ] {
        refused(&c, op, needle).await;
    }
    // The policy of the target group holds: nothing there takes a file instance.
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "rack2",
                 "ipolicy": {"disk-templates": ["diskless"]}}),
    )
    .await
    .ok();
    let msg = refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1"}),
        "web1",
    )
    .await;
    assert!(msg.contains("nothing moved"), "{msg}");
    assert_eq!(c.primary_of("web1"), "node1");
    // Only one group: nowhere to go.
    let one = InProcessCluster::new(2).await;
    one.create_instance("solo", "file", "node2").await;
    refused(
        &one,
        json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "solo"}),
        "there is no other node group",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_group_is_chosen_by_policy_as_hail_does() {
    let c = InProcessCluster::new(4).await;
    group_with(&c, "spare", "last_resort", &["node3"]).await;
    group_with(&c, "fresh", "preferred", &["node4"]).await;
    c.create_instance("web1", "file", "node1").await;
    // Preferred before last_resort.
    c.run(json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1"}))
        .await
        .ok();
    assert_eq!(c.primary_of("web1"), "node4");
    // Back (an explicit target), then with `fresh` unallocable: the last resort.
    c.run(
        json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1",
                 "target_groups": ["default"]}),
    )
    .await
    .ok();
    assert_eq!(group_of_instance(&c, "web1"), "default");
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "fresh",
                 "alloc_policy": "unallocable"}),
    )
    .await
    .ok();
    c.run(json!({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "web1"}))
        .await
        .ok();
    assert_eq!(c.primary_of("web1"), "node3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_evacuate_moves_every_instance_out_and_force_failover_copies() {
    let c = two_groups().await;
    let r = c
        .run(
            json!({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "default",
                    "dry_run": true}),
        )
        .await;
    let v = r.ok();
    assert_eq!(v["moves"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(group_of_instance(&c, "web1"), "default");

    let r = c
        .run(
            json!({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "default",
                    "target_groups": ["rack2"], "sequential": true,
                    "force_failover": true}),
        )
        .await;
    let log = r.log.join("\n");
    let v = r.ok();
    assert_eq!(v["done"].as_array().map(Vec::len), Some(3), "{log}");
    for i in ["web1", "web2", "db1"] {
        assert_eq!(group_of_instance(&c, i), "rack2", "{i}\n{log}");
    }
    assert!(log.contains("[3/3]"), "{log}");
    assert!(log.contains("3 moved to other groups, 0 failed"), "{log}");
    // --force-failover: no live migration; the running ones run again on their new node.
    let ops = child_ops(&c);
    assert!(!ops.contains(&"OP_INSTANCE_MIGRATE".to_string()), "{ops:?}");
    assert!(ops.contains(&"OP_INSTANCE_FAILOVER".to_string()), "{ops:?}");
    assert!(c
        .node(&c.primary_of("web1"))
        .running()
        .contains(&"web1".to_string()));
    assert!(c.node("node1").running().is_empty() && c.node("node2").running().is_empty());
    // An empty group: nothing to do.
    let v: Value = c
        .run(json!({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "default"}))
        .await
        .ok();
    assert_eq!(v["done"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ipolicy_is_set_checked_and_inherited() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("big", "file", "node1").await;
    let r = c
        .run(json!({"OP_ID": "OP_CLUSTER_SET_PARAMS", "ipolicy": {
            "vcpu-ratio": 2.5,
            "minmax": [{"min": {"memory-size": 64}, "max": {"memory-size": 100}}],
            "std": {"memory-size": 64}}}))
        .await;
    let log = r.log.join("\n");
    r.ok();
    // The instance with 128 MiB now breaks the policy: a warning, not a refusal.
    assert!(
        log.contains("warning: instance big violates the new instance policy"),
        "{log}"
    );
    let cfg = c.config();
    let p = cfg.ipolicy_for_group(None);
    assert_eq!(p.vcpu_ratio, 2.5);
    assert_eq!(p.minmax[0].max.memory_size, Some(100));
    let g = cfg.group_by_name("default").expect("default").uuid.clone();
    assert_eq!(cfg.ipolicy_for_group(Some(&g)).vcpu_ratio, 2.5);
    // New instances obey it.
    refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "big2", "disk_template": "file",
               "disks": [{"size": 64}], "pnode": "node1",
               "os_type": maguey_test_infra::inprocess::TEST_OS,
               "beparams": {"maxmem": 128, "minmem": 128, "vcpus": 1}}),
        "memory value 128 is above the maximum 100",
    )
    .await;
    for (ipolicy, needle) in [
        (
            json!({"minmax": [{"min": {"cpu-count": 4}, "max": {"cpu-count": 2}}]}),
            "min cpu-count 4 is above max 2",
        ),
        (json!({"vcpu-ratio": -1.0}), "ratios must be positive"),
        (
            json!({"std": {"memory-size": 4096}}),
            "std memory-size value 4096 is outside every min/max pair",
        ),
    ] {
        refused(
            &c,
            json!({"OP_ID": "OP_CLUSTER_SET_PARAMS", "ipolicy": ipolicy}),
            needle,
        )
        .await;
    }
    refused(
        &c,
        json!({"OP_ID": "OP_CLUSTER_SET_PARAMS", "enabled_disk_templates": ["file", "diskless"],
               "ipolicy": {"disk-templates": ["file", "plain"]}}),
        "disk templates not enabled on the cluster: plain",
    )
    .await;
    // `default` gives the key back to the defaults, every key: the override is empty again.
    c.run(json!({"OP_ID": "OP_CLUSTER_SET_PARAMS",
                 "ipolicy": {"vcpu-ratio": "default", "minmax": "default", "std": "default"}}))
        .await
        .ok();
    assert!(c.config().cluster.ipolicy.is_empty());
    let p = c.config().ipolicy_for_group(None);
    assert_eq!(p.vcpu_ratio, 4.0);
    assert_eq!(p.minmax[0].max.memory_size, Some(32768));
}
