//! `maguey group` and `maguey network` against real daemons: groups with a policy and their
//! nodes, a network with a pool connected to a group, an instance placed with `-g` taking a
//! pool address, and the refusals (non-empty group, network in use, ipolicy).

mod common;
use common::*;

#[test]
fn groups_and_networks_from_the_command_line() {
    let lab = lab(3);
    lab.maguey(&[
        "group",
        "add",
        "--alloc-policy",
        "preferred",
        "--specs-mem-size",
        "min=32,max=256",
        "rack2",
    ])
    .ok();
    lab.maguey(&["group", "assign-nodes", "rack2", "node3"])
        .ok();
    let r = lab.maguey(&["group", "list", "--output", "json"]).ok();
    assert!(r.stdout.contains("rack2"), "{}", r.stdout);
    let r = lab.maguey(&["group", "info", "rack2"]).ok();
    assert!(
        r.stdout.contains("node3") && r.stdout.contains("memory-size"),
        "{}",
        r.stdout
    );
    lab.maguey(&["group", "add-tags", "rack2", "site:b"]).ok();
    let r = lab.maguey(&["group", "list-tags", "rack2"]).ok();
    assert_eq!(r.stdout.trim(), "site:b");

    lab.maguey(&[
        "network",
        "add",
        "--network",
        "10.66.0.0/29",
        "--gateway",
        "10.66.0.1",
        "net1",
    ])
    .ok();
    lab.maguey(&["network", "connect", "net1", "rack2", "bridged", "br66"])
        .ok();
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "-o",
        "noop",
        "-g",
        "rack2",
        "--net",
        "0:network=net1,ip=pool",
        "-B",
        "maxmem=64M,minmem=64M",
        "web1",
    ])
    .ok();
    assert_eq!(pnode(&lab, "web1"), "node3");
    let r = lab.maguey(&["network", "info", "net1"]).ok();
    assert!(
        r.stdout.contains("web1") && r.stdout.contains("XXX....X"),
        "{}",
        r.stdout
    );

    // Refusals: exit 1, with the reason.
    let serial = lab.serial();
    for (args, why) in [
        (vec!["group", "remove", "rack2"], "not empty"),
        (vec!["network", "disconnect", "net1", "rack2"], "in use"),
        (vec!["network", "remove", "net1"], "in use"),
    ] {
        let r = lab.maguey(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains(why),
            "{args:?}: {}{}",
            r.stdout,
            r.stderr
        );
    }
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "-o",
        "noop",
        "-n",
        "node3",
        "-B",
        "maxmem=512M",
        "big",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("--ignore-ipolicy"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.serial(), serial, "a refusal changed the config");
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "-o",
        "noop",
        "-n",
        "node3",
        "-B",
        "maxmem=512M",
        "--ignore-ipolicy",
        "big",
    ])
    .ok();

    // Clean up in order: instances, connection, network, nodes, group.
    for i in ["web1", "big"] {
        lab.maguey(&["instance", "remove", "-f", i]).ok();
    }
    lab.maguey(&["network", "disconnect", "net1", "rack2"]).ok();
    lab.maguey(&["network", "remove", "net1"]).ok();
    lab.maguey(&["group", "assign-nodes", "default", "node3"])
        .ok();
    lab.maguey(&["group", "remove", "rack2"]).ok();
    let r = lab
        .maguey(&["group", "list", "--no-headers", "-o", "name"])
        .ok();
    assert_eq!(r.stdout.trim(), "default");
}
