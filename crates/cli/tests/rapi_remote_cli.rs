//! `maguey --cluster URL`: the CLI working through the master's Remote API with a RAPI user
//! (no node state directory, no client certificate).

mod common;

use common::lab;
use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn cli_works_remotely_through_the_rapi_port() {
    let l = lab(2);
    let d = l.dir.path().display().to_string();
    let env: BTreeMap<String, String> = l
        .maguey(&["lab", "env", "--dir", &d])
        .ok()
        .stdout
        .lines()
        .filter_map(|x| x.strip_prefix("export "))
        .filter_map(|x| x.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let url = env["MAGUEY_RAPI_URL"].clone();
    let remote = |args: &[&str], password: &str| {
        let o = Command::new(common::maguey_bin())
            .arg("--cluster")
            .arg(&url)
            .args(args)
            .env("MAGUEY_DIR", "/nonexistent")
            .env("MAGUEY_RAPI_USER", &env["MAGUEY_RAPI_USER"])
            .env("MAGUEY_RAPI_PASSWORD", password)
            .env("MAGUEY_RAPI_CA", &env["MAGUEY_RAPI_CA"])
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let pw = env["MAGUEY_RAPI_PASSWORD"].clone();
    let (code, out, err) = remote(&["node", "list", "-o", "name,role"], &pw);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("node1") && out.contains("node2"), "{out}");
    let (code, out, err) = remote(
        &[
            "instance", "add", "-t", "diskless", "-o", "noop", "-n", "node2", "remote1",
        ],
        &pw,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = remote(&["instance", "list", "-o", "name,pnode,status"], &pw);
    assert_eq!(code, 0);
    assert!(out.contains("remote1") && out.contains("running"), "{out}");
    // The job records the Remote API user who submitted it.
    let (code, out, err) = remote(
        &["job", "list", "-o", "id,summary", "--output", "json"],
        &pw,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["summary"].to_string().contains("remote1"))
        .map(|j| j["id"].to_string())
        .unwrap_or_else(|| panic!("no job for remote1: {out}"));
    let (code, out, err) = remote(&["job", "info", "--output", "json", &id], &pw);
    assert_eq!(code, 0, "{out}\n{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    let user = &env["MAGUEY_RAPI_USER"];
    assert_eq!(info[0]["submitter"], format!("remote-cli:{user}"), "{out}");
    let (code, out, err) = remote(&["instance", "remove", "-f", "remote1"], &pw);
    assert_eq!(code, 0, "{out}\n{err}");
    let serial = l.serial();
    let (code, _, err) = remote(&["debug", "delay", "0"], "wrong");
    assert_ne!(code, 0, "a wrong password must fail");
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = remote(&["cluster", "destroy", "--yes-do-it"], &pw);
    assert_ne!(code, 0, "cluster destroy must be refused remotely: {err}");
    assert_eq!(l.serial(), serial);
}
