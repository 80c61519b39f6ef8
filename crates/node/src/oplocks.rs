//! The node's own locks on what a request changes (docs/security.md, "Bounded resources").
//!
//! The master's locks end with its job, and a job ends when its RPC times out (60 s for most
//! requests) even though the node may still be working (an OS script, a `qemu-img`, a DRBD
//! command, blocking work that nothing cancels). So a request that changes an instance or a
//! disk holds this node's lock on it for as long as the node works on it: the work runs in a
//! task of its own, which the master giving up (the connection closed, the handler dropped)
//! does not stop, and the lock is released only when it ends. A second request for the same
//! instance or disk waits at most [`LOCK_WAIT`] for it and is then refused as busy, naming
//! what still runs: a second job cannot touch the same disk meanwhile.
//!
//! Reads (info, status, progress, console, lists) take no lock.

use crate::error::{NodeError, NodeResult};
use maguey_model::Disk;
use maguey_rpc::{InstanceRuntime, NodeRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request waits for the lock of an instance or disk another request holds,
/// well within the master's RPC timeout.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What holds a lock: the procedure and since when.
#[derive(Debug, Clone)]
struct Holder {
    procedure: &'static str,
    since: Instant,
}

/// One key's lock and who holds it.
#[derive(Debug, Default)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    holder: Mutex<Option<Holder>>,
}

/// The locks of one node, by key (`instance NAME`, `disk UUID`).
#[derive(Debug, Default)]
pub struct OpLocks {
    locks: Mutex<HashMap<String, Arc<Entry>>>,
}

/// The locks a request holds while it runs; released when dropped.
pub struct Held {
    held: Vec<(Arc<Entry>, tokio::sync::OwnedMutexGuard<()>)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for (entry, _guard) in &self.held {
            *entry.holder.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

fn instance_key(name: &str) -> String {
    format!("instance {name}")
}

fn disk_keys(disks: &[Disk]) -> impl Iterator<Item = String> + '_ {
    disks.iter().map(|d| format!("disk {}", d.uuid))
}

fn runtime_keys(inst: &InstanceRuntime) -> Vec<String> {
    let mut k = vec![instance_key(&inst.name)];
    k.extend(disk_keys(&inst.disks));
    k
}

/// The instances and disks `req` changes (empty for reads).
pub fn keys(req: &NodeRequest) -> Vec<String> {
    use NodeRequest as R;
    let mut k = match req {
        R::InstanceStart { instance }
        | R::InstanceReboot { instance, .. }
        | R::AcceptInstance { instance, .. }
        | R::FinalizeMigrationDst { instance, .. } => runtime_keys(instance),
        R::InstanceShutdown { name, .. }
        | R::InstanceMigrate { name, .. }
        | R::FinalizeMigrationSrc { name, .. }
        | R::InstanceBalloonMemory { name, .. }
        | R::InstanceResizeDisk { name, .. } => vec![instance_key(name)],
        R::InstanceOsAdd { install, .. } | R::InstanceOsRename { install, .. } => {
            let mut k = vec![instance_key(&install.instance_name)];
            k.extend(disk_keys(&install.disks));
            k
        }
        R::BlockdevCreate { disk, .. }
        | R::BlockdevRemove { disk, .. }
        | R::BlockdevWrite { disk, .. }
        | R::BlockdevGrow { disk, .. } => disk_keys(std::slice::from_ref(disk)).collect(),
        R::DrbdAssemble { disks, .. }
        | R::DrbdSetRole { disks, .. }
        | R::DrbdPromoteConnected { disks, .. }
        | R::DrbdSetDualPrimary { disks, .. }
        | R::DrbdShutdown { disks }
        | R::DrbdReconnectDiscard { disks, .. }
        | R::DrbdReplaceStorage { disks, .. }
        | R::DrbdDisconnect { disks } => disk_keys(disks).collect(),
        _ => Vec::new(),
    };
    // One order for everyone: no two requests wait for each other.
    k.sort();
    k.dedup();
    k
}

impl OpLocks {
    /// Takes the locks of `keys` for `procedure`, waiting at most `wait` for each; a lock
    /// still held then refuses the request, naming its holder.
    pub async fn acquire(
        &self,
        keys: &[String],
        procedure: &'static str,
        wait: Duration,
    ) -> NodeResult<Held> {
        let mut held = Held {
            held: Vec::with_capacity(keys.len()),
        };
        let deadline = tokio::time::Instant::now() + wait;
        for key in keys {
            let entry = {
                let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(key.clone()).or_default().clone()
            };
            let lock = entry.lock.clone().lock_owned();
            let guard = match tokio::time::timeout_at(deadline, lock).await {
                Ok(g) => g,
                Err(_) => {
                    let holder = entry
                        .holder
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    let what = match holder {
                        Some(h) => format!(
                            "{} has been running on it for {} s",
                            h.procedure,
                            h.since.elapsed().as_secs()
                        ),
                        None => "another request holds it".to_string(),
                    };
                    return Err(NodeError::conflict(format!(
                        "{procedure} refused: {key} is busy on this node ({what}); try again \
                         when it ends"
                    )));
                }
            };
            *entry.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some(Holder {
                procedure,
                since: Instant::now(),
            });
            held.held.push((entry, guard));
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_key_refuses_after_the_wait_and_frees_on_drop() {
        let locks = OpLocks::default();
        let keys = vec!["disk d1".to_string(), "instance vm1".to_string()];
        let held = locks
            .acquire(&keys, "instance_os_add", LOCK_WAIT)
            .await
            .unwrap();
        let e = locks
            .acquire(&keys[..1], "blockdev_remove", Duration::from_millis(50))
            .await
            .err()
            .expect("refused while held");
        let m = e.to_string();
        assert!(
            m.contains("disk d1 is busy") && m.contains("instance_os_add has been running"),
            "{m}"
        );
        // Other keys are free.
        locks
            .acquire(&["disk d2".to_string()], "blockdev_remove", Duration::ZERO)
            .await
            .unwrap();
        drop(held);
        locks
            .acquire(&keys[..1], "blockdev_remove", Duration::from_millis(50))
            .await
            .unwrap();
    }
}
