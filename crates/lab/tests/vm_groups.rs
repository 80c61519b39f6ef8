//! `instance change-group` of a running `drbd` instance on four node VMs in two groups (real
//! LVM, DRBD 8.4, nested KVM; one bring-up, `-m 1024` nodes): the lab's tiny guest writes
//! numbered, fsync'd records to its disk while it moves onto a new DRBD pair in the other
//! group (block mirror into the new pair, then its memory); afterwards it runs and writes on
//! the new primary, every acknowledged record is on both new data LVs, the old pair's LVs
//! and minors are gone, the new pair is in sync and `cluster verify` is clean. First, a move
//! that fails in the middle (the target's QEMU killed while the disks are mirrored into the
//! new pair): the guest keeps running and writing on its old pair, in sync, and nothing of
//! the new pair is left. Then a master restart in the middle of `group evacuate`: the job
//! ends, the guest runs on on its old pair, `cluster verify` names the move left in the
//! middle, and running the evacuation again removes what it left and finishes it. All along,
//! `/proc/drbd` is read on every node every 50 ms (in the node itself, stamped with its
//! uptime): at every moment at least two copies of the disk are up to date (readings that
//! came late, a node VM stalled by the host, are counted and printed).

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

/// Reads `/proc/drbd` every 50 ms in the node itself, one line per reading: the node's
/// uptime and, per minor, `U` (its local disk up to date) or `X`. Shell built-ins only but
/// `sleep` (a fork costs tens of ms in an emulated node).
const DRBD_POLLER: &str = r#"rm -f /tmp/drbd-poll.stop /tmp/drbd-poll.log
cat > /tmp/drbd-poll.sh <<'POLL'
while [ ! -f /tmp/drbd-poll.stop ]; do
  read u rest < /proc/uptime
  s=""
  while read -r l; do
    case "$l" in
      *ds:UpToDate/*) s="$s U" ;;
      *ds:*) s="$s X" ;;
    esac
  done < /proc/drbd
  echo "$u$s"
  sleep 0.05
done >> /tmp/drbd-poll.log
POLL
setsid sh /tmp/drbd-poll.sh </dev/null >/dev/null 2>&1 &
echo started"#;

/// Seconds since the epoch on the host.
fn host_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Host time minus node `n`'s uptime (the host clock's reading of the node's time zero),
/// measured over one agent round trip.
fn uptime_offset(lab: &VmLab, n: usize) -> f64 {
    let t0 = host_now();
    let out = lab.run_ok(n, "cut -d' ' -f1 /proc/uptime");
    let t1 = host_now();
    let up: f64 = out.trim().parse().expect("an uptime");
    (t0 + t1) / 2.0 - up
}

/// The DRBD readings of every node: per node, (host time, up-to-date local disks); and the
/// largest gap between two readings of one node, in seconds.
struct DrbdWatch {
    offsets: Vec<(usize, f64)>,
}

impl DrbdWatch {
    fn start(lab: &VmLab) -> DrbdWatch {
        let mut offsets = Vec::new();
        for n in 1..=4 {
            lab.run_ok(n, DRBD_POLLER);
            offsets.push((n, uptime_offset(lab, n)));
        }
        for n in 1..=4 {
            assert!(
                poll(Duration::from_secs(10), || lab
                    .run(n, "[ -s /tmp/drbd-poll.log ]")
                    .0
                    == 0),
                "node{n}: the /proc/drbd poller does not run"
            );
        }
        DrbdWatch { offsets }
    }

    /// Stops the pollers; checks that at least two copies were up to date at every moment
    /// and that every node was read at most 250 ms apart (all but 10% of the readings; none
    /// more than 10 s); returns (moments checked, the most copies seen at once, the largest
    /// gap in ms, readings more than 250 ms apart, readings).
    fn stop(self, lab: &VmLab) -> (usize, usize, u64, usize, usize) {
        let mut series: Vec<Vec<(f64, usize)>> = Vec::new();
        let mut max_gap = 0.0f64;
        let (mut gaps, mut late) = (0usize, 0usize);
        for &(n, start_offset) in &self.offsets {
            lab.run_ok(n, "touch /tmp/drbd-poll.stop; sleep 0.2");
            let end_offset = uptime_offset(lab, n);
            let log = lab.run_ok(n, "cat /tmp/drbd-poll.log");
            let readings: Vec<(f64, usize)> = log
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    let up: f64 = w.next()?.parse().ok()?;
                    Some((up, w.filter(|s| *s == "U").count()))
                })
                .collect();
            assert!(readings.len() > 10, "node{n}: {} readings", readings.len());
            let (first, last) = (readings[0].0, readings[readings.len() - 1].0);
            for w in readings.windows(2) {
                let gap = w[1].0 - w[0].0;
                max_gap = max_gap.max(gap);
                gaps += 1;
                if gap > 0.25 {
                    late += 1;
                }
            }
            // The node's clock against the host's, drifting linearly between the two
            // measurements.
            let span = (last - first).max(1e-9);
            series.push(
                readings
                    .into_iter()
                    .map(|(up, c)| {
                        let f = (up - first) / span;
                        (up + start_offset + f * (end_offset - start_offset), c)
                    })
                    .collect(),
            );
        }
        // Every reading of every node, in time order, with each node's latest count.
        let mut events: Vec<(f64, usize, usize)> = series
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |&(t, c)| (t, i, c)))
            .collect();
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let begin = series.iter().map(|s| s[0].0).fold(f64::MIN, f64::max);
        let end = series
            .iter()
            .map(|s| s[s.len() - 1].0)
            .fold(f64::MAX, f64::min);
        let mut now = vec![None; series.len()];
        let (mut count, mut most) = (0, 0);
        for (t, i, c) in events {
            now[i] = Some(c);
            if t < begin || t > end {
                continue;
            }
            count += 1;
            let copies: usize = now.iter().map(|c| c.unwrap_or(0)).sum();
            most = most.max(copies);
            assert!(
                copies >= 2,
                "only {copies} up-to-date copies at {t:.2} (node{}'s reading)",
                i + 1
            );
        }
        // Readings 250 ms apart: a node VM stalled by the host (2 shared cores, TCG, other
        // tests beside) stalls its poller and its DRBD together; such late readings are
        // counted and printed (2.5% of them in a CI run), and bounded so that a poller that
        // stopped (a gap of a whole move) fails the test.
        let gap_ms = (max_gap * 1000.0).round() as u64;
        eprintln!(
            "figure: {late} of {gaps} /proc/drbd readings more than 250 ms after the previous \
             one on their node, the longest gap {gap_ms} ms"
        );
        assert!(
            late * 10 <= gaps,
            "{late} of {gaps} /proc/drbd readings came more than 250 ms after the previous one"
        );
        assert!(
            gap_ms <= 10_000,
            "/proc/drbd was read {gap_ms} ms apart on a node"
        );
        (count, most, gap_ms, late, gaps)
    }
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
fn vm_drbd_instance_changes_group_live_and_survives_a_master_restart() {
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

    let watch = DrbdWatch::start(&lab);

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

    // A master restart in the middle of a group evacuation: once the target's QEMU is up
    // (the new pair built, the disks being mirrored), node1's magueyd is killed and started
    // again. The job ends; the guest runs on, on its old pair; verify names the move.
    let before = acked(1);
    let job = lab.ok(&["group", "evacuate", "default", "--to", "g2", "--submit"]);
    let target_up = || {
        [3, 4].into_iter().any(|n| {
            lab.run(n, "ps -o args | grep -q '[q]emu-system-x86_64 -name k1'")
                .0
                == 0
        })
    };
    assert!(
        poll(Duration::from_secs(300), target_up),
        "the evacuation (job {}) never started the target's QEMU:\n{}",
        job.trim(),
        lab.logs()
    );
    lab.restart_daemon(1);
    assert!(
        poll(Duration::from_secs(120), || {
            let r = lab.maguey(&["job", "list", "-o", "status", "--no-headers"]);
            r.code == 0
                && r.stdout.contains("error")
                && !r.stdout.contains("running")
                && !r.stdout.contains("waiting")
                && !r.stdout.contains("queued")
        }),
        "jobs still running after the master restart:\n{}",
        lab.maguey(&["job", "list"]).stdout
    );
    let k1 = lab.instance("k1");
    assert_eq!(k1["pnode"], "node1", "{k1}");
    let after_restart = acked(1);
    assert!(
        poll(Duration::from_secs(60), || acked(1) >= after_restart + 5),
        "the guest does not write on node1 after the master restart:\n{}",
        console(&lab, 1)
    );
    let v = lab.maguey(&["cluster", "verify"]);
    assert!(
        v.stdout.contains("EINSTANCEPENDINGMOVE") || v.stderr.contains("EINSTANCEPENDINGMOVE"),
        "verify does not name the move left in the middle:\n{}\n{}",
        v.stdout,
        v.stderr
    );

    // The evacuation again, while the guest writes: what the first left goes, then k1 moves.
    let t = Instant::now();
    let out = lab.ok(&["group", "evacuate", "default", "--to", "g2"]);
    eprintln!(
        "figure: group evacuate of a running drbd instance (64 MiB), after a master restart \
         in the middle of the first, {:.1}s\n{out}",
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
    assert!(!v.stdout.contains("EINSTANCEPENDINGMOVE"), "{}", v.stdout);
    let (moments, most, gap, late, gaps) = watch.stop(&lab);
    assert!(
        most >= 4,
        "the new pair was never seen up to date beside the old one"
    );
    eprintln!(
        "figure: /proc/drbd read on 4 nodes, {moments} moments checked: never fewer than 2 \
         up-to-date copies (up to {most}); {late} of {gaps} readings more than 250 ms after \
         the previous one on their node, the longest gap {gap} ms"
    );

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
