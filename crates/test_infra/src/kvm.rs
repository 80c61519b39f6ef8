//! Looking at the kvm instances of a [`TestLab`]: their run files, console, QEMU process.

pub use crate::process::{alive, cmdline};
use crate::{wait_until, TestLab};
use maguey_lab::guest::READY_MARKER;
use std::path::PathBuf;
use std::time::Duration;

/// The user `cluster init` runs QEMU as (`security_model=user`) when it exists on the host,
/// as on packaged installs; created here when missing, so that the host kvm tests start
/// QEMU as that unprivileged user, with its files handed over as descriptors.
pub const QEMU_USER: &str = "maguey-qemu";

/// Creates [`QEMU_USER`] when the host lacks it (call before the lab's `cluster init`).
pub fn ensure_qemu_user() {
    let exists = || {
        std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(':').next() == Some(QEMU_USER))
    };
    if exists() {
        return;
    }
    let st = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            QEMU_USER,
        ])
        .status();
    // Another test may have created it meanwhile.
    assert!(exists(), "cannot create the user {QEMU_USER}: {st:?}");
}

/// A run file (`console.log`, `runtime.json`, ...) of an instance on lab node `node`.
pub fn run_file(lab: &TestLab, node: usize, name: &str, ext: &str) -> PathBuf {
    lab.node_dir(node).join(format!("run/kvm/{name}.{ext}"))
}

/// What the instance printed on its serial console on `node` (empty if nothing yet).
pub fn console(lab: &TestLab, node: usize, name: &str) -> String {
    std::fs::read_to_string(run_file(lab, node, name, "console.log")).unwrap_or_default()
}

/// The pid of the instance's QEMU on `node`, from its runtime file.
pub fn qemu_pid(lab: &TestLab, node: usize, name: &str) -> Option<u32> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_file(lab, node, name, "runtime.json")).ok()?)
            .ok()?;
    v["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// Adds a kvm instance of the tiny guest (`lab-tiny`, one 64 MiB disk) on `node`.
pub fn add_tiny(lab: &TestLab, template: &str, node: &str, name: &str) {
    let disk = "0:size=64M";
    let args = [
        "instance", "add", "-t", template, "--disk", disk, "-o", "lab-tiny",
    ];
    let mut argv = args.to_vec();
    argv.extend(["-H", "kvm", "-n", node, name]);
    lab.maguey(&argv).ok();
}

/// Waits (at most `timeout`) until the tiny guest on `node` shows the ready marker of boot
/// number `boot`; panics with its console and the lab's logs otherwise.
pub fn wait_boot(lab: &TestLab, node: usize, name: &str, boot: u32, timeout: Duration) {
    let want = format!("{READY_MARKER} boot={boot} disk=yes");
    assert!(
        wait_until(timeout, || console(lab, node, name).contains(&want)),
        "no '{want}' on node{node}'s console of {name}:\n{}\n{}",
        console(lab, node, name),
        lab.logs()
    );
}

/// Presses the ACPI power button through the QMP socket, as a user powering the guest off
/// would.
pub fn qmp_powerdown(sock: &std::path::Path) {
    use std::io::{BufRead, BufReader, Write};
    let s = std::os::unix::net::UnixStream::connect(sock).expect("QMP socket");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut w = s.try_clone().expect("a second handle");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("the QMP greeting");
    for cmd in ["qmp_capabilities", "system_powerdown"] {
        writeln!(w, "{{\"execute\": \"{cmd}\"}}").expect("QMP write");
        loop {
            line.clear();
            r.read_line(&mut line).expect("a QMP reply");
            if line.contains("\"return\"") {
                break;
            }
            assert!(!line.contains("\"error\""), "{line}");
        }
    }
}
