//! The Remote API against a real lab: authentication and authorisation, error shapes,
//! resources without a feature (501), tags, queries, jobs and the OpenAPI document.

mod common;

use common::RapiLab;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn ha1(user: &str, pass: &str) -> String {
    maguey_rapi::auth::ha1(user, pass)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_errors_and_resources() {
    let l = RapiLab::up(2);
    l.add_users(&format!(
        "reader readpw read\nhauser {} write\nboth {{cleartext}}bothpw read,write\n",
        ha1("hauser", "hapw")
    ));
    let serial0 = l.serial();

    // Authentication: wrong password, unknown user, missing and malformed credentials.
    for (auth, method, path) in [
        (Some(("maguey", "wrong")), Method::GET, "/2/info"),
        (Some(("maguey", "wrong")), Method::PUT, "/2/tags?tag=x"),
        (
            Some(("maguey", "wrong")),
            Method::PUT,
            "/2/nodes/node2/role",
        ),
        (Some(("nobody", "x")), Method::POST, "/2/instances"),
        (Some(("reader", "")), Method::GET, "/2/nodes"),
        (None, Method::GET, "/2/info"),
        (None, Method::DELETE, "/2/tags?tag=x"),
    ] {
        let body = (method == Method::PUT && path.ends_with("role")).then(|| json!("offline"));
        let (s, v) = l.call_as(auth, method.clone(), path, body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}: {v}");
        assert_eq!(v["code"], 401);
        assert!(v["message"].is_string() && v["explain"].is_string());
    }
    let r = l
        .http
        .get(l.url("/2/info"))
        .header("Authorization", "Basic %%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Ganeti Remote API\""
    );

    // Authorisation: the read-only user reads but cannot write.
    let (s, _) = l
        .call_as(Some(("reader", "readpw")), Method::GET, "/2/nodes", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for (method, path, body) in [
        (Method::PUT, "/2/nodes/node2/role", Some(json!("offline"))),
        (Method::PUT, "/2/tags?tag=x", None),
        (
            Method::POST,
            "/2/nodes/node2/modify",
            Some(json!({"drained": true})),
        ),
        (
            Method::GET,
            "/2/jobs/1/wait",
            Some(json!({"fields": ["status"]})),
        ),
    ] {
        let (s, v) = l
            .call_as(Some(("reader", "readpw")), method.clone(), path, body)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert_eq!(v["code"], 403);
    }
    assert_eq!(l.serial(), serial0, "refused requests changed the config");

    // {HA1} and {cleartext} users; the file is re-read without a restart.
    let (s, _) = l
        .call_as(Some(("hauser", "hapw")), Method::GET, "/2/info", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = l
        .call_as(Some(("both", "bothpw")), Method::GET, "/version", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let p = l.users_file();
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("reader readpw read", "reader newreaderpw read"),
    )
    .unwrap();
    let (s, _) = l
        .call_as(Some(("reader", "readpw")), Method::GET, "/2/info", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = l
        .call_as(
            Some(("reader", "newreaderpw")),
            Method::GET,
            "/2/info",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Root resources.
    assert_eq!(
        l.call(Method::GET, "/version", None).await,
        (StatusCode::OK, json!(2))
    );
    assert_eq!(
        l.call(Method::GET, "/", None).await,
        (StatusCode::OK, Value::Null)
    );
    assert_eq!(
        l.call(Method::GET, "/2", None).await,
        (StatusCode::OK, Value::Null)
    );
    let (_, f) = l.call(Method::GET, "/2/features", None).await;
    assert_eq!(
        f,
        json!([
            "instance-create-reqv1",
            "instance-reinstall-reqv1",
            "node-migrate-reqv1",
            "node-evac-res1"
        ])
    );
    let (_, os) = l.call(Method::GET, "/2/os?bulk=1", None).await;
    let noop = os
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == "noop"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(noop["valid"], true, "{os}");
    // The built-in image provider is listed too.
    assert!(
        os.as_array()
            .is_some_and(|a| a.iter().any(|o| o["name"] == "image")),
        "{os}"
    );

    // Error shapes: 404, 405, 501, 400, 413.
    let (s, v) = l.call(Method::GET, "/2/nowhere", None).await;
    assert_eq!((s, v["code"].clone()), (StatusCode::NOT_FOUND, json!(404)));
    let (s, _) = l.call(Method::GET, "/2/nodes/nonode", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = l.call(Method::GET, "/2/instances/noinst", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = l.call(Method::POST, "/2/info", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    for (m, p) in [
        (Method::PUT, "/2/instances/i1/export"),
        (Method::PUT, "/2/redistribute-config"),
        (Method::PUT, "/2/nodes/node2/storage/modify"),
    ] {
        let (s, v) = l.call(m.clone(), p, None).await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{m} {p}: {v}");
        assert!(v["explain"].as_str().unwrap().contains("not implemented"));
    }
    let (s, v) = l
        .call(Method::POST, "/2/instances", Some(json!({"name": "x"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["explain"].as_str().unwrap().contains("version 0"));
    let (s, v) = l
        .call(
            Method::POST,
            "/2/instances",
            Some(json!({"__version__": 1, "name": "x", "disk_template": "diskless", "bogus": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["explain"].as_str().unwrap().contains("bogus"));
    let (s, _) = l
        .call(
            Method::POST,
            "/2/nodes/node2/modify",
            Some(json!({"drained": "maybe"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = l.call(Method::GET, "/2/nodes?bulk=yes", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (u, pw) = l.user();
    let r = l
        .http
        .post(l.url("/2/instances"))
        .basic_auth(u, Some(pw))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = l
        .http
        .post(l.url("/2/instances"))
        .basic_auth(u, Some(pw))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = l.call(Method::PUT, "/2/tags?tag=x&dry-run=1", None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(l.serial(), serial0, "refused requests changed the config");

    // Tags of the cluster, a node and a group, through jobs.
    let (s, id) = l
        .call(Method::PUT, "/2/tags?tag=env:lab&tag=rapi", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l.wait_job(&id).await["status"], "success");
    assert_eq!(
        l.call(Method::GET, "/2/tags", None).await.1,
        json!(["env:lab", "rapi"])
    );
    assert!(l.call(Method::GET, "/2/info", None).await.1["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("rapi")));
    let (_, id) = l.call(Method::DELETE, "/2/tags?tag=rapi", None).await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    assert_eq!(
        l.call(Method::GET, "/2/tags", None).await.1,
        json!(["env:lab"])
    );
    let (_, id) = l.call(Method::DELETE, "/2/tags?tag=absent", None).await;
    let j = l.wait_job(&id).await;
    assert_eq!(j["status"], "error");
    assert_eq!(j["opresult"][0][0], "OpExecError");
    let (_, id) = l
        .call(Method::PUT, "/2/nodes/node2/tags?tag=rack:1", None)
        .await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    assert_eq!(
        l.call(Method::GET, "/2/nodes/node2/tags", None).await.1,
        json!(["rack:1"])
    );
    assert_eq!(
        l.call(Method::GET, "/2/nodes/node2", None).await.1["tags"],
        json!(["rack:1"])
    );
    let (_, id) = l
        .call(Method::PUT, "/2/groups/default/tags?tag=g1", None)
        .await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    let (s, _) = l.call(Method::PUT, "/2/tags?tag=bad%20tag", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Groups.
    let (_, g) = l.call(Method::GET, "/2/groups", None).await;
    assert_eq!(g, json!([{"name": "default", "uri": "/2/groups/default"}]));
    let (_, g) = l.call(Method::GET, "/2/groups/default", None).await;
    assert_eq!(g["node_cnt"], 2);
    assert_eq!(g["tags"], json!(["g1"]));
    let (_, gb) = l.call(Method::GET, "/2/groups?bulk=1", None).await;
    assert_eq!(gb[0]["name"], "default");

    // Node role and modify.
    assert_eq!(
        l.call(Method::GET, "/2/nodes/node2/role", None).await.1,
        "master-candidate"
    );
    let (s, v) = l
        .call(Method::PUT, "/2/nodes/node2/role", Some(json!("master")))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, id) = l
        .call(
            Method::POST,
            "/2/nodes/node2/modify",
            Some(json!({"drained": true})),
        )
        .await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    assert_eq!(
        l.call(Method::GET, "/2/nodes/node2/role", None).await.1,
        "drained"
    );
    let (_, id) = l
        .call(Method::PUT, "/2/nodes/node2/role", Some(json!("regular")))
        .await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    assert_eq!(
        l.call(Method::GET, "/2/nodes/node2/role", None).await.1,
        "regular"
    );

    // Query2.
    let (s, q) = l
        .call(Method::GET, "/2/query/node?fields=name,role,nosuch", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(q["fields"][2]["kind"], "unknown");
    assert_eq!(q["data"][0][0], json!([0, "node1"]));
    assert_eq!(q["data"][0][1], json!([0, "M"]));
    assert_eq!(q["data"][0][2], json!([1, null]));
    let (s, q) = l
        .call(
            Method::PUT,
            "/2/query/group",
            Some(json!({"fields": ["name", "node_cnt"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(q["data"][0], json!([[0, "default"], [0, 2]]));
    let (s, q) = l
        .call(Method::GET, "/2/query/network?fields=name", None)
        .await;
    assert_eq!((s, q["data"].clone()), (StatusCode::OK, json!([])));
    let (s, _) = l.call(Method::GET, "/2/query/job?fields=id", None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    let (s, _) = l
        .call(Method::GET, "/2/query/nonsense?fields=name", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, qf) = l.call(Method::GET, "/2/query/instance/fields", None).await;
    assert!(qf["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "pnode"));

    // Jobs: list, one, wait, cancel.
    let (_, jobs) = l.call(Method::GET, "/2/jobs", None).await;
    let first = jobs[0]["id"].as_u64().unwrap();
    assert_eq!(jobs[0]["uri"], format!("/2/jobs/{first}"));
    let (_, bulk) = l.call(Method::GET, "/2/jobs?bulk=1", None).await;
    for k in [
        "id",
        "ops",
        "status",
        "summary",
        "opstatus",
        "received_ts",
        "start_ts",
        "end_ts",
    ] {
        assert!(bulk[0].get(k).is_some(), "bulk job lacks {k}");
    }
    let (s, w) = l
        .call(
            Method::GET,
            &format!("/2/jobs/{first}/wait"),
            Some(json!({"fields": ["status", "oplog"], "previous_job_info": null, "previous_log_serial": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["job_info"][0], "success");
    assert!(w["log_entries"].is_array());
    let (s, _) = l
        .call(
            Method::GET,
            &format!("/2/jobs/{first}/wait"),
            Some(json!({"fields": "status"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, c) = l
        .call(Method::DELETE, &format!("/2/jobs/{first}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c[0], false, "a finished job cannot be canceled: {c}");
    let (s, _) = l.call(Method::GET, "/2/jobs/999999", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = l.call(Method::GET, "/2/jobs/abc", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A long poll returns when the job changes: a 2 s delay job through the CLI.
    let r = l.lab.maguey(&["debug", "delay", "2", "--submit"]).ok();
    let id: String = r
        .stdout
        .trim()
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    let t0 = std::time::Instant::now();
    let mut prev = Value::Null;
    let mut statuses = Vec::new();
    loop {
        let (s, w) = l
            .call(
                Method::GET,
                &format!("/2/jobs/{id}/wait"),
                Some(json!({"fields": ["status"], "previous_job_info": prev, "previous_log_serial": 0})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        if w.is_null() {
            continue;
        }
        prev = w["job_info"].clone();
        statuses.push(prev[0].as_str().unwrap().to_string());
        if prev[0] == "success" {
            break;
        }
        assert!(
            t0.elapsed().as_secs() < 30,
            "job never finished: {statuses:?}"
        );
    }
    assert!(
        statuses.len() >= 2,
        "the long poll saw no intermediate state: {statuses:?}"
    );

    // The OpenAPI document.
    let (s, doc) = l.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/2/instances"]["post"].is_object());

    let logs = l.lab.logs();
    assert!(!logs.contains("panicked"), "a daemon panicked:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_lifecycle_over_rapi() {
    let l = RapiLab::up(2);
    let (s, id) = l
        .call(
            Method::POST,
            "/2/instances",
            Some(json!({"__version__": 1, "mode": "create", "name": "web1",
                        "disk_template": "diskless", "disks": [], "nics": [{"mode": "bridged", "link": "br0"}],
                        "os": "noop", "pnode": "node2", "beparams": {"maxmem": 64, "minmem": 64},
                        "name_check": false, "ip_check": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{id}");
    let j = l.wait_job(&id).await;
    assert_eq!(j["status"], "success", "{j}");
    // `job info` names the RAPI user who submitted it.
    let info = l
        .lab
        .maguey(&["job", "info", id.as_str().unwrap_or_default()])
        .ok()
        .stdout;
    assert!(
        info.contains(&format!("Submitter: rapi:{}", l.user().0)),
        "{info}"
    );
    let (_, i) = l.call(Method::GET, "/2/instances/web1", None).await;
    assert_eq!(i["status"], "running");
    assert_eq!(i["nic.bridges"], json!(["br0"]));
    assert_eq!(i["disk_template"], "diskless");
    let (_, list) = l.call(Method::GET, "/2/instances", None).await;
    assert_eq!(list, json!([{"id": "web1", "uri": "/2/instances/web1"}]));
    let (s, c) = l.call(Method::GET, "/2/instances/web1/console", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["kind"], "message");
    // Disks: activating a diskless instance lists none; deactivating a running one is
    // refused (the job fails); an unknown instance is 404.
    let (s, id) = l
        .call(
            Method::PUT,
            "/2/instances/web1/activate-disks?ignore_size=1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{id}");
    let j = l.wait_job(&id).await;
    assert_eq!(
        (j["status"].clone(), j["opresult"].clone()),
        (json!("success"), json!([[]])),
        "{j}"
    );
    let (_, id) = l
        .call(Method::PUT, "/2/instances/web1/deactivate-disks", None)
        .await;
    let j = l.wait_job(&id).await;
    assert_eq!(j["status"], "error", "{j}");
    assert!(j["opresult"].to_string().contains("is marked up"), "{j}");
    let (s, _) = l
        .call(Method::PUT, "/2/instances/noinst/activate-disks", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // disk/N/grow: the body is checked before a job is queued; the opcode refuses a diskless
    // instance (grow-disk on real storage: crates/lab/tests/vm_drbd_grow.rs).
    for (path, body) in [
        ("/2/instances/web1/disk/0/grow", json!({})),
        ("/2/instances/web1/disk/0/grow", json!({"amount": 0})),
        ("/2/instances/web1/disk/0/grow", json!({"amount": "1G"})),
        ("/2/instances/web1/disk/x/grow", json!({"amount": 64})),
        (
            "/2/instances/web1/disk/0/grow",
            json!({"amount": 64, "size": 1}),
        ),
    ] {
        let (s, v) = l.call(Method::POST, path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
    }
    let (_, id) = l
        .call(
            Method::POST,
            "/2/instances/web1/disk/0/grow",
            Some(json!({"amount": 64, "absolute": false, "wait_for_sync": false})),
        )
        .await;
    let j = l.wait_job(&id).await;
    assert_eq!(j["status"], "error", "{j}");
    assert!(j["opresult"].to_string().contains("cannot grow"), "{j}");
    // Unsupported modify fields are refused, not ignored.
    let (s, _) = l
        .call(
            Method::PUT,
            "/2/instances/web1/modify",
            Some(json!({"disks": [["add", {"size": 1}]]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    let (_, id) = l
        .call(
            Method::PUT,
            "/2/instances/web1/modify",
            Some(json!({"custom_beparams": {"vcpus": 2}})),
        )
        .await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    assert_eq!(
        l.call(Method::GET, "/2/instances/web1", None).await.1["beparams"]["vcpus"],
        2
    );
    let (_, id) = l
        .call(Method::POST, "/2/instances/web1/reboot?type=hard", None)
        .await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    let (s, _) = l
        .call(Method::POST, "/2/instances/web1/reboot?type=sideways", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, id) = l.call(Method::DELETE, "/2/instances/web1", None).await;
    assert_eq!(l.wait_job(&id).await["status"], "success");
    let (s, _) = l.call(Method::GET, "/2/instances/web1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
