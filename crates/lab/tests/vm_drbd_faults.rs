//! Faults on a `drbd` instance between two node VMs (real LVM, real DRBD 8.4), issue 6
//! point 5: the replication link cut during writes (WFConnection, degraded in `cluster
//! verify`, resync after reconnect), the secondary powered off (writes go on, degraded,
//! reconnect and resync after it boots again) and the primary powered off during fsync'd
//! writes (failover `--ignore-consistency`; every acknowledged write is on the new primary).
//!
//! The instance uses the `fake` hypervisor: a writer process on the primary node VM stands in
//! for the guest. It writes numbered 4 KiB records (`maguey-rec N` repeated, record N at
//! offset N * 4096) to the instance's DRBD device with `dd oflag=direct conv=fsync`, one `dd`
//! per record; a record counts as acknowledged once its `dd` returned. Records are read back
//! with O_DIRECT and compared byte for byte with what was written. One lab boot (CI time).

use maguey_lab::vmlab::VmLab;
use serde_json::Value;
use std::path::PathBuf;
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

/// `target/debug/maguey` and `magueyd`, built with the workspace's cargo (the node VMs run
/// this `magueyd`).
fn maguey_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = std::process::Command::new(cargo)
        .args([
            "build",
            "-p",
            "maguey-cli",
            "--bin",
            "maguey",
            "--bin",
            "magueyd",
        ])
        .status()
        .expect("running cargo build");
    assert!(st.success(), "building maguey and magueyd failed");
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("maguey"))
        .find(|p| p.is_file())
        .expect("target/debug/maguey")
}

fn ok(lab: &VmLab, args: &[&str]) -> String {
    let t = Instant::now();
    let r = lab.maguey(args);
    assert_eq!(
        r.code,
        0,
        "maguey {args:?}:\n{}\n{}\n{}",
        r.stdout,
        r.stderr,
        lab.logs()
    );
    eprintln!(
        "timing: maguey {} {:.1}s",
        args[..2].join(" "),
        t.elapsed().as_secs_f64()
    );
    r.stdout
}

fn instance(lab: &VmLab, name: &str) -> Value {
    let list = lab
        .maguey(&[
            "instance",
            "list",
            "-o",
            "name,pnode,snodes,status",
            "--output",
            "json",
        ])
        .ok()
        .json();
    list.as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

/// The `/proc/drbd` line of `minor` on node `n` (`cs:... ro:... ds:...`).
fn drbd_line(lab: &VmLab, n: usize, minor: u32) -> String {
    let out = lab.run_ok(n, "cat /proc/drbd");
    out.lines()
        .find(|l| l.trim_start().starts_with(&format!("{minor}: cs:")))
        .unwrap_or_else(|| panic!("node{n}: minor {minor} not in /proc/drbd:\n{out}"))
        .to_string()
}

/// The minor of node `n`'s only DRBD device in the given role (`Primary`, `Secondary`).
fn minor_in_role(lab: &VmLab, n: usize, role: &str) -> u32 {
    let out = lab.run_ok(n, "cat /proc/drbd");
    let line = out
        .lines()
        .find(|l| l.contains(&format!("ro:{role}/")))
        .unwrap_or_else(|| panic!("node{n}: no {role} DRBD device:\n{out}"));
    line.trim_start()
        .split(':')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("node{n}: {line}"))
}

/// `/dev/xenvg/<uuid>.disk0_data` of `inst` on node `n`.
fn data_lv(lab: &VmLab, n: usize, inst: &str) -> String {
    let out = lab.run_ok(
        n,
        "lvs --reportformat json -o vg_name,lv_name,lv_tags 2>/dev/null",
    );
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("node{n} lvs: {e}\n{out}"));
    v["report"][0]["lv"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            l["lv_tags"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("originstname+{inst}")))
                && l["lv_name"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(".disk0_data"))
        })
        .map(|l| {
            format!(
                "/dev/{}/{}",
                l["vg_name"].as_str().unwrap_or(""),
                l["lv_name"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| panic!("node{n}: no data LV of {inst}:\n{out}"))
}

/// The writer loop: records `from..to` to `dev`, one synchronous 4 KiB `dd` per record, each
/// acknowledged record's number appended to `acks` after its `dd` returned.
fn writer(dev: &str, from: u32, to: u32, acks: &str) -> String {
    format!(
        "n={from}
while [ $n -lt {to} ]; do
  yes \"maguey-rec $n\" | head -c 4096 > /tmp/w.rec
  dd if=/tmp/w.rec of={dev} bs=4096 seek=$n count=1 oflag=direct conv=fsync 2>/tmp/w.err || exit 1
  echo $n >> {acks}
  n=$((n+1))
done"
    )
}

/// Writes records `from..to` on node `n` through the agent (returns when all are
/// acknowledged).
fn write_records(lab: &VmLab, n: usize, dev: &str, from: u32, to: u32) {
    let t = Instant::now();
    let (code, out) = lab.run(n, &writer(dev, from, to, "/tmp/acks"));
    assert_eq!(
        code,
        0,
        "node{n}: writing records {from}..{to} to {dev}:\n{out}\n{}",
        lab.run(n, "cat /tmp/w.err; tail -3 /tmp/acks; cat /proc/drbd")
            .1
    );
    eprintln!(
        "timing: node{n} records {from}..{to} written to {dev} in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// Reads records `from..to` from `dev` on node `n` (O_DIRECT) and compares them byte for byte
/// with what the writer wrote; panics with the first bad record.
fn check_records(lab: &VmLab, n: usize, dev: &str, from: u32, to: u32) {
    let t = Instant::now();
    let script = format!(
        "rm -f /tmp/exp /tmp/got
n={from}
while [ $n -lt {to} ]; do yes \"maguey-rec $n\" | head -c 4096 >> /tmp/exp; n=$((n+1)); done
dd if={dev} of=/tmp/got bs=4096 skip={from} count={count} iflag=direct 2>/dev/null || exit 2
if cmp /tmp/exp /tmp/got >/tmp/cmp.out 2>&1; then echo same; exit 0; fi
cat /tmp/cmp.out
off=$(sed -n 's/.*char \\([0-9]*\\).*/\\1/p' /tmp/cmp.out)
[ -n \"$off\" ] && echo \"first bad record: $(( {from} + (off - 1) / 4096 ))\" && \
  dd if=/tmp/got bs=4096 skip=$(( (off - 1) / 4096 )) count=1 2>/dev/null | head -c 64
exit 1",
        count = to - from
    );
    let (code, out) = lab.run(n, &script);
    assert_eq!(
        code, 0,
        "node{n}: records {from}..{to} on {dev} differ from what was written:\n{out}"
    );
    eprintln!(
        "checked: node{n} records {from}..{to} ({} writes) on {dev} in {:.1}s",
        to - from,
        t.elapsed().as_secs_f64()
    );
}

/// `cluster verify`: exit code and output.
fn verify(lab: &VmLab) -> (i32, String) {
    let t = Instant::now();
    let r = lab.maguey(&["cluster", "verify"]);
    eprintln!(
        "timing: maguey cluster verify {:.1}s (exit {})",
        t.elapsed().as_secs_f64(),
        r.code
    );
    (r.code, format!("{}\n{}", r.stdout, r.stderr))
}

fn wait_in_sync(lab: &VmLab, n: usize, minor: u32, what: &str) {
    let t = Instant::now();
    let mut last = String::new();
    let synced = wait_until(Duration::from_secs(120), || {
        last = drbd_line(lab, n, minor);
        last.contains("cs:Connected") && last.contains("ds:UpToDate/UpToDate")
    });
    assert!(
        synced,
        "{what}: node{n} minor {minor} never back to Connected UpToDate/UpToDate: {last}\n{}",
        lab.logs()
    );
    eprintln!(
        "timing: {what}: connected and in sync after {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn vm_drbd_link_cut_secondary_and_primary_power_off() {
    let maguey = maguey_bin();
    let t0 = Instant::now();
    let mut lab = VmLab::up(&maguey, 2);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());

    ok(
        &lab,
        &[
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
        ],
    );
    let m1 = minor_in_role(&lab, 1, "Primary");
    let m2 = minor_in_role(&lab, 2, "Secondary");
    let dev1 = format!("/dev/drbd{m1}");
    let lv2 = data_lv(&lab, 2, "d1");
    write_records(&lab, 1, &dev1, 0, 20);
    check_records(&lab, 2, &lv2, 0, 20);

    // 1. The replication link is cut during writes: the primary goes on alone
    // (WFConnection, peer disk unknown), verify reports the disk degraded; after the link is
    // back DRBD reconnects by itself and resyncs what the secondary missed.
    lab.cut_link(2);
    write_records(&lab, 1, &dev1, 20, 60);
    let l = drbd_line(&lab, 1, m1);
    assert!(
        l.contains("cs:WFConnection") || l.contains("cs:StandAlone"),
        "{l}"
    );
    assert!(l.contains("ro:Primary/Unknown"), "{l}");
    assert!(l.contains("ds:UpToDate/DUnknown"), "{l}");
    let (code, out) = verify(&lab);
    assert_ne!(code, 0, "verify with the link cut:\n{out}");
    assert!(
        out.contains("instance d1: DRBD disk/0 is degraded on node node1"),
        "{out}"
    );
    lab.restore_link(2);
    wait_in_sync(&lab, 1, m1, "link restored");
    let l = drbd_line(&lab, 2, m2);
    assert!(l.contains("ro:Secondary/Primary"), "{l}");
    check_records(&lab, 2, &lv2, 0, 60);
    let (code, out) = verify(&lab);
    assert_eq!(code, 0, "verify after the resync:\n{out}");

    // 2. The secondary is powered off: writes go on, verify reports the disk degraded; after
    // it boots again a full reboot of the instance (Ganeti's way of re-activating its disks)
    // brings its DRBD device back, which reconnects and resyncs.
    lab.power_off(2);
    write_records(&lab, 1, &dev1, 60, 100);
    let l = drbd_line(&lab, 1, m1);
    assert!(l.contains("ds:UpToDate/DUnknown"), "{l}");
    let (code, out) = verify(&lab);
    assert_ne!(code, 0, "verify with the secondary down:\n{out}");
    assert!(
        out.contains("instance d1: DRBD disk/0 is degraded on node node1"),
        "{out}"
    );
    assert_eq!(instance(&lab, "d1")["status"], "running");
    let boot = lab.power_on(2);
    eprintln!("timing: node2 boot {boot:.1}s");
    wait_until(Duration::from_secs(30), || {
        lab.maguey(&["node", "list"]).code == 0
    });
    ok(&lab, &["instance", "reboot", "--type", "full", "d1"]);
    let m2 = minor_in_role(&lab, 2, "Secondary");
    let m1 = minor_in_role(&lab, 1, "Primary");
    wait_in_sync(&lab, 1, m1, "secondary back");
    let lv2 = data_lv(&lab, 2, "d1");
    check_records(&lab, 2, &lv2, 0, 100);
    let l = drbd_line(&lab, 2, m2);
    assert!(l.contains("ds:UpToDate/UpToDate"), "{l}");
    let (code, out) = verify(&lab);
    assert_eq!(code, 0, "verify after the secondary came back:\n{out}");

    // 3. The primary (now node2, after a failover; node1 is the master) is powered off while
    // the writer runs; failover --ignore-consistency to node1, which must hold every
    // acknowledged record.
    ok(&lab, &["instance", "failover", "-f", "d1"]);
    assert_eq!(instance(&lab, "d1")["pnode"], "node2");
    let m2 = minor_in_role(&lab, 2, "Primary");
    let dev2 = format!("/dev/drbd{m2}");
    let first = 100u32;
    lab.run_ok(
        2,
        &format!(
            "rm -f /tmp/acks2; setsid sh -c '{}' </dev/null >/dev/null 2>&1 &",
            writer(&dev2, first, first + 100_000, "/tmp/acks2")
        ),
    );
    let acked = |lab: &VmLab| -> u32 {
        lab.run(2, "tail -n 1 /tmp/acks2 2>/dev/null")
            .1
            .trim()
            .parse::<u32>()
            .map(|n| n + 1)
            .unwrap_or(first)
    };
    assert!(
        wait_until(Duration::from_secs(60), || acked(&lab) >= first + 60),
        "the writer on node2 does not progress: {}",
        lab.run(2, "cat /tmp/w.err; tail -3 /tmp/acks2").1
    );
    // Everything acknowledged up to now must survive; the writer is still running.
    let upto = acked(&lab);
    lab.power_off(2);
    eprintln!("node2 powered off with records {first}..{upto} acknowledged, the writer running");
    let t = Instant::now();
    ok(
        &lab,
        &["instance", "failover", "-f", "--ignore-consistency", "d1"],
    );
    eprintln!(
        "timing: failover --ignore-consistency {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(instance(&lab, "d1")["pnode"], "node1");
    let m1 = minor_in_role(&lab, 1, "Primary");
    let l = drbd_line(&lab, 1, m1);
    assert!(l.contains("ds:UpToDate/"), "{l}");
    check_records(&lab, 1, &format!("/dev/drbd{m1}"), 0, upto);
    eprintln!(
        "figure: {upto} acknowledged 4 KiB writes checked on the new primary ({} written before \
         the primary was powered off mid-write); whole test {:.1}s",
        upto - first,
        t0.elapsed().as_secs_f64()
    );
}
