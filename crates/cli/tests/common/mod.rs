//! Shared helpers of the CLI integration tests.
#![allow(dead_code, unused_imports)]

pub use maguey_test_infra::{wait_until, Run, TestLab};
use std::path::Path;

pub fn maguey_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_maguey"))
}

pub fn lab(nodes: usize) -> TestLab {
    TestLab::up(maguey_bin(), nodes)
}

/// Writes an OS definition `sleepy` on every node: its create script sleeps OSP_DELAY seconds
/// (default 1), so that jobs overlap long enough to observe.
pub fn add_sleepy_os(lab: &TestLab) {
    for i in 1..=lab.nodes {
        let d = lab.node_dir(i).join("os/sleepy");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ganeti_api_version"), "20\n").unwrap();
        for s in ["create", "import", "export", "rename", "verify"] {
            let p = d.join(s);
            let body = if s == "create" {
                "#!/bin/sh\nsleep \"${OSP_DELAY:-1}\"\necho created \"$INSTANCE_NAME\"\n"
            } else {
                "#!/bin/sh\nexit 0\n"
            };
            std::fs::write(&p, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

/// `instance list` as JSON objects.
pub fn instances(lab: &TestLab, fields: &str) -> Vec<serde_json::Value> {
    let r = lab
        .maguey(&["instance", "list", "-o", fields, "--output", "json"])
        .ok();
    r.json().as_array().cloned().unwrap_or_default()
}

/// Every job, as `job list --output json` gives it (id, status, start_ts, end_ts).
pub fn jobs(lab: &TestLab) -> Vec<serde_json::Value> {
    let r = lab
        .maguey(&[
            "job",
            "list",
            "-o",
            "id,status,start_ts,end_ts",
            "--output",
            "json",
        ])
        .ok();
    r.json().as_array().cloned().unwrap_or_default()
}

pub fn find_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                find_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}
