//! Disk activation, `cluster verify-disks` and DRBD split-brain healing between two node VMs
//! (real LVM, real DRBD 8.4), issue 6 point 3. One lab boot (CI time), `fake` hypervisor
//! instances: processes in the node VMs stand in for guests and write numbered 4 KiB records
//! straight to the DRBD devices (`dd oflag=direct conv=fsync`, as in vm_drbd_faults.rs), each
//! record tagged with who wrote it, so that which side's data survived can be read back.
//!
//! a. `activate-disks` / `deactivate-disks` on a stopped instance: the minors disappear on
//!    both nodes (LVs stay) and come back Connected, UpToDate, Primary on the primary node;
//!    deactivating a running instance is refused unless `-f`.
//! b. `verify-disks` after a reboot of the secondary node: `cluster verify` reports the disk
//!    degraded and not active on node2, `verify-disks` activates it, DRBD resyncs.
//! c. The 2-node split brain, "primary cut off → failover → old primary returns" (Ganeti
//!    issues #1167 and #1372): node2, the primary, loses its link and goes on writing; the
//!    instance fails over to node1, which writes other records; node2 dies and boots again.
//!    DRBD refuses to connect (both sides changed data: `after-sb-1pri consensus` finds no
//!    safe winner), so `verify-disks` reports it and does not decide; `activate-disks
//!    --resolve-split-brain` keeps the primary's (node1's) data: node2 discards its
//!    diverged records and resyncs.
//! d. The same without the partition: the old primary simply dies (power cut) and comes back
//!    after the failover. It wrote nothing the new primary did not get (protocol C: every
//!    acknowledged write is on both), so its data is an ancestor of the new primary's: DRBD
//!    sees node1's bitmap generation match node2's current one, makes node2 the sync target
//!    and resyncs without any split brain; a plain `verify-disks` heals it.

use maguey_test_infra::vmlab::{build_maguey, VmLab};
use std::time::{Duration, Instant};

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

fn add_drbd(lab: &VmLab, name: &str, nodes: &str, start: bool) {
    let mut args = vec![
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
        nodes,
        "--no-nics",
    ];
    if !start {
        args.push("--no-start");
    }
    args.push(name);
    lab.ok(&args);
}

/// The one minor in `after` that is not in `before`.
fn new_minor(before: &[u32], after: &[u32], what: &str) -> u32 {
    let new: Vec<u32> = after
        .iter()
        .copied()
        .filter(|m| !before.contains(m))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "{what}: new minors {new:?} ({before:?} -> {after:?})"
    );
    new[0]
}

fn line(lab: &VmLab, n: usize, minor: u32) -> String {
    lab.drbd_line(n, minor)
        .unwrap_or_else(|| panic!("node{n}: minor {minor} is not configured"))
}

fn wait_in_sync(lab: &VmLab, n: usize, minor: u32, what: &str) {
    let t = Instant::now();
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(90), || {
        last = lab.drbd_line(n, minor).unwrap_or_default();
        last.contains("cs:Connected") && last.contains("ds:UpToDate/UpToDate")
    });
    assert!(
        ok,
        "{what}: node{n} minor {minor} not Connected UpToDate/UpToDate: {last}\n{}",
        lab.logs()
    );
    eprintln!(
        "timing: {what}: node{n} in sync after {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// `/dev/VG/<uuid>.disk0_data` of `inst` on node `n`.
fn data_lv(lab: &VmLab, n: usize, inst: &str) -> String {
    lab.instance_lvs(n, inst)
        .into_iter()
        .map(|(lv, _)| lv)
        .find(|lv| lv.ends_with(".disk0_data"))
        .map(|lv| format!("/dev/{lv}"))
        .unwrap_or_else(|| panic!("node{n}: no data LV of {inst}"))
}

/// Writes records `from..to` tagged `tag` to `dev` on node `n`, one synchronous `dd` each.
fn write_records(lab: &VmLab, n: usize, dev: &str, tag: &str, from: u32, to: u32) {
    let t = Instant::now();
    let script = format!(
        "n={from}
while [ $n -lt {to} ]; do
  yes \"maguey-{tag}-$n\" | head -c 4096 > /tmp/w.rec
  dd if=/tmp/w.rec of={dev} bs=4096 seek=$n count=1 oflag=direct conv=fsync 2>/tmp/w.err || exit 1
  n=$((n+1))
done"
    );
    let (code, out) = lab.run(n, &script);
    assert_eq!(
        code,
        0,
        "node{n}: writing {tag} records {from}..{to} to {dev}:\n{out}\n{}",
        lab.run(n, "cat /tmp/w.err; cat /proc/drbd").1
    );
    eprintln!(
        "timing: node{n}: {tag} records {from}..{to} written in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// Records `from..to` on `dev` (node `n`, O_DIRECT) are exactly `tag`'s.
fn check_records(lab: &VmLab, n: usize, dev: &str, tag: &str, from: u32, to: u32) {
    let script = format!(
        "rm -f /tmp/exp /tmp/got
n={from}
while [ $n -lt {to} ]; do yes \"maguey-{tag}-$n\" | head -c 4096 >> /tmp/exp; n=$((n+1)); done
dd if={dev} of=/tmp/got bs=4096 skip={from} count={count} iflag=direct 2>/dev/null || exit 2
cmp /tmp/exp /tmp/got",
        count = to - from
    );
    let (code, out) = lab.run(n, &script);
    assert_eq!(
        code, 0,
        "node{n}: records {from}..{to} on {dev} are not {tag}'s:\n{out}"
    );
}

/// md5 of the first `count` 4 KiB blocks of `dev` on node `n`.
fn md5(lab: &VmLab, n: usize, dev: &str, count: u32) -> String {
    lab.run_ok(
        n,
        &format!("dd if={dev} bs=4096 count={count} iflag=direct 2>/dev/null | md5sum"),
    )
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_string()
}

/// Does the first `count` blocks of `dev` on node `n` hold a record tagged `tag`?
fn holds_tag(lab: &VmLab, n: usize, dev: &str, tag: &str, count: u32) -> bool {
    let (code, out) = lab.run(
        n,
        &format!(
            "dd if={dev} of=/tmp/h.bin bs=4096 count={count} iflag=direct 2>/tmp/h.err || {{ cat /tmp/h.err; exit 3; }}
tr -d '\\000' < /tmp/h.bin > /tmp/h.txt || exit 4
grep -q 'maguey-{tag}-' /tmp/h.txt"
        ),
    );
    match code {
        0 => true,
        1 => false,
        _ => panic!("node{n}: reading {dev}: exit {code}: {out}"),
    }
}

fn verify(lab: &VmLab) -> (i32, String) {
    let t = Instant::now();
    let r = lab.maguey(&["cluster", "verify"]);
    eprintln!(
        "timing: cluster verify {:.1}s (exit {})",
        t.elapsed().as_secs_f64(),
        r.code
    );
    (r.code, format!("{}\n{}", r.stdout, r.stderr))
}

/// `cluster verify-disks`, retried while the just-booted node's daemon does not answer yet.
fn verify_disks(lab: &VmLab) -> (i32, String) {
    let t = Instant::now();
    let mut last = (0, String::new());
    let answered = wait_until(Duration::from_secs(60), || {
        let r = lab.maguey(&["cluster", "verify-disks"]);
        last = (r.code, format!("{}\n{}", r.stdout, r.stderr));
        !last.1.contains("Error gathering data on node")
    });
    assert!(answered, "verify-disks: a node never answered:\n{}", last.1);
    eprintln!(
        "timing: cluster verify-disks {:.1}s (exit {})",
        t.elapsed().as_secs_f64(),
        last.0
    );
    last
}

/// Boots node `n` again after a power cut. Its guests died with it: the `fake` hypervisor
/// keeps its "running" files on the state disk, so they are cleared first, as a real
/// hypervisor's processes would be gone.
fn power_on_clean(lab: &mut VmLab, n: usize) {
    let s = lab.power_on_without_daemon(n);
    lab.run_ok(
        n,
        "mkdir -p /var/lib/maguey; mount /dev/vdb /var/lib/maguey 2>/dev/null; rm -f /var/lib/maguey/run/fake/*.json",
    );
    lab.start_daemon(n, &[]);
    eprintln!("timing: node{n} boot {s:.1}s");
}

#[test]
fn vm_drbd_activate_verify_disks_and_split_brain() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let mut lab = VmLab::up(&maguey, 2);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());

    // a. activate / deactivate on a stopped instance.
    let (b1, b2) = (lab.drbd_minors(1), lab.drbd_minors(2));
    add_drbd(&lab, "a", "node1:node2", false);
    let (a1, a2) = (
        new_minor(&b1, &lab.drbd_minors(1), "a on node1"),
        new_minor(&b2, &lab.drbd_minors(2), "a on node2"),
    );
    lab.ok(&["instance", "deactivate-disks", "a"]);
    assert!(
        !lab.drbd_minors(1).contains(&a1),
        "node1 still has minor {a1}"
    );
    assert!(
        !lab.drbd_minors(2).contains(&a2),
        "node2 still has minor {a2}"
    );
    assert_eq!(lab.instance_lvs(1, "a").len(), 2, "node1 LVs of a");
    assert_eq!(lab.instance_lvs(2, "a").len(), 2, "node2 LVs of a");
    let out = lab.ok(&["instance", "activate-disks", "a"]);
    assert!(
        out.contains(&format!("node1:disk/0:/dev/drbd{a1}")),
        "activate-disks output:\n{out}"
    );
    let l = line(&lab, 1, a1);
    assert!(l.contains("ro:Primary/Secondary"), "{l}");
    wait_in_sync(&lab, 1, a1, "a activated");
    assert!(line(&lab, 2, a2).contains("ro:Secondary/Primary"));
    lab.ok(&["instance", "start", "a"]);
    let r = lab.maguey(&["instance", "deactivate-disks", "a"]);
    assert_ne!(
        r.code, 0,
        "deactivate-disks of a running instance:\n{}",
        r.stdout
    );
    assert!(r.stderr.contains("is marked up"), "{}", r.stderr);
    assert!(lab.drbd_minors(1).contains(&a1));
    // -f skips the checks of the primary (the fake guest holds nothing open).
    lab.ok(&["instance", "deactivate-disks", "-f", "a"]);
    assert!(!lab.drbd_minors(1).contains(&a1) && !lab.drbd_minors(2).contains(&a2));
    lab.ok(&["instance", "remove", "-f", "a"]);
    eprintln!("timing: part a done at {:.1}s", t0.elapsed().as_secs_f64());

    // b. The secondary node reboots: its DRBD devices are gone; verify reports the disk
    // degraded, verify-disks activates it again and DRBD resyncs.
    let (b1, b2) = (lab.drbd_minors(1), lab.drbd_minors(2));
    add_drbd(&lab, "b", "node1:node2", true);
    let (mb1, mb2) = (
        new_minor(&b1, &lab.drbd_minors(1), "b on node1"),
        new_minor(&b2, &lab.drbd_minors(2), "b on node2"),
    );
    write_records(&lab, 1, &format!("/dev/drbd{mb1}"), "b", 0, 8);
    let boot = lab.reboot(2);
    eprintln!("timing: node2 reboot {boot:.1}s");
    assert!(!lab.drbd_minors(2).contains(&mb2));
    let mut out = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (code, o) = verify(&lab);
            out = o;
            // node1's DRBD notices the lost peer only after its ping timeout: poll until
            // verify sees both sides.
            code != 0
                && !out.contains("ENODERPC")
                && out.contains("instance b: DRBD disk/0 is degraded on node node1")
        }),
        "verify never reported b degraded with node2 up:\n{out}"
    );
    assert!(
        out.contains("instance b: DRBD disk/0 is degraded on node node1"),
        "{out}"
    );
    assert!(
        out.contains("instance b: DRBD disk/0 is not active on its secondary node node2"),
        "{out}"
    );
    let (code, out) = verify_disks(&lab);
    assert_eq!(code, 0, "verify-disks:\n{out}");
    assert!(out.contains("Activating disks for instance 'b'"), "{out}");
    wait_in_sync(&lab, 1, mb1, "b after verify-disks");
    let l = line(&lab, 2, mb2);
    assert!(
        l.contains("ro:Secondary/Primary") && l.contains("ds:UpToDate/UpToDate"),
        "{l}"
    );
    check_records(&lab, 2, &data_lv(&lab, 2, "b"), "b", 0, 8);
    let (code, out) = verify_disks(&lab);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No disks need to be activated."), "{out}");
    eprintln!("timing: part b done at {:.1}s", t0.elapsed().as_secs_f64());

    // c. The split brain: d runs on node2 (primary), node1 is its secondary.
    let (b1, b2) = (lab.drbd_minors(1), lab.drbd_minors(2));
    add_drbd(&lab, "d", "node2:node1", true);
    let (md1, md2) = (
        new_minor(&b1, &lab.drbd_minors(1), "d on node1"),
        new_minor(&b2, &lab.drbd_minors(2), "d on node2"),
    );
    let (dev1, dev2) = (format!("/dev/drbd{md1}"), format!("/dev/drbd{md2}"));
    write_records(&lab, 2, &dev2, "base", 0, 20);
    // node2 is cut off and goes on writing alone: its data diverges.
    lab.cut_link(2);
    write_records(&lab, 2, &dev2, "n2", 20, 40);
    let l = line(&lab, 2, md2);
    assert!(l.contains("ro:Primary/Unknown"), "{l}");
    // The admin declares node2 dead (offline: nothing is sent to it) and fails over to
    // node1 (--ignore-consistency: node1 could not get node2's last writes).
    lab.ok(&["node", "modify", "--offline", "yes", "-f", "node2"]);
    lab.ok(&["instance", "failover", "-f", "--ignore-consistency", "d"]);
    assert_eq!(lab.instance("d")["pnode"], "node1");
    let l = line(&lab, 1, md1);
    assert!(l.contains("ro:Primary/Unknown"), "{l}");
    write_records(&lab, 1, &dev1, "n1", 30, 50);
    // The old primary dies for good, then boots again.
    lab.power_off(2);
    lab.restore_link(2);
    power_on_clean(&mut lab, 2);
    lab.ok(&["node", "modify", "--offline", "no", "node2"]);
    let lv2 = data_lv(&lab, 2, "d");
    // After the boot node2's LVs are inactive until their disks are activated; activate the
    // data LV alone to read what node2 holds.
    lab.run_ok(2, &format!("lvchange -ay {lv2}"));
    assert!(
        holds_tag(&lab, 2, &lv2, "n2", 50),
        "node2's diverged records are not on its LV"
    );
    // verify-disks activates b (node2 rebooted) and tries d: the nodes refuse to connect.
    let (code, out) = verify_disks(&lab);
    assert_ne!(code, 0, "verify-disks with a split brain:\n{out}");
    assert!(out.contains("Activating disks for instance 'd'"), "{out}");
    assert!(
        out.contains("Error activating disks for instance d")
            && out.contains("split brain")
            && out.contains("maguey instance activate-disks --resolve-split-brain d"),
        "{out}"
    );
    wait_in_sync(&lab, 1, mb1, "b after the second reboot");
    let (l1, l2) = (line(&lab, 1, md1), line(&lab, 2, md2));
    assert!(
        l1.contains("cs:StandAlone") || l2.contains("cs:StandAlone"),
        "no StandAlone end:\nnode1: {l1}\nnode2: {l2}"
    );
    eprintln!("split brain: node1: {l1}\nsplit brain: node2: {l2}");
    let (code, out) = verify(&lab);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("DRBD disk/0 is StandAlone on node")
            && out.contains("activate-disks --resolve-split-brain d"),
        "{out}"
    );
    // verify-disks never decides: still split, node2's records still there.
    let (code, out) = verify_disks(&lab);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Instance d: disk/0 is StandAlone"), "{out}");
    assert!(holds_tag(&lab, 2, &lv2, "n2", 50));
    // The admin decides: node1's data wins.
    let t = Instant::now();
    let out = lab.ok(&[
        "instance",
        "activate-disks",
        "--resolve-split-brain",
        "--wait-for-sync",
        "d",
    ]);
    eprintln!(
        "timing: split brain resolved and resynced in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains(&format!("node1:disk/0:{dev1}")), "{out}");
    wait_in_sync(&lab, 1, md1, "d healed");
    let l = line(&lab, 2, md2);
    assert!(
        l.contains("cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate"),
        "{l}"
    );
    check_records(&lab, 2, &lv2, "base", 0, 20);
    check_records(&lab, 2, &lv2, "n1", 30, 50);
    assert!(
        !holds_tag(&lab, 2, &lv2, "n2", 50),
        "node2 kept diverged records"
    );
    assert_eq!(md5(&lab, 1, &dev1, 50), md5(&lab, 2, &lv2, 50));
    let (_, out) = verify(&lab);
    assert!(!out.contains("StandAlone"), "{out}");
    assert!(!out.contains("DRBD disk/0 is degraded"), "{out}");
    eprintln!("timing: part c done at {:.1}s", t0.elapsed().as_secs_f64());

    // d. The primary dies without a partition: no split brain, verify-disks heals it.
    lab.ok(&["instance", "failover", "-f", "d"]);
    assert_eq!(lab.instance("d")["pnode"], "node2");
    write_records(&lab, 2, &dev2, "v2", 50, 60);
    lab.power_off(2);
    lab.ok(&["node", "modify", "--offline", "yes", "-f", "node2"]);
    lab.ok(&["instance", "failover", "-f", "--ignore-consistency", "d"]);
    write_records(&lab, 1, &dev1, "v1", 60, 70);
    power_on_clean(&mut lab, 2);
    lab.ok(&["node", "modify", "--offline", "no", "node2"]);
    let (code, out) = verify_disks(&lab);
    assert_eq!(code, 0, "verify-disks after the primary died:\n{out}");
    assert!(out.contains("Activating disks for instance 'd'"), "{out}");
    wait_in_sync(&lab, 1, md1, "d after its old primary returned");
    check_records(&lab, 2, &lv2, "v2", 50, 60);
    check_records(&lab, 2, &lv2, "v1", 60, 70);
    assert_eq!(md5(&lab, 1, &dev1, 70), md5(&lab, 2, &lv2, 70));
    eprintln!("timing: whole test {:.1}s", t0.elapsed().as_secs_f64());
}
