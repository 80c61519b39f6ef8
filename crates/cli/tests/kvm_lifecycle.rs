//! Real VMs through Maguey (QEMU, TCG here): a lab with the kvm hypervisor boots the tiny
//! guest from `lab-tiny`; its marker shows on the serial console; stop/start; soft and hard
//! reboot; magueyd SIGKILLed and restarted while the VM runs re-adopts it.

mod common;
use common::*;
use maguey_lab::guest::{READY_MARKER, TICK_MARKER};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(120);

fn console_log(lab: &TestLab, name: &str) -> String {
    std::fs::read_to_string(run_dir(lab).join(format!("{name}.console.log"))).unwrap_or_default()
}

fn run_dir(lab: &TestLab) -> PathBuf {
    lab.node_dir(1).join("run/kvm")
}

/// Waits until the console shows the ready marker of boot number `boot`.
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

/// The argv of a process, from /proc/PID/cmdline.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Whether `want` appears as consecutive arguments of the process.
fn has_args(pid: u32, want: &[&str]) -> bool {
    cmdline(pid).windows(want.len()).any(|w| w == want)
}

fn status(lab: &TestLab, name: &str) -> serde_json::Value {
    instances(lab, "name,status,oper_ram,oper_vcpus")
        .into_iter()
        .find(|i| i["name"] == name)
        .unwrap_or_default()
}

#[test]
fn kvm_boot_console_stop_start_reboot_and_readopt() {
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    // A cluster-level hypervisor parameter, set the admin's way, reaches the next QEMU.
    let serial = lab.serial();
    let r = lab.maguey(&["cluster", "modify", "-H", "kvm:acpi=perhaps"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = lab.maguey(&["cluster", "modify", "-H", "kvm:bogus=1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(lab.serial(), serial);
    lab.maguey(&["cluster", "modify", "-H", "kvm:cpu_type=max"])
        .ok();
    let t = Instant::now();
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
    eprintln!(
        "figure: create+start to guest marker through Maguey: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let s = status(&lab, "vm1");
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(s["oper_ram"], 128, "{s}");
    let pid = qemu_pid(&lab, "vm1").expect("runtime file");
    assert!(alive(pid));
    assert!(
        has_args(pid, &["-cpu", "max"]),
        "{}",
        cmdline(pid).join(" ")
    );

    // The serial console socket streams the guest's output live.
    let sock = UnixStream::connect(run_dir(&lab).join("vm1.serial")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(sock);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !line.contains(TICK_MARKER) && Instant::now() < deadline {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    assert!(line.contains(TICK_MARKER), "{line}");
    drop(r);

    // Soft shutdown: the guest handles the ACPI power button and powers off.
    lab.maguey(&["instance", "shutdown", "vm1"]).ok();
    assert!(console_log(&lab, "vm1").contains("MAGUEY-GUEST-POWEROFF"));
    assert!(wait_until(Duration::from_secs(60), || !alive(pid)));
    assert_eq!(status(&lab, "vm1")["status"], "ADMIN_down");

    // Start again: the disk kept its boot counter.
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    wait_boot(&lab, "vm1", 2);
    assert_eq!(status(&lab, "vm1")["status"], "running");

    // Hard reboot: the machine resets inside the same QEMU.
    let pid = qemu_pid(&lab, "vm1").unwrap();
    lab.maguey(&["instance", "reboot", "--type", "hard", "vm1"])
        .ok();
    wait_boot(&lab, "vm1", 3);
    assert_eq!(qemu_pid(&lab, "vm1"), Some(pid));
    // Soft reboot (Ganeti's way): clean power-off, then a fresh QEMU.
    lab.maguey(&["instance", "reboot", "--type", "soft", "vm1"])
        .ok();
    wait_boot(&lab, "vm1", 4);
    let pid = qemu_pid(&lab, "vm1").unwrap();

    // magueyd SIGKILLed while the VM runs: QEMU keeps running; the restarted daemon
    // re-adopts it and controls it.
    let d = lab.pid(1).unwrap();
    // SAFETY: kill(2) on the lab's own daemon.
    unsafe { libc_kill(d) };
    assert!(wait_until(Duration::from_secs(60), || !alive(d as u32)));
    assert!(alive(pid));
    let dir = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "up", "--dir", &dir]).ok();
    assert!(wait_until(Duration::from_secs(30), || status(&lab, "vm1")
        ["status"]
        == "running"));
    assert_eq!(qemu_pid(&lab, "vm1"), Some(pid));
    let ticks_before = console_log(&lab, "vm1").matches(TICK_MARKER).count();
    assert!(wait_until(Duration::from_secs(30), || console_log(
        &lab, "vm1"
    )
    .matches(TICK_MARKER)
    .count()
        > ticks_before));
    lab.maguey(&["instance", "shutdown", "vm1"]).ok();
    assert!(wait_until(Duration::from_secs(60), || !alive(pid)));

    // Killed behind Maguey's back: reported as ERROR_down.
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    wait_boot(&lab, "vm1", 5);
    let pid = qemu_pid(&lab, "vm1").unwrap();
    unsafe { libc_kill(pid as i32) };
    assert!(wait_until(Duration::from_secs(60), || !alive(pid)));
    assert_eq!(status(&lab, "vm1")["status"], "ERROR_down");

    // user_shutdown: a guest that powers itself off is USER_down, and starts again.
    // The instance's own -H wins over the cluster's.
    lab.maguey(&[
        "instance",
        "modify",
        "-H",
        "user_shutdown=true,cpu_type=qemu64",
        "vm1",
    ])
    .ok();
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    wait_boot(&lab, "vm1", 6);
    let pid = qemu_pid(&lab, "vm1").unwrap();
    assert!(
        has_args(pid, &["-cpu", "qemu64"]),
        "{}",
        cmdline(pid).join(" ")
    );
    qmp_powerdown(&run_dir(&lab).join("vm1.qmp"));
    assert!(
        wait_until(Duration::from_secs(60), || status(&lab, "vm1")["status"]
            == "USER_down"),
        "{}",
        status(&lab, "vm1")
    );
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    wait_boot(&lab, "vm1", 7);
    assert_eq!(status(&lab, "vm1")["status"], "running");
    lab.maguey(&["instance", "remove", "-f", "vm1"]).ok();
    assert!(wait_until(Duration::from_secs(60), || qemu_pid(
        &lab, "vm1"
    )
    .is_none_or(|p| !alive(p))));
}

/// Presses the ACPI power button through QMP, as a user powering the guest off would.
fn qmp_powerdown(sock: &std::path::Path) {
    use std::io::Write;
    let s = UnixStream::connect(sock).unwrap();
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

unsafe fn libc_kill(pid: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(pid, 9);
}
