//! Hooks on real daemons: a pre hook that exits 1 refuses `instance add` with nothing created;
//! a post hook on the primary node sees the instance's variables; both outputs are in the job
//! log (`job info`). Each lab node's hooks directory is `STATE_DIR/hooks`.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn hook(node_dir: &Path, dir: &str, name: &str, body: &str) -> std::path::PathBuf {
    let d = node_dir.join("hooks").join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn last_job_info(l: &TestLab) -> String {
    let id = jobs(l)
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .max()
        .expect("a job");
    l.maguey(&["job", "info", &id.to_string()]).ok().stdout
}

#[test]
fn hooks_refuse_and_report_around_instance_add() {
    let l = lab(2);
    let add = [
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=16M",
        "-o",
        "noop",
        "-n",
        "node2",
        "web1",
    ];
    let deny = hook(
        &l.node_dir(1),
        "instance-add-pre.d",
        "10-ipam",
        "echo \"no address left for $GANETI_INSTANCE_NAME\"\nexit 1\n",
    );
    let r = l.maguey(&add);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("pre hooks of instance-add failed"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(instances(&l, "name").is_empty());
    let mut files = Vec::new();
    find_files(&l.node_dir(2).join("file-storage"), &mut files);
    assert!(files.is_empty(), "{files:?}");
    let info = last_job_info(&l);
    assert!(info.contains("no address left for web1"), "{info}");

    std::fs::remove_file(deny).unwrap();
    let out = l.node_dir(2).join("post-hook.env");
    hook(
        &l.node_dir(2),
        "instance-add-post.d",
        "10-dns",
        &format!(
            "env > '{}'\necho \"dns: $GANETI_INSTANCE_NAME -> $GANETI_INSTANCE_NIC0_MAC\"\n",
            out.display()
        ),
    );
    l.maguey(&add).ok();
    let env = std::fs::read_to_string(&out).expect("the post hook ran on node2");
    for want in [
        "GANETI_INSTANCE_NAME=web1",
        "GANETI_INSTANCE_PRIMARY=node2",
        "GANETI_OP_CODE=OP_INSTANCE_CREATE",
        "GANETI_OBJECT_TYPE=INSTANCE",
        "GANETI_HOOKS_PHASE=post",
        "MAGUEY_INSTANCE_NAME=web1",
    ] {
        assert!(env.lines().any(|x| x == want), "{want} missing:\n{env}");
    }
    let info = last_job_info(&l);
    assert!(
        info.contains("hook instance-add-post.d/10-dns on node node2 succeeded"),
        "{info}"
    );
    assert!(info.contains("dns: web1 -> aa:00:00:"), "{info}");
}
