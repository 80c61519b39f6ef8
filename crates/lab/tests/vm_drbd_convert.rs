//! Disk template conversion and node-level moves of DRBD instances on three node VMs (real
//! LVM, real DRBD 8.4), checked inside the nodes (`lvs`, `/proc/drbd`, md5 of the data):
//! `instance modify -t drbd -n NODE` of a stopped plain instance (its data becomes the
//! primary's side and is copied to the new secondary), `node failover`, `node evacuate
//! --secondary-only`, and `instance modify -t plain` back. `fake` hypervisor instances; one
//! lab boot for all checks (CI time).

use maguey_test_infra::vmlab::{build_maguey, VmLab};
use std::time::Instant;

/// Size of the test disk (MiB; a multiple of the 4 MiB LVM extent).
const SIZE: u32 = 48;

/// md5 of the first `SIZE` MiB of `dev` on node `n`.
fn md5(lab: &VmLab, n: usize, dev: &str) -> String {
    let out = lab.run_ok(
        n,
        &format!("dd if={dev} bs=1M count={SIZE} iflag=direct 2>/dev/null | md5sum"),
    );
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// LV names (vg/lv) of instance `inst` on node `n`, sorted.
fn lv_names(lab: &VmLab, n: usize, inst: &str) -> Vec<String> {
    let mut v: Vec<String> = lab
        .instance_lvs(n, inst)
        .into_iter()
        .map(|(lv, _)| lv)
        .collect();
    v.sort();
    v
}

/// `maguey ARGS` that must fail with `what` in its output; returns nothing.
fn refused(lab: &VmLab, args: &[&str], what: &str) {
    let r = lab.maguey(args);
    assert_ne!(r.code, 0, "maguey {args:?} succeeded:\n{}", r.stdout);
    let all = format!("{}\n{}", r.stdout, r.stderr);
    assert!(all.contains(what), "maguey {args:?}: want '{what}':\n{all}");
}

#[test]
fn vm_drbd_convert_failover_evacuate() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let lab = VmLab::up(&maguey, 3);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());

    // a. A stopped plain instance on node1 with random data in its LV.
    let size = format!("0:size={SIZE}M");
    lab.ok(&[
        "instance",
        "add",
        "-t",
        "plain",
        "--disk",
        &size,
        "--no-install",
        "--no-start",
        "-B",
        "maxmem=32M,minmem=32M",
        "-H",
        "fake",
        "-n",
        "node1",
        "--no-nics",
        "c1",
    ]);
    let plain_lv = lv_names(&lab, 1, "c1");
    assert_eq!(plain_lv.len(), 1, "{plain_lv:?}");
    let lv_dev = format!("/dev/{}", plain_lv[0]);
    lab.run_ok(
        1,
        &format!("dd if=/dev/urandom of={lv_dev} bs=1M count={SIZE} oflag=direct 2>/dev/null"),
    );
    let sum = md5(&lab, 1, &lv_dev);

    // Refusals change nothing.
    lab.ok(&["instance", "start", "c1"]);
    refused(
        &lab,
        &["instance", "modify", "-t", "drbd", "-n", "node2", "c1"],
        "stop it",
    );
    lab.ok(&["instance", "stop", "c1"]);
    refused(
        &lab,
        &["instance", "modify", "-t", "drbd", "c1"],
        "secondary node (-n NODE)",
    );
    refused(
        &lab,
        &["instance", "modify", "-t", "drbd", "-n", "node1", "c1"],
        "must differ from the primary",
    );
    refused(
        &lab,
        &["instance", "modify", "-t", "plain", "c1"],
        "already has disk template 'plain'",
    );
    refused(
        &lab,
        &["instance", "modify", "-t", "drbd", "-n", "nosuchnode", "c1"],
        "nosuchnode",
    );
    // Not enough space on the new secondary: refused before anything is created.
    let free: f64 = lab
        .run_ok(1, "vgs --noheadings --units m --nosuffix -o vg_free xenvg")
        .trim()
        .parse()
        .expect("vg_free");
    let big = format!("0:size={}M", ((free as u64).saturating_sub(32)) / 4 * 4);
    lab.ok(&[
        "instance",
        "add",
        "-t",
        "plain",
        "--disk",
        &big,
        "--no-install",
        "--no-start",
        "-B",
        "maxmem=32M,minmem=32M",
        "-H",
        "fake",
        "-n",
        "node1",
        "--no-nics",
        "big",
    ]);
    refused(
        &lab,
        &["instance", "modify", "-t", "drbd", "-n", "node2", "big"],
        "not enough space",
    );
    assert_eq!(lab.instance("big")["disk_template"], "plain");
    assert_eq!(lab.instance_lvs(1, "big").len(), 1);
    lab.ok(&["instance", "remove", "-f", "big"]);
    let c1 = lab.instance("c1");
    assert_eq!(c1["disk_template"], "plain", "{c1}");
    assert!(lab.instance_lvs(2, "c1").is_empty());
    assert!(lab.drbd_minors(1).is_empty() && lab.drbd_minors(2).is_empty());

    // The conversion: the LV stays as the data child on node1, meta LVs on both nodes, data
    // and meta on node2; the primary's data was copied (full sync from node1).
    let t = Instant::now();
    let out = lab.ok(&["instance", "modify", "-t", "drbd", "-n", "node2", "c1"]);
    eprintln!("timing: convert to drbd {:.1}s", t.elapsed().as_secs_f64());
    assert!(out.contains("in sync"), "{out}");
    let c1 = lab.instance("c1");
    assert_eq!(c1["disk_template"], "drbd", "{c1}");
    assert_eq!(c1["pnode"], "node1", "{c1}");
    assert_eq!(c1["snodes"], serde_json::json!(["node2"]), "{c1}");
    assert_eq!(c1["status"], "ADMIN_down", "{c1}");
    let meta = format!("{}_meta", plain_lv[0]);
    for n in [1, 2] {
        let lvs = lv_names(&lab, n, "c1");
        assert_eq!(lvs, vec![plain_lv[0].clone(), meta.clone()], "node{n}");
        // The instance is stopped: its disks are down again.
        assert!(lab.drbd_minors(n).is_empty(), "node{n}");
    }
    assert_eq!(md5(&lab, 1, &lv_dev), sum, "node1's data changed");
    assert_eq!(md5(&lab, 2, &lv_dev), sum, "node2 did not get node1's data");
    lab.ok(&["instance", "start", "c1"]);
    lab.wait_in_sync(1, 0, "start after the conversion");
    let l1 = lab.drbd_line(1, 0).expect("minor 0 on node1");
    let l2 = lab.drbd_line(2, 0).expect("minor 0 on node2");
    assert!(l1.contains("cs:Connected"), "{l1}");
    assert!(l1.contains("ro:Primary/Secondary"), "{l1}");
    assert!(l1.contains("ds:UpToDate/UpToDate"), "{l1}");
    assert!(l2.contains("ro:Secondary/Primary"), "{l2}");
    assert_eq!(md5(&lab, 1, "/dev/drbd0"), sum);
    assert_eq!(lab.instance("c1")["status"], "running");

    // b. node failover: every primary instance of node1 goes to its secondary.
    // A plain instance on node3 cannot fail over: refused, nothing done.
    lab.ok(&[
        "instance",
        "add",
        "-t",
        "plain",
        "--disk",
        "0:size=8M",
        "--no-install",
        "--no-start",
        "-B",
        "maxmem=32M,minmem=32M",
        "-H",
        "fake",
        "-n",
        "node3",
        "--no-nics",
        "p3",
    ]);
    refused(&lab, &["node", "failover", "node3"], "p3");
    assert_eq!(lab.instance("p3")["pnode"], "node3");
    let t = Instant::now();
    let out = lab.ok(&["node", "failover", "node1"]);
    eprintln!("timing: node failover {:.1}s", t.elapsed().as_secs_f64());
    assert!(out.contains("c1") && out.contains("succeeded"), "{out}");
    let c1 = lab.instance("c1");
    assert_eq!(c1["pnode"], "node2", "{c1}");
    assert_eq!(c1["snodes"], serde_json::json!(["node1"]), "{c1}");
    assert_eq!(c1["status"], "running", "{c1}");
    let l2 = lab.drbd_line(2, 0).expect("minor 0 on node2");
    assert!(l2.contains("ro:Primary/Secondary"), "{l2}");
    assert!(l2.contains("cs:Connected"), "{l2}");
    let out = lab.ok(&["node", "failover", "node1"]);
    assert!(out.contains("No primary instances"), "{out}");

    let nodes = lab
        .maguey(&[
            "node",
            "list",
            "-o",
            "name,mtotal,mfree,dfree",
            "--output",
            "json",
        ])
        .ok()
        .json();
    eprintln!("node list: {nodes}");
    // c. node evacuate --secondary-only -n node3: c1 gets node3 as its new secondary
    // (OP_INSTANCE_REPLACE_DISKS replace_new_secondary); node1 keeps nothing of c1.
    let t = Instant::now();
    lab.ok(&[
        "node",
        "evacuate",
        "--secondary-only",
        "-n",
        "node3",
        "-f",
        "node1",
    ]);
    eprintln!("timing: node evacuate -s {:.1}s", t.elapsed().as_secs_f64());
    let c1 = lab.instance("c1");
    assert_eq!(c1["pnode"], "node2", "{c1}");
    assert_eq!(c1["snodes"], serde_json::json!(["node3"]), "{c1}");
    assert_eq!(c1["status"], "running", "{c1}");
    assert!(lab.instance_lvs(1, "c1").is_empty(), "{:?}", lab.lvs(1));
    assert!(lab.drbd_minors(1).is_empty(), "node1 keeps a DRBD minor");
    assert_eq!(lab.instance_lvs(3, "c1").len(), 2, "{:?}", lab.lvs(3));
    let l2 = lab.drbd_line(2, 0).expect("minor 0 on node2");
    assert!(l2.contains("cs:Connected"), "{l2}");
    assert!(l2.contains("ro:Primary/Secondary"), "{l2}");
    lab.wait_in_sync(2, 0, "new secondary");
    let m3 = lab.minor_in_role(3, "Secondary");
    let l3 = lab.drbd_line(3, m3).expect("minor on node3");
    assert!(l3.contains("cs:Connected"), "{l3}");
    assert_eq!(md5(&lab, 2, "/dev/drbd0"), sum);

    // d. Back to plain (stopped): only the data LV on the primary, nothing on the secondary,
    // no DRBD device anywhere, the data unchanged; it starts.
    lab.ok(&["instance", "stop", "c1"]);
    let data_lv = lab.data_lv(2, "c1", 0);
    lab.ok(&["instance", "modify", "-t", "plain", "c1"]);
    let c1 = lab.instance("c1");
    assert_eq!(c1["disk_template"], "plain", "{c1}");
    assert_eq!(c1["pnode"], "node2", "{c1}");
    assert_eq!(c1["snodes"], serde_json::json!([]), "{c1}");
    let lvs = lv_names(&lab, 2, "c1");
    assert_eq!(lvs.len(), 1, "{lvs:?}");
    assert_eq!(format!("/dev/{}", lvs[0]), data_lv);
    assert!(lab.instance_lvs(3, "c1").is_empty(), "{:?}", lab.lvs(3));
    for n in [1, 2, 3] {
        assert!(lab.drbd_minors(n).is_empty(), "node{n}");
    }
    assert_eq!(md5(&lab, 2, &data_lv), sum, "data changed");
    lab.ok(&["instance", "start", "c1"]);
    assert_eq!(lab.instance("c1")["status"], "running");
    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(v.code, 0, "verify:\n{}\n{}", v.stdout, v.stderr);
    eprintln!("timing: total {:.1}s", t0.elapsed().as_secs_f64());
}
