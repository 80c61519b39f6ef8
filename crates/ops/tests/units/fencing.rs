//! Fencing by term in process (docs/security.md): once a node has seen a newer master's term,
//! the master of an older term commands nothing there (its jobs fail naming the refusal);
//! the nodes that did not see it keep obeying, and a master raised to the new term is obeyed.

use maguey_rpc::client::{Method, StatusCode};
use maguey_rpc::{FenceStamp, NodeRequest, RpcTransport, TransportRequest};
use maguey_test_infra::inprocess::{InProcessCluster, TEST_OS};
use serde_json::{json, Value};
use std::time::Duration;

fn create(name: &str, node: &str) -> Value {
    json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name,
           "disk_template": "diskless", "pnode": node, "os_type": TEST_OS,
           "beparams": {"maxmem": 128, "minmem": 128}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_master_commands_nothing_where_a_newer_term_was_seen() {
    let c = InProcessCluster::new(2).await;
    let cluster = c.config().cluster.uuid.clone();
    assert_eq!(c.master.rpc.fence().map(|f| f.term()), Some(1));
    c.run(create("before", "node2")).await.ok();

    // A newer master (term 5) commands node2.
    let newer = c
        .transport
        .send(TransportRequest {
            method: Method::Post,
            url: format!("https://{}/rpc", c.nodes[1].addr),
            body: Some(serde_json::to_vec(&NodeRequest::Version).unwrap()),
            timeout: Duration::from_secs(5),
            fence: Some(FenceStamp {
                cluster: cluster.clone(),
                term: 5,
            }),
        })
        .await
        .unwrap();
    assert_eq!(newer.status, StatusCode::OK, "{}", newer.body);

    // The master at term 1 is refused there, and starts nothing on node2.
    let r = c.run(create("fenced", "node2")).await;
    let msg = format!("{:?}", r.result);
    assert!(r.result.is_err(), "{r}");
    assert!(msg.contains("lower than term 5"), "{msg}");
    assert!(!c.nodes[1]
        .runtime
        .execute(NodeRequest::InstanceList {
            hypervisor: "fake".into()
        })
        .await
        .map(|l| format!("{l:?}").contains("fenced"))
        .unwrap_or(false));
    // node1 never saw term 5: it still obeys.
    c.run(create("still", "node1")).await.ok();

    // Raised to the new term (as a new leader would), the master is obeyed again.
    c.master.rpc.fence().expect("the master's fence").raise(5);
    c.run(create("after", "node2")).await.ok();
}
