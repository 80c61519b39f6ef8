//! Helpers for the storage unit tests: disks as the master sends them, recorded outputs.

use super::runner::ScriptedRunner;
use super::StorageContext;
use maguey_model::{Disk, LogicalId};
use std::path::Path;
use std::sync::Arc;

pub const NODE_A: &str = "a1111111-0000-4000-8000-000000000001";
pub const NODE_B: &str = "b2222222-0000-4000-8000-000000000002";
pub const DISK_UUID: &str = "8a1d77e0-0c2f-4b5e-8f3d-6e2a9b4c1d70";

/// A recorded output under `crates/node/tests/data/storage/`.
pub fn data(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/storage")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("test data {}: {e}", path.display()))
}

pub fn plain_disk(vg: &str, lv: &str, size: u64) -> Disk {
    Disk {
        uuid: DISK_UUID.into(),
        name: None,
        dev_type: maguey_model::DevType::Plain,
        size,
        mode: maguey_model::DiskMode::ReadWrite,
        logical_id: LogicalId::Plain {
            vg: vg.into(),
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

/// A DRBD disk of `size` MiB between NODE_A (minor 0) and NODE_B (minor 3), port 11000,
/// with Ganeti's two LV children.
pub fn drbd_disk(size: u64) -> Disk {
    let mut d = plain_disk("xenvg", "unused", size);
    d.dev_type = maguey_model::DevType::Drbd;
    d.nodes = vec![NODE_A.into(), NODE_B.into()];
    d.logical_id = LogicalId::Drbd {
        node_a: NODE_A.into(),
        node_b: NODE_B.into(),
        port: 11000,
        minor_a: 0,
        minor_b: 3,
        secret: "c0ffee1234567890abcd".into(),
    };
    d.children = vec![
        plain_disk("xenvg", &format!("{DISK_UUID}.disk0_data"), size),
        plain_disk("xenvg", &format!("{DISK_UUID}.disk0_meta"), 128),
    ];
    d
}

/// A context on NODE_A (10.77.0.11, peer NODE_B 10.77.0.12) with a scripted runner.
pub fn node_a_ctx() -> (StorageContext, Arc<ScriptedRunner>) {
    let runner = Arc::new(ScriptedRunner::new());
    let ctx = StorageContext::new(Path::new("/tmp/maguey-test"), "")
        .with_vg("xenvg")
        .with_node(NODE_A)
        .with_owner("db1.example.com")
        .with_secondary_ip(NODE_A, "10.77.0.11".parse().expect("ip"))
        .with_secondary_ip(NODE_B, "10.77.0.12".parse().expect("ip"))
        .with_runner(runner.clone());
    (ctx, runner)
}

/// Argument vectors as string vectors, for comparisons.
pub fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}
