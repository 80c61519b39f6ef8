//! Stale reads through the Remote API of a follower (docs/replication.md, "Stale reads"), and
//! `cluster force-single` refused with three voters. Three master candidates; the master is
//! killed, then the new one: a follower answers `GET ...?stale-ok=1` from its own replica,
//! with a leader and without a quorum, marked `X-Maguey-Stale`; without the flag it forwards
//! to the master, or answers the no-quorum error.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// One RAPI answer: the status, the `X-Maguey-Stale` header (if any) and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    stale: Option<String>,
    body: String,
}

/// `METHOD https://NODE_i:5080PATH` as RAPI user `alice` (curl, the cluster CA).
fn rapi(lab: &TestLab, i: usize, method: &str, path: &str) -> Answer {
    let headers = lab.dir.path().join(format!("headers-{i}"));
    let body = lab.dir.path().join(format!("body-{i}"));
    let _ = std::fs::remove_file(&headers);
    let _ = std::fs::remove_file(&body);
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-X",
            method,
            "-u",
            "alice:alice pw",
        ])
        .arg("--cacert")
        .arg(lab.node_dir(i).join("ca.pem"))
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .arg(format!("https://{}:5080{path}", lab.node_ip(i)))
        .output()
        .expect("running curl");
    let status = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let stale = std::fs::read_to_string(&headers)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-maguey-stale")
                .then(|| v.trim().to_string())
        });
    Answer {
        status,
        stale,
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

fn lists(a: &Answer, name: &str) -> bool {
    a.status == 200 && a.body.contains(&format!("\"{name}\""))
}

#[test]
fn a_follower_answers_stale_rapi_reads_and_force_single_is_refused_with_three_voters() {
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated"]);
    let d = lab.dir.path().display().to_string();
    assert!(
        wait_until(T, || {
            let l = lab.daemon_log(1);
            l.contains("node2 is a voter") && l.contains("node3 is a voter")
        }),
        "the candidates did not become voters\n{}",
        lab.logs()
    );
    let pw = lab.dir.path().join("alice.pw");
    std::fs::write(&pw, "alice pw\n").expect("password file");
    lab.maguey(&[
        "rapi-user",
        "add",
        "--password-file",
        &pw.display().to_string(),
        "alice",
    ])
    .ok();
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        "node2",
        "before",
    ])
    .ok();

    // With a master: the flag answers from node3's replica, marked; without it the master
    // answers (forwarded), unmarked.
    let mut a = rapi(&lab, 3, "GET", "/2/instances?stale-ok=1");
    assert!(
        wait_until(T, || {
            a = rapi(&lab, 3, "GET", "/2/instances?stale-ok=1");
            lists(&a, "before")
        }),
        "{a:?}\n{}",
        lab.logs()
    );
    let why = a.stale.clone().unwrap_or_default();
    assert!(
        why.contains("node3's replica") && why.contains("the master is node1"),
        "{a:?}"
    );
    let a = rapi(&lab, 3, "GET", "/2/instances");
    assert!(lists(&a, "before") && a.stale.is_none(), "{a:?}");

    // The master dies: a new one is elected; the other follower still answers stale reads.
    lab.kill_node(1);
    let mut new_master = String::new();
    assert!(
        wait_until(T, || {
            new_master = lab.getmaster(2);
            (new_master == "node2" || new_master == "node3")
                && lab.maguey_on(2, &["instance", "list"]).code == 0
        }),
        "no new master\n{}",
        lab.logs()
    );
    let lone = if new_master == "node2" { 3 } else { 2 };
    let mut a = rapi(&lab, lone, "GET", "/2/instances?stale-ok=1");
    assert!(
        wait_until(T, || {
            a = rapi(&lab, lone, "GET", "/2/instances?stale-ok=1");
            lists(&a, "before")
                && a.stale
                    .as_deref()
                    .is_some_and(|w| w.contains(&format!("the master is {new_master}")))
        }),
        "{a:?}\n{}",
        lab.logs()
    );

    // Then the new master dies too: no quorum. Without the flag, the no-quorum error; with
    // it, the replica's answer, marked with that error.
    lab.kill_node(node_num(&new_master));
    let mut a = rapi(&lab, lone, "GET", "/2/instances");
    assert!(
        wait_until(T, || {
            a = rapi(&lab, lone, "GET", "/2/instances");
            a.status == 503 && a.body.contains("no quorum")
        }),
        "{a:?}\n{}",
        lab.logs()
    );
    assert!(!a.body.contains("before"), "{a:?}");
    let a = rapi(&lab, lone, "GET", "/2/instances?bulk=1&stale-ok=1");
    assert!(lists(&a, "before"), "{a:?}");
    let why = a.stale.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("node{lone}'s replica")) && why.contains("no quorum"),
        "{a:?}"
    );
    let a = rapi(&lab, lone, "GET", "/2/info?stale-ok=1");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.stale.is_some(), "{a:?}");
    // The job queue is on the master: a stale read of it says so.
    let a = rapi(&lab, lone, "GET", "/2/jobs?stale-ok=1");
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.body.contains("job queue is on the master"), "{a:?}");
    // A write is no read: refused without a quorum, flag or not.
    let a = rapi(&lab, lone, "PUT", "/2/instances/before/shutdown?stale-ok=1");
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.stale.is_none(), "{a:?}");
    // A wrong password gets nothing, stale or not.
    let o = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "alice:wrong",
        ])
        .arg("--cacert")
        .arg(lab.node_dir(lone).join("ca.pem"))
        .arg(format!(
            "https://{}:5080/2/instances?stale-ok=1",
            lab.node_ip(lone)
        ))
        .output()
        .expect("running curl");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "401");

    // force-single is for two-node clusters: with three voters it is refused, nothing changed.
    let r = lab.maguey_on(lone, &["cluster", "force-single", "--yes-do-it"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("two-node clusters") && r.stderr.contains("3 voters"),
        "{}",
        r.stderr
    );
    assert!(!lab
        .daemon_log(lone)
        .contains("force-single: this node is the only voter"));

    // The others come back: the same three voters elect a master, and writes work again.
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert!(
        wait_until(T, || {
            let r = lab.maguey_on(lone, &["cluster", "info", "--output", "json"]);
            r.code == 0
                && r.json()["Replication"]["voters"]
                    .as_array()
                    .is_some_and(|v| v.len() == 3)
        }),
        "{}",
        lab.logs()
    );
    lab.maguey_on(lone, &["cluster", "add-tags", "after"]).ok();
    let a = rapi(&lab, lone, "GET", "/2/instances");
    assert!(lists(&a, "before") && a.stale.is_none(), "{a:?}");
}
