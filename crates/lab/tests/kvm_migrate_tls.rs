//! Live migration over TLS (docs/security.md) between two node runtimes with certificates of
//! one cluster CA, with local disks (NBD mirror, then RAM) and the tiny guest: while the
//! target waits, intruders (no certificate; node3's valid certificate) are refused on the
//! migration stream and on the NBD export, node1's own certificate reaches the export, and the
//! real migration then completes with the guest counting on. The same migration without TLS,
//! back, gives the figure to compare (printed, not asserted).

use maguey_lab::guest::{self, READY_MARKER};
use maguey_model::params::{Hypervisor as Hv, ParamKind};
use maguey_model::{Disk, LogicalId};
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{ClusterCa, InstanceRuntime, MigrationStatus, NodeRequest};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// Kills every QEMU a test started under its directory, also when the test panics.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in NODES {
            maguey_node::hypervisor::kvm::kill_all(&self.0.join(n));
        }
    }
}

/// A node runtime whose state directory holds its certificate from `ca` (as a joined node's
/// does) and the host path policy the lab's nodes have.
fn node(dir: &Path, name: &str, ca: Option<&ClusterCa>) -> NodeRuntime {
    let state = dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(maguey_node::hostpaths::HYPERVISOR_PATHS_FILE),
        format!("dir {}\n", guest::cache_dir().display()),
    )
    .unwrap();
    if let Some(ca) = ca {
        ca.issue(name, &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap()
            .save(&state)
            .unwrap();
    }
    NodeRuntime::new(NodeConfig {
        state_dir: state,
        node_name: name.into(),
        fake_memory_mib: None,
        fake_cpus: None,
        os_search_path: vec![],
    })
    .unwrap()
}

fn disk() -> Disk {
    Disk {
        uuid: "d0".into(),
        name: None,
        dev_type: maguey_model::DevType::File,
        size: 64,
        mode: maguey_model::DiskMode::ReadWrite,
        logical_id: LogicalId::File {
            driver: "loop".into(),
            path: "vm1/disk0".into(),
        },
        children: vec![],
        nodes: vec![],
        iv_name: "disk/0".into(),
        serial_no: 1,
        ctime: 0.0,
        mtime: 0.0,
    }
}

fn log(dir: &Path, node: &str) -> String {
    std::fs::read_to_string(dir.join(node).join("run/kvm/vm1.console.log")).unwrap_or_default()
}

fn last_tick(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix(guest::TICK_MARKER)?
                .trim()
                .parse()
                .ok()
        })
        .next_back()
        .unwrap_or(0)
}

async fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `qemu-img info` of the target's NBD export `disk0`, as a client with the certificate in
/// `creds` (a directory in QEMU's layout) or without TLS: whether it could read the export,
/// and what it said.
fn nbd_probe(port: u16, creds: Option<&Path>) -> (bool, String) {
    let qemu_img = Path::new(&guest::qemu_path())
        .with_file_name("qemu-img")
        .to_string_lossy()
        .into_owned();
    let mut opts = format!("driver=nbd,host=127.0.0.1,port={port},export=disk0");
    let mut cmd = Command::new(if Path::new(&qemu_img).exists() {
        qemu_img.as_str()
    } else {
        "qemu-img"
    });
    cmd.arg("info");
    if let Some(dir) = creds {
        cmd.arg("--object").arg(format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=client",
            dir.display()
        ));
        opts.push_str(",tls-creds=tls0,tls-hostname=node2");
    }
    let out = cmd.arg("--image-opts").arg(opts).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A node's certificate in QEMU's client layout, for `qemu-img`.
fn client_creds(dir: &Path, node: &str) -> PathBuf {
    let out = dir.join(format!("{node}.client"));
    std::fs::create_dir_all(&out).unwrap();
    let state = dir.join(node);
    for (from, to) in [
        ("ca.pem", "ca-cert.pem"),
        ("node.pem", "client-cert.pem"),
        ("node.key", "client-key.pem"),
    ] {
        std::fs::copy(state.join(from), out.join(to)).unwrap();
    }
    out
}

fn migrate_request(port: u16, nbd_port: Option<u16>, tls_peer: Option<&str>) -> NodeRequest {
    NodeRequest::InstanceMigrate {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        target: "127.0.0.1".into(),
        port,
        bandwidth: 1000,
        downtime: 30,
        nbd_port,
        tls_peer: tls_peer.map(String::from),
        caps: Vec::new(),
    }
}

/// A local-disk migration of vm1 from `src` to `dst` through the node requests (`tls`: over
/// TLS, each side naming the other); its wall time and QEMU's status.
async fn migrate(
    (src, src_name): (&NodeRuntime, &str),
    (dst, dst_name): (&NodeRuntime, &str),
    inst: &InstanceRuntime,
    tls: bool,
) -> (f64, MigrationStatus) {
    let (port, nbd_port) = (free_port(), free_port());
    let t = Instant::now();
    dst.handle(NodeRequest::AcceptInstance {
        instance: inst.clone(),
        address: "127.0.0.1".into(),
        port,
        nbd_port: Some(nbd_port),
        tls_peer: tls.then(|| src_name.to_string()),
    })
    .await
    .unwrap();
    let v = src
        .handle(migrate_request(
            port,
            Some(nbd_port),
            tls.then_some(dst_name),
        ))
        .await
        .unwrap();
    for (n, req) in [
        (
            dst,
            NodeRequest::FinalizeMigrationDst {
                instance: inst.clone(),
                success: true,
            },
        ),
        (
            src,
            NodeRequest::FinalizeMigrationSrc {
                name: "vm1".into(),
                hypervisor: "kvm".into(),
                success: true,
            },
        ),
    ] {
        n.handle(req).await.unwrap();
    }
    (
        t.elapsed().as_secs_f64(),
        serde_json::from_value(v).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_over_tls_admits_only_the_source_node() {
    let g = tokio::task::spawn_blocking(guest::ensure)
        .await
        .unwrap()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _cleanup = Cleanup(dir.to_path_buf());
    let ca = ClusterCa::generate("tls-test").unwrap();
    let (n1, n2, n3) = (
        node(dir, "node1", Some(&ca)),
        node(dir, "node2", Some(&ca)),
        node(dir, "node3", Some(&ca)),
    );
    for n in [&n1, &n2] {
        n.handle(NodeRequest::BlockdevCreate {
            disk: disk(),
            instance_name: "vm1".into(),
            file_storage_dir: "file-storage".into(),
        })
        .await
        .unwrap();
    }
    let mut hv = ParamKind::Hv(Hv::Kvm).defaults();
    hv.extend(guest::kvm_hvparams(&g));
    hv.insert("accel".into(), "tcg".into());
    // QEMU started as an unprivileged user, its files handed over (docs/security.md).
    hv.insert("security_model".into(), "user".into());
    hv.insert("security_domain".into(), "nobody".into());
    let inst = InstanceRuntime {
        name: "vm1".into(),
        uuid: "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5".into(),
        hypervisor: "kvm".into(),
        memory: 128,
        vcpus: 1,
        hvparams: hv,
        disks: vec![disk()],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
    };
    n1.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(
        wait(Duration::from_secs(120), || last_tick(&log(dir, "node1"))
            >= 2)
        .await,
        "{}",
        log(dir, "node1")
    );

    // node2 waits for vm1 from node1, over TLS.
    let (port, nbd_port) = (free_port(), free_port());
    n2.handle(NodeRequest::AcceptInstance {
        instance: inst.clone(),
        address: "127.0.0.1".into(),
        port,
        nbd_port: Some(nbd_port),
        tls_peer: Some("node1".into()),
    })
    .await
    .unwrap();

    // The NBD export: no certificate, or node3's (signed by the same CA), is refused;
    // node1's is let in (the probe itself works).
    let (ok, out) = nbd_probe(nbd_port, None);
    assert!(!ok, "a client without TLS read the export: {out}");
    let (ok, out) = nbd_probe(nbd_port, Some(&client_creds(dir, "node3")));
    assert!(!ok, "node3's certificate read the export: {out}");
    let (ok, out) = nbd_probe(nbd_port, Some(&client_creds(dir, "node1")));
    assert!(ok, "node1's certificate was refused: {out}");
    assert!(out.contains("virtual size: 64 MiB"), "{out}");

    // The migration stream: an instance on node3 sent there, with node3's certificate or
    // without TLS, is refused.
    let mut intruder = inst.clone();
    intruder.disks.clear();
    n3.handle(NodeRequest::InstanceStart {
        instance: intruder.clone(),
    })
    .await
    .unwrap();
    for tls_peer in [Some("node2"), None] {
        let r = n3.handle(migrate_request(port, None, tls_peer)).await;
        assert!(
            r.is_err(),
            "node3 (tls peer {tls_peer:?}) migrated into node2: {r:?}"
        );
    }

    // node1 migrates: the source checks that the target presents node2's certificate.
    let before = last_tick(&log(dir, "node1"));
    let t = Instant::now();
    let v = n1
        .handle(migrate_request(port, Some(nbd_port), Some("node2")))
        .await
        .unwrap();
    let st: MigrationStatus = serde_json::from_value(v).unwrap();
    let tls_secs = t.elapsed().as_secs_f64();
    assert_eq!(st.status, "completed", "{st:?}");
    n2.handle(NodeRequest::FinalizeMigrationDst {
        instance: inst.clone(),
        success: true,
    })
    .await
    .unwrap();
    n1.handle(NodeRequest::FinalizeMigrationSrc {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        success: true,
    })
    .await
    .unwrap();
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node2"))
            > before + 1)
        .await,
        "source ended at {before}; target:\n{}",
        log(dir, "node2")
    );
    assert!(!log(dir, "node2").contains(READY_MARKER));
    // The target QEMU runs as the unprivileged user with the whole sandbox.
    let pid = std::fs::read_to_string(dir.join("node2/run/kvm/vm1.pid")).unwrap_or_default();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(field("Seccomp:"), ["2"], "{status}");
    eprintln!(
        "figure: local-disk live migration over TLS (64 MiB disk, 128 MiB guest): {tls_secs:.2} s; disk {} ms, RAM {} ms, downtime {} ms",
        st.disk_time, st.total_time, st.downtime
    );

    // Back to node1 without TLS (a fresh disk there), and over TLS again: the figures.
    let rm = |n: &'static str| {
        let p = dir.join(n).join("file-storage/vm1/disk0");
        std::fs::remove_file(p).ok();
    };
    rm("node1");
    n1.handle(NodeRequest::BlockdevCreate {
        disk: disk(),
        instance_name: "vm1".into(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    let (plain, plain_st) = migrate((&n2, "node2"), (&n1, "node1"), &inst, false).await;
    assert_eq!(plain_st.status, "completed", "{plain_st:?}");
    rm("node2");
    n2.handle(NodeRequest::BlockdevCreate {
        disk: disk(),
        instance_name: "vm1".into(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    let (tls, st) = migrate((&n1, "node1"), (&n2, "node2"), &inst, true).await;
    assert_eq!(st.status, "completed", "{st:?}");
    eprintln!(
        "figure: local-disk live migration with the target's start, plain TCP {plain:.2} s \
         (disk {} ms, RAM {} ms), TLS {tls:.2} s (disk {} ms, RAM {} ms): {:.2}x",
        plain_st.disk_time,
        plain_st.total_time,
        st.disk_time,
        st.total_time,
        tls / plain.max(0.001)
    );
    let after = last_tick(&log(dir, "node2"));
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node2"))
            > after)
        .await
    );
}
