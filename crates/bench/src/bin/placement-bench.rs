//! Benchmark: Ganeti's htools (hbal, hail, hspace) against Maguey's
//! placement engine on the same generated inputs.
//!
//! ```text
//! placement-bench [--sizes 20,100,500,2000] [--seed 42] [--moves 3]
//!                 [--timeout 120] [--workdir DIR] [--gencluster PATH]
//!                 [--bindir DIR] [--cases balance,nodisk,full,alloc,evac,hspace]
//!                 [--no-htools]
//! ```
//!
//! `--cases groupevac` (not in the default set) builds the same number of
//! nodes in groups of 100 and times the change-group of every instance of
//! group-01 (a group evacuation).
//!
//! Every external run is wrapped in `timeout` and `/usr/bin/time` (wall
//! time, CPU time and peak RSS). Prints one markdown table row per (input,
//! case), ending with Maguey's CPU time (user + system) and the 1-minute load
//! average when its run started: on a shared machine the wall time is the
//! scheduler's share, the CPU time is the engine's. htools runs that exceed
//! the timeout are reported as `>T`; `--no-htools` skips them.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    wall: Option<f64>,
    /// user + system seconds
    cpu: Option<f64>,
    /// 1-minute load average when the run started
    load: Option<f64>,
    rss_mib: Option<f64>,
    out: String,
    timed_out: bool,
}

fn run(cmd: &[String], timeout: u64) -> Run {
    let tf = std::env::temp_dir().join(format!("placement-bench-time-{}", std::process::id()));
    let mut full: Vec<String> = vec![
        "/usr/bin/time".into(),
        "-f".into(),
        "%e %M %U %S".into(),
        "-o".into(),
        tf.display().to_string(),
        "timeout".into(),
        format!("{timeout}"),
    ];
    full.extend(cmd.iter().cloned());
    let load = load_avg();
    let t0 = std::time::Instant::now();
    let res = Command::new(&full[0]).args(&full[1..]).output();
    let elapsed = t0.elapsed().as_secs_f64();
    let (out, code) = match res {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).to_string(),
            o.status.code(),
        ),
        Err(e) => (format!("cannot run {}: {e}", cmd.join(" ")), None),
    };
    let t = std::fs::read_to_string(&tf).unwrap_or_default();
    let _ = std::fs::remove_file(&tf);
    let last = t.lines().last().unwrap_or("").to_string();
    let mut it = last.split_whitespace();
    let wall = it
        .next()
        .and_then(|x| x.parse::<f64>().ok())
        .map(|_| elapsed);
    let rss = it
        .next()
        .and_then(|x| x.parse::<f64>().ok())
        .map(|k| k / 1024.0);
    let user = it.next().and_then(|x| x.parse::<f64>().ok());
    let sys = it.next().and_then(|x| x.parse::<f64>().ok());
    Run {
        wall,
        cpu: user.zip(sys).map(|(u, s)| u + s),
        load,
        rss_mib: rss,
        out,
        timed_out: code == Some(124) || t.contains("status 124"),
    }
}

fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Maguey's CPU time and the load average of its run: the last two columns.
fn fmt_cpu(r: &Run) -> String {
    let o = |v: Option<f64>, d: usize| v.map_or("-".into(), |x| format!("{x:.d$}"));
    format!("{} | {}", o(r.cpu, 2), o(r.load, 1))
}

fn hbal_like(out: &str) -> (Option<f64>, Option<f64>, usize) {
    let mut ini = None;
    let mut fin = None;
    let mut moves = 0;
    for l in out.lines() {
        if let Some(x) = l.strip_prefix("Initial score: ") {
            ini = x.trim().parse().ok();
        }
        if let Some(x) = l.strip_prefix("Final score: ") {
            fin = x.trim().parse().ok();
        }
        if let Some(pos) = l.find(" to ") {
            if l.starts_with("Cluster score improved from") {
                fin = l[pos + 4..].trim().parse().ok();
            }
        }
        if let Some(x) = l.strip_prefix("Solution length=") {
            moves = x.trim().parse().unwrap_or(0);
        }
    }
    (ini, fin.or(ini), moves)
}

fn fmt_t(r: &Run, timeout: u64) -> String {
    if r.timed_out {
        format!(">{timeout}")
    } else {
        r.wall
            .map(|w| {
                if w < 1.0 {
                    format!("{w:.3}")
                } else {
                    format!("{w:.1}")
                }
            })
            .unwrap_or_else(|| "-".into())
    }
}

fn fmt_m(r: &Run) -> String {
    r.rss_mib
        .map(|m| format!("{m:.0}"))
        .unwrap_or_else(|| "-".into())
}

fn ratio(h: &Run, m: &Run, timeout: u64) -> String {
    match (h.wall, m.wall) {
        (Some(hw), Some(mw)) => {
            let mw = mw.max(0.001);
            if h.timed_out {
                format!(">{:.0}x", timeout as f64 / mw)
            } else {
                format!("{:.0}x", hw / mw)
            }
        }
        _ => "-".into(),
    }
}

fn s(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into())
}

fn ialloc_result(out: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(out.trim()) {
        Ok(v) => {
            let ok = v.get("success").and_then(|x| x.as_bool()).unwrap_or(false);
            let r = v.get("result").cloned().unwrap_or_default();
            let short = match &r {
                serde_json::Value::Array(a) if a.len() == 3 && a[0].is_array() => {
                    format!(
                        "{} moved, {} failed",
                        a[0].as_array().map(|x| x.len()).unwrap_or(0),
                        a[1].as_array().map(|x| x.len()).unwrap_or(0)
                    )
                }
                _ => r.to_string(),
            };
            format!("{} {}", if ok { "ok" } else { "FAIL" }, short)
        }
        Err(_) => "no answer".into(),
    }
}

/// Generate an `n`-node cluster in `groups` groups and turn its
/// change-group request into one for every instance whose primary is in
/// group-01. Returns the request path and the instance count.
fn group_evac_request(
    gencluster: &Path,
    n: usize,
    groups: usize,
    seed: u64,
    prefix: &str,
) -> anyhow::Result<(String, usize)> {
    let g = Command::new("python3")
        .args([
            gencluster.display().to_string(),
            "--nodes".into(),
            n.to_string(),
            "--groups".into(),
            groups.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--prefix".into(),
            prefix.to_string(),
        ])
        .output()?;
    anyhow::ensure!(g.status.success(), "gencluster failed");
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{prefix}.chgrp.json"))?)?;
    let g1 = r["nodegroups"]
        .as_object()
        .and_then(|m| m.iter().find(|(_, g)| g["name"] == "group-01"))
        .map(|(u, _)| u.clone())
        .ok_or_else(|| anyhow::anyhow!("no group-01"))?;
    let nodes = r["nodes"].clone();
    let mut names: Vec<String> = r["instances"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, i)| {
                    i["nodes"][0]
                        .as_str()
                        .is_some_and(|p| nodes[p]["group"] == g1.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let count = names.len();
    r["request"]["instances"] = serde_json::json!(names);
    let path = format!("{prefix}.groupevac.json");
    std::fs::write(&path, serde_json::to_string(&r)?)?;
    Ok((path, count))
}

fn main() {
    let mut sizes: Vec<usize> = vec![20, 100, 500, 2000];
    let mut seed = 42u64;
    let mut moves = 3usize;
    let mut timeout = 120u64;
    let mut workdir = std::env::temp_dir().join("placement-bench");
    let mut gencluster = PathBuf::from("/work/shared/bench/gencluster.py");
    let exe = std::env::current_exe().unwrap_or_default();
    let mut bindir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cases: Vec<String> = ["balance", "nodisk", "full", "alloc", "evac", "hspace"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut no_htools = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--sizes" => sizes = v.split(',').filter_map(|x| x.parse().ok()).collect(),
            "--seed" => seed = v.parse().unwrap_or(seed),
            "--moves" => moves = v.parse().unwrap_or(moves),
            "--timeout" => timeout = v.parse().unwrap_or(timeout),
            "--workdir" => workdir = PathBuf::from(v),
            "--gencluster" => gencluster = PathBuf::from(v),
            "--bindir" => bindir = PathBuf::from(v),
            "--cases" => cases = v.split(',').map(str::to_string).collect(),
            "--no-htools" => {
                no_htools = true;
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!("usage: placement-bench [--sizes 20,100,500,2000] [--seed 42] [--moves 3] [--timeout 120] [--workdir DIR] [--gencluster PATH] [--bindir DIR] [--cases balance,nodisk,full,alloc,evac,hspace,groupevac] [--no-htools]");
                return;
            }
            x => {
                eprintln!("unknown argument {x}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let _ = std::fs::create_dir_all(&workdir);
    // htools' runs, unless skipped (then reported as not run)
    let hrun = |cmd: &[String], timeout: u64| {
        if no_htools {
            skipped_run()
        } else {
            run(cmd, timeout)
        }
    };
    let plan = bindir.join("maguey-plan").display().to_string();
    let ialloc = bindir.join("maguey-iallocator").display().to_string();
    let hail = "/usr/lib/ganeti/iallocators/hail".to_string();
    let hv = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "ganeti-htools"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    println!(
        "htools: ganeti-htools {hv}; seed {seed}; timeout {timeout}s; cpus {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    println!("| nodes | inst | case | htools s | maguey s | ratio | htools score | maguey score | htools moves | maguey moves | htools MiB | maguey MiB | maguey CPU s | load |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let prefix = workdir.join(format!("c{n}s{seed}"));
        let p = prefix.display().to_string();
        let g = Command::new("python3")
            .args([
                gencluster.display().to_string(),
                "--nodes".into(),
                n.to_string(),
                "--seed".into(),
                seed.to_string(),
                "--prefix".into(),
                p.clone(),
            ])
            .output();
        if g.map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("gencluster failed for {n} nodes");
            continue;
        }
        let data = format!("{p}.data");
        let inst = std::fs::read_to_string(format!("{p}.meta.json"))
            .ok()
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .and_then(|v| v.get("instances").and_then(|x| x.as_u64()))
            .unwrap_or(0);
        let row =
            |case: &str, h: &Run, m: &Run, hs: (Option<f64>, usize), ms: (Option<f64>, usize)| {
                println!(
                    "| {n} | {inst} | {case} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    fmt_t(h, timeout),
                    fmt_t(m, timeout),
                    ratio(h, m, timeout),
                    if h.timed_out { "-".into() } else { s(hs.0) },
                    s(ms.0),
                    if h.timed_out {
                        "-".into()
                    } else {
                        hs.1.to_string()
                    },
                    ms.1,
                    fmt_m(h),
                    fmt_m(m),
                    fmt_cpu(m)
                );
            };
        for case in &cases {
            match case.as_str() {
                "balance" => {
                    let l = moves.to_string();
                    let h = hrun(
                        &[
                            "hbal".into(),
                            "-t".into(),
                            data.clone(),
                            "-l".into(),
                            l.clone(),
                        ],
                        timeout,
                    );
                    let m = run(
                        &[
                            plan.clone(),
                            "balance".into(),
                            "-t".into(),
                            data.clone(),
                            "-l".into(),
                            l.clone(),
                            "--mode".into(),
                            "exact".into(),
                        ],
                        timeout,
                    );
                    let (_, hf, hm) = hbal_like(&h.out);
                    let (_, mf, mm) = hbal_like(&m.out);
                    row(&format!("balance -l {moves}"), &h, &m, (hf, hm), (mf, mm));
                }
                "nodisk" => {
                    let h = hrun(
                        &[
                            "hbal".into(),
                            "-t".into(),
                            data.clone(),
                            "--no-disk-moves".into(),
                        ],
                        timeout,
                    );
                    let m = run(
                        &[
                            plan.clone(),
                            "balance".into(),
                            "-t".into(),
                            data.clone(),
                            "--no-disk-moves".into(),
                            "--mode".into(),
                            "exact".into(),
                        ],
                        timeout,
                    );
                    let (_, hf, hm) = hbal_like(&h.out);
                    let (_, mf, mm) = hbal_like(&m.out);
                    row("balance --no-disk-moves", &h, &m, (hf, hm), (mf, mm));
                }
                "full" => {
                    // uncapped: hbal only where it finishes
                    let h = if n <= 20 {
                        hrun(&["hbal".into(), "-t".into(), data.clone()], timeout)
                    } else {
                        skipped_run()
                    };
                    let m = run(
                        &[plan.clone(), "balance".into(), "-t".into(), data.clone()],
                        timeout.max(600),
                    );
                    let (_, hf, hm) = hbal_like(&h.out);
                    let (_, mf, mm) = hbal_like(&m.out);
                    row("balance, uncapped", &h, &m, (hf, hm), (mf, mm));
                }
                "alloc" => {
                    for kind in ["alloc-drbd", "alloc-plain"] {
                        let req = format!("{p}.{kind}.json");
                        let h = hrun(
                            &[hail.clone(), "--no-capacity-checks".into(), req.clone()],
                            timeout,
                        );
                        let m = run(&[ialloc.clone(), req.clone()], timeout);
                        println!(
                            "| {n} | {inst} | {kind} (hail --no-capacity-checks) | {} | {} | {} | {} | {} | - | - | {} | {} | {} |",
                            fmt_t(&h, timeout),
                            fmt_t(&m, timeout),
                            ratio(&h, &m, timeout),
                            if h.timed_out { "-".into() } else { ialloc_result(&h.out) },
                            ialloc_result(&m.out),
                            fmt_m(&h),
                            fmt_m(&m),
                            fmt_cpu(&m)
                        );
                    }
                }
                "evac" => {
                    let req = format!("{p}.evac.json");
                    let h = hrun(
                        &[hail.clone(), "--no-capacity-checks".into(), req.clone()],
                        timeout,
                    );
                    let m = run(&[ialloc.clone(), req.clone()], timeout);
                    println!(
                        "| {n} | {inst} | node-evacuate | {} | {} | {} | {} | {} | - | - | {} | {} | {} |",
                        fmt_t(&h, timeout),
                        fmt_t(&m, timeout),
                        ratio(&h, &m, timeout),
                        if h.timed_out { "-".into() } else { ialloc_result(&h.out) },
                        ialloc_result(&m.out),
                        fmt_m(&h),
                        fmt_m(&m),
                        fmt_cpu(&m)
                    );
                }
                "hspace" => {
                    // simulated empty cluster of n nodes, plain; capped (-l) beyond 20
                    // nodes (hspace needs ~4 s per placement at 1000 nodes)
                    let sim = format!("p,{n},4t,256g,32");
                    let cap: Option<usize> = if n <= 20 {
                        None
                    } else if n <= 100 {
                        Some(300)
                    } else {
                        Some(20)
                    };
                    let mut hc = vec![
                        "hspace".into(),
                        format!("--simulate={sim}"),
                        "--standard-alloc=100g,8g,4".into(),
                        "--disk-template=plain".into(),
                        "--no-capacity-checks".into(),
                        "--machine-readable".into(),
                    ];
                    let mut mc = vec![
                        plan.clone(),
                        "capacity".into(),
                        "--simulate".into(),
                        sim.clone(),
                        "--standard-alloc".into(),
                        "100g,8g,4".into(),
                        "--disk-template".into(),
                        "plain".into(),
                        "--machine-readable".into(),
                    ];
                    if let Some(c) = cap {
                        hc.push("-l".into());
                        hc.push(c.to_string());
                        mc.push("-l".into());
                        mc.push(c.to_string());
                    }
                    let h = hrun(&hc, timeout);
                    let m = run(&mc, timeout);
                    let count = |o: &str| {
                        o.lines()
                            .find_map(|l| {
                                l.strip_prefix("HTS_ALLOC_INSTANCES=").map(str::to_string)
                            })
                            .unwrap_or_else(|| "-".into())
                    };
                    println!(
                        "| {n} (sim) | 0 | hspace plain{} | {} | {} | {} | {} inst | {} inst | - | - | {} | {} | {} |",
                        cap.map(|c| format!(" -l {c}")).unwrap_or_default(),
                        fmt_t(&h, timeout),
                        fmt_t(&m, timeout),
                        ratio(&h, &m, timeout),
                        if h.timed_out { "-".into() } else { count(&h.out) },
                        count(&m.out),
                        fmt_m(&h),
                        fmt_m(&m),
                        fmt_cpu(&m)
                    );
                }
                "groupevac" => {
                    // the same number of nodes in groups of 100: change-group of
                    // every instance of group-01 (a group evacuation)
                    let groups = (n / 100).max(2);
                    let gp = workdir.join(format!("g{n}s{seed}")).display().to_string();
                    let req = match group_evac_request(&gencluster, n, groups, seed, &gp) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("group evacuation input for {n} nodes: {e}");
                            continue;
                        }
                    };
                    let h = hrun(
                        &[hail.clone(), "--no-capacity-checks".into(), req.0.clone()],
                        timeout,
                    );
                    let m = run(&[ialloc.clone(), req.0.clone()], timeout.max(600));
                    println!(
                        "| {n} ({groups} groups) | {inst} | change-group of group-01 ({} inst) | {} | {} | {} | {} | {} | - | - | {} | {} | {} |",
                        req.1,
                        fmt_t(&h, timeout),
                        fmt_t(&m, timeout),
                        ratio(&h, &m, timeout),
                        if h.timed_out { "-".into() } else { ialloc_result(&h.out) },
                        ialloc_result(&m.out),
                        fmt_m(&h),
                        fmt_m(&m),
                        fmt_cpu(&m)
                    );
                }
                x => eprintln!("unknown case {x}"),
            }
        }
    }
}

fn skipped_run() -> Run {
    Run {
        wall: None,
        cpu: None,
        load: None,
        rss_mib: None,
        out: String::new(),
        timed_out: false,
    }
}
