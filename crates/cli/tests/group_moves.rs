//! Groups against real daemons: the cluster's instance policy from `cluster modify`, the
//! balance of one group at a time (`cluster balance -G`, `plan balance -G`), and instances
//! moving between groups (`instance change-group`, `group evacuate`, with `--dry-run`).

mod common;
use common::*;

fn add(lab: &TestLab, name: &str, node: &str) {
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=16M",
        "-o",
        "noop",
        "-B",
        "maxmem=256M,minmem=256M",
        "-n",
        node,
        name,
    ])
    .ok();
}

fn in_rack2(node: &str) -> bool {
    node == "node3" || node == "node4"
}

#[test]
fn cluster_ipolicy_per_group_balance_and_moves_between_groups() {
    let lab = lab(4);

    // The cluster's instance policy, with Ganeti's option names.
    lab.maguey(&[
        "cluster",
        "modify",
        "--ipolicy-vcpu-ratio",
        "3",
        "--ipolicy-bounds-specs",
        "min:memory-size=32,cpu-count=1/max:memory-size=2048,cpu-count=4",
        "--ipolicy-std-specs",
        "memory-size=64,cpu-count=1",
        "--ipolicy-disk-templates",
        "file,diskless",
    ])
    .ok();
    let info = lab
        .maguey(&["cluster", "info", "--output", "json"])
        .ok()
        .json();
    let ip = &info["Instance policy"];
    assert_eq!(ip["vcpu-ratio"], 3.0, "{info}");
    assert_eq!(ip["minmax"][0]["max"]["memory-size"], 2048, "{info}");
    assert_eq!(ip["std"]["memory-size"], 64, "{info}");
    assert_eq!(
        ip["disk-templates"],
        serde_json::json!(["file", "diskless"])
    );
    let serial = lab.serial();
    for (args, code, why) in [
        (
            vec!["--ipolicy-vcpu-ratio", "0"],
            1,
            "ratios must be positive",
        ),
        (
            vec!["--ipolicy-std-specs", "memory-size=4096"],
            1,
            "outside every min/max pair",
        ),
        (
            vec!["--ipolicy-bounds-specs", "min:memory-size=x"],
            2,
            "memory-size",
        ),
        (
            vec!["--ipolicy-vcpu-ratio", "many"],
            2,
            "--ipolicy-vcpu-ratio",
        ),
    ] {
        let mut a = vec!["cluster", "modify"];
        a.extend(args.iter());
        let r = lab.maguey(&a);
        assert_eq!(r.code, code, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains(why),
            "{args:?}: {}{}",
            r.stdout,
            r.stderr
        );
    }
    assert_eq!(lab.serial(), serial, "a refused policy changed the config");

    // Two groups, each unbalanced: default (node1, node2) and rack2 (node3, node4).
    lab.maguey(&["group", "add", "rack2"]).ok();
    lab.maguey(&["group", "assign-nodes", "rack2", "node3", "node4"])
        .ok();
    for (i, n) in [
        ("a1", "node1"),
        ("a2", "node1"),
        ("a3", "node1"),
        ("r1", "node3"),
        ("r2", "node3"),
        ("r3", "node3"),
    ] {
        add(&lab, i, n);
    }
    // hbal needs a group on a multi-group cluster.
    let r = lab.maguey(&["plan", "balance"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--group"), "{}", r.stderr);
    let r = lab.maguey(&["plan", "balance", "-G", "rack2"]).ok();
    assert!(
        r.stdout.contains("Selected node group: rack2"),
        "{}",
        r.stdout
    );
    // One group only: rack2's instances spread over rack2, default's stay.
    let r = lab
        .maguey(&["cluster", "balance", "-G", "rack2", "--execute"])
        .ok();
    assert!(!r.stdout.contains("Group default"), "{}", r.stdout);
    assert!(["a1", "a2", "a3"].iter().all(|i| pnode(&lab, i) == "node1"));
    let r_nodes: Vec<String> = ["r1", "r2", "r3"].iter().map(|i| pnode(&lab, i)).collect();
    assert!(r_nodes.iter().all(|n| in_rack2(n)), "{r_nodes:?}");
    assert!(
        r_nodes.iter().any(|n| n == "node4"),
        "{r_nodes:?}\n{}",
        r.stdout
    );
    // Every group on its own: nothing crosses a group.
    let r = lab.maguey(&["cluster", "balance", "--execute"]).ok();
    let a_nodes: Vec<String> = ["a1", "a2", "a3"].iter().map(|i| pnode(&lab, i)).collect();
    assert!(a_nodes.iter().all(|n| !in_rack2(n)), "{a_nodes:?}");
    assert!(
        a_nodes.iter().any(|n| n == "node2"),
        "{a_nodes:?}\n{}",
        r.stdout
    );
    assert!(["r1", "r2", "r3"].iter().all(|i| in_rack2(&pnode(&lab, i))));
    let r = lab.maguey(&["cluster", "balance", "-G", "nowhere"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // One instance to another group: the plan, then the move (live, with its disk).
    let serial = lab.serial();
    let r = lab
        .maguey(&[
            "instance",
            "change-group",
            "a1",
            "--to",
            "rack2",
            "--dry-run",
        ])
        .ok();
    assert!(
        r.stdout.contains("plan: a1: live migration to node"),
        "{}",
        r.stdout
    );
    assert!(!in_rack2(&pnode(&lab, "a1")));
    assert_eq!(lab.serial(), serial);
    lab.maguey(&["instance", "change-group", "a1", "--to", "rack2"])
        .ok();
    assert!(in_rack2(&pnode(&lab, "a1")));
    assert_eq!(status(&lab, "a1"), "running");
    let r = lab.maguey(&["instance", "change-group", "a1", "--to", "rack2"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot be a target"), "{}", r.stderr);

    // The whole of rack2 back to default, one move at a time.
    let r = lab
        .maguey(&["group", "evacuate", "rack2", "--dry-run"])
        .ok();
    assert_eq!(r.stdout.matches("plan: ").count(), 4, "{}", r.stdout);
    lab.maguey(&[
        "group",
        "evacuate",
        "rack2",
        "--to",
        "default",
        "--sequential",
    ])
    .ok();
    for i in ["a1", "a2", "a3", "r1", "r2", "r3"] {
        let n = pnode(&lab, i);
        assert!(!in_rack2(&n), "{i} on {n}");
        assert_eq!(status(&lab, i), "running", "{i}");
    }
    let r = lab.maguey(&["group", "evacuate", "rack2", "--to", "rack2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
