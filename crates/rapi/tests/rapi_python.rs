//! Acceptance: Ganeti's own Python RAPI client (Debian's python3-ganeti-rapi, unchanged)
//! drives a 3-node lab through tests/rapi/acceptance.py. Fails (never skips) when the client
//! is not installed: `.ci/run` installs it.

mod common;

use common::{workspace_root, RapiLab};
use std::process::Command;

/// Debian's interpreter (the package installs into its dist-packages), unless overridden.
fn python() -> String {
    std::env::var("MAGUEY_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".into()
        } else {
            "python3".into()
        }
    })
}

#[test]
fn ganeti_python_client_against_a_3_node_lab() {
    let py = python();
    let probe = Command::new(&py)
        .args([
            "-c",
            "from ganeti.rapi import client; client.GanetiRapiClient; import pycurl",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
    assert!(
        probe.status.success(),
        "Ganeti's Python RAPI client is not importable with {py} (install Debian's \
         python3-ganeti-rapi; .ci/run does):\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let l = RapiLab::up(3);
    let script = workspace_root().join("tests/rapi/acceptance.py");
    let out = Command::new(&py)
        .arg(&script)
        .envs(l.env.iter())
        .output()
        .expect("running the acceptance script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK:"),
        "acceptance script failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nlogs:\n{}",
        l.lab.logs()
    );
    println!("{stdout}");

    // Groups, instance policies and networks, on the same lab.
    let script = workspace_root().join("tests/rapi/groups_networks.py");
    let out = Command::new(&py)
        .arg(&script)
        .envs(l.env.iter())
        .output()
        .expect("running the groups and networks script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK:"),
        "groups/networks script failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nlogs:\n{}",
        l.lab.logs()
    );
    println!("{stdout}");
}
