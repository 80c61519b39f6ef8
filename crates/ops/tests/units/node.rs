//! Node opcodes: add, remove, set params, migrate, evacuate.

use crate::refused;
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_add_registers_the_node_and_sends_it_the_ssconf() {
    // The harness adds node2 and node3 with OP_NODE_ADD, as `node add` would.
    let c = InProcessCluster::new(3).await;
    let cfg = c.config();
    assert_eq!(cfg.nodes.len(), 3);
    let n3 = cfg.node_by_name("node3").expect("node3 in the config");
    assert_eq!(n3.primary_ip, c.node("node3").ip);
    assert_eq!(n3.secondary_ip, n3.primary_ip);
    assert!(n3.vm_capable && n3.master_capable && !n3.offline && !n3.drained);
    assert_eq!(
        cfg.nodegroups.get(&n3.group).map(|g| g.name.as_str()),
        Some("default")
    );
    // Every node has the ssconf that lists every node.
    for n in &c.nodes {
        let ss = n.ssconf().expect("an ssconf");
        assert_eq!(ss.node_primary_ips.len(), 3, "{}", n.name);
        assert_eq!(ss.node_primary_ips.get("node3"), Some(&n3.primary_ip));
    }
    // The version handshake went to the new node.
    assert!(c
        .transport
        .calls()
        .contains(&(c.node("node3").addr.clone(), "version".to_string())));

    refused(
        &c,
        json!({"OP_ID": "OP_NODE_ADD", "node_name": "node3", "primary_ip": "127.0.80.9"}),
        "already in the cluster",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_ADD", "node_name": "node9", "primary_ip": "127.0.80.2"}),
        "already used by node node2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_remove_refuses_a_node_with_instances_then_removes_it() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_REMOVE", "node_name": "node2"}),
        "still hosts instances",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_REMOVE", "node_name": "node1"}),
        "master node",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "inst1"}))
        .await
        .ok();
    assert!(c.node("node2").ssconf().is_some());
    c.run(json!({"OP_ID": "OP_NODE_REMOVE", "node_name": "node2"}))
        .await
        .ok();
    let cfg = c.config();
    assert!(cfg.node_by_name("node2").is_none());
    assert_eq!(cfg.nodes.len(), 1);
    // The node left the cluster: its cluster files are gone, its daemon stopped.
    assert!(c.node("node2").ssconf().is_none());
    let version = maguey_rpc::NodeRequest::Version;
    let gone = c
        .master
        .rpc
        .call::<serde_json::Value>(&c.node("node2").addr, &version)
        .await;
    assert!(
        matches!(gone, Err(maguey_rpc::RpcError::Unreachable(_))),
        "{gone:?}"
    );
    // The remaining node's ssconf no longer lists it.
    let ss = c.node("node1").ssconf().unwrap();
    assert!(!ss.node_primary_ips.contains_key("node2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_set_params_drains_and_offlines_but_never_the_master() {
    let c = InProcessCluster::new(2).await;
    let serial = c.serial();
    c.run(json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "drained": true}))
        .await
        .ok();
    assert!(c.serial() > serial);
    let n2 = c.config().node_by_name("node2").unwrap().clone();
    assert!(n2.drained && !n2.offline);
    c.run(json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "offline": true}))
        .await
        .ok();
    let n2 = c.config().node_by_name("node2").unwrap().clone();
    assert!(n2.offline && !n2.drained && !n2.master_candidate);
    // An offline node gets no ssconf.
    assert!(!c.node("node1").ssconf().unwrap().offline_nodes.is_empty());

    refused(
        &c,
        json!({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node1", "offline": true}),
        "is the master",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_migrate_moves_every_primary_instance_live() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node1").await;
    c.create_instance("inst2", "sharedfile", "node1").await;
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_MIGRATE", "node_name": "node1", "iallocator": "nosuch"}),
        "unknown iallocator",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_MIGRATE", "node_name": "node1", "target_node": "node1"}),
        "the node being evacuated",
    )
    .await;

    let r = c
        .run(json!({"OP_ID": "OP_NODE_MIGRATE", "node_name": "node1"}))
        .await
        .ok();
    assert_eq!(r["jobs"].as_array().map(Vec::len), Some(2), "{r}");
    for name in ["inst1", "inst2"] {
        assert_eq!(c.primary_of(name), "node2");
        assert_eq!(c.instance(name).unwrap()["admin_state"], json!("up"));
    }
    assert!(c.node("node1").running().is_empty());
    assert_eq!(c.node("node2").running(), ["inst1", "inst2"]);
    // The file disk moved with its instance; the shared one stayed where it was.
    assert!(c.node("node1").files().is_empty());
    assert!(c.disk_file("inst1", 0, "node2").exists());
    assert!(c.disk_file("inst2", 0, "node2").exists());
    // Each instance moved in its own (successful) job.
    let children: Vec<_> = c
        .jobs()
        .into_iter()
        .filter(|j| j.summary.iter().any(|s| s.starts_with("INSTANCE_MIGRATE")))
        .collect();
    assert_eq!(children.len(), 2);
    assert!(children
        .iter()
        .all(|j| j.status == maguey_model::JobStatus::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_evacuate_empties_the_node_as_planned() {
    let c = InProcessCluster::new(3).await;
    c.create_instance("inst1", "file", "node2").await;
    c.create_instance("inst2", "sharedfile", "node2").await;
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node2", "remote_node": "node2"}),
        "the node being evacuated",
    )
    .await;

    let r = c
        .run(json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node2", "mode": "primary-only"}))
        .await;
    assert!(r.log.iter().any(|l| l.starts_with("plan: inst1")), "{r}");
    r.ok();
    assert!(c.node("node2").running().is_empty());
    assert!(c.node("node2").files().is_empty());
    for name in ["inst1", "inst2"] {
        let p = c.primary_of(name);
        assert_ne!(p, "node2", "{name}");
        assert!(c.node(&p).running().contains(&name.to_string()), "{name}");
        assert!(c.disk_file(name, 0, &p).exists(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_evacuate_refuses_what_the_allocator_cannot_place() {
    let c = InProcessCluster::new(2).await;
    // Each node (4 GiB) holds one 3 GiB instance: neither fits beside the other.
    for (name, node) in [("inst0", "node1"), ("inst1", "node2")] {
        c.run(json!({
            "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "disk_template": "diskless",
            "disks": [], "pnode": node, "os_type": maguey_test_infra::inprocess::TEST_OS,
            "beparams": {"maxmem": 3072, "minmem": 3072},
        }))
        .await
        .ok();
    }
    let serial = c.serial();
    refused(
        &c,
        json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node2"}),
        "the allocator cannot move every instance off node2",
    )
    .await;
    assert_eq!(c.primary_of("inst1"), "node2");
    assert_eq!(c.serial(), serial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_evacuate_refusal_over_the_vcpu_ratio_is_a_short_summary() {
    let c = InProcessCluster::with(maguey_test_infra::inprocess::ClusterOptions {
        nodes: 6,
        cpus: 2,
        ..Default::default()
    })
    .await;
    let create = |name: String, template: &'static str, pnode: String, vcpus: u32| {
        let disks = if template == "diskless" {
            json!([])
        } else {
            json!([{"size": 16}])
        };
        c.run(json!({
            "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "disk_template": template,
            "disks": disks, "pnode": pnode, "os_type": maguey_test_infra::inprocess::TEST_OS,
            "beparams": {"maxmem": 64, "minmem": 64, "vcpus": vcpus},
        }))
    };
    // node2 holds 4 movable instances; every other node is at 10 vCPUs on 2 CPUs (5.0).
    for k in 0..4 {
        create(format!("mov{k}"), "sharedfile", "node2".into(), 2)
            .await
            .ok();
    }
    for n in [1, 3, 4, 5, 6] {
        for k in ["a", "b"] {
            create(format!("big{n}{k}"), "diskless", format!("node{n}"), 5)
                .await
                .ok();
        }
    }
    c.run(
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "default",
                 "ipolicy": {"vcpu-ratio": 4.0}}),
    )
    .await
    .ok();
    let msg = refused(
        &c,
        json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "node2", "mode": "primary-only"}),
        "the allocator cannot move every instance off node2",
    )
    .await;
    assert!(msg.lines().count() <= 10, "{msg}");
    assert!(msg.contains("FailCPU on 5 nodes for 4 instances"), "{msg}");
    assert!(
        msg.contains("vCPU ratio 5.0 over the policy's 4.0"),
        "{msg}"
    );
    assert!(!msg.contains("Node node3 failed"), "{msg}");
    // A new instance placed by the allocator: every node is at the ratio or over it.
    let msg = refused(
        &c,
        json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "new1",
               "disk_template": "diskless", "disks": [], "iallocator": "hail",
               "os_type": maguey_test_infra::inprocess::TEST_OS,
               "beparams": {"maxmem": 64, "minmem": 64, "vcpus": 1}}),
        "the allocator found no node for instance new1",
    )
    .await;
    assert!(msg.lines().count() <= 10, "{msg}");
    assert!(
        msg.contains("FailCPU for 6 placements: vCPU ratio 4.0 to 5.0 over the policy's 4.0"),
        "{msg}"
    );
}
