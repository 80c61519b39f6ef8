//! Control-plane benchmark (not a test): starts a 3-node lab of real daemons and measures
//! - the round trip of a zero-delay OP_TEST_DELAY job (submit → finalized),
//! - job throughput for N fake-instance creations submitted at once (jobs/s),
//! - `maguey instance list` latency with N instances (whole CLI process, and API only).
//!
//! Usage: `cargo build --release --workspace --bins && target/release/maguey-bench [--instances 1000]`
//! (it runs `maguey` and `magueyd` from its own directory)

use maguey_client::MasterClient;
use maguey_model::{NicSpec, OpCode, Params};
use maguey_ops::query::Resource;
use std::path::PathBuf;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--instances")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::Builder::new().prefix("maguey-bench-").tempdir()?;
    let prefix = format!("127.{}.{}", 1 + rand_byte() % 250, 1 + rand_byte() % 250);
    let opts = maguey_lab::UpOptions {
        witness: false,
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
        replicated: false,
    };
    let t = Instant::now();
    let lab = maguey_lab::up(&opts).await?;
    println!("lab up (3 nodes): {:.2} s", t.elapsed().as_secs_f64());
    let master = lab
        .master_dir()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("no master"))?;
    let c = MasterClient::from_state_dir(&master)?;

    // 1. OP_TEST_DELAY round trip.
    let mut rt = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let id = c
            .submit(
                vec![OpCode::TestDelay(maguey_model::OpTestDelay {
                    duration: 0.0,
                    on_master: true,
                    on_nodes: vec![],
                    repeat: 0,
                    fail: false,
                })],
                0,
            )
            .await?;
        wait_done(&c, id).await?;
        rt.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "OP_TEST_DELAY(0) round trip: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms (200 jobs, one at a time)",
        percentile(&mut rt.clone(), 0.5),
        percentile(&mut rt.clone(), 0.9),
        percentile(&mut rt, 0.99)
    );

    // 2. Throughput of N instance creations submitted at once.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let op = OpCode::InstanceCreate(maguey_model::OpInstanceCreate {
            instance_name: format!("bench{i:05}"),
            mode: maguey_model::InstanceCreateMode::Create,
            disk_template: maguey_model::DiskTemplate::Diskless,
            disks: vec![],
            nics: vec![NicSpec::default()],
            pnode: Some(format!("node{}", i % 3 + 1)),
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
        });
        ids.push(c.submit(vec![op], 0).await?);
    }
    let submitted = t.elapsed().as_secs_f64();
    for id in &ids {
        wait_done(&c, *id).await?;
    }
    let total = t.elapsed().as_secs_f64();
    println!(
        "{n} fake-instance creations: submitted in {submitted:.2} s, all done in {total:.2} s → {:.1} jobs/s",
        n as f64 / total
    );

    // 3. instance list latency with N instances.
    let fields: Vec<String> = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut api = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = c.query(Resource::Instance, vec![], fields.clone()).await?;
        anyhow::ensure!(r.rows.len() == n, "expected {n} rows, got {}", r.rows.len());
        api.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let maguey = std::env::current_exe()?.with_file_name("maguey");
    let mut cli = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let o = std::process::Command::new(&maguey)
            .args(["instance", "list"])
            .env("MAGUEY_DIR", &master)
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "instance list failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        cli.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "instance list with {n} instances: CLI process median {:.1} ms (p90 {:.1}); query API median {:.1} ms (p90 {:.1})",
        percentile(&mut cli.clone(), 0.5),
        percentile(&mut cli, 0.9),
        percentile(&mut api.clone(), 0.5),
        percentile(&mut api, 0.9)
    );
    maguey_lab::down(dir.path())?;
    Ok(())
}

fn rand_byte() -> u8 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7)
        % 251) as u8
}
