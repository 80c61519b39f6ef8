//! Live migration of the tiny guest between two node runtimes (two QEMU processes) whose
//! disks live in one shared directory (the `sharedfile` situation): the guest's tick counter
//! keeps rising on the target without a reboot, and the source copy is gone.
//! Also boots the same guest with raw QEMU and migrates it with bare QMP, for the figures.

use maguey_lab::guest::{self, READY_MARKER, TICK_MARKER};
use maguey_model::params::{Hypervisor as Hv, ParamKind};
use maguey_model::{Disk, LogicalId};
use maguey_node::qmp::{MigrationParameters, Qmp};
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{InstanceRuntime, MigrationStatus, NodeRequest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Kills every QEMU a test started under its directory, also when the test panics.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in ["node1", "node2"] {
            maguey_node::hypervisor::kvm::kill_all(&self.0.join(n));
        }
        for tag in ["a", "b"] {
            if let Ok(p) = std::fs::read_to_string(self.0.join(format!("{tag}.pid"))) {
                if let Ok(pid) = p.trim().parse::<i32>() {
                    // SAFETY: kill(2) on a QEMU this test started (its pidfile).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

fn node(dir: &Path, name: &str) -> NodeRuntime {
    // The node's host path policy (docs/security.md) allows the guest's kernel cache, as
    // `maguey lab up --kvm` does for its nodes.
    let state = dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(maguey_node::hostpaths::HYPERVISOR_PATHS_FILE),
        format!("dir {}\n", guest::cache_dir().display()),
    )
    .unwrap();
    NodeRuntime::new(NodeConfig {
        state_dir: dir.join(name),
        node_name: name.into(),
        fake_memory_mib: None,
        fake_cpus: None,
        os_search_path: vec![],
    })
    .unwrap()
}

/// Disk size in MiB: 64, or `$MAGUEY_MIGRATE_DISK_MIB` (e.g. 1024 for the throughput figure).
fn disk_mib() -> u64 {
    std::env::var("MAGUEY_MIGRATE_DISK_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

fn disk() -> Disk {
    Disk {
        uuid: "d0".into(),
        name: None,
        dev_type: maguey_model::DevType::File,
        size: disk_mib(),
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

/// Migrates vm1 from `n1` to `n2` through the node requests; `nbd` for local disks.
async fn migrate(
    n1: &NodeRuntime,
    n2: &NodeRuntime,
    inst: &InstanceRuntime,
    nbd: bool,
) -> MigrationStatus {
    let port = free_port();
    let nbd_port = nbd.then(free_port);
    n2.handle(NodeRequest::AcceptInstance {
        instance: inst.clone(),
        address: "127.0.0.1".into(),
        port,
        nbd_port,
        tls_peer: None,
    })
    .await
    .unwrap();
    let v = n1
        .handle(NodeRequest::InstanceMigrate {
            name: inst.name.clone(),
            hypervisor: "kvm".into(),
            target: "127.0.0.1".into(),
            port,
            bandwidth: 32,
            downtime: 30,
            nbd_port,
            tls_peer: None,
            caps: vec!["auto-converge".into()],
        })
        .await
        .unwrap();
    n2.handle(NodeRequest::FinalizeMigrationDst {
        instance: inst.clone(),
        success: true,
    })
    .await
    .unwrap();
    n1.handle(NodeRequest::FinalizeMigrationSrc {
        name: inst.name.clone(),
        hypervisor: "kvm".into(),
        success: true,
    })
    .await
    .unwrap();
    serde_json::from_value(v).unwrap()
}

/// The same disk as a `sharedfile` disk (its directory is the shared one the caller passes).
fn shared_disk() -> Disk {
    let mut d = disk();
    d.dev_type = maguey_model::DevType::Sharedfile;
    d.logical_id = LogicalId::Sharedfile {
        driver: "loop".into(),
        path: "vm1/disk0".into(),
    };
    d
}

fn log(dir: &Path, node: &str) -> String {
    std::fs::read_to_string(dir.join(node).join("run/kvm/vm1.console.log")).unwrap_or_default()
}

fn last_tick(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(TICK_MARKER)?.trim().parse().ok())
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

async fn list(n: &NodeRuntime) -> serde_json::Value {
    n.handle(NodeRequest::InstanceList {
        hypervisor: "kvm".into(),
    })
    .await
    .unwrap()
}

fn hvparams(g: &guest::Guest) -> maguey_model::Params {
    let mut hv = ParamKind::Hv(Hv::Kvm).defaults();
    hv.extend(guest::kvm_hvparams(g));
    hv.insert("accel".into(), "tcg".into());
    // QEMU started as an unprivileged user, its files handed over (docs/security.md).
    hv.insert("security_model".into(), "user".into());
    hv.insert("security_domain".into(), "nobody".into());
    hv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvm_live_migration_shared_disk_keeps_the_guest_running() {
    let g = tokio::task::spawn_blocking(guest::ensure)
        .await
        .unwrap()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _cleanup = Cleanup(dir.to_path_buf());
    let shared = dir.join("shared").to_string_lossy().into_owned();
    let (n1, n2) = (node(dir, "node1"), node(dir, "node2"));
    n1.handle(NodeRequest::BlockdevCreate {
        disk: shared_disk(),
        instance_name: "vm1".into(),
        file_storage_dir: shared.clone(),
    })
    .await
    .unwrap();
    let inst = InstanceRuntime {
        name: "vm1".into(),
        uuid: "9d0c7a52-1f0e-4d3b-8b9a-5c4d3e2f1a0b".into(),
        hypervisor: "kvm".into(),
        memory: 128,
        vcpus: 1,
        hvparams: hvparams(&g),
        disks: vec![shared_disk()],
        nics: vec![],
        file_storage_dir: shared,
    };
    let t = Instant::now();
    n1.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(
        wait(Duration::from_secs(120), || log(dir, "node1")
            .contains(READY_MARKER))
        .await,
        "{}",
        log(dir, "node1")
    );
    eprintln!(
        "figure: node start to guest marker: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node1"))
            >= 2)
        .await
    );

    let port = free_port();
    let t = Instant::now();
    n2.handle(NodeRequest::AcceptInstance {
        instance: inst.clone(),
        address: "127.0.0.1".into(),
        port,
        nbd_port: None,
        tls_peer: None,
    })
    .await
    .unwrap();
    let v = n1
        .handle(NodeRequest::InstanceMigrate {
            name: "vm1".into(),
            hypervisor: "kvm".into(),
            target: "127.0.0.1".into(),
            port,
            bandwidth: 32,
            downtime: 30,
            nbd_port: None,
            tls_peer: None,
            caps: Vec::new(),
        })
        .await
        .unwrap();
    let st: MigrationStatus = serde_json::from_value(v).unwrap();
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
    eprintln!(
        "figure: live migration through the node runtimes: {:.2} s (QEMU total {} ms, downtime {} ms, {} KiB sent)",
        t.elapsed().as_secs_f64(),
        st.total_time,
        st.downtime,
        st.transferred / 1024
    );
    assert_eq!(st.status, "completed");

    let before = last_tick(&log(dir, "node1"));
    assert!(before >= 2);
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node2"))
            > before + 1)
        .await,
        "source ended at {before}; target:\n{}",
        log(dir, "node2")
    );
    // The guest did not boot again on the target: no ready marker there.
    assert!(!log(dir, "node2").contains(READY_MARKER));
    // The node's console request answers the tail of the same output.
    let tail = n2
        .handle(NodeRequest::InstanceConsole {
            name: "vm1".into(),
            hypervisor: "kvm".into(),
            max_bytes: 64,
        })
        .await
        .unwrap();
    let tail = tail.as_str().unwrap();
    assert!(tail.len() <= 64 && tail.contains(TICK_MARKER), "{tail:?}");
    assert_eq!(list(&n1).await, serde_json::json!([]));
    assert_eq!(list(&n2).await, serde_json::json!(["vm1"]));

    // A clean power-off on the target, then the disk still holds the guest's boot counter.
    n2.handle(NodeRequest::InstanceShutdown {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        timeout: 60,
    })
    .await
    .unwrap();
    assert!(log(dir, "node2").contains("MAGUEY-GUEST-POWEROFF"));
}

/// The same guest under bare QEMU: boot to marker and a QMP-driven migration, for figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_qemu_boot_and_migrate_figures() {
    let g = tokio::task::spawn_blocking(guest::ensure)
        .await
        .unwrap()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _cleanup = Cleanup(dir.to_path_buf());
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let launch = |tag: &str, incoming: Option<u16>| -> (PathBuf, PathBuf) {
        let (qmp, log) = (
            dir.join(format!("{tag}.qmp")),
            dir.join(format!("{tag}.log")),
        );
        let mut c = g.bare_qemu(&img, &qmp, &log, incoming);
        c.arg("-pidfile").arg(dir.join(format!("{tag}.pid")));
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (qmp, log)
    };
    let t = Instant::now();
    let (qa, la) = launch("a", None);
    assert!(
        wait(Duration::from_secs(120), || std::fs::read_to_string(&la)
            .unwrap_or_default()
            .contains(READY_MARKER))
        .await
    );
    eprintln!(
        "figure: raw QEMU start to guest marker: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        wait(Duration::from_secs(60), || last_tick(
            &std::fs::read_to_string(&la).unwrap_or_default()
        ) >= 2)
        .await
    );
    let port = free_port();
    let t = Instant::now();
    let (qb, lb) = launch("b", Some(port));
    let mut a = Qmp::connect(&qa).await.unwrap();
    a.migrate_set_parameters(&MigrationParameters {
        max_bandwidth: Some(32 << 20),
        downtime_limit: Some(30),
        ..Default::default()
    })
    .await
    .unwrap();
    a.migrate(&format!("tcp:127.0.0.1:{port}")).await.unwrap();
    let m = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = a.query_migrate().await.unwrap();
        match m.status.as_deref() {
            Some("completed") => break m,
            Some("failed") | Some("cancelled") => panic!("{m:?}"),
            _ => {}
        }
    };
    let mut b = Qmp::connect(&qb).await.unwrap();
    assert!(b.query_status().await.unwrap().running);
    a.quit().await.unwrap();
    eprintln!(
        "figure: raw QEMU live migration: {:.2} s (QEMU total {} ms, downtime {} ms)",
        t.elapsed().as_secs_f64(),
        m.total_time.unwrap_or(0),
        m.downtime.unwrap_or(0)
    );
    let before = last_tick(&std::fs::read_to_string(&la).unwrap_or_default());
    assert!(
        wait(Duration::from_secs(60), || last_tick(
            &std::fs::read_to_string(&lb).unwrap_or_default()
        ) > before)
        .await
    );
    b.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvm_live_migration_with_local_disks_mirrors_them() {
    let g = tokio::task::spawn_blocking(guest::ensure)
        .await
        .unwrap()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _cleanup = Cleanup(dir.to_path_buf());
    let (n1, n2) = (node(dir, "node1"), node(dir, "node2"));
    // Each node has its own file storage: the target gets a fresh, empty disk.
    for n in [&n1, &n2] {
        n.handle(NodeRequest::BlockdevCreate {
            disk: disk(),
            instance_name: "vm1".into(),
            file_storage_dir: "file-storage".into(),
        })
        .await
        .unwrap();
    }
    let inst = InstanceRuntime {
        name: "vm1".into(),
        uuid: "2b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e".into(),
        hypervisor: "kvm".into(),
        memory: 128,
        vcpus: 1,
        hvparams: hvparams(&g),
        disks: vec![disk()],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
    };
    if std::env::var_os("MAGUEY_MIGRATE_FILL").is_some() {
        // Non-zero data everywhere, so the mirror cannot skip holes (throughput figure).
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("node1/file-storage/vm1/disk0"))
            .unwrap();
        let chunk: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        for _ in 0..disk_mib() {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    n1.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(
        wait(Duration::from_secs(120), || log(dir, "node1")
            .contains(&format!("{READY_MARKER} boot=1 disk=yes")))
        .await,
        "{}",
        log(dir, "node1")
    );
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node1"))
            >= 2)
        .await
    );
    let t = Instant::now();
    let st = migrate(&n1, &n2, &inst, true).await;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "figure: local-disk live migration: {secs:.2} s; disk mirror {} MiB in {} ms ({:.0} MiB/s); RAM {} ms, downtime {} ms",
        st.disk_transferred >> 20,
        st.disk_time,
        (st.disk_transferred >> 20) as f64 / (st.disk_time.max(1) as f64 / 1000.0),
        st.total_time,
        st.downtime
    );
    assert_eq!(st.status, "completed");
    assert!(st.disk_transferred >= disk_mib() << 20, "{st:?}");
    let before = last_tick(&log(dir, "node1"));
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node2"))
            > before + 1)
        .await,
        "source ended at {before}; target:\n{}",
        log(dir, "node2")
    );
    assert!(!log(dir, "node2").contains(READY_MARKER));
    assert_eq!(list(&n1).await, serde_json::json!([]));
    assert_eq!(list(&n2).await, serde_json::json!(["vm1"]));
    // What the guest wrote on node1 (its filesystem and boot counter) is on node2's disk:
    // a fresh boot there counts boot 2.
    n2.handle(NodeRequest::InstanceShutdown {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        timeout: 60,
    })
    .await
    .unwrap();
    n2.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(
        wait(Duration::from_secs(120), || log(dir, "node2")
            .contains(&format!("{READY_MARKER} boot=2 disk=yes")))
        .await,
        "{}",
        log(dir, "node2")
    );
    n2.handle(NodeRequest::InstanceShutdown {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        timeout: 0,
    })
    .await
    .unwrap();
}

/// The target QEMU killed in the middle of a migration: the migration fails, the instance
/// keeps running on the source, and the source can finalize as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvm_target_killed_mid_migration_keeps_the_source_running() {
    let g = tokio::task::spawn_blocking(guest::ensure)
        .await
        .unwrap()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _cleanup = Cleanup(dir.to_path_buf());
    let shared = dir.join("shared").to_string_lossy().into_owned();
    let (n1, n2) = (node(dir, "node1"), node(dir, "node2"));
    n1.handle(NodeRequest::BlockdevCreate {
        disk: shared_disk(),
        instance_name: "vm1".into(),
        file_storage_dir: shared.clone(),
    })
    .await
    .unwrap();
    let inst = InstanceRuntime {
        name: "vm1".into(),
        uuid: "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b".into(),
        hypervisor: "kvm".into(),
        memory: 128,
        vcpus: 1,
        hvparams: hvparams(&g),
        disks: vec![shared_disk()],
        nics: vec![],
        file_storage_dir: shared,
    };
    n1.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(
        wait(Duration::from_secs(120), || last_tick(&log(dir, "node1"))
            >= 1)
        .await
    );
    let port = free_port();
    n2.handle(NodeRequest::AcceptInstance {
        instance: inst.clone(),
        address: "127.0.0.1".into(),
        port,
        nbd_port: None,
        tls_peer: None,
    })
    .await
    .unwrap();
    let target_pid: u32 = std::fs::read_to_string(dir.join("node2/run/kvm/vm1.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 1 MiB/s: the RAM phase lasts long enough to kill the target during it.
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // SAFETY: kill(2) on the target QEMU this test started.
        unsafe { libc::kill(target_pid as i32, libc::SIGKILL) };
    });
    let r = n1
        .handle(NodeRequest::InstanceMigrate {
            name: "vm1".into(),
            hypervisor: "kvm".into(),
            target: "127.0.0.1".into(),
            port,
            bandwidth: 1,
            downtime: 30,
            nbd_port: None,
            tls_peer: None,
            caps: vec!["auto-converge".into(), "xbzrle".into()],
        })
        .await;
    killer.await.unwrap();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("migration of instance vm1"), "{e}");
    n2.handle(NodeRequest::FinalizeMigrationDst {
        instance: inst.clone(),
        success: false,
    })
    .await
    .unwrap();
    n1.handle(NodeRequest::FinalizeMigrationSrc {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        success: false,
    })
    .await
    .unwrap();
    assert_eq!(list(&n1).await, serde_json::json!(["vm1"]));
    assert_eq!(list(&n2).await, serde_json::json!([]));
    let before = last_tick(&log(dir, "node1"));
    assert!(
        wait(Duration::from_secs(60), || last_tick(&log(dir, "node1"))
            > before + 1)
        .await
    );
    n1.handle(NodeRequest::InstanceShutdown {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        timeout: 0,
    })
    .await
    .unwrap();
}
