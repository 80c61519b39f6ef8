//! Moving instances between nodes through the whole stack (fake hypervisor: fast; the kvm
//! tests do the same with real QEMU): migrate with local disks, failover on shared disks,
//! offline move with the data copied, migrate --cleanup after a failed migration, node
//! evacuate and node migrate (each move its own job), rename and reinstall.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn add(lab: &TestLab, template: &str, node: &str, name: &str) {
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        template,
        "--disk",
        "0:size=16M",
        "-o",
        "noop",
        "-B",
        "maxmem=128M",
        "-n",
        node,
        name,
    ])
    .ok();
}

/// The disk files of an instance under `dir`.
fn disk_files(dir: &Path, inst: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(inst))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn node_disks(lab: &TestLab, node: usize, inst: &str) -> Vec<PathBuf> {
    disk_files(&lab.node_dir(node).join("file-storage"), inst)
}

/// Writes a recognisable pattern at 1 MiB and at 9 MiB into a disk file.
fn scribble(path: &Path) -> Vec<u8> {
    use std::io::{Seek, SeekFrom, Write};
    let pattern: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8 + 1).collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for off in [1u64 << 20, 9 << 20] {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(&pattern).unwrap();
    }
    f.sync_all().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn migrate_failover_move_cleanup_evacuate_rename_reinstall() {
    let lab = lab(3);

    // Live migration with local disks: the disks move with the instance.
    add(&lab, "file", "node1", "i1");
    let data = scribble(&node_disks(&lab, 1, "i1")[0]);
    lab.maguey(&["instance", "migrate", "-n", "node2", "i1"])
        .ok();
    assert_eq!(pnode(&lab, "i1"), "node2");
    assert_eq!(status(&lab, "i1"), "running");
    assert!(
        node_disks(&lab, 1, "i1").is_empty(),
        "old disks left on node1"
    );
    assert_eq!(node_disks(&lab, 2, "i1").len(), 1);

    // Failover needs shared disks: refused for file disks, nothing changes.
    let serial = lab.serial();
    let r = lab.maguey(&["instance", "failover", "-n", "node3", "i1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("failover needs disks"), "{}", r.stderr);
    assert_eq!(lab.serial(), serial);
    assert_eq!(pnode(&lab, "i1"), "node2");

    // Offline move: stopped, copied (holes stay holes, data identical), started there.
    // (The fake hypervisor does not touch the disk, so the migration kept no data: write
    // the pattern again on node2 first.)
    let data2 = scribble(&node_disks(&lab, 2, "i1")[0]);
    assert_eq!(data.len(), data2.len());
    let r = lab.maguey(&["instance", "move", "-n", "node3", "i1"]).ok();
    assert!(
        r.stdout.contains("copy of disk disk/0: 100%"),
        "{}",
        r.stdout
    );
    assert_eq!(pnode(&lab, "i1"), "node3");
    assert_eq!(status(&lab, "i1"), "running");
    let moved = node_disks(&lab, 3, "i1");
    assert_eq!(std::fs::read(&moved[0]).unwrap(), data2);
    assert!(node_disks(&lab, 2, "i1").is_empty());

    // Failover on shared disks: the same file, another node.
    add(&lab, "sharedfile", "node1", "s1");
    let shared = lab.dir.path().join("shared");
    assert_eq!(disk_files(&shared, "s1").len(), 1);
    lab.maguey(&["instance", "failover", "-n", "node3", "s1"])
        .ok();
    assert_eq!(pnode(&lab, "s1"), "node3");
    assert_eq!(status(&lab, "s1"), "running");
    assert_eq!(disk_files(&shared, "s1").len(), 1);
    // And live migration of the shared instance, the target chosen by the allocator.
    lab.maguey(&["instance", "migrate", "s1"]).ok();
    assert_ne!(pnode(&lab, "s1"), "node3");

    // A migration to a node that does not exist or to the primary itself: clear refusals.
    let serial = lab.serial();
    let r = lab.maguey(&["instance", "migrate", "-n", "node9", "s1"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("node9"), "{}", r.stderr);
    let here = pnode(&lab, "s1");
    let r = lab.maguey(&["instance", "migrate", "-n", &here, "s1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already on node"), "{}", r.stderr);
    assert_eq!(lab.serial(), serial);

    // migrate --cleanup: the instance really runs on another node than the config says
    // (a migration whose end the master missed); cleanup finds it and fixes the config.
    let from = pnode(&lab, "s1");
    let to = if from == "node1" { "node2" } else { "node1" };
    let run = |n: &str| lab.node_dir(node_num(n)).join("run/fake/s1.json");
    std::fs::rename(run(&from), run(to)).unwrap();
    assert_eq!(status(&lab, "s1"), "ERROR_wrongnode");
    let r = lab.maguey(&["instance", "migrate", "--cleanup", "s1"]).ok();
    assert!(
        r.stdout.contains("making it the primary node"),
        "{}",
        r.stdout
    );
    assert_eq!(pnode(&lab, "s1"), to);
    assert_eq!(status(&lab, "s1"), "running");

    // Node evacuation: three instances leave node1, each as its own job.
    for n in ["e1", "e2", "e3"] {
        add(&lab, "file", "node1", n);
    }
    lab.maguey(&["instance", "stop", "e3"]).ok();
    let before = jobs(&lab).len();
    // (s1 may be on node1 too, where the allocator and the cleanup left it.)
    let on1 = instances(&lab, "name,pnode")
        .iter()
        .filter(|i| i["pnode"] == "node1")
        .count();
    assert!(on1 >= 3);
    let r = lab
        .maguey(&[
            "node",
            "evacuate",
            "--primary-only",
            "--max-parallel",
            "2",
            "node1",
        ])
        .ok();
    assert_eq!(
        r.stdout.matches("submitted job").count(),
        on1,
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.matches("succeeded").count(), on1, "{}", r.stdout);
    for n in ["e1", "e2", "e3"] {
        assert_ne!(pnode(&lab, n), "node1", "{n}");
        assert_eq!(node_disks(&lab, 1, n).len(), 0, "{n}");
    }
    assert_eq!(status(&lab, "e1"), "running");
    assert_eq!(status(&lab, "e3"), "ADMIN_down");
    let new: Vec<_> = jobs(&lab).into_iter().skip(before).collect();
    assert_eq!(new.len(), on1 + 1);
    assert!(new.iter().all(|j| j["status"] == "success"), "{new:?}");
    assert!(
        instances(&lab, "name,pnode")
            .iter()
            .all(|i| i["pnode"] != "node1"),
        "node1 is not empty"
    );

    // Node migrate: every running primary instance of node2 goes elsewhere.
    let on2: Vec<String> = instances(&lab, "name,pnode")
        .into_iter()
        .filter(|i| i["pnode"] == "node2")
        .filter_map(|i| i["name"].as_str().map(String::from))
        .collect();
    assert!(!on2.is_empty());
    lab.maguey(&["node", "migrate", "node2"]).ok();
    for n in &on2 {
        assert_ne!(pnode(&lab, n), "node2", "{n}");
    }

    // Runtime memory (balloon): within minmem..maxmem, only while running.
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-B",
        "minmem=64M,maxmem=128M",
        "-n",
        "node3",
        "m1",
    ])
    .ok();
    let ram = |lab: &TestLab| {
        instances(lab, "name,oper_ram")
            .into_iter()
            .find(|i| i["name"] == "m1")
            .map(|i| i["oper_ram"].clone())
            .unwrap_or_default()
    };
    assert_eq!(ram(&lab), 128);
    let serial = lab.serial();
    lab.maguey(&["instance", "modify", "-m", "64M", "m1"]).ok();
    assert_eq!(ram(&lab), 64);
    assert_eq!(
        lab.serial(),
        serial,
        "a runtime change is not a config change"
    );
    let r = lab.maguey(&["instance", "modify", "-m", "32M", "m1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("outside"), "{}", r.stderr);
    lab.maguey(&["instance", "stop", "m1"]).ok();
    let r = lab.maguey(&["instance", "modify", "-m", "96M", "m1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not running"), "{}", r.stderr);

    // Rename and reinstall want the instance stopped.
    let r = lab.maguey(&["instance", "rename", "e1", "renamed"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("stop it"), "{}", r.stderr);
    lab.maguey(&["instance", "stop", "e1"]).ok();
    // An OS whose rename script fails: the rename is refused with its output, nothing
    // changes.
    let e1_node = node_num(&pnode(&lab, "e1"));
    let bad = lab.node_dir(e1_node).join("os/noop/rename");
    let good = std::fs::read(&bad).unwrap();
    std::fs::write(
        &bad,
        "#!/bin/sh\necho cannot rename \"$OLD_INSTANCE_NAME\" >&2\nexit 3\n",
    )
    .unwrap();
    let serial = lab.serial();
    let r = lab.maguey(&["instance", "rename", "e1", "renamed"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("cannot rename e1"), "{}", r.stderr);
    assert_eq!(lab.serial(), serial);
    std::fs::write(&bad, good).unwrap();
    let r = lab.maguey(&["instance", "rename", "e1", "renamed"]).ok();
    assert!(r.stdout.contains("OS rename script"), "{}", r.stdout);
    assert_eq!(status(&lab, "renamed"), "ADMIN_down");
    assert_eq!(status(&lab, "e1"), "");
    // Reinstall asks first; without a terminal to ask on, it is refused unless forced.
    let serial = lab.serial();
    let r = lab.maguey(&["instance", "reinstall", "renamed"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("remove all data on its disks"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.serial(), serial);
    let r = lab
        .maguey(&["instance", "reinstall", "--yes", "renamed"])
        .ok();
    assert!(r.stdout.contains("reinstall"), "{}", r.stdout);
    let r = lab.maguey(&["instance", "rename", "renamed", "e2"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
}

#[test]
fn cluster_balance_plans_then_executes_its_moves() {
    let lab = lab(3);
    for n in ["b1", "b2", "b3", "b4"] {
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
            "maxmem=1024M",
            "-n",
            "node1",
            n,
        ])
        .ok();
    }
    // The plan alone changes nothing.
    let serial = lab.serial();
    let r = lab.maguey(&["cluster", "balance"]).ok();
    let score = |out: &str, what: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(what))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{what}' in:\n{out}"))
    };
    let (initial, fin) = (
        score(&r.stdout, "Initial score:"),
        score(&r.stdout, "Final score:"),
    );
    assert!(fin < initial, "{}", r.stdout);
    assert!(r.stdout.contains("Set 1:"), "{}", r.stdout);
    assert_eq!(lab.serial(), serial);
    let on1 = || {
        instances(&lab, "name,pnode")
            .iter()
            .filter(|i| i["pnode"] == "node1")
            .count()
    };
    assert_eq!(on1(), 4);
    // --execute runs the moves as jobs; the cluster ends where the plan said.
    let r = lab.maguey(&["cluster", "balance", "--execute"]).ok();
    assert!(r.stdout.contains("succeeded"), "{}", r.stdout);
    assert!(on1() < 4, "nothing moved:\n{}", r.stdout);
    let after = lab.maguey(&["cluster", "balance"]).ok();
    let now = score(&after.stdout, "Initial score:");
    assert!(
        (now - fin).abs() < 1e-6,
        "planned {fin}, got {now}\n{}",
        after.stdout
    );
}
