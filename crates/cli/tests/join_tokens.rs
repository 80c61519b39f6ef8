//! Join tokens: a node joins with its token once; a reused or forged token is refused.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn magueyd() -> std::path::PathBuf {
    maguey_test_infra::bins::beside(maguey_bin(), "magueyd")
}

#[test]
fn join_tokens_are_one_time_and_checked() {
    // node7's daemon runs in this test's own namespace: no per-node namespaces here.
    let lab = TestLab::up_with(maguey_bin(), 1, &["--netns", "off"]);
    let ip = lab.node_ip(7);
    let token = lab
        .maguey(&["node", "add", "node7", "--address", &ip, "--token-only"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let url = format!(
        "https://{}:{}",
        lab.node_ip(1),
        maguey_model::DEFAULT_RPC_PORT
    );
    let listen = format!("{ip}:{}", maguey_model::DEFAULT_RPC_PORT);
    let join = |dir: &Path, token: &str| {
        let mut c = Command::new(magueyd());
        c.args([
            "--state-dir",
            dir.to_str().unwrap(),
            "--join",
            &url,
            "--token",
            token,
            "--node-name",
            "node7",
            "--listen",
            &listen,
        ]);
        c
    };
    // A forged secret with the right CA fingerprint: refused, nothing joins.
    let forged = format!("{}.{}", "0".repeat(64), token.split('.').nth(1).unwrap());
    let d0 = tempfile::tempdir().unwrap();
    let o = join(d0.path(), &forged).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid, used or expired join token"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!d0.path().join("node.pem").exists());

    // The real token: the node joins and OP_NODE_ADD adds it.
    let d1 = tempfile::tempdir().unwrap();
    let mut child = join(d1.path(), &token)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let joined = wait_until(Duration::from_secs(60), || {
        let r = lab.maguey(&["node", "list", "-o", "name", "--output", "json"]);
        r.code == 0
            && r.json()
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n["name"] == "node7"))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(joined, "node7 did not join\n{}", lab.logs());

    // The same token again: refused.
    let d2 = tempfile::tempdir().unwrap();
    let o = join(d2.path(), &token).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid, used or expired join token"));
}
