//! Least privilege inside the cluster (docs/security.md): the master API answers only the
//! admin certificate, a node answers only the current master, a removed node's certificate
//! and one signed for a node whose OP_NODE_ADD failed command nothing, and RAPI users cannot
//! obtain join tokens.

mod common;
use common::*;
use maguey_client::MasterClient;
use maguey_model::{OpCode, OpTestDelay};
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::client::RpcClient;
use maguey_rpc::{NodeRequest, RpcError, VersionInfo};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn master_base(lab: &TestLab) -> String {
    format!(
        "https://{}:{}",
        lab.node_ip(1),
        maguey_model::DEFAULT_RPC_PORT
    )
}

fn node_addr(lab: &TestLab, i: usize) -> String {
    format!("{}:{}", lab.node_ip(i), maguey_model::DEFAULT_RPC_PORT)
}

fn delay() -> OpCode {
    OpCode::TestDelay(
        serde_json::from_value::<OpTestDelay>(json!({"duration": 0.0})).expect("delay"),
    )
}

/// A file disk whose write would land in `dir`.
fn hostile_write(dir: &str) -> NodeRequest {
    let disk = serde_json::from_value(json!({
        "uuid": "d1", "dev_type": "file", "size": 1, "mode": "rw",
        "logical_id": {"type": "file", "driver": "loop", "path": format!("{dir}/evil")},
        "nodes": [], "iv_name": "disk/0", "serial_no": 1, "ctime": 0.0, "mtime": 0.0
    }))
    .expect("disk");
    NodeRequest::BlockdevWrite {
        disk,
        file_storage_dir: dir.to_string(),
        offset: 0,
        chunk: maguey_rpc::BlockdevChunk {
            length: 4,
            data: Some("cHduZWQ=".into()),
        },
    }
}

/// Everything a node certificate other than the master's must not do: submit jobs, read the
/// config (DRBD secrets), rewrite another node's ssconf, stop its instances, write its files.
async fn assert_commands_nothing(lab: &TestLab, id: &NodeIdentity, other_node: usize, who: &str) {
    let rpc = RpcClient::new(id, T).unwrap();
    let base = master_base(lab);
    let m = MasterClient::with_rpc(rpc.clone(), base.clone());
    let e = m.submit(vec![delay()], 0).await.unwrap_err().to_string();
    assert!(e.contains("admin client certificate"), "{who}: submit: {e}");
    let e = m.config().await.unwrap_err().to_string();
    assert!(e.contains("admin client certificate"), "{who}: config: {e}");
    let e = rpc
        .get_json::<serde_json::Value>(&format!("{base}/luxi/config"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Remote(m) if m.contains("admin")),
        "{who}: {e:?}"
    );

    let addr = node_addr(lab, other_node);
    let evil_dir = lab.dir.path().join(format!("evil-{who}"));
    let requests = [
        NodeRequest::WriteSsconf {
            ssconf: maguey_model::Ssconf {
                master_node: "evil".into(),
                ..Default::default()
            },
        },
        NodeRequest::InstanceShutdown {
            name: "vm1".into(),
            hypervisor: "fake".into(),
            timeout: 0,
        },
        hostile_write(evil_dir.to_str().unwrap()),
        NodeRequest::Version,
    ];
    for req in &requests {
        match rpc.call::<serde_json::Value>(&addr, req).await {
            Err(RpcError::Remote(m)) => assert!(
                m.contains("only the master commands this node"),
                "{who}: {}: {m}",
                req.procedure()
            ),
            other => panic!("{who}: {} was not refused: {other:?}", req.procedure()),
        }
    }
    assert!(!evil_dir.exists(), "{who}: a refused write created files");
    let ss: maguey_model::Ssconf = serde_json::from_slice(
        &std::fs::read(lab.node_dir(other_node).join("ssconf.json")).expect("ssconf"),
    )
    .expect("ssconf");
    assert_eq!(ss.master_node, "node1", "{who}: the ssconf was rewritten");
}

#[test]
fn only_admins_command_the_master_and_only_the_master_commands_nodes() {
    let lab = lab(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node2 = NodeIdentity::load(&lab.node_dir(2)).unwrap();
    let node3 = NodeIdentity::load(&lab.node_dir(3)).unwrap();
    let master_id = NodeIdentity::load(&lab.master_dir()).unwrap();
    let admin = NodeIdentity::load_admin(&lab.master_dir()).unwrap();

    // The admin certificate: root only, distinct from every node's.
    use std::os::unix::fs::PermissionsExt;
    for f in ["admin.pem", "admin.key"] {
        let mode = std::fs::metadata(lab.master_dir().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // The state directories and what holds secrets: owner only.
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    for i in 1..=3 {
        assert_eq!(mode(lab.node_dir(i)), 0o700, "node{i}'s state directory");
    }
    for f in ["config.redb", "jobs.redb", "ca.key", "node.key"] {
        assert_eq!(mode(lab.master_dir().join(f)), 0o600, "{f}");
    }
    for id in [&node2, &node3, &master_id] {
        assert_ne!(id.fingerprint(), admin.fingerprint());
    }

    rt.block_on(async {
        // The admin works; the config records every node's certificate.
        let a = MasterClient::with_rpc(RpcClient::new(&admin, T).unwrap(), master_base(&lab));
        let cfg = a.config().await.expect("config with the admin certificate");
        let recorded: BTreeMap<String, String> = cfg
            .nodes
            .values()
            .map(|n| (n.name.clone(), n.certificate_fingerprint.clone()))
            .collect();
        assert_eq!(recorded["node1"], master_id.fingerprint());
        assert_eq!(recorded["node2"], node2.fingerprint());
        assert_eq!(recorded["node3"], node3.fingerprint());
        // A huge archive age answers (it panicked the handler once).
        let v = a
            .archive(Duration::MAX)
            .await
            .expect("archive with a huge age");
        assert_eq!(v["archived"], 0);
        let v: serde_json::Value = RpcClient::new(&admin, T)
            .unwrap()
            .post_json(
                &format!("{}/luxi/archive", master_base(&lab)),
                &json!({"age_secs": 1e300}),
            )
            .await
            .expect("archive with an absurd age");
        assert_eq!(v["archived"], 0);
        // An admin certificate does not command nodes directly either.
        let e = RpcClient::new(&admin, T)
            .unwrap()
            .call::<VersionInfo>(&node_addr(&lab, 2), &NodeRequest::Version)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("admin"), "{e}");
        // The master's own certificate commands nodes.
        let v: VersionInfo = RpcClient::new(&master_id, T)
            .unwrap()
            .call(&node_addr(&lab, 2), &NodeRequest::Version)
            .await
            .expect("the master commands node2");
        assert_eq!(v.node_name, "node2");

        // node2's daemon certificate: neither an admin nor the master.
        assert_commands_nothing(&lab, &node2, 3, "node2").await;
        assert_commands_nothing(&lab, &node2, 1, "node2-on-master").await;
    });

    // node3 removed: its certificate is forgotten, and refused everywhere.
    lab.maguey(&["node", "remove", "node3"]).ok();
    rt.block_on(async {
        let a = MasterClient::with_rpc(RpcClient::new(&admin, T).unwrap(), master_base(&lab));
        let cfg = a.config().await.unwrap();
        assert!(cfg
            .nodes
            .values()
            .all(|n| n.certificate_fingerprint != node3.fingerprint()));
        assert_commands_nothing(&lab, &node3, 2, "removed-node3").await;
        assert_commands_nothing(&lab, &node3, 1, "removed-node3-on-master").await;
    });
    // The CLI keeps working with the admin certificate of the master's state directory, and
    // the master still commands the remaining nodes.
    lab.maguey(&["debug", "delay", "0", "--node", "node2"]).ok();
    lab.maguey(&["node", "list"]).ok();
}

/// A certificate signed at join time for a node whose OP_NODE_ADD then failed commands
/// nothing; RAPI write users get no join token (a token mints a node certificate).
#[test]
fn failed_node_add_and_rapi_users_get_no_valid_certificate() {
    let lab = TestLab::up_with(maguey_bin(), 2, &["--netns", "off"]);
    // A token for node7 at an address where no daemon will answer.
    let ip = lab.node_ip(7);
    let token = lab
        .maguey(&["node", "add", "node7", "--address", &ip, "--token-only"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt
        .block_on(maguey_rpc::join::join(&master_base(&lab), &token, "node7"))
        .expect("join");
    // OP_NODE_ADD fails: node7's daemon never answers.
    let admin = NodeIdentity::load_admin(&lab.master_dir()).unwrap();
    let a = MasterClient::with_rpc(RpcClient::new(&admin, T).unwrap(), master_base(&lab));
    let failed = wait_until(Duration::from_secs(120), || {
        rt.block_on(a.jobs(false))
            .unwrap()
            .iter()
            .any(|j| j["summary"][0] == "NODE_ADD(node7)" && j["status"] == "error")
    });
    assert!(failed, "OP_NODE_ADD did not fail\n{}", lab.logs());
    let r = lab.maguey(&["node", "list", "-o", "name"]);
    assert!(!r.stdout.contains("node7"), "{}", r.stdout);
    rt.block_on(assert_commands_nothing(&lab, &id, 2, "node7"));

    // A RAPI write user asks the Remote API's port for a join token: not served there.
    let d = lab.dir.path().display().to_string();
    let env: BTreeMap<String, String> = lab
        .maguey(&["lab", "env", "--dir", &d])
        .ok()
        .stdout
        .lines()
        .filter_map(|x| x.strip_prefix("export "))
        .filter_map(|x| x.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let o = std::process::Command::new(maguey_bin())
        .args(["--cluster", &env["MAGUEY_RAPI_URL"]])
        .args([
            "node",
            "add",
            "node8",
            "--address",
            &lab.node_ip(8),
            "--token-only",
        ])
        .env("MAGUEY_DIR", "/nonexistent")
        .env("MAGUEY_RAPI_USER", &env["MAGUEY_RAPI_USER"])
        .env("MAGUEY_RAPI_PASSWORD", &env["MAGUEY_RAPI_PASSWORD"])
        .env("MAGUEY_RAPI_CA", &env["MAGUEY_RAPI_CA"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a RAPI user obtained a join token: {err}"
    );
    // No token for node8 was stored.
    let cfg = rt.block_on(a.config()).unwrap();
    assert!(!cfg.join_tokens.contains_key("node8"));
}

/// Hostile parameters: a host file as image (the CA key), `kvm_extra` per instance, a program
/// as `kvm_path`, a system file as kernel: refused with a clear error, nothing created.
#[test]
fn hostile_parameters_are_refused() {
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    let ca_key = lab.master_dir().join("ca.key");
    let key_before = std::fs::read(&ca_key).unwrap();
    let serial = lab.serial();
    let add = |name: &str, extra: &[&str]| {
        let mut args = vec!["instance", "add", "-n", "node1", "--no-start"];
        args.extend_from_slice(extra);
        args.push(name);
        lab.maguey(&args)
    };
    let image = format!("image={}", ca_key.display());
    let r = add(
        "evil1",
        &[
            "-t",
            "file",
            "--disk",
            "0:size=16M",
            "-o",
            "image",
            "-O",
            &image,
            "-H",
            "kvm",
        ],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("refused: it is in the node's state directory"),
        "{}",
        r.stderr
    );
    assert!(!lab.master_dir().join("file-storage/evil1").exists());
    // A qcow2 whose backing file is a host file.
    let host_file = lab.dir.path().join("host-secret.raw");
    std::fs::write(&host_file, vec![7u8; 1 << 20]).unwrap();
    let evil = lab.dir.path().join("evil.qcow2");
    let o = std::process::Command::new("qemu-img")
        .args(["create", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&host_file)
        .arg(&evil)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = format!("image={}", evil.display());
    let r = add(
        "evil5",
        &[
            "-t",
            "file",
            "--disk",
            "0:size=16M",
            "-o",
            "image",
            "-O",
            &image,
            "-H",
            "kvm",
        ],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("it has a backing file"), "{}", r.stderr);
    assert!(!lab.master_dir().join("file-storage/evil5").exists());
    let r = add(
        "evil2",
        &[
            "-t",
            "diskless",
            "-o",
            "noop",
            "-H",
            "kvm:kvm_extra=-device foo",
        ],
    );
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("kvm_extra can only be set for the whole cluster"),
        "{}",
        r.stderr
    );
    let r = add(
        "evil3",
        &[
            "-t",
            "diskless",
            "-o",
            "noop",
            "-H",
            "kvm:kernel_path=/boot/../etc/shadow",
        ],
    );
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("without '..'"), "{}", r.stderr);
    assert_eq!(
        lab.serial(),
        serial,
        "a refused instance changed the config"
    );
    assert_eq!(std::fs::read(&ca_key).unwrap(), key_before);

    // Values the master cannot judge are judged by the node when QEMU would start.
    for (hv, expect) in [
        ("kvm:kvm_path=/bin/sh", "kvm_path '/bin/sh' refused"),
        (
            "kvm:kernel_path=/etc/shadow",
            "kernel_path '/etc/shadow' refused",
        ),
    ] {
        add("evil4", &["-t", "diskless", "-o", "noop", "-H", hv]).ok();
        let r = lab.maguey(&["instance", "start", "evil4"]);
        assert_eq!(r.code, 1, "{hv}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(expect), "{hv}: {}", r.stderr);
        lab.maguey(&["instance", "remove", "-f", "evil4"]).ok();
    }
}
