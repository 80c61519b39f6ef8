//! Replicated-master benchmark (not a test; docs/benchmarks.md): starts a 3-node lab whose
//! three nodes are Raft voters (`lab up --replicated`) and measures
//! - the round trip of a zero-delay OP_TEST_DELAY job (submit → finalized), one at a time,
//! - job throughput: N fake-instance creations submitted at once (jobs/s),
//! - `maguey instance list` (whole CLI process) and `maguey instance add` / `job submit`
//!   latency as a user feels them,
//! - the time from a kill -9 of the master to the first job the new master accepts.
//!
//! Usage: `cargo build --release --workspace --bins &&
//! target/release/maguey-replication-bench [--instances 1000] [--single]` (it runs `maguey`
//! and `magueyd` from its own directory). `--single` measures the same on a single master
//! (no replication, no kill), for the side-by-side figures; run both in the same minute.
//! `--nemesis ROUNDS [--seed S]`: instead, the daemon-level nemesis
//! (`maguey_test_infra::nemesis`, as `crates/cli/tests/replicated_nemesis.rs`) for ROUNDS
//! rounds, printing the seed, the faults and the anomalies found (goal 0).

use maguey_client::MasterClient;
use maguey_model::{NicSpec, OpCode, Params};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn wait_done(c: &MasterClient, id: u64) -> anyhow::Result<()> {
    let mut status = None;
    loop {
        if let Some(j) = c
            .wait(id, status, u64::MAX / 2, Duration::from_secs(30))
            .await?
        {
            if j.status.is_finalized() {
                anyhow::ensure!(
                    j.status == maguey_model::JobStatus::Success,
                    "job {id} ended {:?}: {:?}",
                    j.status,
                    j.opresult
                );
                return Ok(());
            }
            status = Some(j.status);
        }
    }
}

fn delay() -> OpCode {
    OpCode::TestDelay(maguey_model::OpTestDelay {
        duration: 0.0,
        on_master: true,
        on_nodes: vec![],
        repeat: 0,
        fail: false,
    })
}

fn create(name: String, node: String) -> OpCode {
    OpCode::InstanceCreate(maguey_model::OpInstanceCreate {
        instance_name: name,
        mode: maguey_model::InstanceCreateMode::Create,
        disk_template: maguey_model::DiskTemplate::Diskless,
        disks: vec![],
        nics: vec![NicSpec::default()],
        pnode: Some(node),
        snode: None,
        os_type: None,
        osparams: Params::new(),
        no_install: true,
        start: true,
        hypervisor: None,
        hvparams: Params::new(),
        beparams: Params::new(),
        iallocator: None,
        tags: vec![],
        wait_for_sync: true,
        group_name: None,
        ignore_ipolicy: false,
    })
}

/// Median and p90 (ms) of `runs` runs of `maguey ARGS(i)` with `dir` as MAGUEY_DIR.
fn cli_latency(
    maguey: &Path,
    dir: &Path,
    runs: usize,
    args: impl Fn(usize) -> Vec<String>,
) -> anyhow::Result<(f64, f64)> {
    let mut v = Vec::new();
    for i in 0..runs {
        let t = Instant::now();
        let o = std::process::Command::new(maguey)
            .args(args(i))
            .env("MAGUEY_DIR", dir)
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "maguey {:?} failed: {}",
            args(i),
            String::from_utf8_lossy(&o.stderr)
        );
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((percentile(&mut v.clone(), 0.5), percentile(&mut v, 0.9)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--instances")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse::<u64>().ok())
    };
    if let Some(rounds) = arg("--nemesis") {
        // On a thread of its own: the checker runs a runtime of its own.
        let seed = arg("--seed");
        return std::thread::spawn(move || nemesis(rounds as usize, seed))
            .join()
            .map_err(|_| anyhow::anyhow!("the nemesis panicked"))?;
    }
    let single = args.iter().any(|a| a == "--single");
    let dir = tempfile::Builder::new()
        .prefix("maguey-repl-bench-")
        .tempdir()?;
    let b = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    let prefix = format!("127.{}.{}", 1 + b % 250, 1 + (b / 251) % 250);
    let opts = maguey_lab::UpOptions {
        nodes: 3,
        dir: dir.path().to_path_buf(),
        address_prefix: prefix,
        port: maguey_model::DEFAULT_RPC_PORT,
        node_memory: 16 * 1024 * 1024,
        node_cpus: 64,
        cluster_name: "bench".into(),
        kvm: false,
        vm_nodes: 0,
        netns: maguey_lab::NetnsMode::Auto,
        replicated: !single,
        witness: false,
    };
    let t = Instant::now();
    let lab = maguey_lab::up(&opts).await?;
    let dirs: Vec<PathBuf> = lab.nodes.iter().map(|n| n.dir.clone()).collect();
    let c = MasterClient::from_state_dir(&dirs[0])?;
    // Three voters before measuring.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if single {
            break;
        }
        let r = c.replication().await?;
        if r["voters"].as_array().map(Vec::len) == Some(3) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no 3 voters: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} lab up: {:.2} s",
        if single {
            "single-master"
        } else {
            "replicated (3 voters)"
        },
        t.elapsed().as_secs_f64()
    );

    // 1. OP_TEST_DELAY round trip.
    let mut rt = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let id = c.submit(vec![delay()], 0).await?;
        wait_done(&c, id).await?;
        rt.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "OP_TEST_DELAY(0) round trip: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms (200 jobs, one at a time)",
        percentile(&mut rt.clone(), 0.5),
        percentile(&mut rt.clone(), 0.9),
        percentile(&mut rt, 0.99)
    );

    // 2. Throughput of N instance creations submitted at once: by 32 clients at a time (as
    // many users and RAPI clients would; one client alone waits for each submit's commit).
    let t = Instant::now();
    const SUBMITTERS: usize = 32;
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (s..n).step_by(SUBMITTERS) {
                let op = create(format!("bench{i:05}"), format!("node{}", i % 3 + 1));
                ids.push(c.submit(vec![op], 0).await?);
            }
            let submitted = t.elapsed().as_secs_f64();
            // Then each client waits for its own jobs (32 connections, not one per job).
            for id in ids {
                wait_done(&c, id).await?;
            }
            anyhow::Ok(submitted)
        }));
    }
    let mut submitted: f64 = 0.0;
    for task in tasks {
        submitted = submitted.max(task.await??);
    }
    let total = t.elapsed().as_secs_f64();
    println!(
        "{n} fake-instance creations ({SUBMITTERS} submitters): submitted in {submitted:.2} s, all done in {total:.2} s → {:.1} jobs/s",
        n as f64 / total
    );

    // 3. Latency as a user feels it (whole CLI processes): on the master, and through a
    // follower (which redirects to it).
    let maguey = std::env::current_exe()?.with_file_name("maguey");
    let whom: &[(&str, &PathBuf)] = if single {
        &[("master", &dirs[0])]
    } else {
        &[("master", &dirs[0]), ("follower", &dirs[1])]
    };
    for (who, d) in whom.iter().copied() {
        let (m, p) = cli_latency(&maguey, d, 20, |_| vec!["instance".into(), "list".into()])?;
        println!("`maguey instance list` ({n} instances) through the {who}: median {m:.1} ms, p90 {p:.1} ms");
        let (m, p) = cli_latency(&maguey, d, 20, |_| vec!["node".into(), "list".into()])?;
        println!("`maguey node list` through the {who}: median {m:.1} ms, p90 {p:.1} ms");
        let (m, p) = cli_latency(&maguey, d, 20, |i| {
            vec![
                "instance".into(),
                "add".into(),
                "-t".into(),
                "diskless".into(),
                "--no-install".into(),
                "-n".into(),
                "node2".into(),
                format!("lat-{who}-{i}"),
            ]
        })?;
        println!("`maguey instance add` (diskless, fake, started) through the {who}: median {m:.1} ms, p90 {p:.1} ms");
        let (m, p) = cli_latency(&maguey, d, 20, |_| {
            vec![
                "debug".into(),
                "delay".into(),
                "0".into(),
                "--submit".into(),
            ]
        })?;
        println!("`maguey debug delay 0 --submit` (job submit) through the {who}: median {m:.1} ms, p90 {p:.1} ms");
    }

    if single {
        maguey_lab::down(dir.path())?;
        return Ok(());
    }
    // 4. Kill -9 of the master, then the first job the new master accepts (through node2's
    // state directory: node2 serves or redirects to node3).
    let follower = MasterClient::new(
        &maguey_rpc_admin(&dirs[1])?,
        format!("https://{}:{}", lab.nodes[1].ip, opts.port),
    )?;
    let t = Instant::now();
    maguey_lab::kill_node(dir.path(), 1)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        match tokio::time::timeout(Duration::from_secs(2), follower.submit(vec![delay()], 0)).await
        {
            Ok(Ok(id)) => break id,
            _ if Instant::now() > deadline => anyhow::bail!("no new master within 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let accepted = t.elapsed().as_secs_f64();
    wait_done(&follower, id).await?;
    println!(
        "kill -9 of the master → first job accepted by the new master: {accepted:.2} s (done after {:.2} s)",
        t.elapsed().as_secs_f64()
    );
    // Where the new master's start went (its log: read index, master term, job queue).
    for d in &dirs[1..] {
        let log = std::fs::read_to_string(d.join("magueyd.log")).unwrap_or_default();
        for line in log
            .lines()
            .filter(|l| l.contains("master started in") || l.contains("Raft leader in term"))
        {
            println!("  {}: {line}", d.display());
        }
    }
    maguey_lab::down(dir.path())?;
    Ok(())
}

/// `--nemesis ROUNDS`: the daemon-level nemesis on a fresh 3-candidate lab.
fn nemesis(rounds: usize, seed: Option<u64>) -> anyhow::Result<()> {
    use maguey_test_infra::nemesis;
    let seed = seed.unwrap_or_else(nemesis::seed_from_env);
    println!("nemesis seed {seed}, {rounds} rounds");
    let maguey = std::env::current_exe()?.with_file_name("maguey");
    let lab = maguey_test_infra::TestLab::up_with(&maguey, 3, &["--replicated"]);
    let voters = maguey_test_infra::wait_until(Duration::from_secs(60), || {
        let l = std::fs::read_to_string(lab.node_dir(1).join("magueyd.log")).unwrap_or_default();
        l.contains("node2 is a voter") && l.contains("node3 is a voter")
    });
    anyhow::ensure!(voters, "the candidates did not become voters");
    let report = nemesis::run(
        &lab,
        &nemesis::Options {
            seed,
            rounds,
            clients: 3,
            writes_per_round: 4,
            cuts: true,
        },
    );
    println!("faults: {}", report.faults.join(", "));
    println!(
        "nemesis seed {seed}: {rounds} rounds in {:.1} s; {} creations asked, {} acknowledged, \
         {} present; every replica at serial {}; anomalies: {}",
        report.elapsed.as_secs_f64(),
        report.proposed,
        report.acknowledged,
        report.present,
        report.serial,
        report.anomalies.len()
    );
    for a in &report.anomalies {
        println!("  anomaly: {a}");
    }
    anyhow::ensure!(report.anomalies.is_empty(), "the checker found anomalies");
    Ok(())
}

/// The admin identity a candidate holds (handed by the leader).
fn maguey_rpc_admin(dir: &Path) -> anyhow::Result<maguey_rpc::ca::NodeIdentity> {
    maguey_rpc::ca::NodeIdentity::load_admin(dir).map_err(|e| anyhow::anyhow!("{e}"))
}
