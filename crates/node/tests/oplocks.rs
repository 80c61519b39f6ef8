//! The node's own locks (docs/security.md): an OS installation whose caller gave up waiting
//! (the master's RPC timeout) goes on, and until it ends a second request cannot remove the
//! same disk; reads are not held up; afterwards the removal works.

use maguey_model::{Disk, LogicalId};
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{NodeRequest, OsInstall};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn disk() -> Disk {
    Disk {
        uuid: "uuid-d0".into(),
        name: None,
        dev_type: maguey_model::DevType::File,
        size: 4,
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

/// An OS definition whose create script takes 3 s, then leaves `done` in its directory.
fn write_slow_os(os_dir: &Path) {
    let dir = os_dir.join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    for script in ["create", "import", "export", "rename", "verify"] {
        let body = if script == "create" {
            format!("#!/bin/sh\nsleep 3\ntouch {}\n", dir.join("done").display())
        } else {
            "#!/bin/sh\nexit 0\n".into()
        };
        let p = dir.join(script);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("ganeti_api_version"), "20\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_outlives_its_caller_keeps_its_disk_locked() {
    let t = tempfile::tempdir().unwrap();
    let os_dir = t.path().join("os");
    write_slow_os(&os_dir);
    let mut rt = NodeRuntime::new(NodeConfig {
        state_dir: t.path().to_path_buf(),
        node_name: "node1".into(),
        fake_memory_mib: Some(1024),
        fake_cpus: Some(2),
        os_search_path: vec![os_dir.clone()],
    })
    .unwrap();
    rt.set_lock_wait(Duration::from_millis(500));
    rt.handle(NodeRequest::BlockdevCreate {
        disk: disk(),
        instance_name: "vm1".into(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    let disk_file = t.path().join("file-storage/vm1/disk0");
    assert!(disk_file.exists());

    // The master gives up after 300 ms, as after its RPC timeout; the node goes on.
    let install = OsInstall {
        instance_name: "vm1".into(),
        os: "slow".into(),
        hypervisor: "fake".into(),
        osparams: BTreeMap::new(),
        disks: vec![disk()],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
        debug_level: 0,
    };
    let started = Instant::now();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        rt.handle(NodeRequest::InstanceOsAdd {
            install,
            reinstall: false,
        }),
    )
    .await;
    assert!(gave_up.is_err(), "the slow install answered: {gave_up:?}");

    // A second job's removal of the same disk is refused while the install runs.
    let remove = NodeRequest::BlockdevRemove {
        disk: disk(),
        file_storage_dir: "file-storage".into(),
    };
    let e = rt.handle(remove.clone()).await.unwrap_err().to_string();
    assert!(
        e.contains("disk uuid-d0 is busy") && e.contains("instance_os_add"),
        "{e}"
    );
    assert!(disk_file.exists(), "the refused removal removed the disk");
    // Reads go on.
    rt.handle(NodeRequest::BlockdevFind {
        disk: disk(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();

    // The install ends by itself; then the removal works.
    let done = os_dir.join("slow/done");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done.exists(), "the install stopped with its caller");
    assert!(started.elapsed() >= Duration::from_secs(3));
    let mut removed = false;
    for _ in 0..50 {
        if rt.handle(remove.clone()).await.is_ok() {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(removed, "the disk stayed locked after the install ended");
    assert!(!disk_file.exists());
}
