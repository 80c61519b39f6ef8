//! File storage directories from a request that would put disks (or writes) outside the
//! allowed places are refused with a clear error, and nothing is created (docs/security.md).

use maguey_model::{Disk, LogicalId};
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{BlockdevChunk, NodeRequest};
use std::path::Path;

fn disk(path: &str) -> Disk {
    Disk {
        uuid: "d1".into(),
        name: None,
        dev_type: maguey_model::DevType::File,
        size: 1,
        mode: maguey_model::DiskMode::ReadWrite,
        logical_id: LogicalId::File {
            driver: "loop".into(),
            path: path.into(),
        },
        children: vec![],
        nodes: vec![],
        iv_name: "disk/0".into(),
        serial_no: 1,
        ctime: 0.0,
        mtime: 0.0,
    }
}

#[tokio::test]
async fn blockdev_write_and_create_stay_in_allowed_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("node1");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("ca.key"), "secret key").unwrap();
    let rt = NodeRuntime::new(NodeConfig {
        state_dir: state.clone(),
        node_name: "node1".into(),
        fake_memory_mib: Some(1024),
        fake_cpus: Some(1),
        os_search_path: vec![],
    })
    .unwrap();
    let victim = format!("maguey-evil-{}", std::process::id());
    let outside = tmp.path().join(&victim);
    let cases: Vec<(String, String, &Path)> = vec![
        // The whole file system, through an absolute storage dir.
        ("/".into(), format!("tmp/{victim}"), Path::new("/tmp")),
        // The node's own state directory (its CA key).
        (".".into(), "ca.key".into(), state.as_path()),
        (
            state.display().to_string(),
            "ca.key".into(),
            state.as_path(),
        ),
        // Out of the state directory with '..'.
        ("../".into(), victim.clone(), tmp.path()),
        (format!("fs/../../{victim}"), "x".into(), tmp.path()),
        // A system directory.
        ("/etc".into(), victim.clone(), Path::new("/etc")),
    ];
    for (dir, path, _) in &cases {
        let write = NodeRequest::BlockdevWrite {
            disk: disk(path),
            file_storage_dir: dir.clone(),
            offset: 0,
            chunk: BlockdevChunk {
                length: 5,
                data: Some("cHduZWQ=".into()),
            },
        };
        let create = NodeRequest::BlockdevCreate {
            disk: disk(path),
            instance_name: "vm1".into(),
            file_storage_dir: dir.clone(),
        };
        for req in [write, create] {
            let e = rt.handle(req).await.unwrap_err().to_string();
            assert!(
                e.contains(&format!("file storage directory '{dir}' refused")),
                "{dir} {path}: {e}"
            );
        }
    }
    assert!(!Path::new("/tmp").join(&victim).exists());
    assert!(!Path::new("/etc").join(&victim).exists());
    assert!(!outside.exists());
    assert_eq!(
        std::fs::read_to_string(state.join("ca.key")).unwrap(),
        "secret key"
    );
    // The ordinary relative directory still works.
    rt.handle(NodeRequest::BlockdevCreate {
        disk: disk("vm1/disk0"),
        instance_name: "vm1".into(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    assert!(state.join("file-storage/vm1/disk0").exists());
}
