//! Parent jobs (node evacuation) lend their running slot while they wait for their children:
//! 20 evacuations at once on a queue of 20 running slots all complete (docs/security.md).

use maguey_model::{JobStatus, OpCode};
use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parent_evacuations_and_their_children_complete() {
    let c = InProcessCluster::new(4).await;
    c.create_instance("inst1", "file", "node2").await;
    c.create_instance("inst2", "file", "node2").await;
    c.create_instance("inst3", "file", "node3").await;
    // Evacuations of node2 and node3, 20 parents at once: every queue slot taken by a parent.
    let parents: Vec<u64> = (0..20)
        .map(|i| {
            let node = if i % 2 == 0 { "node2" } else { "node3" };
            let op: OpCode = serde_json::from_value(json!({
                "OP_ID": "OP_NODE_EVACUATE", "node_name": node, "mode": "primary-only",
                "remote_node": "node4"
            }))
            .unwrap();
            c.queue.submit(vec![op], 0).unwrap()
        })
        .collect();
    // Every parent ends (none waits forever for children that cannot get a slot). Parents
    // racing for the same instances may lose ("moved while this job waited"); each instance
    // moves once.
    for id in &parents {
        let job = c.wait(*id).await;
        assert!(job.status.is_finalized(), "{job:?}");
        if job.status != JobStatus::Success {
            let why = job.opresult[0].to_string();
            assert!(why.contains("moves failed"), "{why}");
        }
    }
    let children: Vec<_> = c
        .jobs()
        .into_iter()
        .filter(|j| j.summary.iter().any(|s| s.starts_with("INSTANCE_MIGRATE")))
        .collect();
    assert!(children.len() >= 3, "{children:?}");
    assert!(children.iter().all(|j| j.status.is_finalized()));
    for name in ["inst1", "inst2", "inst3"] {
        assert_eq!(c.primary_of(name), "node4", "{name}");
    }
    assert_eq!(c.queue.running_count(), 0);
}
