//! Separate hosts in the lab: run as root, each node has its own network namespace and
//! address; a node can be cut off the network and brought back, or killed like a power loss.

mod common;
use common::*;
use std::time::Duration;

fn netns_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn nodes_are_separate_hosts_that_can_be_cut_off_and_killed() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Without root the lab keeps every node in one namespace; nothing to test here.
        let lab = TestLab::up_with(maguey_bin(), 2, &["--netns", "auto"]);
        assert!(!lab.has_netns());
        return;
    }
    let lab = TestLab::up_with(maguey_bin(), 2, &["--netns", "on"]);
    assert!(lab.has_netns());
    let ours = netns_of(std::process::id() as i32);
    let (p1, p2) = (lab.pid(1).unwrap(), lab.pid(2).unwrap());
    let (n1, n2) = (netns_of(p1), netns_of(p2));
    assert!(
        !n1.is_empty() && n1 != n2 && n1 != ours && n2 != ours,
        "{n1} {n2} {ours}"
    );
    assert!(lab.node_ip(2).starts_with("10."), "{}", lab.node_ip(2));
    let nodes = lab
        .maguey(&["node", "list", "-o", "name,pip", "--output", "json"])
        .ok()
        .json();
    assert_eq!(nodes[1]["pip"], lab.node_ip(2));

    // Cut off: the master cannot reach node2, and says so.
    lab.set_link(2, false);
    let r = lab.maguey(&[
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
        "cut1",
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("node2") || r.stdout.contains("node2"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // Back on the network: it works again.
    lab.set_link(2, true);
    assert!(wait_until(Duration::from_secs(60), || lab
        .maguey(&[
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
            "back1",
        ])
        .code
        == 0));

    // Power loss: the daemon is gone; the instance is reported on a node that is down.
    lab.kill_node(2);
    assert!(wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(format!("/proc/{p2}/stat")).is_err()
    }));
    let st = instances(&lab, "name,status");
    let back = st.iter().find(|i| i["name"] == "back1").unwrap();
    assert_eq!(back["status"], "ERROR_nodedown", "{st:?}");
}
