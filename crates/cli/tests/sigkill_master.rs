//! SIGKILL of the master daemon while jobs run, then restart: every job ends in a final state,
//! verify reports exactly what the interrupted jobs left behind, nothing acknowledged is lost.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn master_sigkill_while_jobs_run() {
    let lab = lab(2);
    add_sleepy_os(&lab);
    // Some instances created before: acknowledged changes that must survive.
    for i in 0..3 {
        lab.maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=8M",
            "-o",
            "noop",
            "-n",
            "node2",
            &format!("before{i}"),
        ])
        .ok();
    }
    // 25 jobs: 20 run at once (the default limit), 5 wait in the queue.
    let mut ids = Vec::new();
    for i in 0..25 {
        let node = format!("node{}", i % 2 + 1);
        let r = lab
            .maguey(&[
                "instance",
                "add",
                "-t",
                "file",
                "--disk",
                "0:size=8M",
                "-o",
                "sleepy",
                "-O",
                "delay=3",
                "-n",
                &node,
                &format!("k{i}"),
                "--submit",
            ])
            .ok();
        ids.push(r.stdout.trim().parse::<u64>().unwrap());
    }
    // Wait until jobs are running (disks being created / OS scripts sleeping), then SIGKILL.
    assert!(wait_until(Duration::from_secs(30), || {
        let v = jobs(&lab);
        v.iter().filter(|j| j["status"] == "running").count() >= 10
    }));
    let pid = lab.pid(1).expect("master pid");
    unsafe { libc_kill(pid) };
    assert!(wait_until(Duration::from_secs(60), || lab
        .maguey(&["job", "list"])
        .code
        == 3));

    // Restart the lab's stopped daemon.
    let d = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    // Every job reaches a final state (queued ones run after the restart).
    assert!(
        wait_until(Duration::from_secs(90), || {
            let v = jobs(&lab);
            v.iter()
                .all(|j| ["success", "error", "canceled"].contains(&j["status"].as_str().unwrap()))
        }),
        "{}",
        lab.logs()
    );
    let jobs = jobs(&lab);
    let status = |id: u64| {
        jobs.iter().find(|j| j["id"].as_u64() == Some(id)).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let insts: Vec<String> = instances(&lab, "name")
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    let mut interrupted = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let name = format!("k{i}");
        match status(*id).as_str() {
            // Acknowledged success: the instance is there.
            "success" => assert!(
                insts.contains(&name),
                "job {id} succeeded but {name} is missing"
            ),
            "error" => {
                let info = lab.maguey(&["job", "info", &id.to_string()]).ok().stdout;
                assert!(info.contains("master daemon stopped"), "{info}");
                interrupted.push(name);
            }
            s => panic!("job {id} ended as {s}"),
        }
    }
    assert!(!interrupted.is_empty(), "no job was interrupted");
    assert!(
        interrupted.len() < 25,
        "queued jobs did not run after the restart"
    );
    for i in 0..3 {
        assert!(insts.contains(&format!("before{i}")));
    }
    // Verify reports only what the interrupted jobs left behind.
    let r = lab.maguey(&["cluster", "verify"]);
    for line in r.stdout.lines().filter(|l| l.contains("ERROR:")) {
        assert!(
            interrupted.iter().any(|n| line.contains(&format!("/{n}/"))
                || line.contains(&format!("{n}/disk"))
                || line.contains(&format!("instance {n} "))),
            "unexpected verify error: {line}\n{}",
            r.stdout
        );
    }
}

unsafe fn libc_kill(pid: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(pid, 9);
}
