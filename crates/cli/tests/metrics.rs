//! `GET /metrics`: the master's on the Remote API's port and each node's, parsed by Debian's
//! `python3-prometheus-client` (`text_string_to_metric_families`); per instance status and
//! memory equal `instance list`, per node totals equal `node list`. Also `job info` shows
//! who submitted a job and why.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;

const PARSE: &str = r#"
import base64, json, os, ssl, sys, urllib.error, urllib.request
from prometheus_client.parser import text_string_to_metric_families
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def fetch(url, auth):
    req = urllib.request.Request(url)
    if auth:
        tok = base64.b64encode(auth.encode()).decode()
        req.add_header("Authorization", "Basic " + tok)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
out = {}
for name, url, auth in json.loads(sys.argv[1]):
    code, body = fetch(url, auth)
    fams = {}
    if code == 200:
        for f in text_string_to_metric_families(body):
            fams[f.name] = {"type": f.type,
                            "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    out[name] = {"code": code, "families": fams}
print(json.dumps(out))
"#;

fn scrape(targets: Value) -> Value {
    // Debian's python3 (its dist-packages hold the package), not one earlier on PATH.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let o = Command::new(python)
        .args(["-c", PARSE, &targets.to_string()])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "the parser failed (is python3-prometheus-client installed?):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON from the parser")
}

/// `sample labels[key]` → value, for one family.
fn by_label(fams: &Value, family: &str, key: &str) -> BTreeMap<String, f64> {
    fams[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family}"))
        .iter()
        .map(|s| {
            (
                s[1][key].as_str().unwrap_or_default().to_string(),
                s[2].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn metrics_match_instance_and_node_list() {
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
    for (name, mem, node) in [("web1", "256", "node1"), ("db1", "512", "node2")] {
        l.maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=32M",
            "-o",
            "noop",
            "-B",
            &format!("maxmem={mem},minmem={mem}"),
            "-n",
            node,
            name,
        ])
        .ok();
    }
    l.maguey(&["instance", "shutdown", "db1"]).ok();
    let user = format!(
        "{}:{}",
        env["MAGUEY_RAPI_USER"], env["MAGUEY_RAPI_PASSWORD"]
    );
    let master = format!("{}/metrics", env["MAGUEY_RAPI_URL"].trim_end_matches('/'));
    let node2 = maguey_bootstrap::files::DaemonFile::load(&l.node_dir(2))
        .expect("node2's daemon file")
        .listen;
    let out = scrape(json!([
        ["master", master, user],
        ["anonymous", master, null],
        [
            "wrong",
            master,
            format!("{}:wrong", env["MAGUEY_RAPI_USER"])
        ],
        ["node", format!("https://{node2}/metrics"), null],
    ]));
    assert_eq!(out["master"]["code"], 200, "{out}");
    assert_eq!(out["anonymous"]["code"], 401, "{out}");
    assert_eq!(out["wrong"]["code"], 401, "{out}");
    let fams = &out["master"]["families"];

    // Per instance: status and memory as `instance list` shows them.
    let list = instances(&l, "name,status,be/maxmem,pnode");
    assert_eq!(list.len(), 2);
    let status: BTreeMap<String, String> = fams["maguey_instance_status"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[1]["instance"].as_str().unwrap().to_string(),
                s[1]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mem = by_label(fams, "maguey_instance_memory_mib", "instance");
    for i in &list {
        let name = i["name"].as_str().unwrap();
        assert_eq!(status[name], i["status"].as_str().unwrap(), "{name}");
        assert_eq!(mem[name], i["be/maxmem"].as_f64().unwrap(), "{name}");
    }
    assert_eq!(status["web1"], "running");
    assert_eq!(status["db1"], "ADMIN_down");
    assert_eq!(mem["db1"], 512.0);

    // Per node: totals as `node list` shows them.
    let nodes = l
        .maguey(&[
            "node",
            "list",
            "-o",
            "name,mtotal,mfree,dtotal,dfree,ctotal,pinst_cnt",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for (field, family) in [
        ("mtotal", "maguey_node_memory_total_mib"),
        ("dtotal", "maguey_node_disk_total_mib"),
        ("ctotal", "maguey_node_cpus"),
        ("pinst_cnt", "maguey_node_primary_instances"),
    ] {
        let m = by_label(fams, family, "node");
        for n in nodes {
            let name = n["name"].as_str().unwrap();
            assert_eq!(m[name], n[field].as_f64().unwrap(), "{family} of {name}");
        }
    }
    // Allocation: only web1 should run, on node1.
    let alloc = by_label(fams, "maguey_node_allocated_memory_mib", "node");
    assert_eq!((alloc["node1"], alloc["node2"]), (256.0, 0.0));
    // Jobs: every job so far succeeded; durations counted.
    let jobs = by_label(fams, "maguey_jobs", "status");
    assert!(jobs["success"] >= 4.0, "{jobs:?}");
    assert_eq!(jobs["error"], 0.0);
    assert_eq!(fams["maguey_job_duration_seconds"]["type"], "histogram");
    assert_eq!(
        fams["maguey_cluster_info"]["samples"][0][1]["master"],
        "node1"
    );

    // The node's own endpoint parses too.
    assert_eq!(out["node"]["code"], 200, "{out}");
    let nf = &out["node"]["families"];
    assert_eq!(
        nf["maguey_node_daemon_info"]["samples"][0][1]["node"],
        "node2"
    );
    let running = by_label(nf, "maguey_node_instances_running", "hypervisor");
    assert_eq!(running["fake"], 0.0, "db1 is stopped");

    // `job info` shows who submitted a job (this CLI) and the watcher's reason on its own.
    let last = jobs_list_last(&l);
    let info = l.maguey(&["job", "info", &last.to_string()]).ok().stdout;
    assert!(info.contains("Submitter: cli"), "{info}");
    assert!(info.contains("Reason: -"), "{info}");
}

fn jobs_list_last(l: &TestLab) -> u64 {
    jobs(l)
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .max()
        .expect("a job")
}
