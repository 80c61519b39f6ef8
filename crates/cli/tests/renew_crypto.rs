//! `maguey cluster renew-crypto --new-node-certificates` (docs/security.md) on running
//! daemons: every node gets a new certificate while an instance runs (its run state is not
//! touched), the config records the new fingerprints, the master commands nodes with its new
//! certificate and no longer with its old one, node servers present their new certificates,
//! and jobs go on (a second renewal included).

mod common;
use common::*;
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::client::RpcClient;
use maguey_rpc::{NodeRequest, RpcError, VersionInfo};
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn node_addr(lab: &TestLab, i: usize) -> String {
    format!("{}:{}", lab.node_ip(i), maguey_model::DEFAULT_RPC_PORT)
}

fn identities(lab: &TestLab) -> Vec<NodeIdentity> {
    (1..=3)
        .map(|i| NodeIdentity::load(&lab.node_dir(i)).expect("a node identity"))
        .collect()
}

/// The fingerprints the config records, per node name.
fn recorded(lab: &TestLab) -> BTreeMap<String, String> {
    let r = lab.maguey(&["cluster", "export-config"]).ok();
    let cfg: maguey_model::ConfigData = serde_json::from_str(&r.stdout).expect("config export");
    cfg.nodes
        .values()
        .map(|n| (n.name.clone(), n.certificate_fingerprint.clone()))
        .collect()
}

/// The fingerprint of the certificate node `i`'s TLS server presents.
async fn served(lab: &TestLab, i: usize, client: &NodeIdentity) -> String {
    use rustls::pki_types::ServerName;
    let tls = maguey_rpc::tls::client_config(client).unwrap();
    let tcp = tokio::net::TcpStream::connect(node_addr(lab, i))
        .await
        .expect("connect");
    let name = ServerName::try_from(lab.node_ip(i)).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate");
    maguey_rpc::ca::fingerprint_der(&certs[0])
}

async fn version(id: &NodeIdentity, addr: &str) -> Result<VersionInfo, RpcError> {
    RpcClient::new(id, T)
        .unwrap()
        .call(addr, &NodeRequest::Version)
        .await
}

#[test]
fn renew_crypto_replaces_every_node_certificate_while_instances_run() {
    let lab = lab(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=16M",
        "-o",
        "noop",
        "-n",
        "node2",
        "vm1",
    ])
    .ok();
    assert_eq!(status(&lab, "vm1"), "running");
    let run_file = lab.node_dir(2).join("run/fake/vm1.json");
    let run_before = std::fs::read(&run_file).expect("vm1's run file");
    let old = identities(&lab);
    let old_recorded = recorded(&lab);
    assert_eq!(old_recorded["node2"], old[1].fingerprint());

    let r = lab
        .maguey(&["cluster", "renew-crypto", "--new-node-certificates"])
        .ok();
    for n in ["node1", "node2", "node3"] {
        assert!(
            r.stdout
                .contains(&format!("{n}: new certificate installed")),
            "{}",
            r.stdout
        );
    }
    let new = identities(&lab);
    let now_recorded = recorded(&lab);
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        let name = format!("node{}", i + 1);
        assert_ne!(
            o.fingerprint(),
            n.fingerprint(),
            "{name} kept its certificate"
        );
        assert_eq!(
            o.ca_fingerprint(),
            n.ca_fingerprint(),
            "{name}: the same CA"
        );
        assert_eq!(now_recorded[&name], n.fingerprint(), "{name} in the config");
        assert_eq!(n.common_name().unwrap(), name);
        assert!(!lab.node_dir(i + 1).join("node.key.next").exists());
    }

    rt.block_on(async {
        for i in 2..=3 {
            // The master's old certificate commands nothing any more; its new one does.
            match version(&old[0], &node_addr(&lab, i)).await {
                Err(RpcError::Remote(m)) => {
                    assert!(m.contains("only the master commands this node"), "{m}")
                }
                other => panic!("node{i} obeyed the master's old certificate: {other:?}"),
            }
            let v = version(&new[0], &node_addr(&lab, i))
                .await
                .expect("the master's new certificate commands the node");
            assert_eq!(v.node_name, format!("node{i}"));
            // The node's server presents its new certificate.
            assert_eq!(served(&lab, i, &new[0]).await, new[i - 1].fingerprint());
        }
        assert_eq!(served(&lab, 1, &new[1]).await, new[0].fingerprint());
    });

    // The instance was not touched, and jobs go on with the new certificates.
    assert_eq!(std::fs::read(&run_file).unwrap(), run_before);
    assert_eq!(status(&lab, "vm1"), "running");
    lab.maguey(&["instance", "reboot", "vm1"]).ok();
    lab.maguey(&["instance", "migrate", "-n", "node3", "vm1"])
        .ok();
    assert_eq!(pnode(&lab, "vm1"), "node3");

    // A second renewal, from the renewed master.
    lab.maguey(&["cluster", "renew-crypto", "--new-node-certificates"])
        .ok();
    let third = identities(&lab);
    for (n, t) in new.iter().zip(&third) {
        assert_ne!(n.fingerprint(), t.fingerprint());
    }
    lab.maguey(&["instance", "migrate", "-n", "node2", "vm1"])
        .ok();
    assert_eq!(pnode(&lab, "vm1"), "node2");
    assert_eq!(status(&lab, "vm1"), "running");

    // Saying nothing to renew is a usage error.
    let r = lab.maguey(&["cluster", "renew-crypto"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
}
