//! `instance add` without a node asks the placement engine (iallocator protocol, in-process).

mod common;
use common::*;
use std::collections::BTreeMap;

#[test]
fn instances_without_a_node_are_spread_by_the_allocator() {
    let lab = lab(3);
    for i in 0..6 {
        let r = lab
            .maguey(&[
                "instance",
                "add",
                "-t",
                "file",
                "--disk",
                "0:size=16M",
                "-o",
                "noop",
                "-B",
                "maxmem=512M",
                &format!("auto{i}"),
            ])
            .ok();
        assert!(
            r.stdout.contains("the allocator placed instance"),
            "{}",
            r.stdout
        );
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in instances(&lab, "name,pnode,status") {
        assert_eq!(i["status"], "running");
        *per_node
            .entry(i["pnode"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|&n| n == 2), "{per_node:?}");
    // An unknown allocator is refused without a change.
    let serial = lab.serial();
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-I",
        "nosuch",
        "x",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown iallocator"), "{}", r.stderr);
    // A drained node gets nothing; when nothing fits, the allocator says why.
    lab.maguey(&["node", "modify", "--drained", "yes", "node3"])
        .ok();
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-B",
        "maxmem=256M",
        "y",
    ])
    .ok();
    let y = instances(&lab, "name,pnode");
    assert_ne!(
        y.iter().find(|i| i["name"] == "y").unwrap()["pnode"],
        "node3"
    );
    let s2 = lab.serial();
    assert!(s2 > serial);
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-B",
        "maxmem=4000M",
        "huge",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("no node"), "{}", r.stderr);
    assert_eq!(lab.serial(), s2);
}
