//! A 3-node lab: nodes join with tokens, 10 instances with file disks spread over the nodes,
//! start/stop/reboot, memory changes, removal, offline nodes, and cluster verify.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn three_node_cluster_lifecycle() {
    let lab = lab(3);
    // Nodes joined with their tokens.
    let r = lab
        .maguey(&[
            "node",
            "list",
            "-o",
            "name,pip,role,mtotal,mfree",
            "--output",
            "json",
        ])
        .ok();
    let nodes = r.json();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    assert_eq!(nodes[0]["role"], "M");
    assert_eq!(nodes[1]["pip"], lab.node_ip(2));
    assert_eq!(nodes[2]["mtotal"], 4096);
    // Every node got the cluster-wide facts (ssconf) from the master.
    assert!(wait_until(std::time::Duration::from_secs(60), || {
        (1..=3).all(|i| {
            let s =
                std::fs::read_to_string(lab.node_dir(i).join("ssconf.json")).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
            v["master_node"] == "node1"
                && v["node_primary_ips"].as_object().map(|m| m.len()) == Some(3)
        })
    }));
    // Ganeti-style table headers.
    let table = lab.maguey(&["node", "list"]).ok().stdout;
    assert!(table.lines().next().unwrap().contains("mfree"), "{table}");

    // 10 instances with file disks over the three nodes.
    for i in 0..10 {
        let name = format!("inst{i}");
        let node = format!("node{}", i % 3 + 1);
        lab.maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=64M",
            "-o",
            "noop",
            "-B",
            "maxmem=128M",
            "-n",
            &node,
            &name,
        ])
        .ok();
    }
    let list = instances(&lab, "name,pnode,status,be/maxmem,disk.sizes,nic.macs");
    assert_eq!(list.len(), 10);
    for (i, inst) in list.iter().enumerate() {
        let idx: usize = inst["name"]
            .as_str()
            .unwrap()
            .trim_start_matches("inst")
            .parse()
            .unwrap();
        assert_eq!(inst["pnode"], format!("node{}", idx % 3 + 1));
        assert_eq!(inst["status"], "running", "{i}: {inst}");
        assert_eq!(inst["be/maxmem"], 128);
        assert_eq!(inst["disk.sizes"], serde_json::json!([64]));
        assert!(inst["nic.macs"][0]
            .as_str()
            .unwrap()
            .starts_with("aa:00:00:"));
    }
    // The disks are sparse 64 MiB files on the right node.
    let mut files = Vec::new();
    find_files(&lab.node_dir(2).join("file-storage"), &mut files);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let md = std::fs::metadata(f).unwrap();
        assert_eq!(md.len(), 64 << 20);
        assert!(md.blocks() * 512 < 1 << 20, "not sparse: {f:?}");
    }
    // Memory accounting: node1 hosts inst0, inst3, inst6, inst9 at 128 MiB each.
    let r = lab
        .maguey(&[
            "node",
            "list",
            "-o",
            "name,mfree",
            "--output",
            "json",
            "node1",
        ])
        .ok();
    assert_eq!(r.json()[0]["mfree"], 4096 - 4 * 128);

    // Stop, start, reboot.
    lab.maguey(&["instance", "stop", "inst1"]).ok();
    assert_eq!(
        instances(&lab, "name,status")
            .iter()
            .find(|i| i["name"] == "inst1")
            .unwrap()["status"],
        "ADMIN_down"
    );
    lab.maguey(&["instance", "start", "inst1"]).ok();
    lab.maguey(&["instance", "reboot", "inst1"]).ok();
    lab.maguey(&["instance", "reboot", "--type", "hard", "inst1"])
        .ok();
    lab.maguey(&["instance", "reboot", "--type", "full", "inst1"])
        .ok();
    assert_eq!(
        instances(&lab, "name,status")
            .iter()
            .find(|i| i["name"] == "inst1")
            .unwrap()["status"],
        "running"
    );

    // Modify memory, seen after a restart.
    lab.maguey(&["instance", "modify", "-B", "maxmem=256M,vcpus=2", "inst2"])
        .ok();
    lab.maguey(&["instance", "reboot", "--type", "full", "inst2"])
        .ok();
    let i2 = instances(&lab, "name,be/maxmem,be/vcpus,oper_ram");
    let i2 = i2.iter().find(|i| i["name"] == "inst2").unwrap();
    assert_eq!(i2["be/maxmem"], 256);
    assert_eq!(i2["be/vcpus"], 2);
    assert_eq!(i2["oper_ram"], 256);

    // An offline node refuses new instances, and nothing changes.
    lab.maguey(&["node", "modify", "--offline", "yes", "--force", "node3"])
        .ok();
    let serial = lab.serial();
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=64M",
        "-o",
        "noop",
        "-n",
        "node3",
        "late",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("offline"), "{}", r.stderr);
    assert_eq!(lab.serial(), serial);
    lab.maguey(&["node", "modify", "--offline", "no", "node3"])
        .ok();

    // Verify is clean, then finds a disk file deleted behind Maguey's back.
    let r = lab.maguey(&["cluster", "verify"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let victim = files[0].clone();
    std::fs::remove_file(&victim).unwrap();
    let r = lab.maguey(&["cluster", "verify"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("EINSTANCEMISSINGDISK"), "{}", r.stdout);
    let owner = victim
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        r.stdout.contains(&format!("instance {owner}")),
        "{}",
        r.stdout
    );

    // Remove every instance; the disks go with them.
    for i in 0..10 {
        lab.maguey(&["instance", "remove", "-f", &format!("inst{i}")])
            .ok();
    }
    assert!(instances(&lab, "name").is_empty());
    let mut left = Vec::new();
    for n in 1..=3 {
        find_files(&lab.node_dir(n).join("file-storage"), &mut left);
    }
    assert!(left.is_empty(), "{left:?}");
    // An empty node can be removed; its daemon leaves.
    lab.maguey(&["node", "remove", "node3"]).ok();
    let r = lab
        .maguey(&["node", "list", "-o", "name", "--output", "json"])
        .ok();
    assert_eq!(r.json().as_array().unwrap().len(), 2);
}
