//! LVM and DRBD storage through the public API, as node RPC handlers call it: whole flows on
//! two nodes (each with its own recorded runner), and parsers fed with random and mangled
//! input (they must answer an error, never panic).

use maguey_model::{Disk, LogicalId};
use maguey_node::storage::drbd::{self, NetRole};
use maguey_node::storage::runner::ScriptedRunner;
use maguey_node::storage::{for_disk, lvm, pattern::Pattern, StorageContext};
use std::path::Path;
use std::sync::Arc;

const NODE_A: &str = "a1111111-0000-4000-8000-000000000001";
const NODE_B: &str = "b2222222-0000-4000-8000-000000000002";
const UUID: &str = "0d4c3b2a-1f0e-4d9c-8b7a-665544332211";

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

fn drbd_disk() -> Disk {
    let mut d = lv_disk("unused", 512);
    d.dev_type = maguey_model::DevType::Drbd;
    d.nodes = vec![NODE_A.into(), NODE_B.into()];
    d.logical_id = LogicalId::Drbd {
        node_a: NODE_A.into(),
        node_b: NODE_B.into(),
        port: 11002,
        minor_a: 1,
        minor_b: 0,
        secret: "s3cr3t-from-the-master".into(),
    };
    d.children = vec![
        lv_disk(&format!("{UUID}.disk0_data"), 512),
        lv_disk(&format!("{UUID}.disk0_meta"), 128),
    ];
    d
}

/// A node's context as an RPC handler would build it, with a recorded runner.
fn node(uuid: &str, proc_drbd: &str) -> (StorageContext, Arc<ScriptedRunner>) {
    let r = Arc::new(ScriptedRunner::new());
    r.file("/proc/drbd", proc_drbd);
    let ctx = StorageContext::new(Path::new("/var/lib/maguey"), "")
        .with_vg("xenvg")
        .with_node(uuid)
        .with_owner("mig1")
        .with_secondary_ip(NODE_A, "192.0.2.1".parse().expect("ip"))
        .with_secondary_ip(NODE_B, "192.0.2.2".parse().expect("ip"))
        .with_runner(r.clone());
    (ctx, r)
}

fn ok(r: &ScriptedRunner, words: &[&str]) {
    r.expect_ok(words, "");
}

/// Live migration A → B on DRBD 8.4 (Ganeti's order): both ends allow two primaries, B is
/// promoted, A demoted after the hypervisor moved, then back to a single primary.
#[test]
fn live_migration_window_on_84() {
    let disk = drbd_disk();
    let version = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 211FB288A383ED945B83420 \n";
    let a_connected = format!(
        "{version} 1: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
    );
    let b_connected = format!(
        "{version} 0: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
    );
    let (a, ra) = node(NODE_A, &a_connected);
    let (b, rb) = node(NODE_B, &b_connected);
    let (a_addr, b_addr) = ("ipv4:192.0.2.1:11002", "ipv4:192.0.2.2:11002");

    // The source allows two primaries on its live connection.
    ok(
        &ra,
        &[
            "drbdsetup",
            "net-options",
            a_addr,
            b_addr,
            "--allow-two-primaries=yes",
        ],
    );
    drbd::drbd_enable_dual_primary(&a, &disk).expect("A dual");
    // The target: already connected, so attach_net only allows two primaries and promotes.
    ok(
        &rb,
        &[
            "drbdsetup",
            "net-options",
            b_addr,
            a_addr,
            "--allow-two-primaries=yes",
        ],
    );
    ok(&rb, &["drbdsetup", "primary", "0"]);
    drbd::drbd_attach_net(&b, &disk, NetRole::DualPrimary).expect("B dual primary");
    // After the hypervisor moved: the source steps down, both back to a single primary.
    ok(&ra, &["drbdsetup", "secondary", "1"]);
    drbd::drbd_set_secondary(&a, &disk).expect("A secondary");
    ok(
        &ra,
        &[
            "drbdsetup",
            "net-options",
            a_addr,
            b_addr,
            "--allow-two-primaries=no",
        ],
    );
    ok(
        &rb,
        &[
            "drbdsetup",
            "net-options",
            b_addr,
            a_addr,
            "--allow-two-primaries=no",
        ],
    );
    drbd::drbd_disable_dual_primary(&a, &disk).expect("A single");
    drbd::drbd_disable_dual_primary(&b, &disk).expect("B single");
    ra.finish().expect("A: exact commands");
    rb.finish().expect("B: exact commands");
    assert_eq!(ra.calls().len(), 3);
    assert_eq!(rb.calls().len(), 3);
}

/// A new DRBD 9 disk on both nodes: LVs and metadata, devices up and connected, initial sync
/// skipped, A promoted; then a status poll shows it in sync.
#[test]
fn new_disk_on_drbd9_both_nodes() {
    let disk = drbd_disk();
    let version = data("drbd9/proc_drbd");
    let empty = data("drbd9/status_empty.json");
    for (uuid, minor, node_id, peer_id, local, remote) in [
        (
            NODE_A,
            "1",
            "0",
            "1",
            "ipv4:192.0.2.1:11002",
            "ipv4:192.0.2.2:11002",
        ),
        (
            NODE_B,
            "0",
            "1",
            "0",
            "ipv4:192.0.2.2:11002",
            "ipv4:192.0.2.1:11002",
        ),
    ] {
        let (ctx, r) = node(uuid, &version);
        let res = format!("resource{minor}");
        let data_lv = format!("xenvg/{UUID}.disk0_data");
        let meta_lv = format!("xenvg/{UUID}.disk0_meta");
        // blockdev_create in one pass: one status read, 2 × lvcreate, create-md
        r.expect_ok(&["drbdsetup", "status", "--json"], &empty);
        for (lv, size) in [(&data_lv, "512m"), (&meta_lv, "128m")] {
            let name = lv.trim_start_matches("xenvg/");
            ok(
                &r,
                &[
                    "lvcreate",
                    "--yes",
                    "-Wy",
                    "-L",
                    size,
                    "-n",
                    name,
                    "--addtag",
                    "originstname+mig1",
                    "xenvg",
                ],
            );
        }
        let dev = format!("/dev/drbd{minor}");
        let meta_dev = format!("/dev/{meta_lv}");
        let data_dev = format!("/dev/{data_lv}");
        ok(
            &r,
            &[
                "drbdmeta",
                "--force",
                &dev,
                "v09",
                &meta_dev,
                "flex-external",
                "create-md",
                "1",
            ],
        );
        // then (the new LVs are active) local device, peer, path, resync options, connect
        ok(&r, &["drbdsetup", "new-resource", &res, node_id]);
        ok(&r, &["drbdsetup", "new-minor", &res, minor, "0"]);
        ok(
            &r,
            &[
                "drbdsetup",
                "attach",
                minor,
                &data_dev,
                &meta_dev,
                "flexible",
                "--on-io-error=detach",
                "--size=512m",
            ],
        );
        ok(
            &r,
            &[
                "drbdsetup",
                "new-peer",
                &res,
                peer_id,
                "--protocol=C",
                "--after-sb-0pri=discard-zero-changes",
                "--after-sb-1pri=consensus",
                "--after-sb-2pri=disconnect",
                "--cram-hmac-alg=md5",
                "--shared-secret=s3cr3t-from-the-master",
            ],
        );
        ok(&r, &["drbdsetup", "new-path", &res, peer_id, local, remote]);
        ok(
            &r,
            &[
                "drbdsetup",
                "peer-device-options",
                &res,
                peer_id,
                "0",
                "--c-plan-ahead=0",
                "--resync-rate=61440",
            ],
        );
        ok(&r, &["drbdsetup", "connect", &res, peer_id]);
        let info = for_disk(&disk)
            .expect("drbd")
            .create(&ctx, &disk)
            .expect("created");
        assert_eq!(info.path, dev);
        if uuid == NODE_A {
            ok(
                &r,
                &["drbdsetup", "new-current-uuid", minor, "--clear-bitmap"],
            );
            ok(&r, &["drbdsetup", "primary", &res, "--force"]);
            drbd::drbd_skip_initial_sync(&ctx, &disk).expect("skip");
            drbd::drbd_set_primary(&ctx, &disk, true).expect("primary");
        }
        r.finish().expect("exact commands");
    }
    // The poll: A's status (minor 1 is not in the recorded file: not configured there).
    let (a, ra) = node(NODE_A, &version);
    ra.expect_ok(
        &["drbdsetup", "status", "--json"],
        &data("drbd9/status_connected.json").replace("\"minor\": 0", "\"minor\": 1"),
    );
    let st = drbd::drbd_status(&a, &disk)
        .expect("read")
        .expect("configured");
    assert!(st.is_in_sync() && st.is_primary() && !st.is_degraded());
}

/// Plain disks through `for_disk`, as `blockdev_create`/`remove` handlers call them.
#[test]
fn plain_disk_lifecycle() {
    let (ctx, r) = node(NODE_A, "");
    let disk = lv_disk(&format!("{UUID}.disk0"), 256);
    let full = format!("xenvg/{UUID}.disk0");
    let name = format!("{UUID}.disk0");
    ok(
        &r,
        &[
            "lvcreate",
            "--yes",
            "-Wy",
            "-L",
            "256m",
            "-n",
            &name,
            "--addtag",
            "originstname+mig1",
            "xenvg",
        ],
    );
    ok(&r, &["lvremove", "-f", &full]);
    let imp = for_disk(&disk).expect("plain is supported");
    assert_eq!(imp.dev_type(), maguey_model::DevType::Plain);
    let info = imp.create(&ctx, &disk).expect("created");
    assert_eq!(info.path, format!("/dev/{full}"));
    imp.remove(&ctx, &disk).expect("removed");
    r.finish().expect("exact commands");
}

/// xorshift64*: deterministic pseudo-random numbers (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random bytes, and recorded outputs truncated, with bytes flipped, inserted or deleted:
/// every parser answers Ok or Err, never panics.
#[test]
fn parsers_never_panic_on_random_or_mangled_input() {
    let seeds = [
        data("lvm/lvs_vg.json"),
        data("lvm/vgs_xenvg.json"),
        data("drbd84/proc_drbd_syncing"),
        data("drbd84/proc_drbd_mixed"),
        data("drbd9/status_syncing.json"),
        data("drbd9/status_connecting.json"),
    ];
    let alphabet = b"0123456789:./%[]{}\",-=> \n\tcsrodsyncedfinishversionabc\xff\xc3";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..4000 {
        let mut bytes: Vec<u8> = if i % 4 == 0 {
            (0..rng.below(300))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        } else {
            seeds[rng.below(seeds.len())].as_bytes().to_vec()
        };
        for _ in 0..rng.below(6) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes.truncate(at),
                1 => bytes[at] = alphabet[rng.below(alphabet.len())],
                2 => bytes.insert(at, alphabet[rng.below(alphabet.len())]),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = lvm::report::parse_lvs(&text);
        let _ = lvm::report::parse_vgs(&text);
        let _ = drbd::proc84::parse(&text);
        let _ = drbd::status9::parse(&text);
        let _ = drbd::status9::resource_names(&text);
        let _ = drbd::version::parse_proc_version(&text);
        let _ = drbd::version::parse_version_number(&text);
        if let Ok(p) = Pattern::ganeti_field(&text) {
            let _ = p.matches_at_start(&text);
        }
    }
}
