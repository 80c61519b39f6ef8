//! The node memory the placement engine counts: what the nodes report (their own memory is
//! total - free - their instances' memory), not hail's static 4096 MiB of a kvm node, which
//! refused every relocation on nodes with less memory than that.

use maguey_model::{DiskTemplate, EvacMode};
use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc::{parse_request_value, solve, Answer};
use maguey_test_infra::inprocess::{ClusterOptions, InProcessCluster};
use serde_json::{json, Value};

/// Solves a `node-evacuate` request for `instance` built as the master builds it, the
/// cluster described as a kvm cluster (kvm first among the enabled hypervisors: the in-process
/// nodes report their memory as small kvm nodes would). `Ok(new nodes)` or why it cannot move.
async fn evacuate_as_kvm(c: &InProcessCluster, instance: &str) -> Result<Vec<String>, String> {
    let cfg = c.config();
    let mut req =
        maguey_ops::iallocator::cluster_request(&c.master, &cfg, DiskTemplate::File).await;
    req["enabled_hypervisors"] = json!(["kvm", "fake"]);
    req["request"] = json!({
        "type": "node-evacuate",
        "instances": [instance],
        "evac_mode": EvacMode::All,
    });
    let node1 = &req["nodes"]["node1"];
    assert_eq!(node1["total_memory"], json!(1024), "{node1}");
    let parsed = parse_request_value(&req).expect("a valid request");
    let opts = AllocOptions {
        local_storage_migrates: true,
        ..Default::default()
    };
    match solve(parsed, &opts).0 {
        Ok((_, Answer::Evac(e))) => match (e.moved.first(), e.failed.first()) {
            (Some((_, _, nodes)), None) => Ok(nodes.clone()),
            _ => Err(format!("failed: {:?}", e.failed)),
        },
        Ok((_, other)) => Err(format!("answer {}", other.to_json())),
        Err(why) => Err(why),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_instance_relocates_between_1_gib_kvm_nodes() {
    let c = InProcessCluster::with(ClusterOptions {
        nodes: 3,
        memory_mib: 1024,
        ..Default::default()
    })
    .await;
    c.create_instance("inst1", "file", "node1").await;
    let nodes = evacuate_as_kvm(&c, "inst1")
        .await
        .expect("a 128 MiB instance fits on a 1 GiB node");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_ne!(nodes[0], "node1", "the instance leaves its node");
    // The memory still counts: with 128 MiB used on each other node, 900 MiB fit nowhere.
    c.create_instance("inst2", "file", "node2").await;
    c.create_instance("inst3", "file", "node3").await;
    let mut big = c
        .config()
        .instance_by_name("inst1")
        .cloned()
        .expect("inst1");
    big.beparams.insert("maxmem".into(), json!(900));
    big.beparams.insert("minmem".into(), json!(900));
    c.apply(maguey_config::Command::UpdateInstance { instance: big })
        .expect("a bigger inst1");
    let why = evacuate_as_kvm(&c, "inst1").await.expect_err("no room");
    assert!(why.contains("FailMem"), "{why}");
}

/// What the request says of a node (the marker of live memory included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_mark_node_memory_as_measured() {
    let c = InProcessCluster::with(ClusterOptions {
        nodes: 1,
        memory_mib: 1024,
        ..Default::default()
    })
    .await;
    let req: Value =
        maguey_ops::iallocator::cluster_request(&c.master, &c.config(), DiskTemplate::File).await;
    let n = &req["nodes"]["node1"];
    assert_eq!(
        n[maguey_placement::ialloc::RESERVED_MEMORY_LIVE],
        json!(true)
    );
    assert_eq!(n["reserved_memory"], json!(0), "{n}");
}
