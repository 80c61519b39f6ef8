//! The watcher on a lab with real QEMU (TCG): a QEMU killed behind Maguey's back runs again
//! with no command typed (interval 10 s); `watcher run` restarts at once; a pause is kept
//! across a master restart; a guest that powers itself off with `user_shutdown` stays down,
//! stopped by the user; after 5 failed restarts the watcher gives up and says so.

mod common;
use common::*;
use maguey_lab::guest::READY_MARKER;
use std::path::PathBuf;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(120);

fn run_dir(lab: &TestLab) -> PathBuf {
    lab.node_dir(1).join("run/kvm")
}

fn console_log(lab: &TestLab, name: &str) -> String {
    std::fs::read_to_string(run_dir(lab).join(format!("{name}.console.log"))).unwrap_or_default()
}

fn wait_boot(lab: &TestLab, name: &str, boot: u32) {
    let want = format!("{READY_MARKER} boot={boot} disk=yes");
    assert!(
        wait_until(BOOT, || console_log(lab, name).contains(&want)),
        "no '{want}' on the console of {name}:\n{}\n{}",
        console_log(lab, name),
        lab.logs()
    );
}

fn qemu_pid(lab: &TestLab, name: &str) -> Option<u32> {
    let p = run_dir(lab).join(format!("{name}.runtime.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next()),
                Some("Z")
            )
        })
        .unwrap_or(false)
}

fn kill_qemu(lab: &TestLab, name: &str) {
    let pid = qemu_pid(lab, name).expect("a QEMU pid");
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on the lab's own QEMU.
    unsafe { kill(pid as i32, 9) };
    assert!(wait_until(Duration::from_secs(60), || !alive(pid)));
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

/// Presses the ACPI power button through QMP, as a user powering the guest off would.
fn qmp_powerdown(sock: &std::path::Path) {
    use std::io::{BufRead, BufReader, Write};
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // greeting
    for cmd in ["qmp_capabilities", "system_powerdown"] {
        writeln!(w, "{{\"execute\": \"{cmd}\"}}").unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.contains("\"return\"") {
                break;
            }
            assert!(!line.contains("\"error\""), "{line}");
        }
    }
}

#[test]
fn kvm_watcher_restarts_pauses_and_gives_up() {
    // Set before the lab starts: every magueyd of this test runs a pass every 10 s.
    std::env::set_var("MAGUEY_WATCHER_INTERVAL", "10");
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=64M",
        "-o",
        "lab-tiny",
        "-H",
        "kvm",
        "-n",
        "node1",
        "vm1",
    ])
    .ok();
    wait_boot(&lab, "vm1", 1);

    // Killed behind Maguey's back: running again with no command typed.
    kill_qemu(&lab, "vm1");
    wait_boot(&lab, "vm1", 2);
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
    assert!(wait_until(Duration::from_secs(60), || !alive(d as u32)));
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
    wait_boot(&lab, "vm1", 3);

    // user_shutdown on (QEMU keeps a guest that powered itself off): the watcher marks it
    // stopped by the user, and it stays down.
    lab.maguey(&["instance", "modify", "-H", "user_shutdown=true", "vm1"])
        .ok();
    lab.maguey(&["instance", "reboot", "--type", "soft", "vm1"])
        .ok();
    wait_boot(&lab, "vm1", 4);
    qmp_powerdown(&run_dir(&lab).join("vm1.qmp"));
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
    wait_boot(&lab, "vm1", 5);
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
