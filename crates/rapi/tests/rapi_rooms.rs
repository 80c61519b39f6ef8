//! The room of a node in the Remote API: a field of the node resources (Ganeti's clients
//! ignore it) that `POST /2/nodes/N/modify` sets.

mod common;

use common::RapiLab;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_resources_carry_the_room() {
    let l = RapiLab::up(2);
    let (s, v) = l.call(Method::GET, "/2/nodes/node2", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["room"], json!(""));
    let (s, job) = l
        .call(
            Method::POST,
            "/2/nodes/node2/modify",
            Some(json!({"room": "room-b"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let done = l.wait_job(&job).await;
    assert_eq!(done["status"], "success", "{done}");
    let (_, v) = l.call(Method::GET, "/2/nodes/node2", None).await;
    assert_eq!(v["room"], "room-b");
    let (_, all) = l.call(Method::GET, "/2/nodes?bulk=1", None).await;
    let rooms: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].clone(), n["room"].clone()))
        .collect();
    assert!(
        rooms.contains(&(json!("node2"), json!("room-b"))),
        "{rooms:?}"
    );
    // A bad room name: the job is refused, nothing changes.
    let serial = l.serial();
    let (s, job) = l
        .call(
            Method::POST,
            "/2/nodes/node2/modify",
            Some(json!({"room": "a b"})),
        )
        .await;
    if s == StatusCode::OK {
        let done = l.wait_job(&job).await;
        assert_eq!(done["status"], "error", "{done}");
    }
    assert_eq!(l.serial(), serial);
}
