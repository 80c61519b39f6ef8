//! The watcher on a lab with real QEMU (TCG): a QEMU killed behind Maguey's back runs again
//! with no command typed (interval 10 s); `watcher run` restarts at once; a pause is kept
//! across a master restart; a guest that powers itself off with `user_shutdown` stays down,
//! stopped by the user; after 5 failed restarts the watcher gives up and says so.

mod common;
use common::*;
use maguey_test_infra::kvm;

use std::time::Duration;

const BOOT: Duration = Duration::from_secs(120);

fn kill_qemu(lab: &TestLab, name: &str) {
    let pid = kvm::qemu_pid(lab, 1, name).expect("a QEMU pid");
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on the lab's own QEMU.
    unsafe { kill(pid as i32, 9) };
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(pid)));
}

fn status(lab: &TestLab, name: &str) -> String {
    instances(lab, "name,status")
        .into_iter()
        .find(|i| i["name"] == name)
        .and_then(|i| i["status"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Ids of the watcher's startup jobs, from `job list` and `job info`.
fn watcher_startups(lab: &TestLab) -> Vec<u64> {
    let r = lab
        .maguey(&["job", "list", "-o", "id,summary", "--output", "json"])
        .ok();
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["summary"].to_string().contains("INSTANCE_STARTUP"))
        .filter_map(|j| j["id"].as_u64())
        .filter(|id| {
            let info = lab.maguey(&["job", "info", &id.to_string()]).ok();
            info.stdout.contains("Submitter: watcher")
        })
        .collect()
}

#[test]
fn kvm_watcher_restarts_pauses_and_gives_up() {
    // Set before the lab starts: every magueyd of this test runs a pass every 10 s.
    std::env::set_var("MAGUEY_WATCHER_INTERVAL", "10");
    // QEMU runs as the unprivileged user `cluster init` picks (docs/security.md).
    maguey_test_infra::kvm::ensure_qemu_user();
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    kvm::add_tiny(&lab, "file", "node1", "vm1");
    kvm::wait_boot(&lab, 1, "vm1", 1, BOOT);

    // Killed behind Maguey's back: running again with no command typed.
    kill_qemu(&lab, "vm1");
    kvm::wait_boot(&lab, 1, "vm1", 2, BOOT);
    assert!(wait_until(Duration::from_secs(30), || status(&lab, "vm1") == "running"));
    let jobs = watcher_startups(&lab);
    assert_eq!(jobs.len(), 1, "{}", lab.logs());
    let info = lab.maguey(&["job", "info", &jobs[0].to_string()]).ok();
    assert!(
        info.stdout
            .contains("Reason: watcher: instance vm1 down by error, restart attempt 1"),
        "{}",
        info.stdout
    );

    // Paused: nothing happens, even after a master restart.
    lab.maguey(&["cluster", "watcher", "pause"]).ok();
    kill_qemu(&lab, "vm1");
    let r = lab.maguey(&["cluster", "watcher", "run"]).ok();
    assert!(r.stdout.contains("paused; nothing done"), "{}", r.stdout);
    let d = lab.pid(1).expect("the master's pid");
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on the lab's own daemon.
    unsafe { kill(d, 9) };
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(
        d as u32
    )));
    let dir = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "up", "--dir", &dir]).ok();
    let info = lab.maguey(&["cluster", "watcher", "info"]).ok();
    assert!(
        info.stdout
            .contains("paused until `maguey cluster watcher continue`"),
        "{}",
        info.stdout
    );
    let r = lab.maguey(&["cluster", "watcher", "run"]).ok();
    assert!(r.stdout.contains("paused; nothing done"), "{}", r.stdout);
    assert_eq!(status(&lab, "vm1"), "ERROR_down");

    // `watcher run` restarts at once and says so.
    let r = lab.maguey(&["cluster", "watcher", "continue"]).ok();
    assert!(r.stdout.contains("not paused"), "{}", r.stdout);
    let r = lab.maguey(&["cluster", "watcher", "run"]);
    // A periodic pass may have come first; then this one has nothing left to do.
    assert!(
        r.stdout
            .contains("instance vm1 was down by error: restart attempt 1 of 5")
            || status(&lab, "vm1") == "running",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    kvm::wait_boot(&lab, 1, "vm1", 3, BOOT);

    // user_shutdown on (QEMU keeps a guest that powered itself off): the watcher marks it
    // stopped by the user, and it stays down.
    lab.maguey(&["instance", "modify", "-H", "user_shutdown=true", "vm1"])
        .ok();
    lab.maguey(&["instance", "reboot", "--type", "soft", "vm1"])
        .ok();
    kvm::wait_boot(&lab, 1, "vm1", 4, BOOT);
    kvm::qmp_powerdown(&kvm::run_file(&lab, 1, "vm1", "qmp"));
    let source = |lab: &TestLab| {
        instances(lab, "name,status,admin_state,admin_state_source")
            .into_iter()
            .find(|i| i["name"] == "vm1")
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(90), || source(&lab)
            ["admin_state_source"]
            == "user"),
        "{}\n{}",
        source(&lab),
        lab.logs()
    );
    let s = source(&lab);
    assert_eq!(
        (s["status"].as_str(), s["admin_state"].as_str()),
        (Some("USER_down"), Some("down")),
        "{s}"
    );
    let r = lab.maguey(&["cluster", "watcher", "run"]).ok();
    assert!(!r.stdout.contains("restart attempt"), "{}", r.stdout);
    assert_eq!(source(&lab)["status"], "USER_down");
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    kvm::wait_boot(&lab, 1, "vm1", 5, BOOT);
    assert_eq!(source(&lab)["admin_state_source"], "admin");
    // A pass that sees it running clears its restart counter (an earlier restart by the
    // watcher would otherwise count towards the 5 below, if no pass saw it running since).
    lab.maguey(&["cluster", "watcher", "run"]).ok();

    // Its disk gone, it cannot start: 5 attempts, then the watcher gives up and says so.
    let mut disks = Vec::new();
    find_files(&lab.node_dir(1).join("file-storage"), &mut disks);
    assert_eq!(disks.len(), 1, "{disks:?}");
    let before = watcher_startups(&lab).len();
    std::fs::rename(&disks[0], disks[0].with_extension("moved-away")).unwrap();
    kill_qemu(&lab, "vm1");
    let mut gave_up = String::new();
    assert!(
        wait_until(Duration::from_secs(240), || {
            let r = lab.maguey(&["cluster", "watcher", "run"]);
            if r.stdout.contains("giving up after 5 failed restarts") {
                gave_up = r.stdout;
                true
            } else {
                false
            }
        }),
        "{}",
        lab.logs()
    );
    assert!(
        gave_up.contains("instance vm1 is down by error"),
        "{gave_up}"
    );
    assert_eq!(watcher_startups(&lab).len() - before, 5);
    assert_eq!(status(&lab, "vm1"), "ERROR_down");
    lab.maguey(&["instance", "remove", "-f", "vm1"]).ok();
}
