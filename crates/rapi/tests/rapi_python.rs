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
    rapi_user_add_and_remove(&py, &l);
}

/// Ganeti's client as user `user`: reads the cluster info, then adds a cluster tag (a write)
/// and waits for it; prints OK, or the HTTP code of a refusal.
const AS_USER: &str = r#"
import os, sys
from urllib.parse import urlparse
from ganeti.rapi import client as rapi
url = urlparse(os.environ["MAGUEY_RAPI_URL"])
cl = rapi.GanetiRapiClient(url.hostname, port=url.port, username=sys.argv[1],
    password=sys.argv[2],
    curl_config_fn=rapi.GenericCurlConfig(cafile=os.environ["MAGUEY_RAPI_CA"]))
try:
    cl.GetInfo()
    job = cl.AddClusterTags([sys.argv[3]])
    if not cl.WaitForJobCompletion(job, period=0.2, retries=300):
        sys.exit("tag job failed")
    print("OK")
except rapi.GanetiApiError as e:
    print("HTTP %s" % e.code)
"#;

/// `maguey rapi-user add` makes a user Ganeti's client can use; `remove` makes it get 401.
fn rapi_user_add_and_remove(py: &str, l: &RapiLab) {
    let as_user = |user: &str, pw: &str, tag: &str| -> String {
        let out = Command::new(py)
            .args(["-c", AS_USER, user, pw, tag])
            .envs(l.env.iter())
            .output()
            .expect("running python");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let pw = l.lab.dir.path().join("alice.pw");
    std::fs::write(&pw, "s3cret pw\n").unwrap();
    let pw_s = pw.display().to_string();
    let serial = l.serial();
    l.lab
        .maguey(&[
            "rapi-user",
            "add",
            "--write",
            "--password-file",
            &pw_s,
            "alice",
        ])
        .ok();
    assert_eq!(l.serial(), serial + 1);
    let users = l.users_file();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("alice {HA1}"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    // The lab's own user, written by hand, is still there.
    assert!(text.contains(&format!("{} ", l.user().0)), "{text}");
    let list = l
        .lab
        .maguey(&["rapi-user", "list", "--output", "json"])
        .ok()
        .json();
    assert_eq!(list, serde_json::json!([{"name": "alice", "write": true}]));
    assert!(as_user("alice", "s3cret pw", "from-alice").contains("OK"));
    assert!(as_user("alice", "wrong", "x").contains("HTTP 401"));
    // Refusals change nothing.
    let serial = l.serial();
    std::fs::write(&pw, "\n").unwrap();
    let r = l
        .lab
        .maguey(&["rapi-user", "add", "--password-file", &pw_s, "bob"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("empty"), "{}", r.stderr);
    std::fs::write(&pw, "pw\n").unwrap();
    let r = l
        .lab
        .maguey(&["rapi-user", "add", "--password-file", &pw_s, "bad name"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid RAPI user name"), "{}", r.stderr);
    let r = l.lab.maguey(&["rapi-user", "remove", "nobody"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(l.serial(), serial);
    // Removed: 401 from then on.
    l.lab.maguey(&["rapi-user", "remove", "alice"]).ok();
    assert!(as_user("alice", "s3cret pw", "x").contains("HTTP 401"));
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(!text.contains("alice"), "{text}");
    assert!(text.contains(&format!("{} ", l.user().0)), "{text}");
}
