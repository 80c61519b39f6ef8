//! DRBD figures on the testbed (issue 6): Maguey against the same raw `drbdsetup`/QEMU steps.
//!
//! One 2-node VM lab (real LVM, DRBD 8.4, nested KVM; see `maguey_lab::vmnodes`), then:
//!
//! 1. **creation** of a 1 GiB `drbd` instance without waiting for the initial sync:
//!    `maguey instance add -t drbd --disk 0:size=1G --no-wait-for-sync --no-install -H fake
//!    --no-nics -n node1:node2` (CLI wall time on the host), versus the same node steps typed
//!    by hand through the testbed agent, in Maguey's order: on node2 then node1, `lvcreate`
//!    data + meta, `drbdmeta create-md`, `drbdsetup new-resource`/`new-minor`/`attach`/
//!    `connect` with the node library's options; then on node1 wait for `Connected` and
//!    `primary --force` (the initial full sync starts, as in Maguey). Each run is torn down.
//! 2. **live migration** of a nested-KVM `lab-tiny` guest on a 128 MiB `drbd` disk:
//!    `maguey instance migrate -f` back and forth, versus the same QEMU command line (read
//!    from the Maguey-started QEMU's `/proc/PID/cmdline`; only its paths, its disk's minor and
//!    its QMP socket, a TCP port for busybox `nc`, differ) started by hand on the other DRBD
//!    device, migrated with the raw steps: `drbdsetup net-options --allow-two-primaries=yes`
//!    on both, `primary` on the target, QEMU `-incoming tcp:` on the target, QMP
//!    `migrate-set-parameters` (the same 32 MiB/s and 30 ms) + `migrate` on the source, wait
//!    for the `MIGRATION` `completed` event (no polling: a blocking shell `read` on `nc`'s
//!    output), `quit` the source, `secondary` on the source, `--allow-two-primaries=no` on
//!    both, the target checked `running`.
//!
//! Raw steps run as one agent script per node per phase (the agent's round trip, printed too,
//! is part of the raw figures as Maguey's RPCs are part of its own).
//!
//! Run (root; holds the VM lock like the VM tests):
//! `cargo build --workspace --bins &&
//!  flock /tmp/maguey-vm.lock target/debug/maguey-drbd-bench [--runs N] [--no-migration]`.
//! Prints one table (markdown).

use anyhow::{bail, Context, Result};
use maguey_lab::vmnodes::VmOptions;
use maguey_test_infra::vmlab::VmLab;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The library's DRBD options (crates/node/src/storage/drbd/cmd.rs).
const NET_OPTS: &str = "--protocol=C --after-sb-0pri=discard-zero-changes \
    --after-sb-1pri=consensus --after-sb-2pri=disconnect --cram-hmac-alg=md5";
const DISK_OPTS: &str = "--on-io-error=detach --c-plan-ahead=0 --resync-rate=61440";
/// The raw devices' minors and ports (far from Maguey's 0.. and 11000..).
const RAW_CREATE_MINOR: u32 = 50;
const RAW_CREATE_PORT: u16 = 14950;
const RAW_MIG_MINOR: u32 = 60;
const RAW_MIG_PORT: u16 = 14960;
/// The raw guest's QMP (TCP on the node's loopback) and incoming migration ports.
const RAW_QMP_PORT: u16 = 4450;
const RAW_MIG_QEMU_PORT: u16 = 4451;
const RAW_DIR: &str = "/tmp/rawvm";
const SECRET: &str = "0123456789abcdef0123";

struct Args {
    runs: usize,
    migration: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 3,
        migration: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => {
                a.runs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .context("--runs needs a positive number")?
            }
            "--no-migration" => a.migration = false,
            "-h" | "--help" => {
                println!("usage: maguey-drbd-bench [--runs N] [--no-migration]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
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

/// A script in node `n` that must exit 0.
fn sh(lab: &VmLab, n: usize, script: &str) -> Result<String> {
    let (code, out) = lab.run(n, script);
    if code != 0 {
        bail!("node{n}: script exited with {code}:\n{script}\n--- output:\n{out}");
    }
    Ok(out)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("timed out after {limit:?}")
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
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

fn main() -> Result<()> {
    let a = args()?;
    let maguey = maguey_path()?;
    let t0 = Instant::now();
    let lab = VmLab::up_with(&maguey, VmOptions::new(2, "/unused"));
    eprintln!("bench: lab up in {:.1} s", secs(t0));
    let mut rows = Vec::new();
    let rtt = agent_rtt(&lab)?;
    let (m, r, rc, per_run) = creation(&lab, a.runs)?;
    rows.push((
        "creation, 1 GiB drbd, --no-wait-for-sync (fake hypervisor, started)".to_string(),
        m,
        r,
    ));
    rows.push((
        "the same, raw steps on both nodes at once (as Maguey now does)".to_string(),
        m,
        rc,
    ));
    if a.migration {
        let (m, mq, argv) = maguey_migration(&lab, a.runs)?;
        let (r, rq) = raw_migration(&lab, &argv, a.runs)?;
        rows.push((
            "live migration, nested-KVM guest (128 MiB RAM) on a 128 MiB drbd disk".to_string(),
            median(m.clone()),
            median(r.clone()),
        ));
        rows.push((
            "of which QEMU's own migration (`query-migrate` total-time)".to_string(),
            median(mq.clone()),
            median(rq.clone()),
        ));
        rows.push((
            "the rest: steps around QEMU's migration (per run: wall - QEMU)".to_string(),
            median(m.iter().zip(&mq).map(|(w, q)| w - q).collect()),
            median(r.iter().zip(&rq).map(|(w, q)| w - q).collect()),
        ));
    }
    println!(
        "\nmedians of {} runs; testbed agent round trip (median): {:.2} s\n",
        a.runs, rtt
    );
    println!("| figure | Maguey | raw steps | ratio |");
    println!("|---|---|---|---|");
    for (what, m, r) in &rows {
        println!("| {what} | {m:.2} s | {r:.2} s | {:.2} |", m / r);
    }
    println!(
        "creation, median of the per-run ratios (Maguey / raw steps on both nodes at once, \
         taken seconds apart): {per_run:.2}"
    );
    if !a.migration {
        println!("(live migration skipped: --no-migration)");
    }
    let t = Instant::now();
    drop(lab);
    eprintln!("bench: lab down in {:.1} s", secs(t));
    Ok(())
}

/// Median round trip of an empty script through the testbed agent (both nodes).
fn agent_rtt(lab: &VmLab) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..5 {
        for n in [1, 2] {
            let t = Instant::now();
            sh(lab, n, "true")?;
            v.push(secs(t));
        }
    }
    Ok(median(v))
}

/// The node steps that make one end of a new DRBD disk, with the node library's argv:
/// LVs, metadata, resource, minor, attach, connect.
fn raw_create_script(
    lv: &str,
    size_mib: u64,
    minor: u32,
    port: u16,
    local: &str,
    remote: &str,
) -> String {
    format!(
        "set -e\nexport LVM_SUPPRESS_FD_WARNINGS=1\n\
         lvcreate --yes -Wy -L {size_mib}m -n {lv}.disk0_data --addtag originstname+{lv} xenvg >/dev/null\n\
         lvcreate --yes -Wy -L 128m -n {lv}.disk0_meta --addtag originstname+{lv} xenvg >/dev/null\n\
         drbdmeta --force /dev/drbd{minor} v08 /dev/xenvg/{lv}.disk0_meta 0 create-md >/dev/null 2>&1\n\
         drbdsetup new-resource resource{minor}\n\
         drbdsetup new-minor resource{minor} {minor} 0\n\
         drbdsetup attach {minor} /dev/xenvg/{lv}.disk0_data /dev/xenvg/{lv}.disk0_meta 0 {DISK_OPTS} --size={size_mib}m\n\
         drbdsetup connect resource{minor} ipv4:{local}:{port} ipv4:{remote}:{port} {NET_OPTS} --shared-secret={SECRET}\n"
    )
}

/// Waits (in the node, 100 ms polls, 60 s at most) until `minor` is Connected.
fn wait_connected_script(minor: u32) -> String {
    format!(
        "i=0\nuntil grep -q '^ *{minor}: cs:Connected' /proc/drbd; do\n\
         i=$((i+1)); [ $i -lt 600 ] || {{ cat /proc/drbd; exit 1; }}; sleep 0.1\ndone\n"
    )
}

fn raw_teardown_script(lv: &str, minor: u32) -> String {
    format!(
        "export LVM_SUPPRESS_FD_WARNINGS=1\ndrbdsetup down resource{minor} 2>/dev/null\n\
         lvremove -f xenvg/{lv}.disk0_data xenvg/{lv}.disk0_meta >/dev/null 2>&1\n\
         ! lvs --noheadings xenvg/{lv}.disk0_data >/dev/null 2>&1\n"
    )
}

/// Creation: (Maguey median, raw median node2 then node1, raw median both nodes at once,
/// median of each run's ratio Maguey / both at once), runs interleaved. The per-run ratio
/// compares figures taken seconds apart, so it drifts less with the machine's load than the
/// ratio of the medians.
fn creation(lab: &VmLab, runs: usize) -> Result<(f64, f64, f64, f64)> {
    let (ip1, ip2) = (lab.node_ip(1), lab.node_ip(2));
    let (mut mv, mut rv, mut cv) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("bench{i}");
        let t = Instant::now();
        mg(
            lab,
            &[
                "instance",
                "add",
                "-t",
                "drbd",
                "--disk",
                "0:size=1G",
                "--no-wait-for-sync",
                "--no-install",
                "-H",
                "fake",
                "--no-nics",
                "-n",
                "node1:node2",
                &name,
            ],
        )?;
        let s = secs(t);
        eprintln!("bench: creation through Maguey #{i}: {s:.2} s");
        mv.push(s);
        if std::env::var_os("MAGUEY_BENCH_JOBLOG").is_some() {
            print_last_job(lab)?;
        }
        mg(lab, &["instance", "remove", "-f", &name])?;

        let lv = format!("rawc{i}");
        let (m, p) = (RAW_CREATE_MINOR, RAW_CREATE_PORT);
        let t = Instant::now();
        sh(lab, 2, &raw_create_script(&lv, 1024, m, p, &ip2, &ip1))?;
        sh(lab, 1, &raw_create_script(&lv, 1024, m, p, &ip1, &ip2))?;
        sh(lab, 1, &promote_script(m))?;
        let s = secs(t);
        eprintln!("bench: creation by hand #{i}: {s:.2} s");
        rv.push(s);
        let st = sh(lab, 1, "cat /proc/drbd")?;
        if !st.contains(&format!("{m}: cs:SyncSource ro:Primary/Secondary"))
            && !st.contains(&format!("{m}: cs:Connected ro:Primary/Secondary"))
        {
            bail!("raw device not primary and connected:\n{st}");
        }
        for n in [1, 2] {
            sh(lab, n, &raw_teardown_script(&lv, m))?;
        }

        // The same steps, both nodes' scripts sent at once.
        let lv = format!("rawp{i}");
        let t = Instant::now();
        let (a, b) = std::thread::scope(|sc| {
            let a = sc.spawn(|| sh(lab, 2, &raw_create_script(&lv, 1024, m, p, &ip2, &ip1)));
            let b = sc.spawn(|| sh(lab, 1, &raw_create_script(&lv, 1024, m, p, &ip1, &ip2)));
            (a.join(), b.join())
        });
        for r in [a, b] {
            r.map_err(|_| anyhow::anyhow!("raw create thread panicked"))??;
        }
        sh(lab, 1, &promote_script(m))?;
        let s = secs(t);
        eprintln!("bench: creation by hand, both nodes at once #{i}: {s:.2} s");
        cv.push(s);
        for n in [1, 2] {
            sh(lab, n, &raw_teardown_script(&lv, m))?;
        }
    }
    let per_run = median(mv.iter().zip(&cv).map(|(m, c)| m / c).collect());
    Ok((median(mv), median(rv), median(cv), per_run))
}

/// On node1: wait for `Connected`, then the first, forced promotion.
fn promote_script(minor: u32) -> String {
    format!(
        "{}drbdsetup primary {minor} --force\n",
        wait_connected_script(minor)
    )
}

/// With `MAGUEY_BENCH_JOBLOG` set: the last job's log, each line's time from the job's
/// submission (where a Maguey creation's time goes).
fn print_last_job(lab: &VmLab) -> Result<()> {
    let list = mg(lab, &["job", "list"])?;
    let Some(id) = list
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max()
    else {
        return Ok(());
    };
    let info = mg(lab, &["job", "info", &id.to_string()])?;
    let received: f64 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Received: ")?.parse().ok())
        .unwrap_or(0.0);
    for l in info.lines() {
        let t = l.trim();
        let (head, rest) = t.split_once(' ').unwrap_or((t, ""));
        match (head.parse::<f64>(), t.split_once(": ")) {
            (Ok(ts), _) if ts > 1e9 => eprintln!("  {:+7.3} {rest}", ts - received),
            (_, Some((k @ ("Started" | "Ended"), v))) => {
                if let Ok(ts) = v.parse::<f64>() {
                    eprintln!("  {:+7.3} job {k}", ts - received);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `grep -c TICK` of a console log in node `n`.
fn ticks(lab: &VmLab, n: usize, log: &str) -> u32 {
    lab.run(n, &format!("grep -c MAGUEY-TICK {log} 2>/dev/null || true"))
        .1
        .trim()
        .parse()
        .unwrap_or(0)
}

const MIG_INSTANCE: &str = "mig1";

fn console_log(name: &str) -> String {
    format!("/var/lib/maguey/run/kvm/{name}.console.log")
}

/// Live migration through Maguey: `runs` migrations alternating direction (wall times and
/// QEMU's own times, seconds), and the instance's QEMU argv (for the raw half); the instance
/// is removed afterwards.
fn maguey_migration(lab: &VmLab, runs: usize) -> Result<Samples> {
    let name = MIG_INSTANCE;
    mg(
        lab,
        &[
            "instance",
            "add",
            "-t",
            "drbd",
            "--disk",
            "0:size=128M",
            "-o",
            "lab-tiny",
            "-H",
            "kvm",
            "--no-nics",
            "-n",
            "node1:node2",
            name,
        ],
    )?;
    let log = console_log(name);
    wait_until(Duration::from_secs(180), || ticks(lab, 1, &log) >= 2)
        .context("the Maguey guest never ticked on node1")?;
    let argv = sh(
        lab,
        1,
        &format!("tr '\\0' '\\n' < /proc/$(cat /var/lib/maguey/run/kvm/{name}.pid)/cmdline"),
    )?;
    let argv: Vec<String> = argv.lines().map(str::to_string).collect();
    let (mut v, mut qv) = (Vec::new(), Vec::new());
    let mut on = 1;
    for i in 0..runs {
        let to = 3 - on;
        let before = ticks(lab, to, &log);
        let t = Instant::now();
        let out = mg(lab, &["instance", "migrate", "-f", name])?;
        let s = secs(t);
        let q = number_after(&out, "migration done: ").unwrap_or(f64::NAN) / 1000.0;
        eprintln!(
            "bench: migration through Maguey #{i} node{on} -> node{to}: {s:.2} s (QEMU {q:.2} s)"
        );
        v.push(s);
        qv.push(q);
        wait_until(Duration::from_secs(60), || ticks(lab, to, &log) > before)
            .with_context(|| format!("the guest does not tick on node{to}"))?;
        on = to;
    }
    mg(lab, &["instance", "remove", "-f", name])?;
    Ok((v, qv, argv))
}

type Samples = (Vec<f64>, Vec<f64>, Vec<String>);

/// The number right after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<f64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Maguey's QEMU argv for the raw guest: its own paths, the raw DRBD minor, QMP over TCP on
/// the node's loopback (busybox `nc` has no unix sockets), optionally `-incoming`.
fn raw_argv(maguey_argv: &[String], incoming: Option<&str>) -> Result<String> {
    let prefix = format!("/var/lib/maguey/run/kvm/{MIG_INSTANCE}.");
    let mut out = Vec::new();
    let mut it = maguey_argv.iter();
    let mut saw_disk = false;
    while let Some(a) = it.next() {
        if a == "-qmp" {
            it.next();
            out.push("-qmp".to_string());
            out.push(format!("tcp:127.0.0.1:{RAW_QMP_PORT},server=on,wait=off"));
            continue;
        }
        let mut a = a.replace(&prefix, &format!("{RAW_DIR}/g."));
        if let Some(i) = a.find("filename=/dev/drbd") {
            let end = a[i..].find(',').map_or(a.len(), |e| i + e);
            a.replace_range(i..end, &format!("filename=/dev/drbd{RAW_MIG_MINOR}"));
            saw_disk = true;
        }
        out.push(a);
    }
    if !saw_disk {
        bail!("no DRBD disk in Maguey's QEMU argv: {maguey_argv:?}");
    }
    if let Some(uri) = incoming {
        out.push("-incoming".to_string());
        out.push(uri.to_string());
    }
    Ok(out.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" "))
}

/// A QMP session from a node script: `nc` between two fifos, one JSON command per line;
/// `q CMD` blocks (shell `read`, no polling) until its `return` (in `$QL`) or fails on its
/// `error`; `qmigrated` blocks until the `MIGRATION` event says `completed` (fails on `failed`
/// or `cancelled`). Defines `qmp_open`, `q`, `qmigrated` and `qmp_close`.
const QMP_FUNCS: &str = r#"
qmp_open() {
  rm -f /tmp/qmp.in /tmp/qmp.out; mkfifo /tmp/qmp.in /tmp/qmp.out
  nc 127.0.0.1 $1 </tmp/qmp.in >/tmp/qmp.out &
  exec 3>/tmp/qmp.in 4</tmp/qmp.out
  q '{"execute":"qmp_capabilities"}'
}
q() {
  echo "$1" >&3
  while read -r QL <&4; do
    case "$QL" in
      *'"return"'*) return 0;;
      *'"error"'*) echo "QMP error for $1: $QL"; exit 1;;
    esac
  done
  echo "QMP closed while waiting for $1"; exit 1
}
qmigrated() {
  while read -r QL <&4; do
    case "$QL" in
      *'"MIGRATION"'*'"completed"'*) return 0;;
      *'"MIGRATION"'*'"failed"'*|*'"MIGRATION"'*'"cancelled"'*) echo "$QL"; exit 1;;
    esac
  done
  echo "QMP closed during the migration"; exit 1
}
qmp_close() { exec 3>&- 4<&-; wait; }
"#;

fn dual(src_ip: &str, dst_ip: &str, allow: &str) -> String {
    format!(
        "drbdsetup net-options ipv4:{src_ip}:{RAW_MIG_PORT} ipv4:{dst_ip}:{RAW_MIG_PORT} \
         --allow-two-primaries={allow}\n"
    )
}

/// Live migration of the same guest by hand: `runs` migrations alternating direction (wall
/// times and QEMU's own times, seconds).
fn raw_migration(lab: &VmLab, argv: &[String], runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if argv.is_empty() {
        bail!("no QEMU argv from the Maguey guest");
    }
    let ip = |n: usize| lab.node_ip(n);
    let (m, p) = (RAW_MIG_MINOR, RAW_MIG_PORT);
    let lv = "rawm";
    // Setup (not timed): the disk on both nodes, no initial sync, node1 primary, the guest.
    sh(lab, 2, &raw_create_script(lv, 128, m, p, &ip(2), &ip(1)))?;
    sh(lab, 1, &raw_create_script(lv, 128, m, p, &ip(1), &ip(2)))?;
    sh(
        lab,
        1,
        &format!(
            "set -e\n{}drbdsetup new-current-uuid {m} --clear-bitmap\ndrbdsetup primary {m}\n",
            wait_connected_script(m)
        ),
    )?;
    let log = format!("{RAW_DIR}/g.console.log");
    sh(
        lab,
        1,
        &format!("set -e\nmkdir -p {RAW_DIR}\n{}\n", raw_argv(argv, None)?),
    )?;
    let r = (|| -> Result<(Vec<f64>, Vec<f64>)> {
        wait_until(Duration::from_secs(180), || ticks(lab, 1, &log) >= 2)
            .context("the raw guest never ticked on node1")?;
        let (mut v, mut qv) = (Vec::new(), Vec::new());
        let mut on = 1;
        for i in 0..runs {
            let to = 3 - on;
            let (sip, dip) = (ip(on), ip(to));
            let before = ticks(lab, to, &log);
            let uri = format!("tcp:{dip}:{RAW_MIG_QEMU_PORT}");
            let t = Instant::now();
            // 1. Two primaries allowed on both, the target promoted and its QEMU waiting.
            sh(lab, on, &dual(&sip, &dip, "yes"))?;
            sh(
                lab,
                to,
                &format!(
                    "set -e\n{}drbdsetup primary {m}\nmkdir -p {RAW_DIR}\n\
                     rm -f {RAW_DIR}/g.pid {RAW_DIR}/g.serial\n{}\n{QMP_FUNCS}\
                     qmp_open {RAW_QMP_PORT}\nq '{{\"execute\":\"query-status\"}}'\n\
                     case \"$QL\" in *inmigrate*) ;; *) echo \"$QL\"; exit 1;; esac\nqmp_close\n",
                    dual(&dip, &sip, "yes"),
                    raw_argv(argv, Some(&uri))?
                ),
            )?;
            // 2. The source: migrate, wait for completion, quit, demote, one primary again.
            let out = sh(
                lab,
                on,
                &format!(
                    "set -e\n{QMP_FUNCS}pid=$(cat {RAW_DIR}/g.pid)\nqmp_open {RAW_QMP_PORT}\n\
                     q '{{\"execute\":\"migrate-set-parameters\",\"arguments\":{{\"max-bandwidth\":33554432,\"downtime-limit\":30}}}}'\n\
                     q '{{\"execute\":\"migrate-set-capabilities\",\"arguments\":{{\"capabilities\":[{{\"capability\":\"events\",\"state\":true}}]}}}}'\n\
                     q '{{\"execute\":\"migrate\",\"arguments\":{{\"uri\":\"{uri}\"}}}}'\n\
                     qmigrated\n\
                     q '{{\"execute\":\"query-migrate\"}}'\necho \"$QL\"\n\
                     case \"$QL\" in *'\"status\": \"completed\"'*) ;; *) exit 1;; esac\n\
                     echo '{{\"execute\":\"quit\"}}' >&3\nqmp_close\n\
                     while kill -0 $pid 2>/dev/null; do sleep 0.02; done\n\
                     drbdsetup secondary {m}\n{}",
                    dual(&sip, &dip, "no")
                ),
            )?;
            // 3. The target runs; one primary again there too.
            sh(
                lab,
                to,
                &format!(
                    "set -e\n{QMP_FUNCS}qmp_open {RAW_QMP_PORT}\ni=0\nwhile :; do\n\
                       q '{{\"execute\":\"query-status\"}}'\n  case \"$QL\" in *'\"running\": true'*) break;; esac\n\
                       i=$((i+1)); [ $i -lt 300 ] || {{ echo \"$QL\"; exit 1; }}; sleep 0.1\ndone\nqmp_close\n{}",
                    dual(&dip, &sip, "no")
                ),
            )?;
            let s = secs(t);
            let q = number_after(&out, "\"total-time\": ").unwrap_or(f64::NAN) / 1000.0;
            eprintln!(
                "bench: migration by hand #{i} node{on} -> node{to}: {s:.2} s (QEMU {q:.2} s)"
            );
            v.push(s);
            qv.push(q);
            wait_until(Duration::from_secs(60), || ticks(lab, to, &log) > before)
                .with_context(|| format!("the raw guest does not tick on node{to}"))?;
            on = to;
        }
        Ok((v, qv))
    })();
    // Teardown: the guest wherever it runs, then the disk on both nodes.
    for n in [1, 2] {
        let _ = lab.run(
            n,
            &format!(
                "[ -f {RAW_DIR}/g.pid ] && kill $(cat {RAW_DIR}/g.pid) 2>/dev/null; sleep 0.5; true"
            ),
        );
    }
    for n in [1, 2] {
        let _ = lab.run(n, &raw_teardown_script(lv, m));
    }
    r
}
