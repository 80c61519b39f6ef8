//! A nemesis over real daemons (docs/replication.md, "Nemesis"): a lab whose three nodes are
//! master candidates; for N rounds, random kills and restarts of candidate daemons (and cuts
//! and heals of their links, with network namespaces) while clients create uniquely named
//! diskless instances (not started: no node is changed, so a cut-off master could finish one
//! alone) through random nodes, each client beside its node (in its network namespace, cut off
//! with it), and record which creations were acknowledged (`instance add` exited 0). The checker then asks: is every acknowledged instance there, on
//! every replica; did nothing appear that was never asked for; does no creation show two
//! successful jobs, and no job id two jobs; do all replicas hold the same config at the same
//! serial (one linear history).
//!
//! Used by `crates/cli/tests/replicated_nemesis.rs` (a few rounds) and by
//! `maguey-replication-bench --nemesis ROUNDS` (a longer run).

use crate::{wait_until, Run, TestLab};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one CLI run may take before it is killed (and counts as not acknowledged).
const CLIENT_LIMIT: Duration = Duration::from_secs(10);

/// A small seeded generator (xorshift64*): a seed replays the same faults.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The seed of `MAGUEY_NEMESIS_SEED`, or one from the clock.
pub fn seed_from_env() -> u64 {
    std::env::var("MAGUEY_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub rounds: usize,
    /// Clients writing at once, and creations each attempts per round.
    pub clients: usize,
    pub writes_per_round: usize,
    /// Link cuts besides kills (only where the lab has network namespaces).
    pub cuts: bool,
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub faults: Vec<String>,
    pub proposed: usize,
    pub acknowledged: usize,
    pub present: usize,
    /// The config serial every replica ended at.
    pub serial: u64,
    /// Empty when the checker found nothing wrong.
    pub anomalies: Vec<String>,
    pub elapsed: Duration,
}

/// `maguey ARGS` with node `i`'s state directory, in node `i`'s network namespace when the
/// lab has them (a client beside that node: cut off with it), killed after `limit`.
fn maguey_on(lab: &TestLab, i: usize, args: &[&str], limit: Duration) -> Run {
    let netns = maguey_lab::Lab::load(lab.dir.path())
        .ok()
        .and_then(|l| l.nodes.get(i.wrapping_sub(1))?.netns.clone());
    let mut cmd = match &netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&lab.maguey);
            c
        }
        None => Command::new(&lab.maguey),
    };
    let mut child = match cmd
        .args(args)
        .env("MAGUEY_DIR", lab.node_dir(i))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Run {
                code: -1,
                stdout: String::new(),
                stderr: e.to_string(),
            }
        }
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    match child.wait_with_output() {
        Ok(o) => Run::from(o),
        Err(e) => Run {
            code: -1,
            stdout: String::new(),
            stderr: e.to_string(),
        },
    }
}

/// The fault state of the three candidates: at most one is down or cut at a time, so that a
/// majority can always elect (the goal is to catch lost or doubled writes, not to wait).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Killed(usize),
    Cut(usize),
}

fn repair(lab: &TestLab, fault: Fault, faults: &mut Vec<String>) {
    let d = lab.dir.path().display().to_string();
    match fault {
        Fault::None => {}
        Fault::Killed(i) => {
            faults.push(format!("restart node{i}"));
            let r = lab.maguey(&["lab", "up", "--dir", &d]);
            if r.code != 0 {
                faults.push(format!("(lab up failed: {})", r.stderr.trim()));
            }
        }
        Fault::Cut(i) => {
            faults.push(format!("heal node{i}"));
            lab.set_link(i, true);
        }
    }
}

/// Runs the nemesis on `lab` (three candidates, already voters).
pub fn run(lab: &TestLab, o: &Options) -> Report {
    let started = Instant::now();
    let mut rng = Rng::new(o.seed);
    let mut report = Report {
        seed: o.seed,
        ..Default::default()
    };
    let cuts = o.cuts && lab.has_netns();
    // The manual proof that the checker can fail (docs/replication.md): a magueyd built with
    // `unsafe-ack-before-commit` acknowledges early once this file is beside its store.
    if std::env::var_os("MAGUEY_NEMESIS_UNSAFE").is_some() {
        for i in 1..=3 {
            let _ = std::fs::write(lab.node_dir(i).join("unsafe-ack-before-commit"), "");
        }
    }
    let mut fault = Fault::None;
    let mut proposed: BTreeSet<String> = BTreeSet::new();
    let mut acked: BTreeSet<String> = BTreeSet::new();
    for round in 0..o.rounds {
        // The fault of this round: repair the last one, or make one.
        if fault != Fault::None && rng.below(2) == 0 {
            repair(lab, fault, &mut report.faults);
            fault = Fault::None;
        } else if fault == Fault::None {
            // Half the time the master (as node1's ssconf names it), else any candidate.
            let master = maguey_on(lab, 1, &["cluster", "getmaster"], Duration::from_secs(10))
                .stdout
                .trim()
                .trim_start_matches("node")
                .parse::<usize>()
                .ok()
                .filter(|m| (1..=3).contains(m));
            let i = match master {
                Some(m) if rng.below(2) == 0 => m,
                _ => 1 + rng.below(3) as usize,
            };
            if cuts && rng.below(3) == 0 {
                report.faults.push(format!("cut node{i}"));
                lab.set_link(i, false);
                fault = Fault::Cut(i);
            } else {
                report.faults.push(format!("kill node{i}"));
                lab.kill_node(i);
                fault = Fault::Killed(i);
            }
        }
        // The clients of this round, each through a random node.
        let plans: Vec<(usize, Vec<String>)> = (0..o.clients)
            .map(|c| {
                let node = 1 + rng.below(3) as usize;
                let names = (0..o.writes_per_round)
                    .map(|k| format!("nem-r{round:03}-c{c:02}-w{k:03}"))
                    .collect();
                (node, names)
            })
            .collect();
        let results: Vec<(String, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = plans
                .iter()
                .map(|(node, names)| {
                    s.spawn(move || {
                        let mut timed_out = false;
                        names
                            .iter()
                            .filter_map(|name| {
                                // A client cut off from the master gives up for this round.
                                if timed_out {
                                    return None;
                                }
                                let pnode = format!("node{}", 1 + name.len() % 3);
                                let started = Instant::now();
                                let r = maguey_on(
                                    lab,
                                    *node,
                                    &[
                                        "instance",
                                        "add",
                                        "-t",
                                        "diskless",
                                        "--no-install",
                                        "--no-start",
                                        "-n",
                                        &pnode,
                                        name,
                                    ],
                                    CLIENT_LIMIT,
                                );
                                timed_out = r.code != 0 && started.elapsed() >= CLIENT_LIMIT;
                                Some((name.clone(), r.code == 0))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (name, ok) in results {
            proposed.insert(name.clone());
            if ok {
                acked.insert(name);
            }
        }
    }
    repair(lab, fault, &mut report.faults);
    // One creation after the repairs, retried until acknowledged: every run checks at least
    // one acknowledged write, whatever the faults did to the rounds.
    let last = "nem-final".to_string();
    proposed.insert(last.clone());
    let done = wait_until(Duration::from_secs(90), || {
        let r = maguey_on(
            lab,
            1,
            &[
                "instance",
                "add",
                "-t",
                "diskless",
                "--no-install",
                "--no-start",
                "-n",
                "node2",
                &last,
            ],
            CLIENT_LIMIT,
        );
        // A retry of a creation that committed meanwhile is refused: it exists.
        r.code == 0 || r.stderr.contains("already in use")
    });
    if done {
        acked.insert(last);
    } else {
        report
            .anomalies
            .push("no creation acknowledged after the repairs".into());
    }
    report.proposed = proposed.len();
    report.acknowledged = acked.len();
    check(lab, &proposed, &acked, &mut report);
    report.elapsed = started.elapsed();
    report
}

/// Node `i`'s replica of the instance names and its config serial (a `--stale-ok` query to
/// node `i` itself: a follower answers from its own replica and names its serial; the master
/// answers as master, its serial from `cluster info`).
fn replica_view(lab: &TestLab, i: usize) -> Option<(u64, BTreeSet<String>)> {
    let identity = maguey_rpc::ca::NodeIdentity::load_admin(&lab.node_dir(i)).ok()?;
    let port = maguey_model::DEFAULT_RPC_PORT;
    let url = format!("https://{}:{port}", lab.node_ip(i));
    let c = maguey_client::MasterClient::new(&identity, url).ok()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let r = rt
        .block_on(c.query_stale_ok(
            maguey_client::Resource::Instance,
            vec![],
            vec!["name".into()],
        ))
        .ok()?;
    let serial = match &r.stale {
        Some(why) => why
            .split("config serial ")
            .nth(1)?
            .split(|ch: char| !ch.is_ascii_digit())
            .next()?
            .parse()
            .ok()?,
        None => {
            let info = maguey_on(
                lab,
                i,
                &["cluster", "info", "--output", "json"],
                Duration::from_secs(20),
            );
            serde_json::from_str::<serde_json::Value>(&info.stdout).ok()?["Config serial"]
                .as_u64()?
        }
    };
    let names = r
        .rows
        .iter()
        .filter_map(|row| row.first()?.as_str().map(String::from))
        .collect();
    Some((serial, names))
}

fn check(
    lab: &TestLab,
    proposed: &BTreeSet<String>,
    acked: &BTreeSet<String>,
    report: &mut Report,
) {
    let t = Duration::from_secs(90);
    // A master again, reachable through node1.
    let answered = wait_until(t, || {
        maguey_on(
            lab,
            1,
            &["instance", "list", "-o", "name"],
            Duration::from_secs(20),
        )
        .code
            == 0
    });
    if !answered {
        report
            .anomalies
            .push("no master answers after the repairs".into());
        return;
    }
    // Every replica at the same serial, with the same instances.
    let mut views: Vec<Option<(u64, BTreeSet<String>)>> = Vec::new();
    let converged = wait_until(t, || {
        views = (1..=3).map(|i| replica_view(lab, i)).collect();
        views.iter().all(Option::is_some) && views.windows(2).all(|w| w[0] == w[1])
    });
    if !converged {
        let serials: Vec<Option<u64>> = views.iter().map(|v| v.as_ref().map(|v| v.0)).collect();
        report.anomalies.push(format!(
            "the replicas do not converge on one config: serials {serials:?}"
        ));
        return;
    }
    let Some(Some((serial, present))) = views.first().cloned() else {
        return;
    };
    report.serial = serial;
    let present: BTreeSet<String> = present
        .into_iter()
        .filter(|n| n.starts_with("nem-"))
        .collect();
    report.present = present.len();
    let lost: Vec<&String> = acked.difference(&present).collect();
    if !lost.is_empty() {
        report
            .anomalies
            .push(format!("acknowledged but missing: {lost:?}"));
    }
    let invented: Vec<&String> = present.difference(proposed).collect();
    if !invented.is_empty() {
        report
            .anomalies
            .push(format!("present but never asked for: {invented:?}"));
    }
    // The job queue: one job per id, and no creation that succeeded twice.
    let r = maguey_on(
        lab,
        1,
        &["job", "list", "-o", "id,status,summary", "--output", "json"],
        Duration::from_secs(30),
    );
    let jobs: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(&r.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if r.code != 0 {
        report
            .anomalies
            .push(format!("job list failed: {}", r.stderr.trim()));
    }
    let mut ids: BTreeMap<u64, usize> = BTreeMap::new();
    let mut succeeded: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        if let Some(id) = j["id"].as_u64() {
            *ids.entry(id).or_default() += 1;
        }
        let summary = j["summary"].to_string();
        if j["status"] == "success" {
            for name in proposed.iter().filter(|n| summary.contains(n.as_str())) {
                *succeeded.entry(name.clone()).or_default() += 1;
            }
        }
    }
    let doubled: Vec<u64> = ids
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    if !doubled.is_empty() {
        report
            .anomalies
            .push(format!("job ids given to two jobs: {doubled:?}"));
    }
    let twice: Vec<&String> = succeeded
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(name, _)| name)
        .collect();
    if !twice.is_empty() {
        report
            .anomalies
            .push(format!("created by two successful jobs: {twice:?}"));
    }
    let unrecorded: Vec<&String> = acked
        .iter()
        .filter(|n| !succeeded.contains_key(*n))
        .collect();
    if !unrecorded.is_empty() {
        report.anomalies.push(format!(
            "acknowledged, but no successful job in the queue: {unrecorded:?}"
        ));
    }
}
