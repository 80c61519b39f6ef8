use maguey_model::{Disk, LogicalId, Ssconf};
use maguey_node::{os, read_ssconf, NodeConfig, NodeResult, NodeRuntime};
use maguey_rpc::{
    BlockdevInfo, InstanceRunInfo, InstanceRuntime, NicRuntime, NodeInfo, NodeRequest, OsInfo,
    OsInstall, VersionInfo,
};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        state_dir: dir.to_path_buf(),
        node_name: "node1".into(),
        fake_memory_mib: Some(1024),
        fake_cpus: Some(4),
        os_search_path: vec![dir.join("os")],
    }
}

async fn call<T: DeserializeOwned>(rt: &NodeRuntime, req: NodeRequest) -> NodeResult<T> {
    let v = rt.handle(req).await?;
    Ok(serde_json::from_value(v).expect("answer decodes"))
}

fn file_disk(path: &str, size: u64) -> Disk {
    Disk {
        uuid: format!("uuid-{path}"),
        name: None,
        dev_type: maguey_model::DevType::File,
        size,
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

fn instance(name: &str, memory: u64) -> InstanceRuntime {
    InstanceRuntime {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        hypervisor: "fake".into(),
        memory,
        vcpus: 2,
        hvparams: BTreeMap::new(),
        disks: vec![],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
    }
}

fn node_info_req() -> NodeRequest {
    NodeRequest::NodeInfo {
        file_storage_dir: "file-storage".into(),
        hypervisor: "fake".into(),
    }
}

#[tokio::test]
async fn version_info_delay_and_ssconf() {
    let dir = tempfile::tempdir().unwrap();
    let rt = NodeRuntime::new(config(dir.path())).unwrap();
    let v: VersionInfo = call(&rt, NodeRequest::Version).await.unwrap();
    assert_eq!(v.node_name, "node1");
    assert_eq!(v.protocol, maguey_model::PROTOCOL_VERSION);
    assert_eq!(v.version, maguey_model::VERSION);

    let info: NodeInfo = call(&rt, node_info_req()).await.unwrap();
    assert_eq!(info.cpu_count, 4);
    assert_eq!(
        (info.memory_total, info.memory_free, info.memory_dom0),
        (1024, 1024, 0)
    );
    assert_eq!(info.storage.len(), 1);
    assert_eq!(info.storage[0].storage_type, "file");
    assert!(info.storage[0].storage_size > 0);
    assert!(dir.path().join("file-storage").is_dir());
    assert!(!info.bootid.is_empty());
    assert!(call::<NodeInfo>(
        &rt,
        NodeRequest::NodeInfo {
            file_storage_dir: String::new(),
            hypervisor: "xen".into()
        }
    )
    .await
    .is_err());

    let t = std::time::Instant::now();
    rt.handle(NodeRequest::TestDelay { duration: 0.2 })
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(rt
        .handle(NodeRequest::TestDelay { duration: -1.0 })
        .await
        .is_err());
    assert!(rt
        .handle(NodeRequest::TestDelay { duration: f64::NAN })
        .await
        .is_err());

    assert_eq!(read_ssconf(dir.path()), None);
    let ssconf = Ssconf {
        cluster_name: "c1".into(),
        master_node: "node1".into(),
        rpc_port: 1811,
        config_serial: 7,
        cluster_uuid: "c1".into(),
        ..Default::default()
    };
    rt.handle(NodeRequest::WriteSsconf {
        ssconf: ssconf.clone(),
    })
    .await
    .unwrap();
    assert_eq!(read_ssconf(dir.path()), Some(ssconf.clone()));
    // A late delivery of an older serial of the same cluster does not undo the newer one;
    // another cluster's (a re-initialised one) is taken.
    for (uuid, serial, taken) in [("c1", 6, false), ("c1", 8, true), ("c2", 1, true)] {
        let other = Ssconf {
            cluster_uuid: uuid.into(),
            config_serial: serial,
            master_node: format!("m{serial}"),
            ..ssconf.clone()
        };
        let before = read_ssconf(dir.path());
        rt.handle(NodeRequest::WriteSsconf {
            ssconf: other.clone(),
        })
        .await
        .unwrap();
        let now = read_ssconf(dir.path());
        assert_eq!(now == Some(other), taken, "{uuid} {serial}");
        assert_eq!(now == before, !taken, "{uuid} {serial}");
    }
    // No temp file left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    for f in ["node.pem", "node.key", "ca.pem", "ca.key"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    assert_eq!(
        rt.handle(NodeRequest::LeaveCluster).await.unwrap(),
        serde_json::Value::Null
    );
    for f in ["node.pem", "node.key", "ca.pem", "ca.key", "ssconf.json"] {
        assert!(!dir.path().join(f).exists(), "{f}");
    }
    // Leaving twice is fine.
    rt.handle(NodeRequest::LeaveCluster).await.unwrap();
}

#[tokio::test]
async fn fake_hypervisor_memory_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let rt = NodeRuntime::new(config(dir.path())).unwrap();
    let start = |name: &str, mem| NodeRequest::InstanceStart {
        instance: instance(name, mem),
    };
    rt.handle(start("inst1", 512)).await.unwrap();
    assert!(dir.path().join("run/fake/inst1.json").is_file());
    let info: NodeInfo = call(&rt, node_info_req()).await.unwrap();
    assert_eq!(info.memory_free, 512);

    let e = rt
        .handle(start("inst2", 600))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "not enough memory on node node1: needed 600 MiB, free 512 MiB"
    );
    let e = rt
        .handle(start("inst1", 100))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(e, "instance inst1 is already running");
    rt.handle(start("inst2", 512)).await.unwrap();

    let list: Vec<String> = call(
        &rt,
        NodeRequest::InstanceList {
            hypervisor: "fake".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(list, ["inst1", "inst2"]);
    let i: Option<InstanceRunInfo> = call(
        &rt,
        NodeRequest::InstanceInfo {
            name: "inst1".into(),
            hypervisor: "fake".into(),
        },
    )
    .await
    .unwrap();
    let i = i.unwrap();
    assert_eq!(
        (i.state.as_str(), i.memory, i.vcpus, i.pid),
        ("running", 512, 2, None)
    );
    let all: BTreeMap<String, InstanceRunInfo> = call(
        &rt,
        NodeRequest::AllInstancesInfo {
            hypervisor: "fake".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 2);

    // Ballooning within and beyond the free memory.
    let balloon = |name: &str, memory| NodeRequest::InstanceBalloonMemory {
        name: name.into(),
        hypervisor: "fake".into(),
        memory,
    };
    rt.handle(balloon("inst1", 256)).await.unwrap();
    assert!(rt.handle(balloon("inst1", 1024)).await.is_err());
    assert!(rt.handle(balloon("nothere", 10)).await.is_err());

    // Reboot.
    let reboot = |name: &str, kind: &str| NodeRequest::InstanceReboot {
        instance: instance(name, 256),
        reboot_type: kind.into(),
        shutdown_timeout: 10,
    };
    rt.handle(reboot("inst1", "soft")).await.unwrap();
    rt.handle(reboot("inst1", "hard")).await.unwrap();
    assert!(rt.handle(reboot("inst1", "sideways")).await.is_err());
    assert!(rt.handle(reboot("inst3", "soft")).await.is_err());

    // Stop; stopping a stopped instance succeeds.
    let stop = |name: &str| NodeRequest::InstanceShutdown {
        name: name.into(),
        hypervisor: "fake".into(),
        timeout: 5,
    };
    rt.handle(stop("inst1")).await.unwrap();
    rt.handle(stop("inst1")).await.unwrap();
    let info: NodeInfo = call(&rt, node_info_req()).await.unwrap();
    assert_eq!(info.memory_free, 512);

    // Names are checked before being used in paths.
    assert!(rt.handle(start("../evil", 1)).await.is_err());
    assert!(rt.handle(stop("../../etc/passwd")).await.is_err());

    // A new runtime on the same state dir sees the running instance.
    drop(rt);
    let rt2 = NodeRuntime::new(config(dir.path())).unwrap();
    let list: Vec<String> = call(
        &rt2,
        NodeRequest::InstanceList {
            hypervisor: "fake".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(list, ["inst2"]);
    let info: NodeInfo = call(&rt2, node_info_req()).await.unwrap();
    assert_eq!(info.memory_free, 512);
    // The kvm hypervisor keeps its own runtime files: no fake instance shows up there.
    let kvm_list: Vec<String> = call(
        &rt2,
        NodeRequest::InstanceList {
            hypervisor: "kvm".into(),
        },
    )
    .await
    .unwrap();
    assert!(kvm_list.is_empty());
    assert!(rt2
        .handle(NodeRequest::InstanceList {
            hypervisor: "xen-pvm".into()
        })
        .await
        .is_err());
}

#[tokio::test]
async fn fake_hypervisor_without_fake_memory_uses_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.fake_memory_mib = None;
    cfg.fake_cpus = None;
    let rt = NodeRuntime::new(cfg).unwrap();
    let info: NodeInfo = call(&rt, node_info_req()).await.unwrap();
    assert!(info.memory_total > 0);
    assert!(info.memory_free <= info.memory_total);
    assert_eq!(info.memory_dom0 + info.memory_free, info.memory_total);
    assert!(info.cpu_count >= 1);
}

#[tokio::test]
async fn file_storage() {
    let dir = tempfile::tempdir().unwrap();
    let rt = NodeRuntime::new(config(dir.path())).unwrap();
    let fsd = "file-storage".to_string();
    let create = |disk: Disk| NodeRequest::BlockdevCreate {
        disk,
        instance_name: "inst1".into(),
        file_storage_dir: fsd.clone(),
    };
    let find = |disk: Disk| NodeRequest::BlockdevFind {
        disk,
        file_storage_dir: fsd.clone(),
    };
    let remove = |disk: Disk| NodeRequest::BlockdevRemove {
        disk,
        file_storage_dir: fsd.clone(),
    };
    let list = || NodeRequest::FileStorageList {
        file_storage_dir: fsd.clone(),
    };

    let disk = file_disk("inst1/disk0", 1024);
    let info: BlockdevInfo = call(&rt, create(disk.clone())).await.unwrap();
    let path = dir.path().join("file-storage/inst1/disk0");
    assert_eq!(PathBuf::from(&info.path), path);
    assert_eq!(info.size, 1024);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1024 * 1024 * 1024);
    assert!(meta.blocks() < 64, "sparse file, {} blocks", meta.blocks());

    // Idempotent with the same size, refused with another.
    call::<BlockdevInfo>(&rt, create(disk.clone()))
        .await
        .unwrap();
    let e = rt
        .handle(create(file_disk("inst1/disk0", 10)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");

    let found: Option<BlockdevInfo> = call(&rt, find(disk.clone())).await.unwrap();
    assert_eq!(found, Some(info.clone()));
    // An absolute path inside the storage dir is accepted.
    let abs = file_disk(path.to_str().unwrap(), 1024);
    let found: Option<BlockdevInfo> = call(&rt, find(abs)).await.unwrap();
    assert_eq!(found, Some(info));

    call::<BlockdevInfo>(&rt, create(file_disk("inst2/disk0", 1)))
        .await
        .unwrap();
    let files: Vec<String> = call(&rt, list()).await.unwrap();
    assert_eq!(files, ["inst1/disk0", "inst2/disk0"]);

    // Escapes are refused.
    for bad in [
        "../escape",
        "inst1/../../escape",
        "/etc/passwd",
        "/tmp/x",
        "",
    ] {
        let e = rt
            .handle(create(file_disk(bad, 1)))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("outside") || e.contains("..") || e.contains("empty"),
            "{bad}: {e}"
        );
        assert!(rt.handle(remove(file_disk(bad, 1))).await.is_err());
    }
    assert!(!dir.path().join("escape").exists());
    // Through a symlink as well.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("file-storage/link")).unwrap();
    assert!(rt
        .handle(create(file_disk("link/escape", 1)))
        .await
        .is_err());
    assert!(!dir.path().join("escape").exists());
    std::fs::remove_file(dir.path().join("file-storage/link")).unwrap();

    // Remove, twice.
    rt.handle(remove(disk.clone())).await.unwrap();
    rt.handle(remove(disk.clone())).await.unwrap();
    assert!(!path.exists());
    assert!(!dir.path().join("file-storage/inst1").exists());
    let found: Option<BlockdevInfo> = call(&rt, find(disk)).await.unwrap();
    assert_eq!(found, None);
    let files: Vec<String> = call(&rt, list()).await.unwrap();
    assert_eq!(files, ["inst2/disk0"]);

    // Other templates are not there yet.
    let mut lvm = file_disk("x", 1);
    lvm.dev_type = maguey_model::DevType::Plain;
    lvm.logical_id = LogicalId::Plain {
        vg: "xenvg".into(),
        lv: "x".into(),
    };
    assert!(rt.handle(create(lvm)).await.is_err());
    // A relative storage dir which does not exist yet lists as empty.
    let empty: Vec<String> = call(
        &rt,
        NodeRequest::FileStorageList {
            file_storage_dir: "nothing-here".into(),
        },
    )
    .await
    .unwrap();
    assert!(empty.is_empty());
}

fn write_os(dir: &Path, name: &str, create: &str, extra: &[(&str, &str)]) -> PathBuf {
    let os_dir = dir.join(name);
    std::fs::create_dir_all(&os_dir).unwrap();
    for script in ["create", "import", "export", "rename", "verify"] {
        let body = if script == "create" {
            create
        } else {
            "#!/bin/sh\nexit 0\n"
        };
        let p = os_dir.join(script);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(os_dir.join("ganeti_api_version"), "20\n15\n").unwrap();
    for (f, content) in extra {
        std::fs::write(os_dir.join(f), content).unwrap();
    }
    os_dir
}

fn install(os: &str, dump: &Path) -> OsInstall {
    let mut osparams = BTreeMap::new();
    osparams.insert(
        "dump_file".to_string(),
        serde_json::Value::String(dump.display().to_string()),
    );
    osparams.insert("root-size".to_string(), serde_json::json!(42));
    OsInstall {
        instance_name: "inst1.example.com".into(),
        os: os.into(),
        hypervisor: "fake".into(),
        osparams,
        disks: vec![file_disk("inst1.example.com/disk0", 16)],
        nics: vec![NicRuntime {
            mac: "aa:00:00:12:34:56".into(),
            ip: Some("192.0.2.10".into()),
            mode: maguey_model::NicMode::Bridged,
            link: "br0".into(),
            network: Some(maguey_rpc::NicNetwork {
                name: "lan".into(),
                uuid: "uuid-lan".into(),
                subnet: "192.0.2.0/24".into(),
                gateway: Some("192.0.2.1".into()),
                ..Default::default()
            }),
        }],
        file_storage_dir: "file-storage".into(),
        debug_level: 1,
    }
}

fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn os_create_environment_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let os_dir = dir.path().join("os");
    write_os(
        &os_dir,
        "dumpenv",
        "#!/bin/sh\nenv > \"$OSP_DUMP_FILE\"\necho to-stdout\necho to-stderr >&2\n",
        &[
            ("variants.list", "v1\nv2\n"),
            (
                "parameters.list",
                "dump_file where to dump\nroot-size size\n",
            ),
        ],
    );
    write_os(
        &os_dir,
        "failing",
        "#!/bin/sh\necho starting\necho 'disk full, giving up' >&2\nexit 3\n",
        &[],
    );
    write_os(&os_dir, "slow", "#!/bin/sh\nsleep 30\n", &[]);
    let mut rt = NodeRuntime::new(config(dir.path())).unwrap();
    let dump = dir.path().join("env.txt");

    let out: String = call(
        &rt,
        NodeRequest::InstanceOsAdd {
            install: install("dumpenv+v2", &dump),
            reinstall: false,
        },
    )
    .await
    .unwrap();
    assert!(
        out.contains("to-stdout") && out.contains("to-stderr"),
        "{out}"
    );
    let env = env_file(&dump);
    let disk_path = dir.path().join("file-storage/inst1.example.com/disk0");
    let expect = [
        ("OS_API_VERSION", "20"),
        ("INSTANCE_NAME", "inst1.example.com"),
        ("INSTANCE_OS", "dumpenv+v2"),
        ("OS_NAME", "dumpenv"),
        ("OS_VARIANT", "v2"),
        ("HYPERVISOR", "fake"),
        ("DISK_COUNT", "1"),
        ("DISK_0_PATH", disk_path.to_str().unwrap()),
        ("DISK_0_ACCESS", "rw"),
        ("DISK_0_UUID", "uuid-inst1.example.com/disk0"),
        ("DISK_0_SIZE", "16"),
        ("NIC_COUNT", "1"),
        ("NIC_0_MAC", "aa:00:00:12:34:56"),
        ("NIC_0_IP", "192.0.2.10"),
        ("NIC_0_MODE", "bridged"),
        ("NIC_0_LINK", "br0"),
        ("NIC_0_BRIDGE", "br0"),
        ("NIC_0_NETWORK_NAME", "lan"),
        ("NIC_0_NETWORK_UUID", "uuid-lan"),
        ("NIC_0_NETWORK_FAMILY", "4"),
        ("NIC_0_NETWORK_SUBNET", "192.0.2.0/24"),
        ("NIC_0_NETWORK_GATEWAY", "192.0.2.1"),
        ("OSP_DUMP_FILE", dump.to_str().unwrap()),
        ("OSP_ROOT_SIZE", "42"),
        ("DEBUG_LEVEL", "1"),
    ];
    for (k, v) in expect {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
    }
    assert!(!env.contains_key("INSTANCE_REINSTALL"));
    assert!(!env.contains_key("CARGO"), "environment must be clean");
    // A log is kept.
    assert!(
        std::fs::read_dir(dir.path().join("log/os"))
            .unwrap()
            .count()
            >= 1
    );

    // Reinstall; no variant given: the first one.
    rt.handle(NodeRequest::InstanceOsAdd {
        install: install("dumpenv", &dump),
        reinstall: true,
    })
    .await
    .unwrap();
    let env = env_file(&dump);
    assert_eq!(env.get("INSTANCE_REINSTALL").map(String::as_str), Some("1"));
    assert_eq!(env.get("OS_VARIANT").map(String::as_str), Some("v1"));
    // Unknown variant.
    let e = rt
        .handle(NodeRequest::InstanceOsAdd {
            install: install("dumpenv+v9", &dump),
            reinstall: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no variant 'v9'"), "{e}");

    // A failing script: exit status and output surface.
    let e = rt
        .handle(NodeRequest::InstanceOsAdd {
            install: install("failing", &dump),
            reinstall: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit status 3"), "{e}");
    assert!(
        e.contains("disk full, giving up") && e.contains("starting"),
        "{e}"
    );

    // Unknown OS.
    let e = rt
        .handle(NodeRequest::InstanceOsAdd {
            install: install("nope", &dump),
            reinstall: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("OS 'nope' not found on node node1 (searched: "),
        "{e}"
    );
    assert!(e.contains(os_dir.to_str().unwrap()), "{e}");
    let e = rt
        .handle(NodeRequest::InstanceOsAdd {
            install: install("../../bin", &dump),
            reinstall: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid OS name"), "{e}");

    // Timeout.
    rt.set_os_timeout(Duration::from_millis(500));
    let t = std::time::Instant::now();
    let e = rt
        .handle(NodeRequest::InstanceOsAdd {
            install: install("slow", &dump),
            reinstall: false,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("timed out"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn os_diagnose() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("os");
    let second = dir.path().join("os2");
    let noop = os::write_noop_os(&first).unwrap();
    assert_eq!(noop, first.join("noop"));
    assert!(std::fs::read_to_string(noop.join("ganeti_api_version"))
        .unwrap()
        .contains("20"));
    // A broken definition, and a shadowed one.
    let broken = write_os(&first, "broken", "#!/bin/sh\n", &[]);
    std::fs::remove_file(broken.join("rename")).unwrap();
    let old = write_os(&first, "old", "#!/bin/sh\n", &[]);
    std::fs::write(old.join("ganeti_api_version"), "5\n").unwrap();
    write_os(&second, "noop", "#!/bin/sh\n", &[]);
    write_os(
        &second,
        "other",
        "#!/bin/sh\n",
        &[("variants.list", "a\nb\n")],
    );
    std::fs::write(second.join("not-a-dir"), "").unwrap();

    let mut cfg = config(dir.path());
    cfg.os_search_path = vec![first.clone(), dir.path().join("missing"), second.clone()];
    let rt = NodeRuntime::new(cfg).unwrap();
    let list: Vec<OsInfo> = call(&rt, NodeRequest::OsDiagnose).await.unwrap();
    let names: Vec<&str> = list.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["broken", "image", "noop", "old", "other"]);
    let by = |n: &str| list.iter().find(|o| o.name == n).unwrap();
    assert!(by("noop").valid, "{:?}", by("noop"));
    assert_eq!(PathBuf::from(&by("noop").path), noop);
    assert!(by("noop").api_versions.contains(&20));
    assert!(!by("broken").valid);
    assert!(by("broken").status.contains("rename"), "{:?}", by("broken"));
    assert!(!by("old").valid);
    assert!(by("old").status.contains("API version"), "{:?}", by("old"));
    assert_eq!(by("other").variants, ["a", "b"]);

    // noop installs fine.
    let dump = dir.path().join("unused");
    let mut inst = install("noop", &dump);
    inst.disks.clear();
    inst.nics.clear();
    rt.handle(NodeRequest::InstanceOsAdd {
        install: inst,
        reinstall: false,
    })
    .await
    .unwrap();

    let default = NodeConfig::default_os_search_path(Path::new("/var/lib/maguey"));
    assert_eq!(default[0], Path::new("/var/lib/maguey/os"));
    assert!(default.contains(&PathBuf::from("/srv/ganeti/os")));
    assert_eq!(default.len(), 6);
}

#[tokio::test]
async fn blockdev_grow_file_and_fake_resize() {
    let dir = tempfile::tempdir().unwrap();
    let rt = NodeRuntime::new(config(dir.path())).unwrap();
    let disk = file_disk("g1/disk0", 8);
    let _: BlockdevInfo = call(
        &rt,
        NodeRequest::BlockdevCreate {
            disk: disk.clone(),
            instance_name: "g1".into(),
            file_storage_dir: "file-storage".into(),
        },
    )
    .await
    .unwrap();
    let image = dir.path().join("file-storage/g1/disk0");
    std::fs::write(&image, b"data").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let grow = |amount: u64, backingstore: bool| NodeRequest::BlockdevGrow {
        disk: disk.clone(),
        file_storage_dir: "file-storage".into(),
        amount,
        backingstore,
    };
    // The logical step does nothing for files; the backing step extends the image.
    let _: () = call(&rt, grow(4, false)).await.unwrap();
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 8 << 20);
    let _: () = call(&rt, grow(4, true)).await.unwrap();
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 12 << 20);
    assert_eq!(&std::fs::read(&image).unwrap()[..4], b"data");
    assert!(call::<()>(&rt, grow(0, true))
        .await
        .unwrap_err()
        .to_string()
        .contains("0 MiB"));
    let missing = NodeRequest::BlockdevGrow {
        disk: file_disk("nope/disk0", 8),
        file_storage_dir: "file-storage".into(),
        amount: 4,
        backingstore: true,
    };
    assert!(call::<()>(&rt, missing)
        .await
        .unwrap_err()
        .to_string()
        .contains("does not exist"));

    // The fake hypervisor records the size it was told for a running instance.
    let resize = |name: &str| NodeRequest::InstanceResizeDisk {
        name: name.into(),
        hypervisor: "fake".into(),
        disk_index: 0,
        size: 12,
    };
    assert!(call::<()>(&rt, resize("g1"))
        .await
        .unwrap_err()
        .to_string()
        .contains("not running"));
    let _: () = call(
        &rt,
        NodeRequest::InstanceStart {
            instance: instance("g1", 128),
        },
    )
    .await
    .unwrap();
    let _: () = call(&rt, resize("g1")).await.unwrap();
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("run/fake/g1.json")).unwrap())
            .unwrap();
    assert_eq!(run["disk_sizes"]["0"], 12, "{run}");
}

#[tokio::test]
async fn os_scripts_run_through_the_runtime_command_runner() {
    use maguey_node::exec::{CmdOutput, ScriptedRunner};
    let dir = tempfile::tempdir().unwrap();
    os::write_noop_os(&dir.path().join("os")).unwrap();
    let mut rt = NodeRuntime::new(config(dir.path())).unwrap();
    let r = std::sync::Arc::new(ScriptedRunner::new());
    let def = dir.path().join("os/noop");
    let script = def.join("create").display().to_string();
    r.expect(&[script.as_str()], CmdOutput::fail(3, ""));
    rt.set_storage_runner(r.clone());
    let mut inst = install("noop", &dir.path().join("unused"));
    inst.osparams.clear();
    let e = call::<String>(
        &rt,
        NodeRequest::InstanceOsAdd {
            install: inst,
            reinstall: false,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), maguey_node::ErrorKind::CommandFailed);
    assert!(
        e.to_string().starts_with(
            "OS create script of 'noop' for instance inst1.example.com failed (exit status 3)"
        ),
        "{e}"
    );
    r.finish().unwrap();
    let calls = r.calls();
    // A clean environment with the OS API variables, in the definition's directory, its
    // output logged, bounded by the OS timeout.
    assert!(calls[0].env_clear);
    assert_eq!(calls[0].cwd.as_deref(), Some(def.as_path()));
    assert!(calls[0]
        .env
        .iter()
        .any(|(k, v)| k == "INSTANCE_NAME" && v == "inst1.example.com"));
    assert!(calls[0].log.is_some());
    assert_eq!(calls[0].timeout, Some(os::DEFAULT_OS_TIMEOUT));
}
