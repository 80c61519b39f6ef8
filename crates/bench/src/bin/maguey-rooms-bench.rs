//! Room evacuation figures on the testbed (issue 14): `maguey room evacuate` / `room return`
//! against the same moves typed by hand, one `maguey instance migrate` after the other.
//!
//! One 4-node VM lab (real LVM, DRBD 8.4, nested KVM; see `maguey_lab::vmnodes`), `room-b` =
//! node1 (master) + node2, `room-a` = node3 + node4, and three nested-KVM guests of the lab's
//! tiny image in writer mode (each writes and fsyncs a record to its disk without pause):
//! `d1` (`drbd`, node3 with its secondary node2), `p1` (`plain`, node4), `f1` (`file`,
//! node3). Each run:
//!
//! 1. **room**: `maguey room evacuate room-a` then `maguey room return room-a` (wall time on
//!    the host); each instance's pause is QEMU's `downtime` of its migration, read from the
//!    child job's result;
//! 2. **by hand**: the same moves one after the other, `maguey instance migrate -f [-n NODE]`
//!    to the node the room evacuation chose (d1 to its secondary), then back, each timed; the
//!    pauses come from each job's result too.
//!
//! Run (root): `cargo build --workspace --bins && target/debug/maguey-rooms-bench [--runs N]`.
//! Prints one table (markdown) of medians.

use anyhow::{bail, Context, Result};
use maguey_lab::vmnodes::VmOptions;
use maguey_test_infra::vmlab::VmLab;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const INSTANCES: [(&str, &str, &str); 3] = [
    ("d1", "drbd", "node3:node2"),
    ("p1", "plain", "node4"),
    ("f1", "file", "node3"),
];

fn runs() -> Result<usize> {
    let mut runs = 3;
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .context("--runs needs a positive number")?
            }
            "-h" | "--help" => {
                println!("usage: maguey-rooms-bench [--runs N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `maguey ARGS` that must succeed.
fn mg(lab: &VmLab, args: &[&str]) -> Result<String> {
    let r = lab.maguey(args);
    if r.code != 0 {
        bail!(
            "maguey {}: exit {}\n{}\n{}\n{}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr,
            lab.logs()
        );
    }
    Ok(r.stdout)
}

fn job(lab: &VmLab, id: u64) -> Result<Value> {
    let out = mg(lab, &["job", "info", "--output", "json", &id.to_string()])?;
    let v: Value = serde_json::from_str(&out).context("job info")?;
    v.as_array()
        .and_then(|a| a.first().cloned())
        .with_context(|| format!("job {id}: {v}"))
}

/// QEMU's downtime (ms) of the migration job `id`.
fn downtime(lab: &VmLab, id: u64) -> Result<f64> {
    let j = job(lab, id)?;
    j["opresult"][0]["downtime_ms"]
        .as_f64()
        .with_context(|| format!("job {id} reports no downtime: {}", j["opresult"]))
}

/// The child jobs a room job logged (`job N: INSTANCE: what`).
fn child_jobs(out: &str) -> Vec<(u64, String)> {
    out.lines()
        .filter_map(|l| {
            let rest = &l[l.find(" job ")? + 5..];
            let (id, rest) = rest.split_once(": ")?;
            let (inst, _) = rest.split_once(": ")?;
            Some((id.parse().ok()?, inst.to_string()))
        })
        .collect()
}

fn pnodes(lab: &VmLab) -> Result<BTreeMap<String, String>> {
    let out = mg(
        lab,
        &["instance", "list", "-o", "name,pnode", "--output", "json"],
    )?;
    let v: Value = serde_json::from_str(&out)?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["name"].as_str().unwrap_or_default().to_string(),
                        i["pnode"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// One room command: its wall time and each instance's pause.
fn room(lab: &VmLab, verb: &str) -> Result<(f64, BTreeMap<String, f64>)> {
    let t = Instant::now();
    let out = mg(lab, &["room", verb, "room-a"])?;
    let wall = t.elapsed().as_secs_f64();
    let mut pauses = BTreeMap::new();
    for (id, inst) in child_jobs(&out) {
        pauses.insert(inst, downtime(lab, id)?);
    }
    if pauses.len() != INSTANCES.len() {
        bail!("room {verb}: {} moves, not 3:\n{out}", pauses.len());
    }
    Ok((wall, pauses))
}

/// The same moves by hand, one after the other: `instance migrate -f [-n NODE]`.
fn by_hand(lab: &VmLab, to: &BTreeMap<String, String>) -> Result<(f64, BTreeMap<String, f64>)> {
    let t = Instant::now();
    let mut pauses = BTreeMap::new();
    for (name, template, _) in INSTANCES {
        let node = to.get(name).context("no target")?;
        let mut args = vec!["instance", "migrate", "-f", "--submit"];
        if template != "drbd" {
            args.extend(["-n", node.as_str()]);
        }
        args.push(name);
        let id: u64 = mg(lab, &args)?.trim().parse().context("job id")?;
        let r = lab.maguey(&["job", "watch", &id.to_string()]);
        let j = job(lab, id)?;
        if j["status"] != "success" {
            bail!("migrate {name}: {}\n{}", r.stdout, j["opresult"]);
        }
        pauses.insert(name.to_string(), downtime(lab, id)?);
    }
    Ok((t.elapsed().as_secs_f64(), pauses))
}

fn maguey_path() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let m = exe.with_file_name("maguey");
    if !m.is_file() || !exe.with_file_name("magueyd").is_file() {
        bail!(
            "{} or magueyd missing: cargo build --workspace --bins first",
            m.display()
        );
    }
    Ok(m)
}

fn setup(lab: &VmLab) -> Result<()> {
    for (n, room) in [
        ("node1", "room-b"),
        ("node2", "room-b"),
        ("node3", "room-a"),
        ("node4", "room-a"),
    ] {
        mg(lab, &["node", "modify", "--room", room, n])?;
    }
    for (name, template, nodes) in INSTANCES {
        mg(
            lab,
            &[
                "instance",
                "add",
                "-t",
                template,
                "--disk",
                "0:size=64M",
                "-o",
                "lab-tiny",
                "-H",
                "kvm:kernel_args=ro quiet maguey.writer",
                "-n",
                nodes,
                "--no-nics",
                name,
            ],
        )?;
    }
    // Let the guests boot and write before the first move.
    let end = Instant::now() + Duration::from_secs(120);
    for (name, _, nodes) in INSTANCES {
        let n: usize = nodes[4..5].parse()?;
        let log = format!("/var/lib/maguey/run/kvm/{name}.console.log");
        while lab
            .run(n, &format!("grep -ac MAGUEY-ACK {log} 2>/dev/null"))
            .1
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            < 3
        {
            if Instant::now() > end {
                bail!("{name} does not write on node{n}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let runs = runs()?;
    let maguey = maguey_path()?;
    let t0 = Instant::now();
    let mut o = VmOptions::new(4, "/unused");
    // hail's static kvm node memory (4096 MiB) must fit: see vm_rooms.rs.
    o.memory_mib = 5120;
    let lab = VmLab::up_with(&maguey, o);
    setup(&lab)?;
    eprintln!(
        "bench: lab up and guests writing in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let home = pnodes(&lab)?;
    // figure → (room values, by-hand values)
    let mut fig: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut add = |k: &str, room: f64, hand: Option<f64>| {
        let e = fig.entry(k.to_string()).or_default();
        e.0.push(room);
        if let Some(h) = hand {
            e.1.push(h);
        }
    };
    for run in 1..=runs {
        let (ev, ev_p) = room(&lab, "evacuate")?;
        let away = pnodes(&lab)?;
        let (re, re_p) = room(&lab, "return")?;
        let (hv, hv_p) = by_hand(&lab, &away)?;
        let (hr, hr_p) = by_hand(&lab, &home)?;
        eprintln!(
            "bench: run {run}: room evacuate {ev:.1} s, return {re:.1} s; by hand {hv:.1} s, \
             back {hr:.1} s; pauses room {ev_p:?} {re_p:?}, by hand {hv_p:?} {hr_p:?}"
        );
        add("room emptied (3 instances), s", ev, Some(hv));
        add("instances back (3), s", re, Some(hr));
        for (name, template, _) in INSTANCES {
            let k = format!("pause of {name} ({template}) leaving, ms");
            add(&k, ev_p[name], Some(hv_p[name]));
            let k = format!("pause of {name} ({template}) returning, ms");
            add(&k, re_p[name], Some(hr_p[name]));
        }
    }
    println!("| figure (median of {runs}) | room command | by hand, one by one | ratio |");
    println!("|---|---|---|---|");
    for (k, (r, h)) in fig {
        let (r, h) = (median(r), median(h));
        println!("| {k} | {r:.1} | {h:.1} | {:.2} |", r / h);
    }
    eprintln!("bench: whole run {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
