//! Jobs on different instances run in parallel; jobs on the same instance serialize.

mod common;
use common::*;

fn job_info(lab: &TestLab, id: u64) -> String {
    lab.maguey(&["job", "info", &id.to_string()]).ok().stdout
}

fn submit(lab: &TestLab, args: &[&str]) -> u64 {
    let mut a = args.to_vec();
    a.push("--submit");
    lab.maguey(&a).ok().stdout.trim().parse().expect("job id")
}

fn times(lab: &TestLab) -> Vec<(u64, String, f64, f64)> {
    let v = jobs(lab);
    v.iter()
        .map(|j| {
            (
                j["id"].as_u64().unwrap(),
                j["status"].as_str().unwrap().to_string(),
                j["start_ts"].as_f64().unwrap_or(0.0),
                j["end_ts"].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

#[test]
fn independent_jobs_run_in_parallel_and_same_instance_serializes() {
    let lab = lab(3);
    add_sleepy_os(&lab);
    // Every create script waits at a gate (a file) until the test opens it, so that how many
    // jobs overlap does not depend on how fast this machine submits them.
    let gate = lab.dir.path().join("gate");
    let gate_arg = format!("gate={}", gate.display());
    let mut ids = Vec::new();
    for i in 0..20 {
        let name = format!("par{i}");
        let node = format!("node{}", i % 3 + 1);
        ids.push(submit(
            &lab,
            &[
                "instance",
                "add",
                "-t",
                "file",
                "--disk",
                "0:size=8M",
                "-o",
                "sleepy",
                "-O",
                &gate_arg,
                "-n",
                &node,
                &name,
            ],
        ));
    }
    // All twenty are running at once: each one is inside its OS create script, behind the gate.
    let running = |lab: &TestLab| {
        times(lab)
            .iter()
            .filter(|(j, s, ..)| ids.contains(j) && s == "running")
            .count()
    };
    let all_running = wait_until(std::time::Duration::from_secs(120), || running(&lab) == 20);
    let seen = running(&lab);
    std::fs::write(&gate, "open").unwrap();
    assert!(
        all_running,
        "only {seen} of 20 jobs ran at once\n{}",
        lab.logs()
    );
    assert!(
        wait_until(std::time::Duration::from_secs(120), || {
            let t = times(&lab);
            ids.iter().all(|id| {
                t.iter()
                    .any(|(j, s, _, _)| j == id && (s == "success" || s == "error"))
            })
        }),
        "jobs did not finish\n{}",
        lab.logs()
    );
    let t: Vec<_> = times(&lab)
        .into_iter()
        .filter(|(j, ..)| ids.contains(j))
        .collect();
    assert!(t.iter().all(|(_, s, ..)| s == "success"), "{t:?}");
    let max_overlap = t
        .iter()
        .map(|(_, _, s, _)| t.iter().filter(|(_, _, s2, e2)| s2 <= s && s < e2).count())
        .max()
        .unwrap();
    assert_eq!(max_overlap, 20, "{t:?}");

    // Two jobs on the same instance: the second waits for the first's lock, then finds the
    // name taken in its prerequisites and never starts creating disks.
    let a = submit(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=8M",
            "-o",
            "sleepy",
            "-O",
            "delay=2",
            "-n",
            "node1",
            "same",
        ],
    );
    let b = submit(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=8M",
            "-o",
            "sleepy",
            "-O",
            "delay=2",
            "-n",
            "node1",
            "same",
        ],
    );
    let wa = lab.maguey(&["job", "watch", &a.to_string()]);
    assert_eq!(wa.code, 0, "{}", wa.stdout);
    let wb = lab.maguey(&["job", "watch", &b.to_string()]);
    assert_eq!(wb.code, 1, "{}", wb.stdout);
    let info = job_info(&lab, b);
    let info = info.as_str();
    assert!(info.contains("already in use"), "{info}");
    assert!(
        !info.contains("creating disk"),
        "the second job ran concurrently:\n{info}"
    );
    let t = times(&lab);
    let ea = t.iter().find(|x| x.0 == a).unwrap().3;
    let eb = t.iter().find(|x| x.0 == b).unwrap().3;
    assert!(eb >= ea, "second job ended before the first");
}
