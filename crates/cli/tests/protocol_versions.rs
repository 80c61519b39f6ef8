//! The versioned wire against a lab's real daemons: a CLI one protocol version older (or
//! newer) works with the master for the requests both know, versions too far apart and
//! requests the master or a node does not know are refused naming both versions, and node
//! RPCs without the version header (protocol 1) still work.

mod common;
use common::*;
use maguey_client::{ClientError, MasterClient};
use maguey_model::{JobStatus, OpCode, Ssconf};
use maguey_ops::query::Resource;
use maguey_rpc::version::{HEADER, NEWEST, OLDEST, PROTOCOL_VERSION, WITHOUT_HEADER};
use maguey_rpc::{NodeIdentity, NodeRequest, RpcClient, RpcError, VersionInfo};
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn run_delay(c: &MasterClient) -> JobStatus {
    let id = c
        .submit(
            vec![OpCode::TestDelay(maguey_model::OpTestDelay {
                duration: 0.1,
                on_master: true,
                on_nodes: vec!["node2".into()],
                repeat: 0,
                fail: false,
            })],
            0,
        )
        .await
        .expect("submit");
    let deadline = std::time::Instant::now() + T;
    loop {
        let j = c.job(id).await.expect("job");
        if j.status.is_finalized() || std::time::Instant::now() > deadline {
            return j.status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn peers_one_protocol_version_apart_keep_working() {
    assert_eq!(OLDEST, PROTOCOL_VERSION - 1);
    let lab = lab(2);
    let dir = lab.master_dir();
    let id = NodeIdentity::load(&dir).expect("identity");
    let ssconf: Ssconf =
        serde_json::from_slice(&std::fs::read(dir.join("ssconf.json")).unwrap()).unwrap();
    let base = format!("https://{}:{}", ssconf.master_ip, ssconf.rpc_port);
    // The master API takes the admin certificate; node RPCs, the master's.
    let admin = NodeIdentity::load_admin(&dir).expect("admin identity");
    let rpc = |v: u32| RpcClient::with_protocol(&id, T, v).expect("client");
    let arpc = |v: u32| RpcClient::with_protocol(&admin, T, v).expect("client");
    let master = |v: u32| MasterClient::with_rpc(arpc(v), base.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // An older CLI (protocol 1 sent no header), this one and a newer one: everything
        // both sides know works.
        for v in [OLDEST, PROTOCOL_VERSION, NEWEST] {
            let c = master(v);
            assert_eq!(run_delay(&c).await, JobStatus::Success, "protocol {v}");
            let r = c
                .query(Resource::Node, vec![], vec!["name".into()])
                .await
                .expect("query");
            assert_eq!(r.rows.len(), 2, "protocol {v}");
            assert!(!c.jobs(false).await.expect("jobs").is_empty());
            assert_eq!(c.config().await.expect("config").nodes.len(), 2);
            assert!(!c.fields("instance").await.expect("fields").is_empty());
        }

        // Versions further apart are refused, naming both.
        for v in [OLDEST - 1, NEWEST + 1] {
            match master(v).jobs(false).await {
                Err(ClientError::Refused(m)) => assert!(
                    m.contains(&format!(
                        "the peer speaks protocol {v}, this daemon protocol {PROTOCOL_VERSION}"
                    )),
                    "{m}"
                ),
                other => panic!("protocol {v}: expected a refusal, got {other:?}"),
            }
        }

        // A newer CLI's request the master does not know.
        let e = arpc(NEWEST)
            .get_json::<Value>(&format!("{base}/luxi/networks"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RpcError::Remote(format!(
                "GET /luxi/networks is not known here: this daemon speaks protocol \
                 {PROTOCOL_VERSION}, the peer protocol {NEWEST}; upgrade this node to use it"
            ))
        );
        // A handler's own 404 is left alone.
        let e = arpc(NEWEST)
            .get_json::<Value>(&format!("{base}/luxi/jobs/999999"))
            .await
            .unwrap_err();
        assert_eq!(e, RpcError::Remote("job 999999 not found".into()));

        // Node RPC to node2, as a newer master: a known procedure works, an unknown one is
        // refused with both versions.
        let cfg = master(PROTOCOL_VERSION).config().await.unwrap();
        let node2 = cfg.node_by_name("node2").expect("node2");
        let addr = format!("{}:{}", node2.primary_ip, cfg.cluster.rpc_port);
        let v: VersionInfo = rpc(NEWEST)
            .call(&addr, &NodeRequest::Version)
            .await
            .expect("version from a newer master");
        assert_eq!(v.protocol, PROTOCOL_VERSION);
        let resp = rpc(NEWEST)
            .http()
            .post(format!("https://{addr}/rpc"))
            .json(&json!({"procedure": "frobnicate", "args": {"x": 1}}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), reqwest::StatusCode::NOT_IMPLEMENTED);
        assert_eq!(
            resp.headers().get(HEADER).and_then(|h| h.to_str().ok()),
            Some(PROTOCOL_VERSION.to_string().as_str())
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(
            body,
            json!({"error": format!(
                "procedure 'frobnicate' is not known here: this daemon speaks protocol \
                 {PROTOCOL_VERSION}, the peer protocol {NEWEST}; upgrade this node to use it"
            )})
        );

        // Node RPC without the header (a protocol-1 master) still works.
        let old = rpc(WITHOUT_HEADER);
        let resp = old
            .http()
            .post(format!("https://{addr}/rpc"))
            .json(&NodeRequest::Version)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let v: VersionInfo = old
            .call(&addr, &NodeRequest::Version)
            .await
            .expect("version without the header");
        assert_eq!(v.node_name, "node2");
        let names: Vec<String> = old
            .call(
                &addr,
                &NodeRequest::InstanceList {
                    hypervisor: "fake".into(),
                },
            )
            .await
            .expect("instance list without the header");
        assert!(names.is_empty(), "{names:?}");
    });
    // The CLI of this build (protocol N) and `cluster verify` with every node at N.
    lab.maguey(&["node", "list"]).ok();
    lab.maguey(&["cluster", "verify"]).ok();
}
