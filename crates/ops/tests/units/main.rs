//! Every opcode the [`maguey_ops::Executor`] dispatches, run in process against node runtimes
//! with the `fake` hypervisor and `file` storage (`maguey_test_infra::inprocess`): a happy
//! path asserting the config and the nodes afterwards, and the main refusal (config serial
//! and nodes unchanged). Opcodes built from Ganeti JSON, as the CLI and RAPI send them.

mod cluster;
mod disks;
mod fencing;
mod group_moves;
mod group_moves_drbd;
mod groups;
mod hooks;
mod instance;
mod moves;
mod networks;
mod node;
mod node_memory;
mod parent_jobs;
mod rooms;
mod watcher;

use maguey_test_infra::inprocess::InProcessCluster;
use serde_json::Value;

/// Runs `op`, which must be refused by its checks; the config serial and every node's run
/// state and files stay as they were. Returns the refusal.
pub async fn refused(c: &InProcessCluster, op: Value, needle: &str) -> String {
    let serial = c.serial();
    let before = c.node_states();
    let msg = c.run(op).await.refused();
    assert!(msg.contains(needle), "refusal {msg:?} lacks {needle:?}");
    assert_eq!(c.serial(), serial, "a refused opcode changed the config");
    assert_eq!(c.node_states(), before, "a refused opcode changed a node");
    msg
}

/// The bytes at the start of a file.
pub fn head(path: &std::path::Path, n: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[..n.min(bytes.len())]).into_owned()
}

/// Size of a file in MiB.
pub fn size_mib(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len() >> 20).unwrap_or(0)
}
