//! `instance grow-disk` on real storage, and a live migration while the guest writes, on one
//! cluster of two node VMs (real LVM, DRBD 8.4, nested KVM), checked inside the nodes:
//!
//! a. a `plain` instance (`-H fake`): the LV grows (`lvs`), the config and the fake
//!    hypervisor's run file record the new size; shrinking and bad amounts are refused
//!    without any change;
//! b. a `drbd` instance with a real guest (the lab's tiny guest in writer mode) running:
//!    both nodes' data LVs grow, `blockdev --getsize64 /dev/drbdN` on the primary and the
//!    kernel's size of the device on both nodes show the new size, the guest sees it (QMP
//!    `block_resize`: it prints its disk's sector count), DRBD is back in sync;
//! c. the same guest writes numbered, fsync'd records to its disk while it live-migrates to
//!    node2 and goes on writing there; after it stops, every acknowledged record (its number
//!    printed on the console after the fsync returned) is on the new primary's data LV (and
//!    on the old one's), and the acknowledged numbers run without a gap across the migration.

use maguey_test_infra::vmlab::{build_maguey, poll, VmLab};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const CONSOLE: &str = "/var/lib/maguey/run/kvm/k1.console.log";

fn disk_sizes(lab: &VmLab, name: &str) -> serde_json::Value {
    let list = lab
        .maguey(&[
            "instance",
            "list",
            "-o",
            "name,disk.sizes",
            "--output",
            "json",
        ])
        .ok()
        .json();
    list.as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .map(|i| i["disk.sizes"].clone())
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

/// The numbers of the `MAGUEY-ACK N` lines in `text`, in order.
fn acks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("MAGUEY-ACK ")?.trim().parse().ok())
        .collect()
}

/// The guest's console log on node `n` (empty when it never ran there).
fn console(lab: &VmLab, n: usize) -> String {
    lab.run(n, &format!("cat {CONSOLE} 2>/dev/null")).1
}

fn timed(lab: &VmLab, args: &[&str]) -> String {
    // `lab.ok` prints the command's time.
    lab.ok(args)
}

/// Checks on node `n` that sectors 1..=`last` of `lv` hold records 1..=`last`.
fn check_records_on(lab: &VmLab, n: usize, lv: &str, last: u64) {
    let t = Instant::now();
    let blocks = (last + 1) * 512 / 4096 + 1;
    let out = lab.run_ok(
        n,
        &format!(
            "dd if={lv} bs=4096 count={blocks} iflag=direct 2>/dev/null | tr -d '\\000' | head -n {last}"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    for i in 1..=last {
        let want = format!("MAGUEY-REC {i:08}");
        let got = lines.get(i as usize - 1).copied().unwrap_or("<missing>");
        assert_eq!(
            got, want,
            "node{n}: acknowledged record {i} is not at its place on {lv}"
        );
    }
    eprintln!(
        "checked: node{n} {last} acknowledged records on {lv} in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn vm_grow_disk_and_migrate_while_writing() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let lab = VmLab::up(&maguey, 2);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());

    // a. plain + fake hypervisor on node2.
    timed(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "plain",
            "--disk",
            "0:size=64M",
            "--no-install",
            "-H",
            "fake",
            "-n",
            "node2",
            "--no-nics",
            "p1",
        ],
    );
    let lv_size = |n: usize, inst: &str| -> u64 {
        let lvs = lab.instance_lvs(n, inst);
        assert_eq!(lvs.len(), 1, "node{n}: {lvs:?}");
        lvs[0].1
    };
    assert_eq!(lv_size(2, "p1"), 64 * MIB);
    timed(&lab, &["instance", "grow-disk", "p1", "0", "32M"]);
    assert_eq!(lv_size(2, "p1"), 96 * MIB, "lvs on node2 after grow-disk");
    assert_eq!(disk_sizes(&lab, "p1"), serde_json::json!([96]));
    let run = lab.run_ok(2, "cat /var/lib/maguey/run/fake/p1.json");
    let run: serde_json::Value = serde_json::from_str(&run).expect("fake run file");
    assert_eq!(
        run["disk_sizes"]["0"], 96,
        "the fake hypervisor was told: {run}"
    );
    // Refusals: nothing changes.
    let r = lab.maguey(&["instance", "grow-disk", "--absolute", "p1", "0", "64M"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("cannot shrink disk 0 from 96 MiB to 64 MiB"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let r = lab.maguey(&["instance", "grow-disk", "p1", "3", "32M"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("has no disk 3"),
        "{}",
        r.stderr
    );
    for bad in ["12Q", "-5", "0", "lots"] {
        let r = lab.maguey(&["instance", "grow-disk", "p1", "0", bad]);
        assert_eq!(r.code, 2, "amount {bad}: {}\n{}", r.stdout, r.stderr);
    }
    let r = lab.maguey(&["instance", "grow-disk", "p1", "0", "100G"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("not enough space"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(lv_size(2, "p1"), 96 * MIB, "refused grows changed the LV");
    assert_eq!(disk_sizes(&lab, "p1"), serde_json::json!([96]));
    // --absolute to a larger size.
    timed(
        &lab,
        &["instance", "grow-disk", "--absolute", "p1", "0", "128M"],
    );
    assert_eq!(lv_size(2, "p1"), 128 * MIB);
    assert_eq!(disk_sizes(&lab, "p1"), serde_json::json!([128]));
    lab.ok(&["instance", "remove", "-f", "p1"]);

    // b. drbd + a real nested-KVM guest that writes records to its disk.
    let t = Instant::now();
    timed(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "drbd",
            "--disk",
            "0:size=64M",
            "-o",
            "lab-tiny",
            "-H",
            "kvm:kernel_args=ro quiet maguey.writer",
            "-n",
            "node1:node2",
            "--no-nics",
            "k1",
        ],
    );
    // The last acknowledged record on node `n` (without fetching the whole log).
    let acked = |n: usize| {
        acks(
            &lab.run(
                n,
                &format!("grep -a MAGUEY-ACK {CONSOLE} 2>/dev/null | tail -n 2"),
            )
            .1,
        )
        .last()
        .copied()
        .unwrap_or(0)
    };
    let acks_on = |n: usize| -> u64 {
        lab.run(n, &format!("grep -ac MAGUEY-ACK {CONSOLE} 2>/dev/null"))
            .1
            .trim()
            .parse()
            .unwrap_or(0)
    };
    assert!(
        poll(Duration::from_secs(120), || acked(1) >= 10),
        "the guest never acknowledged writes on node1:\n{}\n{}",
        console(&lab, 1),
        lab.logs()
    );
    eprintln!(
        "figure: drbd instance add to 10 acknowledged guest writes {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let sectors = |n: usize| {
        lab.run(n, &format!("grep -a MAGUEY-DISK-SECTORS {CONSOLE}"))
            .1
    };
    assert!(
        sectors(1).contains("MAGUEY-DISK-SECTORS 131072"),
        "{}",
        sectors(1)
    );
    let minor1 = lab.minor_in_role(1, "Primary");
    let minor2 = lab.minor_in_role(2, "Secondary");
    let getsize = |n: usize, m: u32| -> u64 {
        lab.run_ok(n, &format!("blockdev --getsize64 /dev/drbd{m}"))
            .trim()
            .parse()
            .unwrap_or(0)
    };
    // (a DRBD 8.4 Secondary refuses any open: its size comes from sysfs)
    let sysfs_size = |n: usize, m: u32| -> u64 {
        lab.run_ok(n, &format!("cat /sys/block/drbd{m}/size"))
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            * 512
    };
    assert_eq!(getsize(1, minor1), 64 * MIB);
    assert_eq!(sysfs_size(2, minor2), 64 * MIB);
    let data_size = |n: usize| -> u64 {
        let lvs = lab.instance_lvs(n, "k1");
        lvs.iter()
            .find(|(lv, _)| lv.ends_with(".disk0_data"))
            .unwrap_or_else(|| panic!("node{n}: no data LV: {lvs:?}"))
            .1
    };
    let before_grow = acked(1);
    let t = Instant::now();
    timed(&lab, &["instance", "grow-disk", "k1", "0", "32M"]);
    eprintln!(
        "figure: grow-disk of a running drbd instance by 32 MiB {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for (n, m) in [(1, minor1), (2, minor2)] {
        assert_eq!(data_size(n), 96 * MIB, "node{n}: data LV after grow-disk");
        assert_eq!(
            sysfs_size(n, m),
            96 * MIB,
            "node{n}: drbd{m} after grow-disk"
        );
    }
    assert_eq!(getsize(1, minor1), 96 * MIB, "node1: /dev/drbd{minor1}");
    assert_eq!(disk_sizes(&lab, "k1"), serde_json::json!([96]));
    assert!(
        poll(Duration::from_secs(30), || sectors(1)
            .contains("MAGUEY-DISK-SECTORS 196608")),
        "the guest does not see its grown disk:\n{}",
        sectors(1)
    );
    lab.wait_in_sync(1, minor1, "after grow-disk");
    assert!(
        acked(1) > before_grow,
        "the guest stopped writing during grow-disk"
    );

    // c. Live migration while the guest writes.
    let before_mig = acked(1);
    let t = Instant::now();
    timed(&lab, &["instance", "migrate", "-f", "k1"]);
    eprintln!(
        "figure: live migration of the writing guest {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(lab.instance("k1")["pnode"], "node2");
    let ps1 = lab
        .run(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'")
        .1;
    assert!(ps1.trim().is_empty(), "QEMU still on node1: {ps1}");
    let on_src = acked(1);
    assert!(on_src > before_mig, "no writes during the migration");
    // A few more seconds of writes on the target.
    assert!(
        poll(Duration::from_secs(60), || acks_on(2) >= 30),
        "the guest does not write on node2 after the migration:\n{}",
        console(&lab, 2)
    );
    std::thread::sleep(Duration::from_secs(3));
    timed(&lab, &["instance", "shutdown", "k1"]);
    let log1 = console(&lab, 1);
    let log2 = console(&lab, 2);
    // The console stream continues from node1's log into node2's (a line may be cut at the
    // switch, so the two logs are joined before parsing).
    let all = acks(&(log1.clone() + &log2));
    let last = *all.last().expect("acknowledged writes");
    assert_eq!(
        all,
        (1..=last).collect::<Vec<u64>>(),
        "the acknowledged record numbers have a gap or repeat"
    );
    let first_on_dst = acks(&log2).first().copied().unwrap_or(0);
    assert!(
        // (+2: the line of record on_src + 1 may be cut in two at the switch)
        first_on_dst > 0 && first_on_dst <= on_src + 2,
        "node2's first acknowledged record {first_on_dst} does not follow node1's last {on_src}"
    );
    eprintln!(
        "figure: {last} acknowledged records ({on_src} on node1, {} on node2 after the migration)",
        last - on_src
    );
    // Every acknowledged record is on the new primary's data LV, and replicated to node1.
    for n in [2, 1] {
        let lv = lab.data_lv(n, "k1", 0);
        check_records_on(&lab, n, &lv, last);
    }
    eprintln!("records checked: {last} on each node");
    lab.ok(&["instance", "remove", "-f", "k1"]);
    eprintln!("timing: whole test {:.1}s", t0.elapsed().as_secs_f64());
}
