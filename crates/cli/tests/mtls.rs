//! The node daemons only answer clients holding a certificate of the cluster's CA.

mod common;
use common::*;
use maguey_rpc::ca::{ClusterCa, NodeIdentity};
use maguey_rpc::client::RpcClient;
use maguey_rpc::{NodeRequest, VersionInfo};
use std::time::Duration;

#[tokio::test]
async fn rpc_requires_a_cluster_certificate() {
    let lab = lab(2);
    let addr = format!("{}:{}", lab.node_ip(2), maguey_model::DEFAULT_RPC_PORT);

    // The cluster's own identity works.
    let good = NodeIdentity::load(&lab.master_dir()).unwrap();
    let client = RpcClient::new(&good, Duration::from_secs(10)).unwrap();
    let v: VersionInfo = client.call(&addr, &NodeRequest::Version).await.unwrap();
    assert_eq!(v.node_name, "node2");

    // No client certificate: refused.
    let anon = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = anon
        .post(format!("https://{addr}/rpc"))
        .json(&NodeRequest::Version)
        .send()
        .await;
    // Either refused during the handshake (Err) or answered 403.
    if let Ok(resp) = r {
        assert_eq!(resp.status(), reqwest::StatusCode::FORBIDDEN);
        assert!(!resp.text().await.unwrap().contains("node2"));
    }
    // The master API too.
    let r = anon
        .get(format!(
            "https://{}:{}/luxi/config",
            lab.node_ip(1),
            maguey_model::DEFAULT_RPC_PORT
        ))
        .send()
        .await;
    if let Ok(resp) = r {
        assert_eq!(resp.status(), reqwest::StatusCode::FORBIDDEN);
    }

    // A certificate from another CA: refused at the handshake.
    let other = ClusterCa::generate("evil").unwrap();
    let mut evil = other
        .issue("node9", &["127.0.0.1".parse().unwrap()])
        .unwrap();
    // Trust the real cluster's CA for the server side, present the foreign client cert.
    evil.ca_pem = good.ca_pem.clone();
    let client = RpcClient::new(&evil, Duration::from_secs(10)).unwrap();
    let r = client
        .call::<VersionInfo>(&addr, &NodeRequest::Version)
        .await;
    assert!(r.is_err(), "a foreign certificate was accepted: {r:?}");
}
