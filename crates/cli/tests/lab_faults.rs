//! Faults a user can cause in a lab (docs/lab.md): `maguey lab kill` (a power loss), `lab up`
//! restarting what was killed, `lab cut` and `lab heal` (a node's network link).

mod common;
use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// Free memory of each node as the master sees it: `None` where its RPC failed.
fn mfree(lab: &TestLab) -> Vec<(String, Option<u64>)> {
    let r = lab
        .maguey(&["node", "list", "-o", "name,mfree", "--output", "json"])
        .ok();
    r.json()
        .as_array()
        .expect("node rows")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["mfree"].as_u64(),
            )
        })
        .collect()
}

fn answers(lab: &TestLab, node: &str) -> bool {
    mfree(lab).iter().any(|(n, m)| n == node && m.is_some())
}

#[test]
fn kill_and_up_then_cut_and_heal() {
    let lab = lab(3);
    let d = lab.dir.path().display().to_string();
    assert!(answers(&lab, "node2"));
    let before = lab.pid(2).unwrap();

    // Bad usage: no such node, no lab.
    let r = lab.maguey(&["lab", "kill", "--dir", &d, "node9"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("node1, node2, node3"), "{}", r.stderr);
    let r = lab.maguey(&["lab", "kill", "--dir", "/nonexistent-lab", "node2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // Power loss of a node that is not the master: the master's RPCs to it fail.
    let r = lab.maguey(&["lab", "kill", "--dir", &d, "node2"]).ok();
    assert!(
        r.stdout
            .contains(&format!("killed node2: magueyd (pid {before})")),
        "{}",
        r.stdout
    );
    // Gone (its zombie reaped by whoever adopted it).
    assert!(wait_until(T, || !std::path::Path::new(&format!(
        "/proc/{before}"
    ))
    .exists()));
    let rows = mfree(&lab);
    assert_eq!(
        rows.iter()
            .map(|(n, m)| (n.as_str(), m.is_some()))
            .collect::<Vec<_>>(),
        [("node1", true), ("node2", false), ("node3", true)],
        "{rows:?}"
    );
    // Killing it again is harmless.
    let r = lab.maguey(&["lab", "kill", "--dir", &d, "2"]).ok();
    assert!(
        r.stdout.contains("node2: magueyd was not running"),
        "{}",
        r.stdout
    );

    // `lab up` starts what was killed, and only that; it answers when `lab up` returns.
    let (p1, p3) = (lab.pid(1).unwrap(), lab.pid(3).unwrap());
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert_ne!(lab.pid(2), Some(before));
    assert_eq!((lab.pid(1), lab.pid(3)), (Some(p1), Some(p3)));
    assert!(answers(&lab, "node2"), "{:?}", mfree(&lab));
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        "node2",
        "back1",
    ])
    .ok();

    // The master killed: any node's state directory still names it (`cluster getmaster`
    // reads the ssconf), and `lab up` brings it back.
    lab.maguey(&["lab", "kill", "--dir", &d, "node1"]).ok();
    let o = std::process::Command::new(maguey_bin())
        .args(["cluster", "getmaster"])
        .env("MAGUEY_DIR", lab.node_dir(3))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "node1");
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert!(answers(&lab, "node2"), "{:?}", mfree(&lab));

    if !lab.has_netns() {
        // Without root there are no links to cut: the commands say so.
        let r = lab.maguey(&["lab", "cut", "--dir", &d, "node2"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("no network namespaces"), "{}", r.stderr);
        return;
    }
    // Cut off: the node runs on, but the master cannot reach it.
    let pid = lab.pid(2).unwrap();
    let r = lab.maguey(&["lab", "cut", "--dir", &d, "node2"]).ok();
    assert!(r.stdout.contains("cut node2"), "{}", r.stdout);
    assert!(wait_until(T, || !answers(&lab, "node2")));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(answers(&lab, "node3"));
    // Healed: it answers again, the same daemon.
    let r = lab.maguey(&["lab", "heal", "--dir", &d, "node2"]).ok();
    assert!(r.stdout.contains("node2 is back"), "{}", r.stdout);
    assert!(wait_until(T, || answers(&lab, "node2")));
    assert_eq!(lab.pid(2), Some(pid));
    // `lab up` heals a cut node too.
    lab.maguey(&["lab", "cut", "--dir", &d, "node3"]).ok();
    assert!(wait_until(T, || !answers(&lab, "node3")));
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert!(wait_until(T, || answers(&lab, "node3")));
}
