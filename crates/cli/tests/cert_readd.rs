//! A node kept offline past its certificate's end (docs/security.md, "A node kept offline past
//! its certificate's end"): its expired certificate is refused at every TLS handshake, and
//! `maguey node add NAME --readd` plus `magueyd --join ... --readd` give it a new certificate
//! (the config records it), bring it back online and keep its instance running, untouched.

mod common;
use common::*;
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::client::RpcClient;
use maguey_rpc::{NodeRequest, RpcError, VersionInfo};
use std::time::Duration;

fn magueyd() -> std::path::PathBuf {
    maguey_test_infra::bins::beside(maguey_bin(), "magueyd")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn node_addr(lab: &TestLab, i: usize) -> String {
    format!("{}:{}", lab.node_ip(i), maguey_model::DEFAULT_RPC_PORT)
}

fn version(
    rt: &tokio::runtime::Runtime,
    id: &NodeIdentity,
    addr: &str,
) -> Result<VersionInfo, RpcError> {
    rt.block_on(async {
        RpcClient::new(id, Duration::from_secs(10))
            .unwrap()
            .call(addr, &NodeRequest::Version)
            .await
    })
}

/// The node's recorded certificate fingerprint and its offline flag, from the config.
fn recorded(lab: &TestLab, name: &str) -> (String, bool) {
    let r = lab.maguey(&["cluster", "export-config"]).ok();
    let cfg: maguey_model::ConfigData = serde_json::from_str(&r.stdout).expect("config export");
    let n = cfg.node_by_name(name).expect("the node in the config");
    (n.certificate_fingerprint.clone(), n.offline)
}

/// Kills the re-joined daemon at the end (the lab's own `lab down` also stops it).
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn node_offline_past_its_certificate_is_readded_with_its_instance() {
    // node2's daemon runs in this test's own namespace (no per-node namespaces), so that the
    // test can start it again.
    let lab = TestLab::up_with(maguey_bin(), 2, &["--netns", "off"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    lab.maguey(&[
        "cluster",
        "renew-crypto",
        "--node-certificate-lifetime",
        "60",
    ])
    .ok();
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

    // Re-adding needs a node of the config, other than the master.
    let r = lab.maguey(&["node", "add", "ghost", "--readd"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not in the cluster"), "{}", r.stderr);
    let r = lab.maguey(&["node", "add", "node1", "--readd"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("is the master"), "{}", r.stderr);
    // A plain add of a node of the config says how to re-add it.
    let ip2 = lab.node_ip(2);
    let r = lab.maguey(&["node", "add", "node2", "--address", &ip2]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--readd"), "{}", r.stderr);

    // node2 goes offline, its daemon stopped; its instance's run state stays.
    let old = NodeIdentity::load(&lab.node_dir(2)).unwrap();
    let (fp, _) = recorded(&lab, "node2");
    assert_eq!(fp, old.fingerprint());
    // Valid but not the master's: node1 answers 403.
    let e = version(&rt, &old, &node_addr(&lab, 1)).unwrap_err();
    assert!(matches!(e, RpcError::Remote(_)), "{e}");
    lab.maguey(&["node", "modify", "--offline", "yes", "--force", "node2"])
        .ok();
    let pid = lab.pid(2).expect("node2's pid");
    // SAFETY: kill(2) on node2's magueyd, which this test's lab started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            !maguey_test_infra::process::alive(pid as u32)
        }),
        "node2's magueyd did not stop"
    );
    let end = maguey_rpc::ca::not_after_pem(&old.cert_pem).unwrap();
    assert!(end - now() <= 60, "{} s left", end - now());
    assert!(
        wait_until(Duration::from_secs(90), || now() > end + 1),
        "node2's certificate did not end"
    );

    // The expired certificate: refused at the TLS handshake by the master and by itself.
    let e = version(&rt, &old, &node_addr(&lab, 1)).unwrap_err();
    assert!(matches!(e, RpcError::Unreachable(_)), "{e}");

    // Re-add: a token from the admin, then node2 joins again with its state directory.
    let token = lab
        .maguey(&["node", "add", "node2", "--readd", "--token-only"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let url = format!("https://{}", node_addr(&lab, 1));
    let dir2 = lab.node_dir(2);
    let log = std::fs::File::create(lab.dir.path().join("node2-readd.log")).unwrap();
    let _child = Child(
        std::process::Command::new(magueyd())
            .args(["--state-dir", dir2.to_str().unwrap()])
            .args(["--join", &url, "--token", &token, "--node-name", "node2"])
            .arg("--readd")
            .env("MAGUEY_WATCHER_INTERVAL", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let readded = wait_until(Duration::from_secs(60), || {
        let (fp, offline) = recorded(&lab, "node2");
        !offline
            && NodeIdentity::load(&dir2)
                .is_ok_and(|id| id.fingerprint() == fp && fp != old.fingerprint())
    });
    assert!(
        readded,
        "node2 was not re-added\n{}\n{}",
        std::fs::read_to_string(lab.dir.path().join("node2-readd.log")).unwrap_or_default(),
        lab.logs()
    );
    let new = NodeIdentity::load(&dir2).unwrap();
    assert!(maguey_rpc::ca::not_after_pem(&new.cert_pem).unwrap() > now());

    // Its instance ran on throughout, and the master commands node2 again.
    assert_eq!(status(&lab, "vm1"), "running");
    lab.maguey(&["instance", "reboot", "vm1"]).ok();
    assert_eq!(status(&lab, "vm1"), "running");
    // The old certificate stays refused; the token was used up.
    let e = version(&rt, &old, &node_addr(&lab, 2)).unwrap_err();
    assert!(matches!(e, RpcError::Unreachable(_)), "{e}");
    let again = std::process::Command::new(magueyd())
        .args(["--state-dir", dir2.to_str().unwrap()])
        .args([
            "--join",
            &url,
            "--token",
            &token,
            "--node-name",
            "node2",
            "--readd",
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("invalid, used or expired join token"));
    lab.maguey(&["cluster", "verify"]).ok();
}
