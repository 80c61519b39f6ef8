//! Real VMs through Maguey (QEMU, TCG here): a lab with the kvm hypervisor boots the tiny
//! guest from `lab-tiny`; its marker shows on the serial console; stop/start; soft and hard
//! reboot; magueyd SIGKILLed and restarted while the VM runs re-adopts it.

mod common;
use common::*;
use maguey_lab::guest::TICK_MARKER;
use maguey_test_infra::kvm;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(120);

/// Whether `want` appears as consecutive arguments of the process.
fn has_args(pid: u32, want: &[&str]) -> bool {
    kvm::cmdline(pid).windows(want.len()).any(|w| w == want)
}

fn status(lab: &TestLab, name: &str) -> serde_json::Value {
    instances(lab, "name,status,oper_ram,oper_vcpus")
        .into_iter()
        .find(|i| i["name"] == name)
        .unwrap_or_default()
}

#[test]
fn kvm_boot_console_stop_start_reboot_and_readopt() {
    // QEMU runs as the unprivileged user `cluster init` picks (docs/security.md).
    maguey_test_infra::kvm::ensure_qemu_user();
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
    kvm::add_tiny(&lab, "file", "node1", "vm1");
    kvm::wait_boot(&lab, 1, "vm1", 1, BOOT);
    eprintln!(
        "figure: create+start to guest marker through Maguey: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let s = status(&lab, "vm1");
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(s["oper_ram"], 128, "{s}");
    let pid = kvm::qemu_pid(&lab, 1, "vm1").expect("runtime file");
    assert!(kvm::alive(pid));
    assert!(
        has_args(pid, &["-cpu", "max"]),
        "{}",
        kvm::cmdline(pid).join(" ")
    );

    // The serial console socket streams the guest's output live.
    let sock = UnixStream::connect(kvm::run_file(&lab, 1, "vm1", "serial")).unwrap();
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
    assert!(kvm::console(&lab, 1, "vm1").contains("MAGUEY-GUEST-POWEROFF"));
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(pid)));
    assert_eq!(status(&lab, "vm1")["status"], "ADMIN_down");

    // Start again: the disk kept its boot counter.
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    kvm::wait_boot(&lab, 1, "vm1", 2, BOOT);
    assert_eq!(status(&lab, "vm1")["status"], "running");

    // Hard reboot: the machine resets inside the same QEMU.
    let pid = kvm::qemu_pid(&lab, 1, "vm1").unwrap();
    lab.maguey(&["instance", "reboot", "--type", "hard", "vm1"])
        .ok();
    kvm::wait_boot(&lab, 1, "vm1", 3, BOOT);
    assert_eq!(kvm::qemu_pid(&lab, 1, "vm1"), Some(pid));
    // Soft reboot (Ganeti's way): clean power-off, then a fresh QEMU.
    lab.maguey(&["instance", "reboot", "--type", "soft", "vm1"])
        .ok();
    kvm::wait_boot(&lab, 1, "vm1", 4, BOOT);
    let pid = kvm::qemu_pid(&lab, 1, "vm1").unwrap();

    // magueyd SIGKILLed while the VM runs: QEMU keeps running; the restarted daemon
    // re-adopts it and controls it.
    let d = lab.pid(1).unwrap();
    // SAFETY: kill(2) on the lab's own daemon.
    unsafe { libc_kill(d) };
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(
        d as u32
    )));
    assert!(kvm::alive(pid));
    let dir = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "up", "--dir", &dir]).ok();
    assert!(wait_until(Duration::from_secs(30), || status(&lab, "vm1")
        ["status"]
        == "running"));
    assert_eq!(kvm::qemu_pid(&lab, 1, "vm1"), Some(pid));
    let ticks_before = kvm::console(&lab, 1, "vm1").matches(TICK_MARKER).count();
    assert!(wait_until(Duration::from_secs(30), || kvm::console(
        &lab, 1, "vm1"
    )
    .matches(TICK_MARKER)
    .count()
        > ticks_before));
    lab.maguey(&["instance", "shutdown", "vm1"]).ok();
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(pid)));

    // Killed behind Maguey's back: reported as ERROR_down.
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    kvm::wait_boot(&lab, 1, "vm1", 5, BOOT);
    let pid = kvm::qemu_pid(&lab, 1, "vm1").unwrap();
    unsafe { libc_kill(pid as i32) };
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(pid)));
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
    kvm::wait_boot(&lab, 1, "vm1", 6, BOOT);
    let pid = kvm::qemu_pid(&lab, 1, "vm1").unwrap();
    assert!(
        has_args(pid, &["-cpu", "qemu64"]),
        "{}",
        kvm::cmdline(pid).join(" ")
    );
    kvm::qmp_powerdown(&kvm::run_file(&lab, 1, "vm1", "qmp"));
    assert!(
        wait_until(Duration::from_secs(60), || status(&lab, "vm1")["status"]
            == "USER_down"),
        "{}",
        status(&lab, "vm1")
    );
    lab.maguey(&["instance", "startup", "vm1"]).ok();
    kvm::wait_boot(&lab, 1, "vm1", 7, BOOT);
    assert_eq!(status(&lab, "vm1")["status"], "running");
    lab.maguey(&["instance", "remove", "-f", "vm1"]).ok();
    assert!(wait_until(Duration::from_secs(60), || kvm::qemu_pid(
        &lab, 1, "vm1"
    )
    .is_none_or(|p| !kvm::alive(p))));
}

unsafe fn libc_kill(pid: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(pid, 9);
}
