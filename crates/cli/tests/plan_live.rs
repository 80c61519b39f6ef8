//! `maguey plan` without `--text` plans on the live cluster.

mod common;
use common::*;

#[test]
fn plan_commands_read_the_live_cluster() {
    let lab = lab(3);
    for i in 0..4 {
        lab.maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=1G",
            "-o",
            "noop",
            "-B",
            "maxmem=512M",
            "-n",
            "node1",
            &format!("p{i}"),
        ])
        .ok();
    }
    let r = lab.maguey(&["plan", "balance"]).ok();
    assert!(
        r.stdout.contains("Loaded 3 nodes, 4 instances"),
        "{}",
        r.stdout
    );
    let score = |tag: &str| -> f64 {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {tag} in {}", r.stdout))
    };
    // Four 512 MiB instances on one of three equal nodes: a clearly unbalanced cluster.
    assert!(score("Initial score:") > 1.0);
    assert!(score("Final score:") <= score("Initial score:"));
    let roll = lab.maguey(&["plan", "roll"]).ok().stdout;
    for n in ["node1", "node2", "node3"] {
        assert!(roll.contains(n), "{roll}");
    }
    let cap = lab
        .maguey(&[
            "plan",
            "capacity",
            "--standard-alloc",
            "1024,256,1",
            "--disk-template",
            "file",
        ])
        .ok()
        .stdout;
    let count: usize = cap
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("- ")
                .and_then(|l| l.strip_suffix(" instances allocated"))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{cap}"));
    // Memory bounds it: 2048 MiB free on node1 and 4096 on the others, 256 MiB each.
    assert!(count > 0 && count <= 40, "{cap}");
}
