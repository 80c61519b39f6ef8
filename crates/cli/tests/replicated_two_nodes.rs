//! Two-node replicated clusters (docs/replication.md, "Two-node clusters"): with a witness
//! either node may die and the other is (or becomes) the master, the witness never; without
//! one, a lost node leaves the other refusing config changes, its instances untouched, until
//! `cluster force-single` makes it go on alone; the node cut off is then kept from having
//! its instances started elsewhere until it is confirmed off or added again. Also
//! `cluster destroy` of a replicated cluster.

mod common;
use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn voters_ready(lab: &TestLab, names: &[&str]) {
    assert!(
        wait_until(T, || {
            let l = lab.daemon_log(1);
            names.iter().all(|n| l.contains(&format!("{n} is a voter")))
        }),
        "the candidates did not become voters\n{}",
        lab.logs()
    );
}

/// A config change through node `i` works (a tag added and listed).
fn writes_through(lab: &TestLab, i: usize, tag: &str) -> bool {
    let listed = || {
        let r = lab.maguey_on(i, &["cluster", "list-tags"]);
        r.code == 0 && r.stdout.lines().any(|l| l.trim() == tag)
    };
    listed() || (lab.maguey_on(i, &["cluster", "add-tags", tag]).code == 0 && listed())
}

fn add_diskless(lab: &TestLab, on: usize, node: &str, name: &str) {
    lab.maguey_on(
        on,
        &[
            "instance",
            "add",
            "-t",
            "diskless",
            "--no-install",
            "-n",
            node,
            name,
        ],
    )
    .ok();
}

/// Whether node `i`'s fake hypervisor runs instance `name`.
fn runs(lab: &TestLab, i: usize, name: &str) -> bool {
    lab.node_dir(i)
        .join("run/fake")
        .join(format!("{name}.json"))
        .exists()
}

#[test]
fn two_nodes_and_a_witness_either_node_may_die() {
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated", "--witness"]);
    let d = lab.dir.path().display().to_string();
    voters_ready(&lab, &["node2", "node3"]);
    // The witness holds the log, but no CA key and no admin certificate.
    assert!(lab.node_dir(3).join("raft.redb").exists());
    assert!(!lab.node_dir(3).join("ca.key").exists());
    assert!(!lab.node_dir(3).join("admin.pem").exists());
    // It runs no instances.
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        "node3",
        "on-witness",
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    lab.maguey(&["cluster", "add-tags", "before"]).ok();

    // The master dies: node2 takes over (the witness may win the election, then hands over).
    lab.kill_node(1);
    assert!(
        wait_until(T, || lab.getmaster(2) == "node2"
            && writes_through(&lab, 2, "on2")),
        "node2 did not become the master\n{}",
        lab.logs()
    );
    // node1 comes back and follows; then node2 dies and node1 is the master again.
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert!(
        wait_until(T, || lab.getmaster(1) == "node2"),
        "{}",
        lab.logs()
    );
    assert!(
        wait_until(T, || lab
            .maguey_on(1, &["cluster", "list-tags"])
            .stdout
            .contains("on2")),
        "{}",
        lab.logs()
    );
    lab.kill_node(2);
    assert!(
        wait_until(T, || lab.getmaster(1) == "node1"
            && writes_through(&lab, 1, "on1")),
        "node1 did not become the master again\n{}",
        lab.logs()
    );
    let tags = lab.maguey_on(1, &["cluster", "list-tags"]).ok().stdout;
    for t in ["before", "on2", "on1"] {
        assert!(tags.contains(t), "{t} lost: {tags}");
    }
    // The witness was never the master.
    assert!(
        !lab.daemon_log(3).contains("Raft leader in term"),
        "{}",
        lab.daemon_log(3)
    );
    assert_eq!(lab.getmaster(3), "node1");
}

#[test]
fn two_nodes_without_a_witness_force_single_after_a_partition() {
    let lab = TestLab::up_with(maguey_bin(), 2, &["--replicated"]);
    if !lab.has_netns() {
        // Without root there are no links to cut (crates/cli/tests/lab_faults.rs).
        return;
    }
    let d = lab.dir.path().display().to_string();
    voters_ready(&lab, &["node2"]);
    add_diskless(&lab, 1, "node1", "vm1");
    add_diskless(&lab, 1, "node2", "vm2");
    assert!(runs(&lab, 1, "vm1") && runs(&lab, 2, "vm2"));
    assert!(wait_until(T, || lab.getmaster(2) == "node1"));

    // A partition: node1 (the master) and node2 each see only themselves.
    lab.maguey(&["lab", "cut", "--dir", &d, "node1"]).ok();
    let mut refusal = String::new();
    assert!(
        wait_until(T, || {
            let r = lab.maguey_on(2, &["cluster", "add-tags", "refused"]);
            refusal = format!("{}{}", r.stdout, r.stderr);
            r.code != 0 && refusal.contains("no quorum")
        }),
        "{refusal}\n{}",
        lab.logs()
    );
    assert!(
        refusal.contains("sees 1 of 2 voters (node2); missing: node1"),
        "{refusal}"
    );
    // The instances run on; a stale read through node2 still lists them, marked so.
    assert!(runs(&lab, 1, "vm1") && runs(&lab, 2, "vm2"));
    let r = lab
        .maguey_on(
            2,
            &[
                "instance",
                "list",
                "--stale-ok",
                "-o",
                "name,pnode",
                "--output",
                "json",
            ],
        )
        .ok();
    assert!(
        r.stdout.contains("vm1") && r.stdout.contains("vm2"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("possibly stale"), "{}", r.stderr);

    // node2 goes on alone, deliberately.
    let r = lab.maguey_on(2, &["cluster", "force-single"]);
    assert_eq!(r.code, 2, "--yes-do-it is required: {}", r.stderr);
    let r = lab
        .maguey_on(2, &["cluster", "force-single", "--yes-do-it"])
        .ok();
    assert!(r.stdout.contains("cut off: node1"), "{}", r.stdout);
    assert!(
        wait_until(T, || lab.getmaster(2) == "node2"
            && writes_through(&lab, 2, "alone")),
        "{}",
        lab.logs()
    );
    assert!(runs(&lab, 2, "vm2"));
    // node1 may still run vm1: it is neither started nor failed over elsewhere.
    for args in [
        &["instance", "startup", "vm1"][..],
        &["instance", "failover", "--ignore-consistency", "-f", "vm1"][..],
    ] {
        let r = lab.maguey_on(2, args);
        assert_ne!(r.code, 0, "{args:?}: {}", r.stdout);
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(
            out.contains("cut off by `cluster force-single`")
                && out.contains("--confirm-off node1"),
            "{args:?}: {out}"
        );
    }

    // The link comes back: node1's old term is refused, it is no candidate of node2's.
    lab.maguey(&["lab", "heal", "--dir", &d, "node1"]).ok();
    assert!(writes_through(&lab, 2, "healed"));
    // Added again, it follows the new epoch, and is no longer cut off.
    lab.maguey_on(2, &["node", "modify", "--master-candidate", "yes", "node1"])
        .ok();
    assert!(
        wait_until(T, || lab.getmaster(1) == "node2"
            && lab
                .maguey_on(1, &["cluster", "list-tags"])
                .stdout
                .contains("healed")),
        "{}",
        lab.logs()
    );
    let tags = lab.maguey_on(1, &["cluster", "list-tags"]).ok().stdout;
    assert!(!tags.contains("refused"), "{tags}");
    // Once a voter again, it is no longer cut off: vm1 may be started (it runs on node1).
    let mut out = String::new();
    assert!(
        wait_until(T, || {
            let r = lab.maguey_on(2, &["instance", "startup", "vm1"]);
            out = format!("{}{}", r.stdout, r.stderr);
            r.code == 0
        }),
        "{out}\n{}",
        lab.logs()
    );
    // Both vote again: a write needs both, and commits.
    let info = lab
        .maguey_on(1, &["cluster", "info", "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        info["Replication"]["voters"].as_array().map(Vec::len),
        Some(2),
        "{info}"
    );
    assert!(writes_through(&lab, 1, "together"));
}

#[test]
fn a_replicated_cluster_is_destroyed_on_every_candidate() {
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated"]);
    voters_ready(&lab, &["node2", "node3"]);
    // The other candidates leave (each first leaves the voters), then the cluster goes.
    for n in ["node3", "node2"] {
        lab.maguey(&["node", "remove", n]).ok();
    }
    let r = lab.maguey(&["cluster", "destroy", "--yes-do-it"]).ok();
    assert!(r.stdout.contains("cluster destroyed"), "{}", r.stdout);
    assert!(
        wait_until(T, || (1..=3).all(|i| lab.pid(i).is_none())),
        "daemons still running\n{}",
        lab.logs()
    );
    for i in 1..=3 {
        for f in [
            "raft.redb",
            "raft-id.json",
            "node.key",
            "ca.pem",
            "ssconf.json",
        ] {
            assert!(
                !lab.node_dir(i).join(f).exists(),
                "node{i} kept {f}\n{}",
                lab.logs()
            );
        }
    }
}
