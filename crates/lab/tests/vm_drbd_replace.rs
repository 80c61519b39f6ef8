//! `instance replace-disks` (-s, -p, -n, -a) and `instance recreate-disks` on a cluster of
//! three node VMs (real LVM, real DRBD 8.4), driven by the host's CLI and checked inside the
//! nodes: `lvs` (lv_uuid: the LVs are new, under the same names), `/proc/drbd`, and md5 sums
//! of what the primary wrote, read back through the DRBD device and from the data LVs of the
//! other side. The instance uses the `fake` hypervisor. One lab boot for all checks (CI time).

use maguey_test_infra::vmlab::{build_maguey, VmLab};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

const INST: &str = "r1";
/// The disk: 64 MiB.
const MIB: u32 = 64;

/// The instance's LVs on node `n`: name -> lv_uuid.
fn lv_uuids(lab: &VmLab, n: usize) -> BTreeMap<String, String> {
    let out = lab.run_ok(
        n,
        "lvs --reportformat json -o vg_name,lv_name,lv_uuid,lv_tags 2>/dev/null",
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("node{n} lvs: {e}\n{out}"));
    let tag = format!("originstname+{INST}");
    v["report"][0]["lv"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|l| {
            l["lv_tags"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t == tag)
                || l["lv_name"].as_str().unwrap_or("").contains("_replaced")
        })
        .map(|l| {
            (
                format!(
                    "{}/{}",
                    l["vg_name"].as_str().unwrap_or(""),
                    l["lv_name"].as_str().unwrap_or("")
                ),
                l["lv_uuid"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// md5 of the first 64 MiB of `dev` on node `n`.
fn md5(lab: &VmLab, n: usize, dev: &str) -> String {
    let out = lab.run_ok(
        n,
        &format!("dd if={dev} bs=1M count={MIB} iflag=direct 2>/dev/null | md5sum"),
    );
    out.split_whitespace().next().unwrap_or("").to_string()
}

/// The DRBD minor of the instance's only disk on node `n` (the only device there).
fn minor(lab: &VmLab, n: usize) -> u32 {
    let m = lab.drbd_minors(n);
    assert_eq!(m.len(), 1, "node{n}: one DRBD device expected: {m:?}");
    m[0]
}

/// Both ends Connected and UpToDate/UpToDate, as node `n` sees it.
fn assert_in_sync(lab: &VmLab, n: usize, what: &str) {
    let m = minor(lab, n);
    let line = lab.drbd_line(n, m).unwrap_or_default();
    assert!(
        line.contains("cs:Connected") && line.contains("ds:UpToDate/UpToDate"),
        "{what}: node{n} minor {m}: {line}"
    );
}

/// After replacing on node `n`: same LV names, all new (other lv_uuid), none set aside left.
fn assert_replaced(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>, n: usize) {
    assert_eq!(before.len(), 2, "node{n} before: {before:?}");
    assert!(
        after
            .keys()
            .all(|k| !k.contains("_replaced") && !k.contains("_new-")),
        "node{n}: old or temporary LVs left: {after:?}"
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "node{n}: the LV names changed"
    );
    for (name, uuid) in before {
        assert_ne!(
            after.get(name),
            Some(uuid),
            "node{n}: {name} is the same LV as before"
        );
    }
}

#[test]
fn vm_drbd_replace_and_recreate_disks() {
    let t0 = Instant::now();
    let maguey = build_maguey();
    let lab = VmLab::up(&maguey, 3);

    lab.ok(&[
        "instance",
        "add",
        "-t",
        "drbd",
        "--disk",
        &format!("0:size={MIB}M"),
        "--no-install",
        // Small: the node VMs have little memory.
        "-B",
        "maxmem=32M,minmem=32M",
        "-H",
        "fake",
        "-n",
        "node1:node2",
        "--no-nics",
        INST,
    ]);
    let m1 = minor(&lab, 1);
    let dev1 = format!("/dev/drbd{m1}");
    // Data on the primary: 8 MiB of random bytes at the start of the disk.
    lab.run_ok(
        1,
        &format!(
            "dd if=/dev/urandom of=/tmp/blk bs=1M count=8 2>/dev/null && \
             dd if=/tmp/blk of={dev1} bs=1M count=8 oflag=direct 2>/dev/null"
        ),
    );
    let sum = md5(&lab, 1, &dev1);
    assert_eq!(sum, md5(&lab, 2, &lab.data_lv(2, INST, 0)), "node2 data LV");

    // Bad input: clear errors, nothing changed.
    let r = lab.maguey(&["instance", "replace-disks", "-n", "node1", INST]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("primary"), "{}", r.stderr);
    let r = lab.maguey(&["instance", "replace-disks", "-s", "--disks", "3", INST]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no disk 3"), "{}", r.stderr);
    let r = lab.maguey(&["instance", "replace-disks", INST]);
    assert_eq!(r.code, 2, "a mode is required: {}", r.stderr);

    // a. -s: node2's LVs are new; DRBD resynced them from node1.
    let before = lv_uuids(&lab, 2);
    let t = Instant::now();
    lab.ok(&["instance", "replace-disks", "-s", INST]);
    eprintln!(
        "figure: replace-disks -s (64 MiB) {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_replaced(&before, &lv_uuids(&lab, 2), 2);
    assert_in_sync(&lab, 1, "after -s");
    assert_eq!(
        sum,
        md5(&lab, 2, &lab.data_lv(2, INST, 0)),
        "-s: node2 data LV"
    );
    assert_eq!(sum, md5(&lab, 1, &dev1), "-s: node1 device");
    assert_eq!(lab.instance(INST)["status"], "running");

    // b. -p: the same on the primary, under the running instance.
    let before = lv_uuids(&lab, 1);
    lab.ok(&[
        "instance",
        "replace-disks",
        "-p",
        "--disks",
        "0",
        "--early-release",
        INST,
    ]);
    assert_replaced(&before, &lv_uuids(&lab, 1), 1);
    assert_in_sync(&lab, 1, "after -p");
    assert_eq!(sum, md5(&lab, 1, &dev1), "-p: node1 device");
    assert_eq!(
        sum,
        md5(&lab, 1, &lab.data_lv(1, INST, 0)),
        "-p: node1 data LV"
    );
    let line = lab.drbd_line(1, m1).unwrap_or_default();
    assert!(line.contains("ro:Primary/Secondary"), "{line}");

    // c. -n node3: the secondary moves to node3; nothing of it stays on node2.
    let t = Instant::now();
    lab.ok(&["instance", "replace-disks", "-n", "node3", INST]);
    eprintln!(
        "figure: replace-disks -n (64 MiB) {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let row = lab.instance(INST);
    assert_eq!(row["pnode"], "node1", "{row}");
    assert_eq!(row["snodes"], serde_json::json!(["node3"]), "{row}");
    assert!(
        lv_uuids(&lab, 2).is_empty(),
        "node2: {:?}",
        lv_uuids(&lab, 2)
    );
    assert!(
        lab.drbd_minors(2).is_empty(),
        "node2 still has DRBD devices"
    );
    assert_eq!(lv_uuids(&lab, 3).len(), 2, "node3: {:?}", lv_uuids(&lab, 3));
    assert_in_sync(&lab, 1, "after -n");
    assert_in_sync(&lab, 3, "after -n");
    assert_eq!(
        sum,
        md5(&lab, 3, &lab.data_lv(3, INST, 0)),
        "-n: node3 data LV"
    );
    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(v.code, 0, "verify after -n:\n{}\n{}", v.stdout, v.stderr);

    // d. -a: nothing faulty, nothing done; then node3 loses its disk behind Maguey's back
    // and -a repairs it there.
    let r = lab.maguey(&["instance", "replace-disks", "-a", INST]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("no disks of instance r1 need replacement"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let before = lv_uuids(&lab, 3);
    let m3 = minor(&lab, 3);
    let lvs: Vec<String> = before.keys().cloned().collect();
    lab.run_ok(
        3,
        &format!(
            "drbdsetup detach {m3} && lvremove -f {} >/dev/null 2>&1",
            lvs.join(" ")
        ),
    );
    assert!(lv_uuids(&lab, 3).is_empty());
    let line = lab.drbd_line(1, m1).unwrap_or_default();
    assert!(line.contains("ds:UpToDate/Diskless"), "{line}");
    lab.ok(&["instance", "replace-disks", "-a", INST]);
    let after = lv_uuids(&lab, 3);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "-a: node3 LVs"
    );
    assert_in_sync(&lab, 1, "after -a");
    assert_eq!(
        sum,
        md5(&lab, 3, &lab.data_lv(3, INST, 0)),
        "-a: node3 data LV"
    );

    // -I with an unknown allocator: refused, nothing changed.
    let r = lab.maguey(&["instance", "replace-disks", "-I", "nosuch", INST]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unknown allocator"), "{}", r.stderr);
    assert_eq!(lab.instance(INST)["snodes"], serde_json::json!(["node3"]));

    // e. recreate-disks: both nodes lose the disk while the instance is stopped.
    lab.ok(&["instance", "stop", INST]);
    let r = lab.maguey(&["instance", "recreate-disks", "-n", "node2", INST]);
    assert_ne!(r.code, 0, "one node for a drbd instance");
    for n in [1, 3] {
        let m = minor(&lab, n);
        let lvs: Vec<String> = lv_uuids(&lab, n).into_keys().collect();
        lab.run_ok(
            n,
            &format!(
                "drbdsetup down resource{m} && lvremove -f {} >/dev/null 2>&1",
                lvs.join(" ")
            ),
        );
        assert!(lv_uuids(&lab, n).is_empty());
    }
    let r = lab.maguey(&["instance", "start", INST]);
    assert_ne!(r.code, 0, "start without disks: {}", r.stdout);
    eprintln!("start without disks: {}", r.stderr.trim());
    assert!(!r.stderr.trim().is_empty());
    lab.ok(&["instance", "recreate-disks", INST]);
    for n in [1, 3] {
        assert_eq!(
            lv_uuids(&lab, n).len(),
            2,
            "node{n}: {:?}",
            lv_uuids(&lab, n)
        );
    }
    lab.ok(&["instance", "start", INST]);
    assert_eq!(lab.instance(INST)["status"], "running");
    let line = lab.drbd_line(1, minor(&lab, 1)).unwrap_or_default();
    assert!(line.contains("ro:Primary/Secondary"), "{line}");
    lab.wait_in_sync(1, minor(&lab, 1), "after recreate-disks");

    // ... and onto other nodes (-n node2:node3): new ends in the config and on the nodes.
    lab.ok(&["instance", "stop", INST]);
    let out = lab.ok(&["instance", "recreate-disks", "-n", "node2:node3", INST]);
    eprintln!("{out}");
    let row = lab.instance(INST);
    assert_eq!(row["pnode"], "node2", "{row}");
    assert_eq!(row["snodes"], serde_json::json!(["node3"]), "{row}");
    assert_eq!(lv_uuids(&lab, 2).len(), 2, "node2: {:?}", lv_uuids(&lab, 2));
    assert!(
        lv_uuids(&lab, 1).is_empty(),
        "node1 keeps old LVs: {:?}",
        lv_uuids(&lab, 1)
    );
    lab.ok(&["instance", "start", INST]);
    let line = lab.drbd_line(2, minor(&lab, 2)).unwrap_or_default();
    assert!(line.contains("ro:Primary/Secondary"), "{line}");

    lab.ok(&["instance", "remove", "-f", INST]);
    for n in [1, 2, 3] {
        let left: Vec<String> = lv_uuids(&lab, n).into_keys().collect();
        assert!(left.is_empty(), "node{n}: {left:?}");
        assert!(lab.drbd_minors(n).is_empty(), "node{n}: DRBD devices left");
    }
    eprintln!(
        "figure: vm_drbd_replace total {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    lab.down().expect("lab down");
}
