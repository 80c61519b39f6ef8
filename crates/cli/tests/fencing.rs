//! Fencing by term (docs/security.md): every master→node RPC carries the cluster and the
//! master's term; a node stores the highest term a master candidate sent, refuses lower ones
//! and other clusters, keeps its term across a restart, and a certificate that is not a
//! candidate's changes nothing, whatever term it sends.

mod common;
use common::*;
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::client::RpcClient;
use maguey_rpc::{Fence, NodeRequest, RpcError, VersionInfo};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
/// `maguey_node::fence::TERM_FILE`.
const TERM_FILE: &str = "master-term.json";

fn node_addr(lab: &TestLab, i: usize) -> String {
    format!("{}:{}", lab.node_ip(i), maguey_model::DEFAULT_RPC_PORT)
}

fn ssconf(lab: &TestLab, i: usize) -> maguey_model::Ssconf {
    std::fs::read(lab.node_dir(i).join("ssconf.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The cluster and term in node `i`'s term file.
fn stored(lab: &TestLab, i: usize) -> Option<(String, u64)> {
    let bytes = std::fs::read(lab.node_dir(i).join(TERM_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((v["cluster"].as_str()?.to_string(), v["term"].as_u64()?))
}

fn stored_term(lab: &TestLab, i: usize) -> Option<u64> {
    stored(lab, i).map(|(_, t)| t)
}

fn add_diskless(lab: &TestLab, node: &str, name: &str) -> Run {
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        node,
        name,
    ])
}

async fn version(
    id: &NodeIdentity,
    fence: Option<Fence>,
    addr: &str,
) -> Result<VersionInfo, RpcError> {
    let mut rpc = RpcClient::new(id, T).unwrap();
    if let Some(f) = fence {
        rpc = rpc.with_fence(f);
    }
    rpc.call(addr, &NodeRequest::Version).await
}

#[test]
fn terms_fence_deposed_masters_and_only_candidates_raise_them() {
    let lab = lab(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let master_id = NodeIdentity::load(&lab.master_dir()).unwrap();
    let node3 = NodeIdentity::load(&lab.node_dir(3)).unwrap();

    // node3 is no longer a master candidate; node2 learns it from the ssconf.
    lab.maguey(&["node", "modify", "--master-candidate", "no", "node3"])
        .ok();
    assert!(wait_until(T, || {
        let ss = ssconf(&lab, 2);
        !ss.cluster_uuid.is_empty()
            && ss
                .master_candidate_certificates
                .contains(&master_id.fingerprint())
            && !ss
                .master_candidate_certificates
                .contains(&node3.fingerprint())
    }));
    let cluster = ssconf(&lab, 2).cluster_uuid;
    // The master's requests stamped node2 with the first term, 0600.
    assert_eq!(stored(&lab, 2), Some((cluster.clone(), 1)));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(lab.node_dir(2).join(TERM_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    rt.block_on(async {
        // A non-candidate's certificate sending term+1000: refused, nothing stored.
        let e = version(&node3, Some(Fence::new(&cluster, 1001)), &node_addr(&lab, 2))
            .await
            .unwrap_err();
        assert!(matches!(&e, RpcError::Remote(m) if m.contains("only the master")), "{e:?}");
        // A request for another cluster, even from the master's certificate.
        let e = version(&master_id, Some(Fence::new("another-cluster", 7)), &node_addr(&lab, 2))
            .await
            .unwrap_err();
        assert!(matches!(&e, RpcError::Remote(m) if m.contains(&format!("belongs to cluster {cluster}"))), "{e:?}");
        // A request without the headers (an older master) is served as before.
        let v = version(&master_id, None, &node_addr(&lab, 2)).await.unwrap();
        assert_eq!(v.node_name, "node2");
    });
    assert_eq!(stored_term(&lab, 2), Some(1));
    // The real master keeps working.
    add_diskless(&lab, "node2", "before1").ok();

    // A newer master (term 5, the master's certificate standing in for a new leader's)
    // commands node2: the master at term 1 is now deposed there, not on node3.
    rt.block_on(async {
        let v = version(
            &master_id,
            Some(Fence::new(&cluster, 5)),
            &node_addr(&lab, 2),
        )
        .await
        .unwrap();
        assert_eq!(v.node_name, "node2");
    });
    assert_eq!(stored_term(&lab, 2), Some(5));
    let r = add_diskless(&lab, "node2", "fenced1");
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("lower than term 5"), "{out}");
    add_diskless(&lab, "node3", "still1").ok();

    // Power loss and restart of node2: it still refuses the deposed master.
    let d = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "kill", "--dir", &d, "node2"]).ok();
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert_eq!(stored_term(&lab, 2), Some(5));
    let r = add_diskless(&lab, "node2", "fenced2");
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("lower than term 5"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    rt.block_on(async {
        let e = version(
            &master_id,
            Some(Fence::new(&cluster, 4)),
            &node_addr(&lab, 2),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, RpcError::Remote(m) if m.contains("lower than term 5")),
            "{e:?}"
        );
        version(
            &master_id,
            Some(Fence::new(&cluster, 5)),
            &node_addr(&lab, 2),
        )
        .await
        .expect("the newer master still commands node2");
    });
}
