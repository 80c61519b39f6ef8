//! Faults on a `drbd` instance between two node VMs (real LVM, real DRBD 8.4), issue 6
//! point 5: the replication link cut during writes (WFConnection, degraded in `cluster
//! verify`, resync after reconnect), the secondary powered off (writes go on, degraded; after
//! it boots again the watcher alone re-activates its disks, and `instance info` shows the
//! resync's percent rising, issue 12), new DRBD secrets during writes (issue 13: reconnect
//! and resync, every record there, no secret in any message) and the primary powered off
//! during fsync'd
//! writes (failover `--ignore-consistency`; every acknowledged write is on the new primary).
//!
//! The instance uses the `fake` hypervisor: a writer process on the primary node VM stands in
//! for the guest. It writes numbered 4 KiB records (`maguey-rec N` repeated, record N at
//! offset N * 4096) to the instance's DRBD device with `dd oflag=direct conv=fsync`, one `dd`
//! per record; a record counts as acknowledged once its `dd` returned. Records are read back
//! with O_DIRECT and compared byte for byte with what was written. One lab boot (CI time).

use maguey_lab::vmnodes::VmOptions;
use maguey_test_infra::vmlab::{build_maguey, poll, records_writer, VmLab};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Seconds between two watcher passes on the master (part 2).
const WATCHER_INTERVAL: u64 = 5;

fn jobs(lab: &VmLab) -> Vec<Value> {
    lab.maguey(&["job", "list", "-o", "id,status,summary", "--output", "json"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn last_job(lab: &VmLab) -> u64 {
    jobs(lab)
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .max()
        .unwrap_or(0)
}

fn job(lab: &VmLab, id: u64) -> Value {
    let v = lab
        .maguey(&["job", "info", "--output", "json", &id.to_string()])
        .ok()
        .json();
    v.as_array()
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| panic!("job {id}: {v}"))
}

/// Node `node`'s sync percent of disk/0 in `instance info` text, while it resyncs.
fn sync_percent(info: &str, node: &str) -> Option<f64> {
    let l = info
        .lines()
        .find(|l| l.contains(&format!("disk/0 on {node}:")))?;
    let before = l
        .split("% synced")
        .next()
        .filter(|_| l.contains("% synced"))?;
    before.rsplit(' ').next()?.parse().ok()
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

#[test]
fn vm_drbd_link_cut_secondary_and_primary_power_off() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let mut o = VmOptions::new(2, "/unused");
    o.watcher_interval = Some(WATCHER_INTERVAL);
    let mut lab = VmLab::up_with(&maguey, o);
    eprintln!("timing: lab up {:.1}s", t0.elapsed().as_secs_f64());
    // The watcher waits for part 2 (the pause is kept in the config).
    lab.ok(&["cluster", "watcher", "pause"]);

    lab.ok(&[
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
    let m1 = lab.minor_in_role(1, "Primary");
    let m2 = lab.minor_in_role(2, "Secondary");
    let dev1 = format!("/dev/drbd{m1}");
    let lv2 = lab.data_lv(2, "d1", 0);
    lab.write_records(1, &dev1, 0, 20);
    lab.check_records(2, &lv2, 0, 20);

    // 1. The replication link is cut during writes: the primary goes on alone
    // (WFConnection, peer disk unknown), verify reports the disk degraded; after the link is
    // back DRBD reconnects by itself and resyncs what the secondary missed.
    lab.cut_link(2);
    lab.write_records(1, &dev1, 20, 60);
    let l = lab.drbd_line(1, m1).expect("DRBD minor configured");
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
    lab.wait_in_sync(1, m1, "link restored");
    let l = lab.drbd_line(2, m2).expect("DRBD minor configured");
    assert!(l.contains("ro:Secondary/Primary"), "{l}");
    lab.check_records(2, &lv2, 0, 60);
    let (code, out) = verify(&lab);
    assert_eq!(code, 0, "verify after the resync:\n{out}");

    // 2. The secondary reboots: writes go on while it is off, verify reports the disk
    // degraded; once it is back the watcher alone (a pass every 5 s; paused until now)
    // re-activates d1's disks, and `instance info` shows node2's sync percent rising until
    // the pair is in sync (a slow link to node2 makes the resync last long enough to watch).
    let known = last_job(&lab);
    lab.ok(&["cluster", "watcher", "continue"]);
    // A whole pass (it ends with verify-disks) has recorded every node's boot id.
    assert!(
        poll(Duration::from_secs(120), || {
            jobs(&lab).iter().any(|j| {
                j["id"].as_u64().is_some_and(|id| id > known)
                    && j["summary"].to_string().contains("CLUSTER_VERIFY_DISKS")
                    && j["status"] == "success"
            })
        }),
        "no watcher pass after continue:\n{}",
        lab.logs()
    );
    let since = last_job(&lab);
    lab.power_off(2);
    lab.write_records(1, &dev1, 60, 100);
    // 24 MiB more, above the records, changed while the secondary is away.
    let fill = lab.run_ok(
        1,
        &format!(
            "yes maguey-fill | head -c 25165824 > /tmp/fill && \
             dd if=/tmp/fill of={dev1} bs=1M seek=32 oflag=direct conv=fsync 2>/dev/null && \
             md5sum < /tmp/fill && rm -f /tmp/fill"
        ),
    );
    let l = lab.drbd_line(1, m1).expect("DRBD minor configured");
    assert!(l.contains("ds:UpToDate/DUnknown"), "{l}");
    let (code, out) = verify(&lab);
    assert_ne!(code, 0, "verify with the secondary down:\n{out}");
    assert!(
        out.contains("instance d1: DRBD disk/0 is degraded on node node1"),
        "{out}"
    );
    assert_eq!(lab.instance("d1")["status"], "running");
    let boot = lab.power_on(2);
    // About 2 MB/s to node2 from now on: the resync of 24 MiB takes seconds.
    lab.limit_link(2, Some(16_000));
    eprintln!("timing: node2 boot {boot:.1}s (magueyd started, nothing typed)");
    let tw = Instant::now();
    let mut seen: Vec<f64> = Vec::new();
    let mut info = String::new();
    let synced = poll(Duration::from_secs(240), || {
        info = lab.maguey(&["instance", "info", "d1"]).stdout;
        if let Some(p) = sync_percent(&info, "node2") {
            if seen.last() != Some(&p) {
                seen.push(p);
            }
        }
        let lines: Vec<&str> = info.lines().filter(|l| l.contains("disk/0 on")).collect();
        lines.len() == 2
            && lines
                .iter()
                .all(|l| l.contains("UpToDate/UpToDate") && l.contains("in sync"))
    });
    lab.limit_link(2, None);
    eprintln!(
        "figure: node2 back in sync {:.1}s after its boot; its sync percent as instance info \
         showed it: {seen:?}",
        tw.elapsed().as_secs_f64()
    );
    assert!(
        synced,
        "d1 never back in sync after node2's reboot:\n{info}\n{}",
        lab.logs()
    );
    assert!(
        seen.len() >= 2 && seen.windows(2).all(|w| w[0] <= w[1]),
        "instance info did not show node2's sync percent rising: {seen:?}\n{info}"
    );
    // The watcher re-activated the disks: a successful activate-disks job it submitted.
    let activations: Vec<u64> = jobs(&lab)
        .iter()
        .filter(|j| {
            j["id"].as_u64().is_some_and(|id| id > since)
                && j["summary"].to_string().contains("INSTANCE_ACTIVATE_DISKS")
        })
        .filter_map(|j| j["id"].as_u64())
        .collect();
    let by_watcher: Vec<serde_json::Value> = activations
        .iter()
        .map(|&id| job(&lab, id))
        .filter(|j| j["submitter"] == "watcher" && j["status"] == "success")
        .collect();
    assert!(
        !by_watcher.is_empty(),
        "no successful activate-disks job by the watcher among {activations:?}"
    );
    eprintln!(
        "watcher: {}",
        by_watcher[0]["reason"].as_str().unwrap_or_default()
    );
    lab.ok(&["cluster", "watcher", "pause"]);
    let m2 = lab.minor_in_role(2, "Secondary");
    let m1 = lab.minor_in_role(1, "Primary");
    let lv2 = lab.data_lv(2, "d1", 0);
    lab.check_records(2, &lv2, 0, 100);
    let got = lab.run_ok(
        2,
        &format!("dd if={lv2} bs=1M skip=32 count=24 iflag=direct 2>/dev/null | md5sum"),
    );
    assert_eq!(
        got.split_whitespace().next(),
        fill.split_whitespace().next(),
        "node2's copy of the 24 MiB changed while it was away"
    );
    let l = lab.drbd_line(2, m2).expect("DRBD minor configured");
    assert!(l.contains("ds:UpToDate/UpToDate"), "{l}");
    assert!(lab.drbd_line(1, m1).is_some());
    let (code, out) = verify(&lab);
    assert_eq!(code, 0, "verify after the secondary came back:\n{out}");

    // 2b. New DRBD secrets while the writer runs on the primary (issue 13): the pair
    // reconnects with the new secret and resyncs; every acknowledged record reaches the
    // secondary; the secret is in no message.
    let t = Instant::now();
    let dev1 = format!("/dev/drbd{m1}");
    // The disk's secret as the config (the admin's export) holds it.
    let secret = |lab: &VmLab| -> String {
        let cfg = lab.maguey(&["cluster", "export-config"]).ok().json();
        let inst = cfg["instances"]
            .as_object()
            .and_then(|m| m.values().find(|i| i["name"] == "d1"))
            .expect("d1 in the config")
            .clone();
        inst["disks"][0]["logical_id"]["secret"]
            .as_str()
            .expect("a DRBD secret")
            .to_string()
    };
    let old_secret = secret(&lab);
    assert!(!old_secret.is_empty(), "no secret in the config");
    lab.run_ok(
        1,
        &format!(
            "rm -f /tmp/acks3; setsid sh -c '{}' </dev/null >/dev/null 2>&1 & echo $! > /tmp/w3.pid",
            records_writer(&dev1, 100, 100_000, "/tmp/acks3")
        ),
    );
    let acked3 = |lab: &VmLab| -> u32 {
        lab.run(1, "tail -n 1 /tmp/acks3 2>/dev/null")
            .1
            .trim()
            .parse::<u32>()
            .map(|n| n + 1)
            .unwrap_or(100)
    };
    assert!(
        poll(Duration::from_secs(60), || acked3(&lab) >= 110),
        "the writer on node1 does not progress: {}",
        lab.run(1, "cat /tmp/w.err; tail -3 /tmp/acks3").1
    );
    let out = lab.ok(&["cluster", "renew-crypto", "--new-drbd-secrets"]);
    assert!(
        out.contains("instance d1: DRBD reconnected with new secrets, in sync"),
        "{out}"
    );
    let during = acked3(&lab);
    assert!(
        poll(Duration::from_secs(60), || acked3(&lab) >= during + 10),
        "the writer stopped after the renewal: {}",
        lab.run(1, "cat /tmp/w.err; tail -3 /tmp/acks3; cat /proc/drbd")
            .1
    );
    lab.run_ok(1, "kill $(cat /tmp/w3.pid); sleep 0.2; true");
    let upto3 = acked3(&lab);
    // Both ends reconnected (the job waited for Connected and in sync), so both use the
    // config's new secret.
    let new_secret = secret(&lab);
    assert_ne!(new_secret, old_secret, "the secret did not change");
    let l = lab.drbd_line(2, m2).expect("DRBD minor configured");
    assert!(l.contains("cs:Connected"), "{l}");
    lab.wait_in_sync(1, m1, "new DRBD secrets");
    lab.check_records(2, &lv2, 100, upto3);
    let jobs = lab.maguey(&["job", "list", "-o", "id"]).ok().stdout;
    let last_id = jobs
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .expect("a job id");
    let last = lab.maguey(&["job", "info", &last_id.to_string(), "--output", "json"]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    assert!(last.stdout.contains("drbd_secrets"), "{}", last.stdout);
    for text in [&out, &last.stdout, &last.stderr] {
        assert!(!text.contains(&new_secret), "the new secret shows: {text}");
        assert!(!text.contains(&old_secret), "the old secret shows: {text}");
    }
    eprintln!(
        "timing: DRBD secrets renewed with the writer running ({} records, {upto3} acked) {:.1}s",
        upto3 - 100,
        t.elapsed().as_secs_f64()
    );

    // 3. The primary (now node2, after a failover; node1 is the master) is powered off while
    // the writer runs; failover --ignore-consistency to node1, which must hold every
    // acknowledged record.
    lab.ok(&["instance", "failover", "-f", "d1"]);
    assert_eq!(lab.instance("d1")["pnode"], "node2");
    let m2 = lab.minor_in_role(2, "Primary");
    let dev2 = format!("/dev/drbd{m2}");
    let first = 100u32;
    lab.run_ok(
        2,
        &format!(
            "rm -f /tmp/acks2; setsid sh -c '{}' </dev/null >/dev/null 2>&1 &",
            records_writer(&dev2, first, first + 100_000, "/tmp/acks2")
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
        poll(Duration::from_secs(60), || acked(&lab) >= first + 60),
        "the writer on node2 does not progress: {}",
        lab.run(2, "cat /tmp/w.err; tail -3 /tmp/acks2").1
    );
    // Everything acknowledged up to now must survive; the writer is still running.
    let upto = acked(&lab);
    lab.power_off(2);
    eprintln!("node2 powered off with records {first}..{upto} acknowledged, the writer running");
    let t = Instant::now();
    lab.ok(&["instance", "failover", "-f", "--ignore-consistency", "d1"]);
    eprintln!(
        "timing: failover --ignore-consistency {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(lab.instance("d1")["pnode"], "node1");
    let m1 = lab.minor_in_role(1, "Primary");
    let l = lab.drbd_line(1, m1).expect("DRBD minor configured");
    assert!(l.contains("ds:UpToDate/"), "{l}");
    lab.check_records(1, &format!("/dev/drbd{m1}"), 0, upto);
    eprintln!(
        "figure: {upto} acknowledged 4 KiB writes checked on the new primary ({} written before \
         the primary was powered off mid-write); whole test {:.1}s",
        upto - first,
        t0.elapsed().as_secs_f64()
    );
}
