//! `plain` and `drbd` instances on a cluster of two node VMs (real LVM, real DRBD 8.4), driven
//! by the host's CLI and checked inside the nodes (`lvs`, `/proc/drbd`): creation with the
//! initial sync, failover, live migration back, verify, removal on both nodes. The instances
//! use the `fake` hypervisor (the nodes' DRBD and LVM are real; the guest is not). One lab boot
//! for all checks (CI time).

use maguey_test_infra::vmlab::{build_maguey, poll, VmLab};
use std::time::{Duration, Instant};

/// `lvs` of node `n` as (vg/lv, tags).
fn lvs2(lab: &VmLab, n: usize) -> Vec<(String, String)> {
    lab.lvs(n)
        .into_iter()
        .map(|(lv, tags, _)| (lv, tags))
        .collect()
}

#[test]
fn vm_plain_and_drbd_create_failover_migrate_remove() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let mut lab = VmLab::up(&maguey, 2);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());

    // 1. plain on node2: an LV `<uuid>.disk0` in xenvg, tagged with the instance.
    lab.ok(&[
        "instance",
        "add",
        "-t",
        "plain",
        "--disk",
        "0:size=32M",
        "--no-install",
        "-H",
        "fake",
        "-n",
        "node2",
        "--no-nics",
        "p1",
    ]);
    let p1_lvs: Vec<(String, String)> = lvs2(&lab, 2)
        .into_iter()
        .filter(|(_, tags)| tags.contains("originstname+p1"))
        .collect();
    assert_eq!(p1_lvs.len(), 1, "{:?}", lvs2(&lab, 2));
    assert!(
        p1_lvs[0].0.starts_with("xenvg/") && p1_lvs[0].0.ends_with(".disk0"),
        "{p1_lvs:?}"
    );
    assert!(lvs2(&lab, 1).iter().all(|(_, t)| !t.contains("p1")));
    assert_eq!(lab.instance("p1")["status"], "running");
    // node info sees the volume group.
    let nodes = lab
        .maguey(&[
            "node",
            "list",
            "-o",
            "name,dtotal,dfree",
            "--output",
            "json",
        ])
        .ok()
        .json();
    eprintln!("node list: {nodes}");

    // 2. drbd between node1 and node2: data + meta LVs on both, Connected and UpToDate on
    // both after the (waited-for) initial sync, node1 Primary.
    let out = lab.ok(&[
        "instance",
        "add",
        "-t",
        "drbd",
        "--disk",
        "0:size=64M",
        "--no-install",
        "-H",
        "fake",
        "-n",
        "node1:node2",
        "--no-nics",
        "d1",
    ]);
    assert!(out.contains("in sync"), "{out}");
    for n in [1, 2] {
        let mine: Vec<String> = lvs2(&lab, n)
            .into_iter()
            .filter(|(_, t)| t.contains("originstname+d1"))
            .map(|(lv, _)| lv)
            .collect();
        assert_eq!(mine.len(), 2, "node{n}: {mine:?}");
        assert!(mine.iter().any(|l| l.ends_with(".disk0_data")), "{mine:?}");
        assert!(mine.iter().any(|l| l.ends_with(".disk0_meta")), "{mine:?}");
    }
    // The first drbd instance of the cluster gets minor 0 on both nodes.
    let l1 = lab.drbd_line(1, 0).expect("DRBD minor configured");
    let l2 = lab.drbd_line(2, 0).expect("DRBD minor configured");
    assert!(l1.contains("cs:Connected"), "{l1}");
    assert!(l1.contains("ro:Primary/Secondary"), "{l1}");
    assert!(l1.contains("ds:UpToDate/UpToDate"), "{l1}");
    assert!(l2.contains("ro:Secondary/Primary"), "{l2}");
    assert!(l2.contains("ds:UpToDate/UpToDate"), "{l2}");
    let d1 = lab.instance("d1");
    assert_eq!(d1["pnode"], "node1", "{d1}");
    assert_eq!(d1["status"], "running", "{d1}");
    // Writes on the primary reach the secondary (protocol C): 1 MiB through /dev/drbd0.
    lab.run_ok(
        1,
        "dd if=/dev/urandom of=/tmp/blk bs=1M count=1 2>/dev/null && \
         dd if=/tmp/blk of=/dev/drbd0 bs=1M count=1 oflag=direct 2>/dev/null && md5sum </tmp/blk > /tmp/blk.md5",
    );
    let sum1 = lab.run_ok(1, "cat /tmp/blk.md5");

    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(v.code, 0, "verify:\n{}\n{}", v.stdout, v.stderr);

    // 3. failover: node2 becomes the DRBD primary and runs the instance.
    lab.ok(&["instance", "failover", "-f", "d1"]);
    let d1 = lab.instance("d1");
    assert_eq!(d1["pnode"], "node2", "{d1}");
    assert_eq!(d1["status"], "running", "{d1}");
    let l1 = lab.drbd_line(1, 0).expect("DRBD minor configured");
    let l2 = lab.drbd_line(2, 0).expect("DRBD minor configured");
    assert!(l2.contains("ro:Primary/Secondary"), "{l2}");
    assert!(l1.contains("ro:Secondary/Primary"), "{l1}");
    assert!(l2.contains("cs:Connected"), "{l2}");
    // node2 reads what node1 wrote.
    let sum2 = lab.run_ok(
        2,
        "dd if=/dev/drbd0 bs=1M count=1 iflag=direct 2>/dev/null | md5sum",
    );
    assert_eq!(
        sum1.split_whitespace().next(),
        sum2.split_whitespace().next()
    );

    // 4. live migration back to node1 (dual-primary only for the duration).
    lab.ok(&["instance", "migrate", "-f", "d1"]);
    let d1 = lab.instance("d1");
    assert_eq!(d1["pnode"], "node1", "{d1}");
    assert_eq!(d1["status"], "running", "{d1}");
    let l1 = lab.drbd_line(1, 0).expect("DRBD minor configured");
    let l2 = lab.drbd_line(2, 0).expect("DRBD minor configured");
    assert!(l1.contains("ro:Primary/Secondary"), "{l1}");
    assert!(l2.contains("ro:Secondary/Primary"), "{l2}");
    // Two primaries are forbidden again on both ends.
    for n in [1, 2] {
        let show = lab.run_ok(n, "drbdsetup show 0 2>&1; true");
        assert!(
            !show.contains("allow-two-primaries\tyes") && !show.contains("allow-two-primaries yes"),
            "node{n}: {show}"
        );
    }

    // 5. removal: every LV of both instances gone on both nodes, no DRBD minor left.
    lab.ok(&["instance", "remove", "-f", "d1"]);
    lab.ok(&["instance", "remove", "-f", "p1"]);
    for n in [1, 2] {
        let left: Vec<(String, String)> = lvs2(&lab, n)
            .into_iter()
            .filter(|(_, t)| t.contains("originstname+"))
            .collect();
        assert!(left.is_empty(), "node{n}: {left:?}");
        let proc_drbd = lab.run_ok(n, "cat /proc/drbd");
        assert!(!proc_drbd.contains(" 0: cs:"), "node{n}: {proc_drbd}");
    }
    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(v.code, 0, "verify:\n{}\n{}", v.stdout, v.stderr);

    // 6. A real (nested KVM) guest on drbd: boots on node1 with the DRBD device and no host
    // cache, live-migrates to node2 and keeps ticking there, fails over back to node1.
    let t = Instant::now();
    lab.ok(&[
        "instance",
        "add",
        "-t",
        "drbd",
        "--disk",
        "0:size=64M",
        "-o",
        "lab-tiny",
        "-H",
        "kvm",
        "-n",
        "node1:node2",
        "k1",
    ]);
    let ps = lab.run_ok(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'");
    assert!(ps.contains("/dev/drbd"), "{ps}");
    assert!(
        ps.contains("cache=none") || ps.contains("direct=on"),
        "{ps}"
    );
    let ticks = |n: usize| {
        lab.run(
            n,
            "grep -c MAGUEY-TICK /var/lib/maguey/run/kvm/k1.console.log 2>/dev/null",
        )
        .1
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    assert!(
        poll(Duration::from_secs(240), || ticks(1) >= 2),
        "the guest never ticked on node1\n{}",
        lab.logs()
    );
    eprintln!(
        "figure: kvm drbd instance add to its second tick {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let out = lab.ok(&["instance", "migrate", "-f", "k1"]);
    eprintln!(
        "figure: live migration of a kvm drbd instance {:.1}s\n{out}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(lab.instance("k1")["pnode"], "node2");
    let ps1 = lab
        .run(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'")
        .1;
    assert!(ps1.trim().is_empty(), "QEMU still on node1: {ps1}");
    lab.run_ok(2, "ps -o args | grep '[q]emu-system-x86_64 -name k1'");
    let before = ticks(2);
    assert!(
        poll(Duration::from_secs(60), || ticks(2) >= before + 2),
        "the guest does not tick on node2 after the migration"
    );
    let all = lab.run_ok(2, "cat /proc/drbd");
    let line = all
        .lines()
        .find(|l| l.contains("ro:Primary/"))
        .unwrap_or_else(|| panic!("node2 is not primary:\n{all}"));
    assert!(line.contains("ro:Primary/Secondary"), "{line}");
    lab.ok(&["instance", "failover", "-f", "k1"]);
    assert_eq!(lab.instance("k1")["pnode"], "node1");
    lab.run_ok(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'");
    lab.ok(&["instance", "remove", "-f", "k1"]);
    for n in [1, 2] {
        assert!(lvs2(&lab, n).iter().all(|(_, t)| !t.contains("k1")));
    }

    // 7. Benchmark figure: a 1 GiB drbd instance without waiting for the initial sync; it
    // is removed while the resync runs.
    let t = Instant::now();
    let out = lab.ok(&[
        "instance",
        "add",
        "-t",
        "drbd",
        "--disk",
        "0:size=1G",
        "--no-install",
        "-H",
        "fake",
        "-n",
        "node1:node2",
        "--no-nics",
        "--no-wait-for-sync",
        "big1",
    ]);
    eprintln!(
        "figure: drbd 1 GiB instance add --no-wait-for-sync {:.1}s\n{out}",
        t.elapsed().as_secs_f64()
    );
    let l1 = lab.run_ok(1, "cat /proc/drbd");
    assert!(
        l1.contains("SyncSource") || l1.contains("UpToDate/UpToDate"),
        "{l1}"
    );
    lab.ok(&["instance", "remove", "-f", "big1"]);
    for n in [1, 2] {
        assert!(lvs2(&lab, n).iter().all(|(_, t)| !t.contains("big1")));
    }

    // 8. The primary dies: failover --ignore-consistency starts the instance on the
    // surviving secondary, which becomes the DRBD primary (peer unknown).
    let out = lab.ok(&[
        "instance",
        "add",
        "-t",
        "drbd",
        "--disk",
        "0:size=32M",
        "--no-install",
        "-H",
        "fake",
        "-n",
        "node2:node1",
        "--no-nics",
        "d3",
    ]);
    eprintln!("{out}");
    lab.run_ok(
        2,
        "dd if=/dev/urandom of=/dev/drbd0 bs=1M count=1 oflag=direct 2>/dev/null && \
         dd if=/dev/drbd0 bs=1M count=1 iflag=direct 2>/dev/null | md5sum > /tmp/d3.md5",
    );
    let sum_before = lab.run_ok(2, "cat /tmp/d3.md5");
    lab.power_off(2);
    let r = lab.maguey(&["instance", "failover", "-f", "d3"]);
    assert_ne!(
        r.code, 0,
        "failover without --ignore-consistency must refuse: {}",
        r.stdout
    );
    let t = Instant::now();
    let out = lab.ok(&["instance", "failover", "-f", "--ignore-consistency", "d3"]);
    eprintln!(
        "figure: failover --ignore-consistency (dead primary) {:.1}s\n{out}",
        t.elapsed().as_secs_f64()
    );
    let minor = lab.run_ok(1, "cat /proc/drbd");
    let line = minor
        .lines()
        .find(|l| l.contains("ro:Primary/"))
        .unwrap_or_else(|| panic!("node1 is not primary:\n{minor}"));
    assert!(line.contains("ds:UpToDate/"), "{line}");
    let m = line
        .trim_start()
        .split(':')
        .next()
        .unwrap_or("0")
        .to_string();
    let sum_after = lab.run_ok(
        1,
        &format!("dd if=/dev/drbd{m} bs=1M count=1 iflag=direct 2>/dev/null | md5sum"),
    );
    assert_eq!(
        sum_before.split_whitespace().next(),
        sum_after.split_whitespace().next(),
        "the data written on the dead primary is on the new one"
    );
    eprintln!("timing: whole test {:.1}s", t0.elapsed().as_secs_f64());
}
