//! A replicated master (docs/replication.md): three master candidates share the config through
//! Raft and the leader is the master. Killed, it is replaced within seconds, nothing
//! acknowledged is lost, and `maguey` works through the other nodes; cut off, it commits
//! nothing.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn instance_names(lab: &TestLab, i: usize) -> Option<Vec<String>> {
    let r = lab.maguey_on(i, &["instance", "list", "-o", "name", "--output", "json"]);
    if r.code != 0 {
        return None;
    }
    Some(
        r.json()
            .as_array()?
            .iter()
            .filter_map(|row| row["name"].as_str().map(String::from))
            .collect(),
    )
}

/// Ganeti's Python RAPI client (Debian's python3-ganeti-rapi, as crates/rapi/tests/rapi_python.rs
/// uses it) against node `i`'s address as user `alice`: lists the instances and adds a cluster
/// tag through a job it waits for. Prints the instance names, then OK.
const GANETI_CLIENT: &str = r#"
import sys
from ganeti.rapi import client as rapi
cl = rapi.GanetiRapiClient(sys.argv[1], port=5080, username="alice", password=sys.argv[2],
    curl_config_fn=rapi.GenericCurlConfig(cafile=sys.argv[3]))
print(" ".join(sorted(cl.GetInstances())))
job = cl.AddClusterTags([sys.argv[4]])
if not cl.WaitForJobCompletion(job, period=0.2, retries=300):
    sys.exit("tag job %s failed: %r" % (job, cl.GetJobStatus(job)))
print("master", cl.GetInfo()["master"])
print("OK")
"#;

fn ganeti_client(lab: &TestLab, i: usize, password: &str, tag: &str) -> Run {
    let ca = lab.node_dir(i).join("ca.pem").display().to_string();
    let o = Command::new("/usr/bin/python3")
        .args(["-c", GANETI_CLIENT, &lab.node_ip(i), password, &ca, tag])
        .output()
        .expect("running Ganeti's RAPI client (python3-ganeti-rapi)");
    Run::from(o)
}

/// A 3-node lab whose three nodes are voters, each holding the admin certificate.
fn replicated_lab() -> TestLab {
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated"]);
    assert!(
        wait_until(T, || {
            let l = lab.daemon_log(1);
            l.contains("node2 is a voter") && l.contains("node3 is a voter")
        }),
        "the candidates did not become voters\n{}",
        lab.logs()
    );
    for i in 2..=3 {
        assert!(lab.node_dir(i).join("raft.redb").exists());
        assert!(lab.node_dir(i).join("admin.pem").exists());
        assert!(lab.node_dir(i).join("ca.key").exists());
    }
    // A single-master store no longer exists; the replica holds the config.
    assert!(!lab.node_dir(1).join("config.redb").exists());
    lab
}

#[test]
fn a_killed_master_is_replaced_and_nothing_acknowledged_is_lost() {
    let lab = replicated_lab();
    let d = lab.dir.path().display().to_string();
    assert_eq!(lab.getmaster(1), "node1");
    // Acknowledged changes before the kill.
    for i in 0..3 {
        lab.maguey(&[
            "instance",
            "add",
            "-t",
            "diskless",
            "--no-install",
            "-n",
            "node2",
            &format!("before{i}"),
        ])
        .ok();
    }
    lab.maguey(&["cluster", "add-tags", "acknowledged"]).ok();
    // A RAPI user and a watcher pause: both are kept in the config, so they move too.
    let pw = lab.dir.path().join("alice.pw");
    std::fs::write(&pw, "alice pw\n").expect("password file");
    lab.maguey(&[
        "rapi-user",
        "add",
        "--write",
        "--password-file",
        &pw.display().to_string(),
        "alice",
    ])
    .ok();
    lab.maguey(&["cluster", "watcher", "pause", "2h"]).ok();
    // Every candidate's ssconf follows the replicated config.
    assert!(wait_until(T, || (2..=3).all(|i| lab.getmaster(i) == "node1")));

    // 20 jobs running (the default limit) and 5 queued behind them.
    let submit = |secs: &str| -> u64 {
        let r = lab.maguey(&["debug", "delay", secs, "--submit"]).ok();
        r.stdout.trim().parse().expect("a job id")
    };
    let running: Vec<u64> = (0..20).map(|_| submit("600")).collect();
    let queued: Vec<u64> = (0..5).map(|_| submit("0.2")).collect();
    assert!(wait_until(T, || {
        jobs(&lab)
            .iter()
            .filter(|j| j["status"] == "running")
            .count()
            == 20
    }));

    // Power loss of the master.
    lab.kill_node(1);
    let killed = Instant::now();
    let mut new_master = String::new();
    assert!(
        wait_until(T, || {
            new_master = lab.getmaster(2);
            (new_master == "node2" || new_master == "node3") && instance_names(&lab, 2).is_some()
        }),
        "no new master\n{}",
        lab.logs()
    );
    eprintln!(
        "new master {new_master} answering {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    // Through either other node: every acknowledged change is there.
    for i in 2..=3 {
        let names = instance_names(&lab, i).expect("instance list");
        for n in ["before0", "before1", "before2"] {
            assert!(names.iter().any(|x| x == n), "{n} lost: {names:?}");
        }
        let tags = lab.maguey_on(i, &["cluster", "list-tags"]).ok().stdout;
        assert!(tags.contains("acknowledged"), "{tags}");
    }
    // `cluster info` shows the Raft view: three voters, the new leader, a later term.
    let info = lab
        .maguey_on(2, &["cluster", "info", "--output", "json"])
        .ok()
        .json();
    let repl = &info["Replication"];
    assert_eq!(repl["leader"], new_master.as_str(), "{info}");
    assert!(repl["term"].as_u64().unwrap_or(0) > 1, "{info}");
    assert_eq!(repl["voters"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(info["Master node"], new_master.as_str(), "{info}");

    // The jobs that were running ended as error, the queued ones ran.
    let status = |id: u64| -> (String, String) {
        let r = lab.maguey_on(2, &["job", "info", &id.to_string()]);
        let line = r
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("Status:"))
            .unwrap_or("")
            .to_string();
        (line, r.stdout)
    };
    assert!(
        wait_until(T, || queued
            .iter()
            .all(|id| status(*id).0.contains("success"))),
        "{:?}\n{}",
        queued.iter().map(|id| status(*id).1).collect::<Vec<_>>(),
        lab.logs()
    );
    for id in &running {
        let (line, info) = status(*id);
        assert!(line.contains("error"), "{info}");
        assert!(info.contains("master daemon stopped"), "{info}");
    }
    // Jobs are accepted and run through any node (a follower redirects to the master).
    let follower = if new_master == "node2" { 3 } else { 2 };
    // Ganeti's RAPI client, through the new master and through the follower (which forwards
    // to it), as the RAPI user made before the move; the watcher is still paused.
    for (i, tag) in [
        (follower, "rapi-via-follower"),
        (node_num(&new_master), "rapi-via-master"),
    ] {
        let r = ganeti_client(&lab, i, "alice pw", tag);
        assert!(
            r.code == 0 && r.stdout.contains("OK"),
            "Ganeti's client through node{i}:\n{}\n{}\n{}",
            r.stdout,
            r.stderr,
            lab.logs()
        );
        assert!(r.stdout.contains("before0"), "{}", r.stdout);
        assert!(
            r.stdout.contains(&format!("master {new_master}")),
            "{}",
            r.stdout
        );
    }
    let tags = lab.maguey_on(2, &["cluster", "list-tags"]).ok().stdout;
    assert!(
        tags.contains("rapi-via-follower") && tags.contains("rapi-via-master"),
        "{tags}"
    );
    let paused = lab
        .maguey_on(follower, &["cluster", "watcher", "info"])
        .ok()
        .stdout;
    assert!(paused.contains("paused until"), "{paused}");
    lab.maguey_on(
        follower,
        &[
            "instance",
            "add",
            "-t",
            "diskless",
            "--no-install",
            "-n",
            "node3",
            "after",
        ],
    )
    .ok();
    let names = instance_names(&lab, 2).expect("instance list");
    assert!(names.iter().any(|x| x == "after"), "{names:?}");

    // The old master comes back as a follower: the master stays where it is, and its own
    // ssconf names the new one.
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert!(
        wait_until(T, || lab.getmaster(1) == new_master),
        "node1 names {}\n{}",
        lab.getmaster(1),
        lab.logs()
    );
    let names = instance_names(&lab, 1).expect("instance list through node1");
    assert!(names.iter().any(|x| x == "after"), "{names:?}");
    assert_eq!(lab.getmaster(2), new_master);

    // A planned move back to node1 (`master-failover --to`), asked through any node.
    let r = lab
        .maguey_on(3, &["cluster", "master-failover", "--to", "node1"])
        .ok();
    assert!(r.stdout.contains("the master is now node1"), "{}", r.stdout);
    assert!(
        wait_until(T, || (1..=3).all(|i| lab.getmaster(i) == "node1")),
        "{}",
        lab.logs()
    );
    lab.maguey_on(
        2,
        &[
            "instance",
            "add",
            "-t",
            "diskless",
            "--no-install",
            "-n",
            "node1",
            "moved-back",
        ],
    )
    .ok();
    let r = lab.maguey_on(2, &["cluster", "master-failover", "--to", "node9"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("node9 is not a voter"), "{}", r.stderr);
}

#[test]
fn a_cut_off_master_commits_nothing_and_follows_when_back() {
    let lab = replicated_lab();
    if !lab.has_netns() {
        // Without root there are no links to cut (crates/cli/tests/lab_faults.rs).
        return;
    }
    let d = lab.dir.path().display().to_string();
    let netns = maguey_lab::Lab::load(lab.dir.path())
        .expect("the lab")
        .nodes[0]
        .netns
        .clone()
        .expect("node1's namespace");
    lab.maguey(&["cluster", "add-tags", "before-cut"]).ok();
    lab.maguey(&["lab", "cut", "--dir", &d, "node1"]).ok();
    // The majority elects a new master.
    let mut new_master = String::new();
    assert!(
        wait_until(T, || {
            new_master = lab.getmaster(2);
            (new_master == "node2" || new_master == "node3") && instance_names(&lab, 2).is_some()
        }),
        "no new master\n{}",
        lab.logs()
    );
    // The old master, on its side of the cut, cannot commit: its CLI says why.
    let o = Command::new("ip")
        .args(["netns", "exec", &netns])
        .arg(maguey_bin())
        .args(["cluster", "add-tags", "during-cut"])
        .env("MAGUEY_DIR", lab.node_dir(1))
        .output()
        .expect("maguey in node1's namespace");
    let r = Run::from(o);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("no quorum") || r.stdout.contains("no quorum"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // The majority goes on.
    lab.maguey_on(2, &["cluster", "add-tags", "majority"]).ok();
    // Back: node1 follows the new master; what it could not commit never appears.
    lab.maguey(&["lab", "heal", "--dir", &d, "node1"]).ok();
    assert!(
        wait_until(T, || lab.getmaster(1) == new_master),
        "node1 names {}\n{}",
        lab.getmaster(1),
        lab.logs()
    );
    let tags = lab.maguey_on(1, &["cluster", "list-tags"]).ok().stdout;
    assert!(
        tags.contains("before-cut") && tags.contains("majority"),
        "{tags}"
    );
    assert!(!tags.contains("during-cut"), "{tags}");
}
