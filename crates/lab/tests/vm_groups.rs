//! `instance change-group` of a running `drbd` instance on four node VMs in two groups (real
//! LVM, DRBD 8.4, nested KVM; one bring-up, `-m 1024` nodes): the lab's tiny guest writes
//! numbered, fsync'd records to its disk while it moves onto a new DRBD pair in the other
//! group (block mirror into the new pair, then its memory); afterwards it runs and writes on
//! the new primary, every acknowledged record is on both new data LVs, the old pair's LVs
//! and minors are gone, the new pair is in sync and `cluster verify` is clean. First, a move
//! that fails in the middle (the target's QEMU killed while the disks are mirrored into the
//! new pair): the guest keeps running and writing on its old pair, in sync, and nothing of
//! the new pair is left.

use maguey_lab::vmnodes::VmOptions;
use maguey_test_infra::vmlab::{build_maguey, poll, VmLab};
use std::time::{Duration, Instant};

const CONSOLE: &str = "/var/lib/maguey/run/kvm/k1.console.log";

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

/// Node index (1-based) of a node name `nodeN`.
fn index(name: &str) -> usize {
    name.trim_start_matches("node")
        .parse()
        .unwrap_or_else(|_| panic!("not a lab node name: {name}"))
}

/// Checks on node `n` that sectors 1..=`last` of `lv` hold records 1..=`last`.
fn check_records_on(lab: &VmLab, n: usize, lv: &str, last: u64) {
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
}

#[test]
fn vm_drbd_instance_changes_group_live() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let mut o = VmOptions::new(4, "/unused");
    o.memory_mib = 1024;
    let lab = VmLab::up_with(&maguey, o);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());
    let t1 = Instant::now();

    lab.ok(&["group", "add", "g2"]);
    lab.ok(&["group", "assign-nodes", "g2", "node3", "node4"]);
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
        "kvm:kernel_args=ro quiet maguey.writer",
        "-n",
        "node1:node2",
        "--no-nics",
        "k1",
    ]);
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
        "{}",
        lab.maguey(&["node", "list", "-o", "name,mtotal,mnode,mfree,dfree"])
            .stdout
    );
    // The plan: a new pair in g2, nothing changed.
    let plan = lab.ok(&["instance", "change-group", "--to", "g2", "--dry-run", "k1"]);
    assert!(plan.contains("new DRBD pair on node"), "{plan}");
    assert_eq!(lab.instance("k1")["pnode"], "node1");

    // A move that fails in the middle: the new primary's QEMU (the migration target, fed by
    // the block mirror) is killed as soon as it shows up. (Waiting a second first let a fast
    // move finish before the kill, in CI.)
    let killer = "rm -f /tmp/killer.stop /tmp/killed
cat > /tmp/killer.sh <<'KILLER'
while [ ! -f /tmp/killer.stop ]; do
  p=$(ps -o pid,args | grep '[q]emu-system-x86_64 -name k1' | awk '{print $1}' | head -n 1)
  if [ -n \"$p\" ]; then kill -9 $p && echo $p > /tmp/killed; exit 0; fi
  sleep 0.1
done
KILLER
setsid sh /tmp/killer.sh </dev/null >/dev/null 2>&1 &
echo started";
    for n in [3, 4] {
        lab.run_ok(n, killer);
    }
    let t = Instant::now();
    let r = lab.maguey(&["instance", "change-group", "--to", "g2", "k1"]);
    eprintln!(
        "figure: change-group failed in the middle, undone, in {:.1}s\n{}\n{}",
        t.elapsed().as_secs_f64(),
        r.stdout,
        r.stderr
    );
    for n in [3, 4] {
        lab.run_ok(n, "touch /tmp/killer.stop");
    }
    assert_ne!(
        r.code, 0,
        "the move succeeded despite the kill:\n{}",
        r.stdout
    );
    let killed: Vec<usize> = [3, 4]
        .into_iter()
        .filter(|&n| lab.run(n, "cat /tmp/killed").0 == 0)
        .collect();
    assert_eq!(killed.len(), 1, "the target's QEMU was not killed once");
    let k1 = lab.instance("k1");
    assert_eq!(k1["pnode"], "node1", "{k1}");
    assert_eq!(k1["status"], "running", "{k1}");
    lab.run_ok(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'");
    let after_fail = acked(1);
    assert!(
        poll(Duration::from_secs(60), || acked(1) >= after_fail + 5),
        "the guest does not write on node1 after the failed move:\n{}",
        console(&lab, 1)
    );
    lab.wait_in_sync(
        1,
        lab.minor_in_role(1, "Primary"),
        "the old pair after the failure",
    );
    for n in [3, 4] {
        assert!(
            lab.instance_lvs(n, "k1").is_empty(),
            "node{n}: {:?}",
            lab.instance_lvs(n, "k1")
        );
        assert!(lab.drbd_minors(n).is_empty(), "node{n}: minors left");
    }

    // The move, while the guest writes.
    let before = acked(1);
    let t = Instant::now();
    let out = lab.ok(&["instance", "change-group", "--to", "g2", "k1"]);
    eprintln!(
        "figure: change-group of a running drbd instance (64 MiB) {:.1}s\n{out}",
        t.elapsed().as_secs_f64()
    );
    let k1 = lab.instance("k1");
    let pnode = k1["pnode"].as_str().unwrap_or_default().to_string();
    let snodes = k1["snodes"].to_string();
    assert!(pnode == "node3" || pnode == "node4", "{k1}");
    let snode = if pnode == "node3" { "node4" } else { "node3" };
    assert!(snodes.contains(snode), "{k1}");
    assert_eq!(k1["status"], "running", "{k1}");
    let (np, ns) = (index(&pnode), index(snode));
    let ps1 = lab
        .run(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'")
        .1;
    assert!(ps1.trim().is_empty(), "QEMU still on node1: {ps1}");
    let ps = lab.run_ok(np, "ps -o args | grep '[q]emu-system-x86_64 -name k1'");
    assert!(ps.contains("/dev/drbd"), "{ps}");
    let on_src = acked(1);
    assert!(on_src > before, "no writes during the move");
    // The guest goes on writing on its new primary.
    assert!(
        poll(Duration::from_secs(60), || acks_on(np) >= 20),
        "the guest does not write on {pnode} after the move:\n{}",
        console(&lab, np)
    );
    // The new pair: Connected, UpToDate on both sides; the old pair gone.
    let minor = lab.minor_in_role(np, "Primary");
    lab.wait_in_sync(np, minor, "the new pair");
    let line = lab.drbd_line(ns, lab.minor_in_role(ns, "Secondary"));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("ds:UpToDate/UpToDate")),
        "{line:?}"
    );
    for n in [1, 2] {
        assert!(
            lab.instance_lvs(n, "k1").is_empty(),
            "node{n}: {:?}",
            lab.instance_lvs(n, "k1")
        );
        assert!(lab.drbd_minors(n).is_empty(), "node{n}: minors left");
    }
    for n in [np, ns] {
        assert_eq!(lab.instance_lvs(n, "k1").len(), 2, "node{n}");
    }
    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(v.code, 0, "verify:\n{}\n{}", v.stdout, v.stderr);

    // Every acknowledged record, across the move, is on both new data LVs.
    std::thread::sleep(Duration::from_secs(2));
    lab.ok(&["instance", "shutdown", "k1"]);
    let all = acks(&(console(&lab, 1) + &console(&lab, np)));
    let last = *all.last().expect("acknowledged writes");
    assert_eq!(
        all,
        (1..=last).collect::<Vec<u64>>(),
        "the acknowledged record numbers have a gap or repeat"
    );
    for n in [np, ns] {
        let lv = lab.data_lv(n, "k1", 0);
        check_records_on(&lab, n, &lv, last);
    }
    eprintln!(
        "figure: {last} acknowledged records ({on_src} before the switch), all on both new \
         data LVs"
    );
    eprintln!(
        "timing: test after bring-up {:.1}s, whole test {:.1}s",
        t1.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
