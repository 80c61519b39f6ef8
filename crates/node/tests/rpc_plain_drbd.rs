//! The node RPCs the master sends for `plain` and `drbd` instances, handled by a real
//! [`NodeRuntime`] whose LVM/DRBD commands go to a recording runner: each request must
//! produce exactly Ganeti's argv, with this node's uuid, the secondary IPs and the volume
//! group taken from the master's ssconf, and the instance's owner tag on new LVs.

use maguey_model::{Disk, LogicalId, Ssconf};
use maguey_node::storage::lvm;
use maguey_node::storage::runner::ScriptedRunner;
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{DrbdDiskStatus, DrbdRole, DrbdSyncProgress, NodeInfo, NodeRequest};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const NODE_A: &str = "a1111111-0000-4000-8000-000000000001";
const NODE_B: &str = "b2222222-0000-4000-8000-000000000002";
const UUID: &str = "0d4c3b2a-1f0e-4d9c-8b7a-665544332211";
const VERSION84: &str =
    "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 211FB288A383ED945B83420 \n";

fn data(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/storage")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn lv_disk(lv: &str, size: u64) -> Disk {
    Disk {
        uuid: UUID.into(),
        name: None,
        dev_type: maguey_model::DevType::Plain,
        size,
        mode: maguey_model::DiskMode::ReadWrite,
        logical_id: LogicalId::Plain {
            vg: "xenvg".into(),
            lv: lv.into(),
        },
        children: vec![],
        nodes: vec![NODE_A.into()],
        iv_name: "disk/0".into(),
        serial_no: 1,
        ctime: 0.0,
        mtime: 0.0,
    }
}

/// What the master's instance_create builds for `-t drbd -n node1:node2 --disk 0:size=64M`.
fn drbd_disk() -> Disk {
    let mut d = lv_disk("unused", 64);
    d.dev_type = maguey_model::DevType::Drbd;
    d.nodes = vec![NODE_A.into(), NODE_B.into()];
    d.logical_id = LogicalId::Drbd {
        node_a: NODE_A.into(),
        node_b: NODE_B.into(),
        port: 11000,
        minor_a: 0,
        minor_b: 0,
        secret: "0123456789abcdef0123".into(),
    };
    d.children = vec![
        lv_disk(&format!("{UUID}.disk0_data"), 64),
        lv_disk(&format!("{UUID}.disk0_meta"), 128),
    ];
    d
}

/// node1 (uuid NODE_A, 10.0.0.1) of a cluster whose ssconf names both nodes.
async fn runtime(dir: &Path) -> (NodeRuntime, Arc<ScriptedRunner>) {
    let mut rt = NodeRuntime::new(NodeConfig {
        state_dir: dir.to_path_buf(),
        node_name: "node1".into(),
        fake_memory_mib: Some(4096),
        fake_cpus: Some(2),
        os_search_path: vec![],
    })
    .expect("runtime");
    let r = Arc::new(ScriptedRunner::new());
    rt.set_storage_runner(r.clone());
    let ssconf = Ssconf {
        cluster_name: "c1".into(),
        master_node: "node1".into(),
        vg_name: "xenvg".into(),
        node_uuids: BTreeMap::from([
            ("node1".to_string(), NODE_A.to_string()),
            ("node2".to_string(), NODE_B.to_string()),
        ]),
        node_secondary_ips: BTreeMap::from([
            ("node1".to_string(), "10.0.0.1".to_string()),
            ("node2".to_string(), "10.0.0.2".to_string()),
        ]),
        ..Default::default()
    };
    rt.handle(NodeRequest::WriteSsconf { ssconf })
        .await
        .expect("ssconf");
    (rt, r)
}

#[tokio::test]
async fn node_info_reports_the_cluster_vg_and_plain_disks_carry_the_owner_tag() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rt, r) = runtime(dir.path()).await;
    r.expect_ok(
        &[
            "vgs",
            "--reportformat",
            "json",
            "--units",
            "m",
            "--nosuffix",
            "-o",
            lvm::VGS_FIELDS,
            "xenvg",
        ],
        &data("lvm/vgs_xenvg.json"),
    );
    let info: NodeInfo = serde_json::from_value(
        rt.handle(NodeRequest::NodeInfo {
            file_storage_dir: "fs".into(),
            hypervisor: "fake".into(),
        })
        .await
        .expect("node info"),
    )
    .expect("NodeInfo");
    let vg = info
        .storage
        .iter()
        .find(|s| s.storage_type == "lvm-vg")
        .expect("lvm-vg storage");
    assert_eq!((vg.name.as_str(), vg.storage_size), ("xenvg", 4092));
    assert_eq!(vg.storage_free, 2939);

    // blockdev_create of a plain disk: the LV with the instance's tag.
    let disk = lv_disk(&format!("{UUID}.disk0"), 64);
    let full = format!("xenvg/{UUID}.disk0");
    let name = format!("{UUID}.disk0");
    r.expect_ok(
        &[
            "lvcreate",
            "--yes",
            "-Wy",
            "-L",
            "64m",
            "-n",
            &name,
            "--addtag",
            "originstname+web1.example.com",
            "xenvg",
        ],
        "",
    );
    let created = rt
        .handle(NodeRequest::BlockdevCreate {
            disk: disk.clone(),
            instance_name: "web1.example.com".into(),
            file_storage_dir: String::new(),
        })
        .await
        .expect("create");
    assert_eq!(created["path"], format!("/dev/xenvg/{UUID}.disk0"));
    // blockdev_remove.
    r.expect_ok(&["lvremove", "-f", &full], "");
    rt.handle(NodeRequest::BlockdevRemove {
        disk,
        file_storage_dir: String::new(),
    })
    .await
    .expect("remove");
    r.finish().expect("exact commands");
    for c in r.calls() {
        assert!(
            c.env
                .iter()
                .any(|(k, v)| k == "LVM_SUPPRESS_FD_WARNINGS" && v == "1"),
            "{c}"
        );
    }
}

/// The primary's side of `instance add -t drbd -n node1:node2`: create (LVs, metadata, up,
/// connected), forced first promotion, one wait-sync poll, status; then the live migration
/// window (dual primary) and the removal.
#[tokio::test]
async fn drbd_create_promote_sync_status_and_remove_on_the_primary() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rt, r) = runtime(dir.path()).await;
    let disk = drbd_disk();
    let data_lv = format!("xenvg/{UUID}.disk0_data");
    let meta_lv = format!("xenvg/{UUID}.disk0_meta");
    let (local, remote) = ("ipv4:10.0.0.1:11000", "ipv4:10.0.0.2:11000");
    // /proc/drbd, read once for the dialect and once for the state by most steps: nothing
    // configured (create: one pass, then the promotion's version read), syncing (the
    // promotion's status read: connected; one wait-sync poll), then in sync.
    for _ in 0..3 {
        r.file("/proc/drbd", VERSION84);
    }
    r.file("/proc/drbd", &syncing())
        .file("/proc/drbd", &syncing())
        .file("/proc/drbd", &syncing());
    r.file("/proc/drbd", &data("drbd84/proc_drbd_connected"));
    for (lv, size) in [(&data_lv, "64m"), (&meta_lv, "128m")] {
        let name = lv.trim_start_matches("xenvg/");
        r.expect_ok(
            &[
                "lvcreate",
                "--yes",
                "-Wy",
                "-L",
                size,
                "-n",
                name,
                "--addtag",
                "originstname+db1",
                "xenvg",
            ],
            "",
        );
    }
    let meta_dev = format!("/dev/{meta_lv}");
    let data_dev = format!("/dev/{data_lv}");
    r.expect_ok(
        &[
            "drbdmeta",
            "--force",
            "/dev/drbd0",
            "v08",
            &meta_dev,
            "0",
            "create-md",
        ],
        "",
    );
    // The LVs lvcreate made are active: no lvchange before the device is set up.
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect_ok(
        &[
            "drbdsetup",
            "attach",
            "0",
            &data_dev,
            &meta_dev,
            "0",
            "--on-io-error=detach",
            "--c-plan-ahead=0",
            "--resync-rate=61440",
            "--size=64m",
        ],
        "",
    );
    r.expect_ok(
        &[
            "drbdsetup",
            "connect",
            "resource0",
            local,
            remote,
            "--protocol=C",
            "--after-sb-0pri=discard-zero-changes",
            "--after-sb-1pri=consensus",
            "--after-sb-2pri=disconnect",
            "--cram-hmac-alg=md5",
            "--shared-secret=0123456789abcdef0123",
        ],
        "",
    );
    let created = rt
        .handle(NodeRequest::BlockdevCreate {
            disk: disk.clone(),
            instance_name: "db1".into(),
            file_storage_dir: String::new(),
        })
        .await
        .expect("create");
    assert_eq!(created["path"], "/dev/drbd0");

    // The first primary, once connected (the node reads its status, then promotes).
    r.expect_ok(&["drbdsetup", "primary", "0", "--force"], "");
    rt.handle(NodeRequest::DrbdPromoteConnected {
        disks: vec![disk.clone()],
        timeout_secs: 60,
    })
    .await
    .expect("first primary");

    let p: DrbdSyncProgress = serde_json::from_value(
        rt.handle(NodeRequest::DrbdSyncProgress {
            disks: vec![disk.clone()],
        })
        .await
        .expect("wait sync"),
    )
    .expect("progress");
    assert!(!p.all_done);
    assert!((p.min_percent - 23.7).abs() < 0.01, "{p:?}");
    assert_eq!(p.max_eta_secs, Some(12));

    let st: Vec<Option<DrbdDiskStatus>> = serde_json::from_value(
        rt.handle(NodeRequest::DrbdStatus {
            disks: vec![disk.clone()],
        })
        .await
        .expect("status"),
    )
    .expect("statuses");
    let st = st[0].clone().expect("configured");
    assert_eq!(
        (st.connection.as_str(), st.role.as_str(), st.disk.as_str()),
        ("Connected", "Primary", "UpToDate")
    );
    assert_eq!(st.peer_disk, "UpToDate");
    assert!(st.in_sync && !st.degraded);

    // Live migration window on this (source) node, then back to one primary.
    r.expect_ok(
        &[
            "drbdsetup",
            "net-options",
            local,
            remote,
            "--allow-two-primaries=yes",
        ],
        "",
    );
    rt.handle(NodeRequest::DrbdSetDualPrimary {
        disks: vec![disk.clone()],
        enable: true,
    })
    .await
    .expect("dual");
    r.expect_ok(&["drbdsetup", "secondary", "0"], "");
    rt.handle(NodeRequest::DrbdSetRole {
        disks: vec![disk.clone()],
        primary: false,
        force: false,
    })
    .await
    .expect("secondary");
    // Already connected: assembling as the secondary changes nothing.
    rt.handle(NodeRequest::DrbdAssemble {
        disks: vec![disk.clone()],
        instance_name: "db1".into(),
        role: DrbdRole::Secondary,
    })
    .await
    .expect("assemble is idempotent");

    // Removal: the device down, both LVs gone.
    r.expect_ok(&["drbdsetup", "down", "resource0"], "");
    r.expect_ok(&["lvremove", "-f", &data_lv], "");
    r.expect_ok(&["lvremove", "-f", &meta_lv], "");
    rt.handle(NodeRequest::BlockdevRemove {
        disk,
        file_storage_dir: String::new(),
    })
    .await
    .expect("remove");
    r.finish().expect("exact commands");
}

/// A DRBD request for a node that is neither end of the disk is refused before any command.
#[tokio::test]
async fn drbd_requests_for_a_foreign_disk_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rt, r) = runtime(dir.path()).await;
    let mut disk = drbd_disk();
    if let LogicalId::Drbd { node_a, .. } = &mut disk.logical_id {
        *node_a = "c3333333-0000-4000-8000-000000000003".into();
    }
    r.file("/proc/drbd", VERSION84);
    let e = rt
        .handle(NodeRequest::DrbdAssemble {
            disks: vec![disk],
            instance_name: "db1".into(),
            role: DrbdRole::Primary,
        })
        .await
        .expect_err("not this node's disk")
        .to_string();
    assert!(e.contains("neither end"), "{e}");
    assert!(r.calls().is_empty(), "{:?}", r.argvs());
}

fn syncing() -> String {
    format!(
        "{VERSION84} 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----\n    ns:123904 nr:0 dw:0 dr:124840 al:8 bm:0 lo:0 pe:2 ua:0 ap:0 ep:1 wo:f oos:400384\n\t[===>................] sync'ed: 23.7% (400384/524288)K\n\tfinish: 0:00:12 speed: 32,256 (30,976) K/sec\n"
    )
}

/// Cluster verify's DRBD check: the module's version, and a helper other than `/bin/true`
/// reported (it would drop connections, testbed gotcha 5).
#[tokio::test]
async fn drbd_node_check_reports_version_and_helper() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rt, r) = runtime(dir.path()).await;
    r.file("/proc/drbd", VERSION84);
    r.file(
        "/sys/module/drbd/parameters/usermode_helper",
        &data("drbd84/usermode_helper_true"),
    );
    let c: maguey_rpc::DrbdNodeCheck = serde_json::from_value(
        rt.handle(NodeRequest::DrbdNodeCheck {
            usermode_helper: String::new(),
        })
        .await
        .expect("check"),
    )
    .expect("answer");
    assert_eq!(c.version.as_deref(), Some("8.4.11"));
    assert_eq!(c.helper_error, None);

    let dir = tempfile::tempdir().expect("tmp");
    let (rt, r) = runtime(dir.path()).await;
    r.file("/proc/drbd", VERSION84);
    r.file(
        "/sys/module/drbd/parameters/usermode_helper",
        &data("drbd84/usermode_helper_default"),
    );
    let c: maguey_rpc::DrbdNodeCheck = serde_json::from_value(
        rt.handle(NodeRequest::DrbdNodeCheck {
            usermode_helper: String::new(),
        })
        .await
        .expect("check"),
    )
    .expect("answer");
    let e = c.helper_error.expect("the default helper is refused");
    assert!(e.contains("/bin/true"), "{e}");
    assert!(r.calls().is_empty(), "{:?}", r.argvs());
}
