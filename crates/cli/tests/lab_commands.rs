//! `maguey lab up|env|down` as a user runs them.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn lab_env_and_down() {
    let lab = lab(2);
    let d = lab.dir.path().canonicalize().unwrap();
    let r = lab
        .maguey(&["lab", "env", "--dir", d.to_str().unwrap()])
        .ok();
    assert!(
        r.stdout
            .contains(&format!("export MAGUEY_DIR={}", d.join("node1").display())),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains(&format!("export MAGUEY_LAB_DIR={}", d.display())));
    // Every lab node has the noop OS.
    for i in 1..=2 {
        assert!(lab.node_dir(i).join("os/noop/create").exists());
    }
    let pids: Vec<i32> = (1..=2).map(|i| lab.pid(i).unwrap()).collect();
    let r = lab
        .maguey(&["lab", "down", "--dir", d.to_str().unwrap()])
        .ok();
    assert!(r.stdout.contains("stopped 2"), "{}", r.stdout);
    assert!(wait_until(Duration::from_secs(60), || pids
        .iter()
        .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())));
    // Up again on the same directory restarts the same cluster.
    lab.maguey(&["lab", "up", "--dir", d.to_str().unwrap()])
        .ok();
    let r = lab
        .maguey(&["node", "list", "-o", "name", "--output", "json"])
        .ok();
    assert_eq!(r.json().as_array().unwrap().len(), 2);
}

#[test]
fn cluster_destroy_needs_an_empty_cluster() {
    let lab = lab(1);
    let r = lab.maguey(&["cluster", "destroy"]);
    assert_eq!(r.code, 2);
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        "node1",
        "x1",
    ])
    .ok();
    let r = lab.maguey(&["cluster", "destroy", "--yes-do-it"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("still has 1 instances"), "{}", r.stderr);
    lab.maguey(&["instance", "remove", "-f", "x1"]).ok();
    lab.maguey(&["cluster", "destroy", "--yes-do-it"]).ok();
    assert!(wait_until(Duration::from_secs(60), || !lab
        .master_dir()
        .join("config.redb")
        .exists()));
}

/// `maguey lab` runs the separate `maguey-lab` program; without it, it says so.
#[test]
fn lab_without_the_lab_program_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let maguey = dir.path().join("maguey");
    std::fs::copy(maguey_bin(), &maguey).unwrap();
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let o = std::process::Command::new(&maguey)
        .args(["lab", "env", "--dir", "/nonexistent"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let r = Run::from(o);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("needs the maguey-lab program"),
        "{}",
        r.stderr
    );
    // Beside maguey, it is found and run: same flags and errors as before.
    let r = lab_run(&["lab", "env", "--dir", "/nonexistent"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("maguey: no lab in /nonexistent"),
        "{}",
        r.stderr
    );
}

fn lab_run(args: &[&str]) -> Run {
    Run::from(
        std::process::Command::new(maguey_bin())
            .args(args)
            .output()
            .unwrap(),
    )
}
