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
                "delay=2",
                "-n",
                &node,
                &name,
            ],
        ));
    }
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
    // Wall time well under the sum: many jobs overlapped.
    let sum: f64 = t.iter().map(|(_, _, s, e)| e - s).sum();
    let wall =
        t.iter().map(|x| x.3).fold(0.0, f64::max) - t.iter().map(|x| x.2).fold(f64::MAX, f64::min);
    let max_overlap = t
        .iter()
        .map(|(_, _, s, _)| t.iter().filter(|(_, _, s2, e2)| s2 <= s && s < e2).count())
        .max()
        .unwrap();
    assert!(
        max_overlap >= 10,
        "only {max_overlap} jobs overlapped (sum {sum:.1}s, wall {wall:.1}s)"
    );
    assert!(wall * 3.0 < sum, "sum {sum:.1}s, wall {wall:.1}s");

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
