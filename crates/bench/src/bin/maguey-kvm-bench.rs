//! Real-VM figures: Maguey against bare QEMU on the same tiny guest (TCG here).
//!
//! 1. create+start → guest marker through Maguey, versus a bare QEMU boot → marker;
//! 2. live migration through Maguey (`maguey instance migrate`, wall time of the CLI),
//!    versus a bare QEMU migration of the same guest (start the target with `-incoming`,
//!    QMP `migrate` with the same bandwidth and downtime, until `completed`);
//! 3. local-disk live migration of a 1 GiB `file` disk full of data (MiB/s over the whole
//!    migration, disk and memory).
//!
//! Run: `cargo build --workspace --bins && target/debug/maguey-kvm-bench [ROUNDS]` (root:
//! the lab puts nodes in network namespaces and NICs in bridges). Prints one line per figure.
//!
//! `maguey-kvm-bench tls [ROUNDS]`: bare QEMU live migration of the same guest over plain TCP
//! against the same over TLS (`tls-creds-x509` from a cluster CA, the peer verified both
//! ways, as Maguey's migrations do: docs/security.md), the two alternating, uncapped and with
//! the 32 MiB/s cap; medians and the TLS/plain ratio (the goal: at most 1.2).

use anyhow::{bail, Context, Result};
use maguey_lab::guest;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tls_mode = args.first().is_some_and(|a| a == "tls");
    let rounds: usize = args
        .get(usize::from(tls_mode))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let g = guest::ensure()?;
    let tmp = tempfile::Builder::new()
        .prefix("maguey-kvm-bench-")
        .tempdir()?;
    if tls_mode {
        return tls_figures(&g, tmp.path(), rounds);
    }
    let raw = raw_figures(&g, tmp.path(), rounds)?;
    let lab = Lab::up(tmp.path().join("lab"))?;
    let r = lab.figures(rounds);
    drop(lab);
    let (boot, mig, disk) = r?;
    println!(
        "boot to marker: Maguey {:.2} s, raw QEMU {:.2} s, ratio {:.2}",
        boot,
        raw.0,
        boot / raw.0
    );
    println!(
        "live migration (128 MiB guest, 32 MiB/s cap): Maguey {:.2} s, raw QEMU {:.2} s, ratio {:.2}",
        mig,
        raw.1,
        mig / raw.1
    );
    println!("local-disk live migration, 1 GiB of data: {disk:.0} MiB/s (whole migration)");
    Ok(())
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
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn last_tick(text: &str) -> u64 {
    text.lines()
        .rev()
        .filter_map(|l| l.split(guest::TICK_MARKER).nth(1))
        .find_map(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A minimal QMP session (line-delimited JSON).
struct Qmp {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(p: &Path) -> Result<Qmp> {
        let s = UnixStream::connect(p).with_context(|| format!("QMP {}", p.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut q = Qmp {
            w: s.try_clone()?,
            r: BufReader::new(s),
        };
        let mut greeting = String::new();
        q.r.read_line(&mut greeting)?;
        q.cmd(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(q)
    }

    fn cmd(&mut self, json: &str) -> Result<serde_json::Value> {
        writeln!(self.w, "{json}")?;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                bail!("QMP closed");
            }
            let v: serde_json::Value = serde_json::from_str(&line)?;
            if let Some(e) = v.get("error") {
                bail!("QMP error: {e}");
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
        }
    }
}

/// Bare QEMU: (boot to marker, migration) medians in seconds.
fn raw_figures(g: &guest::Guest, dir: &Path, rounds: usize) -> Result<(f64, f64)> {
    let img = dir.join("raw-disk.img");
    std::fs::File::create(&img)?.set_len(64 << 20)?;
    let launch = |tag: &str, incoming: Option<u16>| -> Result<(PathBuf, PathBuf)> {
        let (qmp, log) = (
            dir.join(format!("{tag}.qmp")),
            dir.join(format!("{tag}.log")),
        );
        let _ = std::fs::remove_file(&log);
        let mut c = g.bare_qemu(&img, &qmp, &log, incoming);
        let out = c.output()?;
        if !out.status.success() {
            bail!("qemu: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok((qmp, log))
    };
    let (mut boots, mut migs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = Instant::now();
        let (qa, la) = launch(&format!("a{round}"), None)?;
        wait_for(Duration::from_secs(120), || {
            read(&la).contains(guest::READY_MARKER)
        })?;
        boots.push(t.elapsed().as_secs_f64());
        wait_for(Duration::from_secs(60), || last_tick(&read(&la)) >= 3)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t = Instant::now();
        let (qb, _) = launch(&format!("b{round}"), Some(port))?;
        let mut a = Qmp::connect(&qa)?;
        a.cmd(r#"{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":33554432,"downtime-limit":30}}"#)?;
        a.cmd(&format!(
            r#"{{"execute":"migrate","arguments":{{"uri":"tcp:127.0.0.1:{port}"}}}}"#
        ))?;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let m = a.cmd(r#"{"execute":"query-migrate"}"#)?;
            match m["status"].as_str() {
                Some("completed") => break,
                Some("failed") | Some("cancelled") => bail!("raw migration: {m}"),
                _ => {}
            }
        }
        let mut b = Qmp::connect(&qb)?;
        wait_for(Duration::from_secs(30), || {
            b.cmd(r#"{"execute":"query-status"}"#)
                .map(|s| s["running"] == true)
                .unwrap_or(false)
        })?;
        migs.push(t.elapsed().as_secs_f64());
        let _ = a.cmd(r#"{"execute":"quit"}"#);
        let _ = b.cmd(r#"{"execute":"quit"}"#);
    }
    Ok((median(boots), median(migs)))
}

/// Credentials for QEMU's `tls-creds-x509` (`ca-cert.pem`, `server-*.pem` in `server/`,
/// `client-*.pem` in `client/`), issued by a fresh cluster CA.
fn tls_creds(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let ca = maguey_rpc::ca::ClusterCa::generate("kvm-bench")?;
    let lo: std::net::IpAddr = "127.0.0.1".parse()?;
    let mut out = Vec::new();
    for (side, name) in [("server", "bench-target"), ("client", "bench-source")] {
        let id = ca.issue(name, &[lo])?;
        let d = dir.join(side);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("ca-cert.pem"), &ca.cert_pem)?;
        std::fs::write(d.join(format!("{side}-cert.pem")), &id.cert_pem)?;
        std::fs::write(d.join(format!("{side}-key.pem")), &id.key_pem)?;
        out.push(d);
    }
    Ok((out[0].clone(), out[1].clone()))
}

/// One bare QEMU migration of a booted guest (seconds from `migrate` to the target running),
/// over TLS when `creds` holds (server, client) credential directories; `bandwidth` in
/// bytes/s.
fn raw_migration(
    g: &guest::Guest,
    dir: &Path,
    tag: &str,
    creds: Option<&(PathBuf, PathBuf)>,
    bandwidth: u64,
) -> Result<f64> {
    let img = dir.join(format!("{tag}.img"));
    std::fs::File::create(&img)?.set_len(64 << 20)?;
    let (qa, la, qb) = (
        dir.join(format!("{tag}-a.qmp")),
        dir.join(format!("{tag}-a.log")),
        dir.join(format!("{tag}-b.qmp")),
    );
    let out = g.bare_qemu(&img, &qa, &la, None).output()?;
    if !out.status.success() {
        bail!("qemu: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut a = Qmp::connect(&qa)?;
    let result = (|| -> Result<f64> {
        wait_for(Duration::from_secs(120), || {
            read(&la).contains(guest::READY_MARKER)
        })?;
        wait_for(Duration::from_secs(60), || last_tick(&read(&la)) >= 3)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut c = g.bare_qemu(&img, &qb, &dir.join(format!("{tag}-b.log")), None);
        c.args(["-incoming", "defer"]);
        let out = c.output()?;
        if !out.status.success() {
            bail!("qemu (target): {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut b = Qmp::connect(&qb)?;
        let target = (|| -> Result<f64> {
            let params = |tls: &str, host: &str| {
                format!(
                    r#"{{"execute":"migrate-set-parameters","arguments":{{"max-bandwidth":{bandwidth},"downtime-limit":30,"tls-creds":"{tls}","tls-hostname":"{host}"}}}}"#
                )
            };
            match creds {
                Some((server, client)) => {
                    b.cmd(&format!(
                        r#"{{"execute":"object-add","arguments":{{"qom-type":"tls-creds-x509","id":"tls0","dir":"{}","endpoint":"server","verify-peer":true}}}}"#,
                        server.display()
                    ))?;
                    b.cmd(&params("tls0", ""))?;
                    a.cmd(&format!(
                        r#"{{"execute":"object-add","arguments":{{"qom-type":"tls-creds-x509","id":"tls0","dir":"{}","endpoint":"client","verify-peer":true}}}}"#,
                        client.display()
                    ))?;
                    a.cmd(&params("tls0", "bench-target"))?;
                }
                None => {
                    b.cmd(&params("", ""))?;
                    a.cmd(&params("", ""))?;
                }
            }
            b.cmd(&format!(
                r#"{{"execute":"migrate-incoming","arguments":{{"uri":"tcp:127.0.0.1:{port}"}}}}"#
            ))?;
            let t = Instant::now();
            a.cmd(&format!(
                r#"{{"execute":"migrate","arguments":{{"uri":"tcp:127.0.0.1:{port}"}}}}"#
            ))?;
            loop {
                std::thread::sleep(Duration::from_millis(20));
                let m = a.cmd(r#"{"execute":"query-migrate"}"#)?;
                match m["status"].as_str() {
                    Some("completed") => break,
                    Some("failed") | Some("cancelled") => bail!("raw migration: {m}"),
                    _ => {}
                }
            }
            wait_for(Duration::from_secs(30), || {
                b.cmd(r#"{"execute":"query-status"}"#)
                    .map(|s| s["running"] == true)
                    .unwrap_or(false)
            })?;
            Ok(t.elapsed().as_secs_f64())
        })();
        let _ = b.cmd(r#"{"execute":"quit"}"#);
        target
    })();
    let _ = a.cmd(r#"{"execute":"quit"}"#);
    let _ = std::fs::remove_file(&img);
    result
}

/// `tls` mode: plain and TLS migrations alternating, `rounds` of each, uncapped and capped.
fn tls_figures(g: &guest::Guest, dir: &Path, rounds: usize) -> Result<()> {
    let creds = tls_creds(dir)?;
    for (label, bandwidth) in [("uncapped", 10u64 << 30), ("32 MiB/s cap", 32 << 20)] {
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let p = raw_migration(g, dir, &format!("p{round}"), None, bandwidth)?;
            let t = raw_migration(g, dir, &format!("t{round}"), Some(&creds), bandwidth)?;
            eprintln!("{label} round {round}: plain {p:.3} s, TLS {t:.3} s");
            plain.push(p);
            tls.push(t);
        }
        let (p, t) = (median(plain), median(tls));
        println!(
            "bare QEMU live migration, 128 MiB guest, {label}: plain TCP {p:.3} s, TLS {t:.3} s, ratio {:.2} (median of {rounds})",
            t / p
        );
    }
    Ok(())
}

struct Lab {
    dir: PathBuf,
    maguey: PathBuf,
}

impl Lab {
    fn up(dir: PathBuf) -> Result<Lab> {
        let maguey = std::env::current_exe()?.with_file_name("maguey");
        let lab = Lab { dir, maguey };
        let d = lab.dir.display().to_string();
        lab.run(&["lab", "up", "--nodes", "2", "--kvm", "--dir", &d])?;
        Ok(lab)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let o = Command::new(&self.maguey)
            .args(args)
            .env("MAGUEY_DIR", self.dir.join("node1"))
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

    fn console(&self, node: usize, name: &str) -> String {
        read(
            &self
                .dir
                .join(format!("node{node}/run/kvm/{name}.console.log")),
        )
    }

    /// (boot to marker, migration, local-disk MiB/s).
    fn figures(&self, rounds: usize) -> Result<(f64, f64, f64)> {
        let (mut boots, mut migs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let name = format!("b{round}");
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
                "node1",
                &name,
            ])?;
            wait_for(Duration::from_secs(120), || {
                self.console(1, &name).contains(guest::READY_MARKER)
            })?;
            boots.push(t.elapsed().as_secs_f64());
            wait_for(Duration::from_secs(60), || {
                last_tick(&self.console(1, &name)) >= 3
            })?;
            let t = Instant::now();
            self.run(&["instance", "migrate", "-n", "node2", &name])?;
            migs.push(t.elapsed().as_secs_f64());
            self.run(&["instance", "remove", "-f", &name])?;
        }
        // 1 GiB of data on a local disk, mirrored while the guest runs.
        self.run(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=1G",
            "-o",
            "lab-tiny",
            "-H",
            "kvm",
            "--no-start",
            "-n",
            "node1",
            "big",
        ])?;
        let mut files = Vec::new();
        collect(&self.dir.join("node1/file-storage/big"), &mut files);
        let disk = files.first().context("no disk file")?;
        fill(disk)?;
        self.run(&["instance", "start", "big"])?;
        wait_for(Duration::from_secs(120), || {
            self.console(1, "big").contains(guest::READY_MARKER)
        })?;
        let t = Instant::now();
        self.run(&["instance", "migrate", "-n", "node2", "big"])?;
        let secs = t.elapsed().as_secs_f64();
        Ok((median(boots), median(migs), 1024.0 / secs))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let d = self.dir.display().to_string();
        let _ = self.run(&["lab", "down", "--dir", &d]);
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path());
        }
    }
}

/// Writes non-zero data over the whole file, so that the mirror cannot skip holes. The
/// first MiB stays as the OS script left it (the guest formats its disk itself).
fn fill(p: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
    let len = f.metadata()?.len();
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
        .collect();
    f.seek(SeekFrom::Start(1 << 20))?;
    let mut off = 1u64 << 20;
    while off < len {
        f.write_all(&chunk)?;
        off += chunk.len() as u64;
    }
    f.sync_all()?;
    Ok(())
}
