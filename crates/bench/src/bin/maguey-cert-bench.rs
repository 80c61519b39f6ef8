//! Short-lived node certificates under load (issue 13's "5-minute run with 2-minute
//! certificates", kept out of CI): a 2-node lab of real daemons (fake hypervisor) whose node
//! certificates live `--lifetime` seconds (default 120), jobs running back to back for
//! `--minutes` (default 5): an instance reboot and a node list per round. Counts the rounds,
//! the failed commands (the goal: none), and the automatic renewals every node got.
//!
//! Run: `cargo build --workspace --bins && target/debug/maguey-cert-bench [--minutes 5]
//! [--lifetime 120]` (root is not needed: no network namespaces). Prints one line.

use anyhow::{bail, Context, Result};
use maguey_rpc::ca::NodeIdentity;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Lab {
    dir: PathBuf,
    maguey: PathBuf,
}

impl Lab {
    fn run(&self, args: &[&str]) -> Result<String> {
        let o = Command::new(&self.maguey)
            .args(args)
            .env("MAGUEY_DIR", self.dir.join("node1"))
            .env("MAGUEY_WATCHER_INTERVAL", "0")
            .output()?;
        if !o.status.success() {
            bail!(
                "maguey {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn fingerprints(&self) -> Vec<String> {
        (1..=2)
            .map(|i| {
                NodeIdentity::load(&self.dir.join(format!("node{i}")))
                    .map(|id| id.fingerprint())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn not_after(&self, i: usize) -> Result<i64> {
        let id = NodeIdentity::load(&self.dir.join(format!("node{i}")))?;
        maguey_rpc::ca::not_after_pem(&id.cert_pem).context("the certificate's end")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let d = self.dir.display().to_string();
        let _ = self.run(&["lab", "down", "--dir", &d]);
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let minutes = arg(&args, "--minutes", 5);
    let lifetime = arg(&args, "--lifetime", 120);
    let tmp = tempfile::Builder::new()
        .prefix("maguey-cert-bench-")
        .tempdir()?;
    let maguey = std::env::current_exe()?.with_file_name("maguey");
    let lab = Lab {
        dir: tmp.path().join("lab"),
        maguey,
    };
    let d = lab.dir.display().to_string();
    lab.run(&["lab", "up", "--nodes", "2", "--netns", "off", "--dir", &d])?;
    let lt = lifetime.to_string();
    lab.run(&[
        "cluster",
        "renew-crypto",
        "--node-certificate-lifetime",
        &lt,
    ])?;
    lab.run(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=16M",
        "-o",
        "noop",
        "-n",
        "node2",
        "vm1",
    ])?;
    let first_end = lab.not_after(2)?;
    let start = Instant::now();
    let mut seen = vec![lab.fingerprints()];
    let (mut rounds, mut failures) = (0u64, Vec::new());
    while start.elapsed() < Duration::from_secs(minutes * 60) {
        for cmd in [&["instance", "reboot", "vm1"][..], &["node", "list"][..]] {
            if let Err(e) = lab.run(cmd) {
                eprintln!("{:.0} s: {e:#}", start.elapsed().as_secs_f64());
                failures.push(e);
            }
        }
        rounds += 1;
        let now_fps = lab.fingerprints();
        let last = seen.last().cloned().unwrap_or_default();
        // A round counts once every node has its new certificate.
        if now_fps.iter().zip(&last).all(|(a, b)| a != b) {
            seen.push(now_fps);
        }
    }
    let status = lab.run(&["instance", "list", "-o", "name,status"])?;
    println!(
        "{minutes} min with {lifetime}-s node certificates: {rounds} rounds of jobs, {} failed \
         commands, {} automatic renewals of every node, first certificates ended {} s into the \
         run; vm1: {}",
        failures.len(),
        seen.len() - 1,
        first_end - (now() - start.elapsed().as_secs() as i64),
        status.trim()
    );
    if !failures.is_empty() {
        bail!("{} commands failed", failures.len());
    }
    Path::new(&d)
        .exists()
        .then_some(())
        .context("the lab went away")?;
    Ok(())
}
