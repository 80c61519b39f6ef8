//! The kvm hypervisor and the QMP client against a real QEMU (TCG, no guest kernel: SeaBIOS
//! finds nothing to boot and idles, which is enough for the machine-level operations).

use maguey_model::params::{Hypervisor as Hv, ParamKind};
use maguey_model::{Disk, LogicalId};
use maguey_node::qmp::Qmp;
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{InstanceRunInfo, InstanceRuntime, NodeRequest};
use std::path::Path;
use std::time::{Duration, Instant};

fn qemu() -> String {
    std::env::var("MAGUEY_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

async fn poll<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next()),
                Some("Z")
            )
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn qmp_client_against_real_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let (qmp, pid) = (dir.path().join("q.qmp"), dir.path().join("q.pid"));
    let out = std::process::Command::new(qemu())
        .args(["-S", "-daemonize", "-nodefaults", "-display", "none"])
        .args(["-machine", "pc", "-accel", "tcg", "-m", "128"])
        .args(["-device", "virtio-balloon-pci,id=balloon0"])
        .arg("-pidfile")
        .arg(&pid)
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .output()
        .expect("QEMU is installed (qemu-system-x86 from bookworm-backports)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let mut q = Qmp::connect(&qmp).await.unwrap();
    assert!(
        q.version.starts_with(|c: char| c.is_ascii_digit()),
        "{}",
        q.version
    );
    let st = q.query_status().await.unwrap();
    assert_eq!((st.status.as_str(), st.running), ("prelaunch", false));
    q.cont().await.unwrap();
    assert!(q.query_status().await.unwrap().running);
    assert_eq!(q.query_balloon().await.unwrap().actual, 128 << 20);
    q.balloon(64 << 20).await.unwrap();
    let e = q.run("no-such-command").await.unwrap_err();
    assert!(e.contains("CommandNotFound"), "{e}");
    q.system_reset().await.unwrap();
    q.system_powerdown().await.unwrap();
    let m = q.query_migrate().await.unwrap();
    assert_eq!(m.status, None);
    q.quit().await.unwrap();
    assert!(poll(Duration::from_secs(10), || !alive(pid)).await);
}

fn disk() -> Disk {
    Disk {
        uuid: "d0".into(),
        name: None,
        dev_type: maguey_model::DevType::File,
        size: 16,
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

fn runtime(dir: &Path) -> NodeRuntime {
    NodeRuntime::new(NodeConfig {
        state_dir: dir.to_path_buf(),
        node_name: "node1".into(),
        fake_memory_mib: Some(1024),
        fake_cpus: Some(2),
        os_search_path: vec![],
    })
    .unwrap()
}

async fn info(rt: &NodeRuntime) -> Option<InstanceRunInfo> {
    let v = rt
        .handle(NodeRequest::InstanceInfo {
            name: "vm1".into(),
            hypervisor: "kvm".into(),
        })
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Kills the test's QEMU also when the test panics.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        maguey_node::hypervisor::kvm::kill_all(&self.0);
    }
}

#[tokio::test]
async fn kvm_start_readopt_and_hard_stop_after_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let rt = runtime(dir.path());
    rt.handle(NodeRequest::BlockdevCreate {
        disk: disk(),
        instance_name: "vm1".into(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    let mut hv = ParamKind::Hv(Hv::Kvm).defaults();
    hv.insert("kvm_path".into(), qemu().into());
    hv.insert("kernel_path".into(), "".into());
    hv.insert("accel".into(), "tcg".into());
    hv.insert("vnc_bind_address".into(), "127.0.0.1".into());
    let inst = InstanceRuntime {
        name: "vm1".into(),
        uuid: "6a1f8f9e-3a56-4f4b-9f1e-0c3d2b1a0f9e".into(),
        hypervisor: "kvm".into(),
        memory: 128,
        vcpus: 1,
        hvparams: hv,
        disks: vec![disk()],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
    };
    rt.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    let node_info = NodeRequest::NodeInfo {
        file_storage_dir: "file-storage".into(),
        hypervisor: "kvm".into(),
    };
    let free = rt.handle(node_info).await.unwrap()["memory_free"]
        .as_u64()
        .unwrap();
    let i = info(&rt).await.expect("running");
    assert_eq!((i.state.as_str(), i.memory, i.vcpus), ("running", 128, 1));
    let pid = i.pid.unwrap();
    assert!(i.vnc_port.is_some_and(|p| p >= 5900), "{i:?}");
    let sock = rt.serial_socket("vm1", "kvm").unwrap();
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    assert!(rt.serial_socket("vm2", "kvm").is_err());
    assert!(rt.serial_socket("vm1", "fake").is_err());
    assert!(alive(pid));
    assert!(free > 0);
    let again = rt
        .handle(NodeRequest::InstanceStart {
            instance: inst.clone(),
        })
        .await
        .unwrap_err();
    assert!(again.contains("already running"), "{again}");

    // A new runtime on the same state directory (a restarted magueyd) finds it again.
    drop(rt);
    let rt = runtime(dir.path());
    let list = rt
        .handle(NodeRequest::InstanceList {
            hypervisor: "kvm".into(),
        })
        .await
        .unwrap();
    assert_eq!(list, serde_json::json!(["vm1"]));
    assert_eq!(info(&rt).await.unwrap().pid, Some(pid));
    rt.handle(NodeRequest::InstanceBalloonMemory {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        memory: 64,
    })
    .await
    .unwrap();

    // SeaBIOS ignores the ACPI power button: the stop turns hard after the timeout.
    let t = Instant::now();
    rt.handle(NodeRequest::InstanceShutdown {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        timeout: 1,
    })
    .await
    .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(poll(Duration::from_secs(10), || !alive(pid)).await);
    assert!(info(&rt).await.is_none());
    assert!(!dir.path().join("run/kvm/vm1.runtime.json").exists());
    // Stopping a stopped instance succeeds.
    rt.handle(NodeRequest::InstanceShutdown {
        name: "vm1".into(),
        hypervisor: "kvm".into(),
        timeout: 0,
    })
    .await
    .unwrap();

    // A missing disk is a clear error and leaves nothing running.
    rt.handle(NodeRequest::BlockdevRemove {
        disk: disk(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    let e = rt
        .handle(NodeRequest::InstanceStart { instance: inst })
        .await
        .unwrap_err();
    assert!(e.contains("disk/0") && e.contains("missing"), "{e}");
    assert!(info(&rt).await.is_none());
}
