//! Hooks: pre and post scripts of `HOOKS_DIR/<hpath>-<phase>.d/` on the master and the nodes
//! concerned (each in-process node's hooks directory is `STATE_DIR/hooks`).

use crate::refused;
use maguey_test_infra::inprocess::{InProcessCluster, TEST_OS};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn hook(node_dir: &Path, dir: &str, name: &str, body: &str) {
    let d = node_dir.join("hooks").join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn create_op(name: &str) -> serde_json::Value {
    json!({
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "disk_template": "file",
        "disks": [{"size": 64}], "pnode": "node2", "os_type": TEST_OS,
        "beparams": {"maxmem": 128, "minmem": 128, "vcpus": 1},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_hook_refuses_instance_add_with_nothing_created() {
    let c = InProcessCluster::new(2).await;
    hook(
        &c.node("node1").dir,
        "instance-add-pre.d",
        "10-deny",
        "echo \"no DNS name for $GANETI_INSTANCE_NAME\"\nexit 1\n",
    );
    // Ganeti skips files whose names have other characters (e.g. editor backups).
    hook(
        &c.node("node1").dir,
        "instance-add-pre.d",
        "20-x.bak",
        "exit 1\n",
    );
    let msg = refused(&c, create_op("inst1"), "pre hooks of instance-add failed").await;
    assert!(
        msg.contains("node1/10-deny: no DNS name for inst1"),
        "{msg}"
    );
    assert!(c.instance("inst1").is_none());
    assert!(c.node("node2").files().is_empty());
    assert!(c.node("node2").os_calls().is_empty());
    // Its output is in the job log.
    let job = c.jobs().into_iter().last().unwrap();
    let log: Vec<String> = job.all_log().map(|l| l.message.clone()).collect();
    assert!(
        log.iter().any(|l| l.contains(
            "hook instance-add-pre.d/10-deny on node node1 FAILED:\nno DNS name for inst1"
        )),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("hook instance-add-pre.d/20-x.bak on node node1 skipped")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_hooks_see_the_instance_and_their_failure_is_not_fatal() {
    let c = InProcessCluster::new(2).await;
    let out = c.node("node2").dir.join("post-env.txt");
    // The primary node runs the instance's hooks too.
    hook(
        &c.node("node2").dir,
        "instance-add-post.d",
        "10-record",
        &format!(
            "env | sort > '{}'\necho \"registered $GANETI_INSTANCE_NAME on $GANETI_INSTANCE_PRIMARY\"\n",
            out.display()
        ),
    );
    hook(
        &c.node("node1").dir,
        "instance-add-post.d",
        "20-broken",
        "echo billing down >&2\nexit 3\n",
    );
    hook(
        &c.node("node1").dir,
        "instance-add-pre.d",
        "10-ok",
        "echo \"pre $GANETI_HOOKS_PHASE $MAGUEY_OP_CODE\"\n",
    );
    let run = c.run(create_op("inst1")).await;
    let log = run.log.clone();
    run.ok();
    assert!(c.instance("inst1").is_some());
    let env = std::fs::read_to_string(&out).expect("the post hook ran on node2");
    for want in [
        "GANETI_HOOKS_VERSION=2",
        "GANETI_HOOKS_PHASE=post",
        "GANETI_HOOKS_PATH=instance-add",
        "GANETI_OP_CODE=OP_INSTANCE_CREATE",
        "GANETI_OBJECT_TYPE=INSTANCE",
        "GANETI_INSTANCE_NAME=inst1",
        "GANETI_INSTANCE_PRIMARY=node2",
        "GANETI_INSTANCE_DISK_TEMPLATE=file",
        "GANETI_INSTANCE_DISK_COUNT=1",
        "GANETI_INSTANCE_DISK0_SIZE=64",
        "GANETI_INSTANCE_MEMORY=128",
        "GANETI_INSTANCE_OS_TYPE=recorder",
        "GANETI_MASTER=node1",
        "MAGUEY_INSTANCE_NAME=inst1",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing:\n{env}");
    }
    let all = log.join("\n");
    assert!(
        all.contains(
            "hook instance-add-pre.d/10-ok on node node1 succeeded:\npre pre OP_INSTANCE_CREATE"
        ),
        "{all}"
    );
    assert!(
        all.contains("hook instance-add-post.d/10-record on node node2 succeeded:\nregistered inst1 on node2"),
        "{all}"
    );
    assert!(
        all.contains("hook instance-add-post.d/20-broken on node node1 FAILED:\nbilling down\n[exit status 3]"),
        "{all}"
    );
    assert!(
        all.contains("warning: post hooks of instance-add failed"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_of_an_existing_instance_come_from_the_config() {
    let c = InProcessCluster::new(2).await;
    c.create_instance("inst1", "file", "node2").await;
    let out = c.node("node1").dir.join("stop-env.txt");
    hook(
        &c.node("node1").dir,
        "instance-stop-pre.d",
        "10-record",
        &format!("env | sort > '{}'\n", out.display()),
    );
    c.run(json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1"}))
        .await
        .ok();
    let env = std::fs::read_to_string(&out).expect("the pre hook ran on the master");
    for want in [
        "GANETI_OP_CODE=OP_INSTANCE_SHUTDOWN",
        "GANETI_INSTANCE_NAME=inst1",
        "GANETI_INSTANCE_PRIMARY=node2",
        "GANETI_INSTANCE_STATUS=up",
        "GANETI_HOOKS_PHASE=pre",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing:\n{env}");
    }
}
