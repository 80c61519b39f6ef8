//! The deploy figures of issue 17, on a lab of processes (network namespaces, `kvm` with the
//! tiny guest, TCG here):
//!
//! 1. create+start → guest ready marker through Maguey (`instance add` of a `sharedfile`
//!    instance on node2, the CLI's wall time until the marker is on the console) against a
//!    bare QEMU boot of the same guest (same kernel, initramfs, memory and disk size), rounds
//!    interleaved so that both see the same machine load; medians;
//! 2. RSS of magueyd on the master (node1) and on a plain node (node2) running N instances
//!    (default 10): `VmRSS` and `VmHWM` from `/proc/PID/status`, split into anonymous memory
//!    (heap, stacks) and file pages (the binary's code and data: much larger for a debug
//!    build), with the thread count; `--magueyd PATH` measures another build (e.g. the
//!    release binary the packages ship);
//! 3. the sizes of the Debian packages (`scripts/build-debs --bin-dir` of the binaries beside
//!    this one, xz-compressed as released): file size and `Installed-Size`.
//!
//! Run: `cargo build --workspace --bins && target/debug/maguey-deploy-bench [--instances N]
//! [--rounds R] [--magueyd target/release/magueyd]` as root. Prints one line per figure.

use anyhow::{bail, Context, Result};
use clap::Parser;
use maguey_lab::guest;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Instances on the plain node while RSS is read.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// Rounds of the boot comparison (medians).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip building the packages (their sizes).
    #[arg(long)]
    no_packages: bool,
    /// The magueyd the lab runs (default: the one beside this binary).
    #[arg(long)]
    magueyd: Option<PathBuf>,
    /// Skip the boot comparison (RSS only).
    #[arg(long)]
    no_boot: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let g = guest::ensure()?;
    let tmp = tempfile::Builder::new()
        .prefix("maguey-deploy-bench-")
        .tempdir()?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("no directory")?
        .to_path_buf();
    if !args.no_packages {
        packages(&exe_dir, &tmp.path().join("debs"))?;
    }
    let magueyd = match &args.magueyd {
        Some(p) => std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?,
        None => exe_dir.join("magueyd"),
    };
    println!("magueyd: {}", magueyd.display());
    let lab = Lab::up(tmp.path().join("lab"), exe_dir.join("maguey"), magueyd)?;
    if !args.no_boot {
        let (mut raw, mut mg, mut exec) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..args.rounds.max(1) {
            raw.push(raw_boot(&g, tmp.path(), round)?);
            let before = uptime()?;
            mg.push(lab.boot(&format!("b{round}"), true)?);
            exec.push(lab.qemu_started.get() - before);
        }
        println!(
            "Maguey's part, CLI start to QEMU's exec (/proc/PID/stat, 10 ms ticks): median {:.0} \
             ms (rounds {})",
            median(exec.clone()) * 1e3,
            show(&exec)
        );
        println!("rounds (ms): raw QEMU {}; Maguey {}", show(&raw), show(&mg));
        let (r, m) = (median(raw), median(mg));
        println!(
            "create+start to guest marker: Maguey {:.0} ms, raw QEMU {:.0} ms, +{:.0} ms, ratio \
             {:.2} (medians of {} interleaved rounds)",
            m * 1e3,
            r * 1e3,
            (m - r) * 1e3,
            m / r,
            args.rounds.max(1)
        );
    }
    let t = Instant::now();
    for i in 0..args.instances {
        lab.boot(&format!("vm{i}"), false)?;
    }
    let listed = lab.run(&["instance", "list", "-o", "name,status", "--no-headers"])?;
    let running = listed.lines().filter(|l| l.contains("running")).count();
    if running != args.instances {
        bail!(
            "{running} of {} instances running:\n{listed}",
            args.instances
        );
    }
    println!(
        "{} instances created and started on node2 in {:.1} s",
        args.instances,
        t.elapsed().as_secs_f64()
    );
    // Steady state: the master polls the nodes a few times meanwhile.
    std::thread::sleep(Duration::from_secs(10));
    for (node, what) in [(1, "master (node1)"), (2, "plain node (node2)")] {
        let m = lab.rss(node)?;
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "magueyd RSS on the {what} with {} instances on node2: {:.1} MiB (peak {:.1} MiB; \
             anonymous {:.1} MiB, file {:.1} MiB; {} threads)",
            args.instances,
            mib(m.rss),
            mib(m.hwm),
            mib(m.anon),
            mib(m.file),
            m.threads
        );
    }
    drop(lab);
    Ok(())
}

fn show(v: &[f64]) -> String {
    v.iter()
        .map(|s| format!("{:.0}", s * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds since boot (/proc/uptime, 10 ms resolution).
fn uptime() -> Result<f64> {
    read(Path::new("/proc/uptime"))
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("/proc/uptime")
}

/// When process `pid` started, in seconds since boot (field 22 of /proc/PID/stat).
fn started(pid: &str) -> Result<f64> {
    let stat = read(Path::new(&format!("/proc/{}/stat", pid.trim())));
    let ticks: f64 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no start time of process {pid}"))?;
    // In USER_HZ ticks: 100 a second on Linux.
    Ok(ticks / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `scripts/build-debs` of the binaries in `bins` (xz, as released): sizes.
fn packages(bins: &Path, out: &Path) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-debs");
    let o = Command::new(script)
        .arg("--bin-dir")
        .arg(bins)
        .arg("--out")
        .arg(out)
        .output()?;
    if !o.status.success() {
        bail!("build-debs: {}", String::from_utf8_lossy(&o.stderr));
    }
    let mut debs: Vec<PathBuf> = std::fs::read_dir(out)?
        .flatten()
        .map(|e| e.path())
        .collect();
    debs.sort();
    for d in debs {
        let f = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&d)
            .arg("Installed-Size")
            .output()?;
        let installed: u64 = String::from_utf8_lossy(&f.stdout).trim().parse()?;
        println!(
            "package {}: {:.1} MB (.deb, xz), {:.1} MB installed (binaries from {})",
            d.file_name().unwrap_or_default().to_string_lossy(),
            std::fs::metadata(&d)?.len() as f64 / 1e6,
            installed as f64 * 1024.0 / 1e6,
            bins.display()
        );
    }
    Ok(())
}

/// A bare QEMU boot of the tiny guest to its ready marker, in seconds; QEMU quits after.
fn raw_boot(g: &guest::Guest, dir: &Path, round: usize) -> Result<f64> {
    let img = dir.join(format!("raw{round}.img"));
    std::fs::File::create(&img)?.set_len(64 << 20)?;
    let (qmp, log) = (
        dir.join(format!("raw{round}.qmp")),
        dir.join(format!("raw{round}.log")),
    );
    let t = Instant::now();
    let out = g.bare_qemu(&img, &qmp, &log, None).output()?;
    if !out.status.success() {
        bail!("qemu: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for(Duration::from_secs(120), || {
        read(&log).contains(guest::READY_MARKER)
    })?;
    let secs = t.elapsed().as_secs_f64();
    quit(&qmp)?;
    Ok(secs)
}

/// QMP `quit`.
fn quit(p: &Path) -> Result<()> {
    let s = UnixStream::connect(p).with_context(|| format!("QMP {}", p.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    writeln!(w, r#"{{"execute":"qmp_capabilities"}}"#)?;
    line.clear();
    r.read_line(&mut line)?;
    writeln!(w, r#"{{"execute":"quit"}}"#)?;
    line.clear();
    let _ = r.read_line(&mut line);
    Ok(())
}

struct Lab {
    dir: PathBuf,
    maguey: PathBuf,
    magueyd: PathBuf,
    /// When the last booted instance's QEMU started (seconds since boot).
    qemu_started: std::cell::Cell<f64>,
}

/// Memory of a process, from `/proc/PID/status` (KiB).
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

impl Lab {
    fn up(dir: PathBuf, maguey: PathBuf, magueyd: PathBuf) -> Result<Lab> {
        let lab = Lab {
            dir,
            maguey,
            magueyd,
            qemu_started: std::cell::Cell::new(0.0),
        };
        let d = lab.dir.display().to_string();
        lab.run(&["lab", "up", "--nodes", "2", "--kvm", "--dir", &d])?;
        Ok(lab)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let o = Command::new(&self.maguey)
            .args(args)
            .env("MAGUEY_DIR", self.dir.join("node1"))
            .env("MAGUEY_MAGUEYD", &self.magueyd)
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

    /// `instance add` on node2 until the guest's ready marker, in seconds; removed after when
    /// `remove`.
    fn boot(&self, name: &str, remove: bool) -> Result<f64> {
        let console = self.dir.join(format!("node2/run/kvm/{name}.console.log"));
        let t = Instant::now();
        self.run(&[
            "instance",
            "add",
            "-t",
            "sharedfile",
            "--disk",
            "0:size=64M",
            "-o",
            "lab-tiny",
            "-H",
            "kvm",
            "-n",
            "node2",
            name,
        ])?;
        wait_for(Duration::from_secs(120), || {
            read(&console).contains(guest::READY_MARKER)
        })?;
        let secs = t.elapsed().as_secs_f64();
        let pid = read(&self.dir.join(format!("node2/run/kvm/{name}.pid")));
        self.qemu_started.set(started(&pid)?);
        if remove {
            self.run(&["instance", "remove", "-f", name])?;
        }
        Ok(secs)
    }

    /// The memory of node `i`'s magueyd.
    fn rss(&self, i: usize) -> Result<Mem> {
        let pid = read(&self.dir.join(format!("node{i}/magueyd.pid")));
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
            .with_context(|| format!("node{i}'s magueyd ({})", pid.trim()))?;
        let field = |k: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("no {k} in /proc/PID/status"))
        };
        Ok(Mem {
            rss: field("VmRSS:")?,
            hwm: field("VmHWM:")?,
            anon: field("RssAnon:")?,
            file: field("RssFile:")?,
            threads: field("Threads:")?,
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let d = self.dir.display().to_string();
        let _ = self.run(&["lab", "down", "--dir", &d]);
    }
}
