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
/// (default 1), or, with OSP_GATE, until that file exists (at most 120 s), so that jobs overlap
/// long enough to observe.
pub fn add_sleepy_os(lab: &TestLab) {
    for i in 1..=lab.nodes {
        let d = lab.node_dir(i).join("os/sleepy");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ganeti_api_version"), "20\n").unwrap();
        for s in ["create", "import", "export", "rename", "verify"] {
            let p = d.join(s);
            let body = if s == "create" {
                concat!(
                    "#!/bin/sh\n",
                    "if [ -n \"$OSP_GATE\" ]; then\n",
                    "  i=0; while [ ! -e \"$OSP_GATE\" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n",
                    "else sleep \"${OSP_DELAY:-1}\"; fi\n",
                    "echo created \"$INSTANCE_NAME\"\n"
                )
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

/// Field `field` of instance `name` in `instance list` ("" when it is not listed).
fn instance_field(lab: &TestLab, name: &str, field: &str) -> String {
    instances(lab, &format!("name,{field}"))
        .into_iter()
        .find(|i| i["name"] == name)
        .and_then(|i| i[field].as_str().map(String::from))
        .unwrap_or_default()
}

/// The primary node of instance `name`.
pub fn pnode(lab: &TestLab, name: &str) -> String {
    instance_field(lab, name, "pnode")
}

/// The status of instance `name` (`running`, `ADMIN_down`, ...).
pub fn status(lab: &TestLab, name: &str) -> String {
    instance_field(lab, name, "status")
}

/// The number of a lab node's name: 2 for `node2`.
pub fn node_num(name: &str) -> usize {
    name.trim_start_matches("node").parse().unwrap()
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
