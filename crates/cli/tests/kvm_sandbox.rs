//! QEMU sandboxed (docs/security.md): every QEMU runs under its seccomp filter (`Seccomp: 2`
//! in /proc/PID/status); with `security_model=user` it is started as `security_domain`'s
//! user (never root, no `-run-with`), still with the whole sandbox (privilege changes
//! refused), its sockets, console log, disk and taps handed over as descriptors, and the
//! guest boots from its disk and prints on its console; its VNC server answers no
//! client without the password. A QEMU that stays root has the whole sandbox (privilege
//! changes and new processes refused too) and runs in a session of its own, not daemonized.

mod common;
use common::*;
use maguey_test_infra::kvm;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A line of /proc/PID/status (`Seccomp`, `Uid`), its value.
fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// An RFB client offering the security type `kind` (1: none, 2: VNC authentication with a
/// wrong answer); the server's SecurityResult (0 is success).
fn vnc_try(addr: &str, port: u16, kind: u8) -> u32 {
    let mut s = TcpStream::connect((addr, port)).expect("VNC connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut version = [0u8; 12];
    s.read_exact(&mut version).expect("RFB version");
    assert!(version.starts_with(b"RFB 003."), "{version:?}");
    s.write_all(b"RFB 003.008\n").expect("version");
    let mut n = [0u8; 1];
    s.read_exact(&mut n).expect("security types");
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).expect("security types");
    assert!(
        !types.contains(&1),
        "VNC offers no authentication: {types:?}"
    );
    s.write_all(&[kind]).expect("security type");
    if kind == 2 {
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge).expect("challenge");
        s.write_all(&[0u8; 16]).expect("answer");
    }
    let mut result = [0u8; 4];
    s.read_exact(&mut result).expect("security result");
    u32::from_be_bytes(result)
}

#[test]
fn qemu_runs_sandboxed_as_the_configured_user_with_a_vnc_password() {
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    // The node's address, not its loopback: the lab's node runs in its own network namespace.
    let ip = lab.node_ip(1);
    lab.maguey(&[
        "cluster",
        "modify",
        "-H",
        &format!("kvm:security_model=user,security_domain=nobody,vnc_bind_address={ip}"),
    ])
    .ok();
    kvm::add_tiny(&lab, "file", "node1", "vm1");
    kvm::wait_boot(&lab, 1, "vm1", 1, Duration::from_secs(120));
    let pid = kvm::qemu_pid(&lab, 1, "vm1")
        .filter(|p| *p > 0)
        .expect("QEMU's pid");
    assert_eq!(proc_status(pid, "Seccomp"), "2");
    let uid = proc_status(pid, "Uid");
    assert!(
        uid.split_whitespace().all(|u| u == "65534"),
        "QEMU runs as uid {uid}, not nobody's"
    );
    let gid = proc_status(pid, "Gid");
    assert!(
        gid.split_whitespace().all(|g| g != "0"),
        "QEMU keeps group root: {gid}"
    );
    assert!(
        !proc_status(pid, "Groups")
            .split_whitespace()
            .any(|g| g == "0"),
        "QEMU keeps the supplementary group root"
    );
    let argv = kvm::cmdline(pid);
    assert!(
        argv.windows(2).any(|w| w
            == [
                "-sandbox",
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
            ]),
        "QEMU's argv has no full sandbox: {argv:?}"
    );
    assert!(!argv.iter().any(|a| a == "-run-with"), "{argv:?}");
    // The pidfile (written by magueyd) names the process that runs.
    let pidfile = std::fs::read_to_string(kvm::run_file(&lab, 1, "vm1", "pid")).unwrap_or_default();
    assert_eq!(pidfile.trim(), pid.to_string());
    // The serial console reaches the log handed over as a descriptor (wait_boot read it).
    assert!(!kvm::console(&lab, 1, "vm1").is_empty());
    let port = instances(&lab, "name,network_port")
        .into_iter()
        .find(|i| i["name"] == "vm1")
        .and_then(|i| i["network_port"].as_u64())
        .expect("a VNC port") as u16;
    assert_ne!(
        vnc_try(&ip, port, 2),
        0,
        "a wrong VNC password was accepted"
    );
    assert_ne!(
        vnc_try(&ip, port, 1),
        0,
        "VNC without a password was accepted"
    );
    lab.maguey(&["instance", "remove", "-f", "vm1"]).ok();
    assert!(wait_until(Duration::from_secs(60), || std::fs::metadata(
        format!("/proc/{pid}")
    )
    .is_err()));
}

/// Fields of /proc/PID/stat after the command name (0: state, 1: ppid, 2: pgrp, 3: session).
fn proc_stat(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn qemu_as_root_has_the_whole_sandbox_in_a_session_of_its_own() {
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    // Root, whatever `cluster init` picked on this host.
    lab.maguey(&["cluster", "modify", "-H", "kvm:security_model=none"])
        .ok();
    kvm::add_tiny(&lab, "file", "node1", "vm1");
    kvm::wait_boot(&lab, 1, "vm1", 1, Duration::from_secs(120));
    let pid = kvm::qemu_pid(&lab, 1, "vm1")
        .filter(|p| *p > 0)
        .expect("QEMU's pid");
    assert_eq!(proc_status(pid, "Seccomp"), "2");
    let argv = kvm::cmdline(pid);
    let sandbox = [
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ];
    assert!(
        argv.windows(2).any(|w| w == sandbox),
        "QEMU's argv has no full sandbox: {argv:?}"
    );
    assert!(!argv.iter().any(|a| a == "-daemonize"), "{argv:?}");
    // The pidfile names the process that runs (no daemonizing fork in between).
    let pidfile = std::fs::read_to_string(kvm::run_file(&lab, 1, "vm1", "pid")).unwrap_or_default();
    assert_eq!(pidfile.trim(), pid.to_string());
    // Its own session and process group, which it leads: no signal to magueyd's group or
    // session reaches it (that it outlives a killed magueyd: kvm_lifecycle).
    let stat = proc_stat(pid);
    assert_eq!(
        (stat.get(2), stat.get(3)),
        (Some(&pid.to_string()), Some(&pid.to_string())),
        "QEMU's /proc/PID/stat: {stat:?}"
    );
    assert_eq!(proc_status(pid, "Uid").split_whitespace().next(), Some("0"));
    lab.maguey(&["instance", "remove", "-f", "vm1"]).ok();
    assert!(wait_until(Duration::from_secs(60), || std::fs::metadata(
        format!("/proc/{pid}")
    )
    .is_err()));
}
