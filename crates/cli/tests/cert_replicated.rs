//! Certificates on a replicated cluster (docs/security.md): after the leader dies, the new
//! leader renews the short-lived node certificates by itself (every candidate holds the CA
//! key), the dead old master is skipped, and the cluster keeps working past the end of the
//! first certificates (Raft between the candidates included).

mod common;
use common::*;
use maguey_rpc::ca::NodeIdentity;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn maguey_on(lab: &TestLab, i: usize, args: &[&str]) -> Run {
    let o = Command::new(maguey_bin())
        .args(args)
        .env("MAGUEY_DIR", lab.node_dir(i))
        .env("MAGUEY_WATCHER_INTERVAL", "0")
        .output()
        .expect("running maguey");
    Run::from(o)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fingerprint(lab: &TestLab, i: usize) -> String {
    NodeIdentity::load(&lab.node_dir(i))
        .map(|id| id.fingerprint())
        .unwrap_or_default()
}

/// The fingerprints the config (as node `i` reads it through the master) records.
fn recorded(lab: &TestLab, i: usize, name: &str) -> Option<String> {
    let r = maguey_on(lab, i, &["cluster", "export-config"]);
    if r.code != 0 {
        return None;
    }
    let cfg: maguey_model::ConfigData = serde_json::from_str(&r.stdout).ok()?;
    cfg.node_by_name(name)
        .map(|n| n.certificate_fingerprint.clone())
}

fn replicated_lab() -> TestLab {
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated"]);
    assert!(
        wait_until(T, || {
            let l = lab.daemon_log(1);
            l.contains("node2 is a voter") && l.contains("node3 is a voter")
        }),
        "the candidates did not become voters\n{}",
        lab.logs()
    );
    lab
}

#[test]
fn a_new_leader_renews_short_lived_certificates() {
    let lab = replicated_lab();
    lab.maguey(&[
        "cluster",
        "renew-crypto",
        "--node-certificate-lifetime",
        "60",
    ])
    .ok();
    let first: Vec<String> = (1..=3).map(|i| fingerprint(&lab, i)).collect();
    let first_end =
        maguey_rpc::ca::not_after_pem(&NodeIdentity::load(&lab.node_dir(2)).unwrap().cert_pem)
            .unwrap();
    assert!(first_end - now() <= 60);

    // Power loss of the master: node2 or node3 leads.
    lab.kill_node(1);
    let mut leader = String::new();
    assert!(
        wait_until(T, || {
            leader = maguey_on(&lab, 2, &["cluster", "getmaster"])
                .stdout
                .trim()
                .to_string();
            leader == "node2" || leader == "node3"
        }),
        "no new master\n{}",
        lab.logs()
    );
    // The new leader renews node2's and node3's certificates by itself (node1, dead, is
    // skipped), and the config records them.
    let renewed = wait_until(Duration::from_secs(75), || {
        (2..=3).all(|i| {
            let fp = fingerprint(&lab, i);
            fp != first[i - 1] && recorded(&lab, 2, &format!("node{i}")).as_deref() == Some(&fp)
        })
    });
    assert!(
        renewed,
        "no renewal by the new leader {leader}\n{}",
        lab.logs()
    );
    // Past the end of the first certificates: jobs and Raft (a committed change read back
    // through the other candidate) go on with the renewed ones.
    assert!(
        wait_until(Duration::from_secs(60), || now() > first_end + 1),
        "the first certificates did not end"
    );
    maguey_on(&lab, 2, &["cluster", "add-tags", "after-renewal"]).ok();
    assert!(
        wait_until(T, || maguey_on(&lab, 3, &["cluster", "list-tags"])
            .stdout
            .contains("after-renewal")),
        "{}",
        lab.logs()
    );
    for i in 2..=3 {
        let id = NodeIdentity::load(&lab.node_dir(i)).unwrap();
        assert!(maguey_rpc::ca::not_after_pem(&id.cert_pem).unwrap() > now());
        assert_eq!(
            recorded(&lab, 3, &format!("node{i}")).as_deref(),
            Some(id.fingerprint().as_str())
        );
    }
    // node1 kept its first certificate (it was dead throughout).
    assert_eq!(fingerprint(&lab, 1), first[0]);
}

/// `renew-crypto --new-cluster-certificate` on a replicated cluster: every node trusts the new
/// CA alone with a certificate from it, every candidate gets the new CA key and admin
/// certificate from the leader, Raft and jobs go on; after the leader dies, the new one
/// admits the new admin certificate and signs with the new CA.
#[test]
fn a_replicated_cluster_rolls_its_ca() {
    let lab = replicated_lab();
    let old: Vec<NodeIdentity> = (1..=3)
        .map(|i| NodeIdentity::load(&lab.node_dir(i)).unwrap())
        .collect();
    let r = lab
        .maguey(&["cluster", "renew-crypto", "--new-cluster-certificate"])
        .ok();
    assert!(r.stdout.contains("trusts the new CA only"), "{}", r.stdout);
    let ca = maguey_rpc::ClusterCa::load(&lab.master_dir()).unwrap();
    assert_ne!(ca.fingerprint(), old[0].ca_fingerprint());
    let rolled: Vec<NodeIdentity> = (1..=3)
        .map(|i| NodeIdentity::load(&lab.node_dir(i)).unwrap())
        .collect();
    for (i, id) in rolled.iter().enumerate() {
        assert_eq!(
            maguey_rpc::tls::certs_from_pem(&id.ca_pem).unwrap().len(),
            1
        );
        assert_eq!(id.ca_fingerprint(), ca.fingerprint(), "node{}", i + 1);
        maguey_rpc::renew::verify_with(&id.cert_pem, &ca.cert_pem).unwrap();
        assert!(maguey_rpc::renew::verify_with(&old[i].cert_pem, &ca.cert_pem).is_err());
    }
    // Every candidate holds the new CA key and the new admin certificate.
    let admin = NodeIdentity::load_admin(&lab.master_dir()).unwrap();
    assert!(
        wait_until(T, || (2..=3).all(|i| {
            maguey_rpc::ClusterCa::load(&lab.node_dir(i)).is_ok_and(|c| c.key_pem == ca.key_pem)
                && NodeIdentity::load_admin(&lab.node_dir(i))
                    .is_ok_and(|a| a.cert_pem == admin.cert_pem)
        })),
        "the candidates did not get the new CA key and admin certificate\n{}",
        lab.logs()
    );
    // Nothing lost contact: a job commits (a majority of the voters) and three voters remain.
    lab.maguey(&["cluster", "add-tags", "after-roll"]).ok();
    let info = lab
        .maguey(&["cluster", "info", "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        info["Replication"]["voters"].as_array().map(Vec::len),
        Some(3),
        "{info}"
    );

    // The leader dies: the new one admits the new admin certificate and renews with the new
    // CA (node1, dead, skipped).
    lab.kill_node(1);
    assert!(
        wait_until(T, || {
            let m = maguey_on(&lab, 2, &["cluster", "getmaster"]).stdout;
            m.trim() == "node2" || m.trim() == "node3"
        }),
        "no new master\n{}",
        lab.logs()
    );
    let r = maguey_on(
        &lab,
        2,
        &["cluster", "renew-crypto", "--new-node-certificates"],
    );
    assert_eq!(r.code, 0, "{}{}\n{}", r.stdout, r.stderr, lab.logs());
    assert!(r.stdout.contains("node1: unreachable"), "{}", r.stdout);
    for i in 2..=3 {
        let id = NodeIdentity::load(&lab.node_dir(i)).unwrap();
        assert_ne!(id.fingerprint(), rolled[i - 1].fingerprint());
        maguey_rpc::renew::verify_with(&id.cert_pem, &ca.cert_pem).unwrap();
    }
    assert!(maguey_on(&lab, 3, &["cluster", "list-tags"])
        .ok()
        .stdout
        .contains("after-roll"));
}
