//! Instance disks on nodes: copy between nodes, remove, undo what a step created, and the
//! messages about DRBD split brains. Shared by creation, moves and disk operations.

use crate::util::*;
use crate::Env;
use maguey_jobs::OpError;
use maguey_model::*;
use maguey_rpc::*;
use serde_json::Value;

/// Removes the instance's disks on `node`, logging (not failing on) errors: used once the
/// instance lives elsewhere.
pub(crate) async fn remove_disks(env: &Env<'_>, inst: &Instance, node: &Node) {
    let cfg = env.cfg();
    for disk in &inst.disks {
        let r: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: disk.clone(),
                    file_storage_dir: storage_dir(&cfg, disk.dev_type.template()),
                },
            )
            .await;
        match r {
            Ok(_) => env.log(format!(
                "removed the old disk {} on {}",
                disk.iv_name, node.name
            )),
            Err(e) => env.log(format!(
                "could not remove the old disk {} on {}: {e}; 'cluster verify' lists it",
                disk.iv_name, node.name
            )),
        }
    }
}

/// Creates the instance's disks on `dst` and copies their contents from `src`; on failure
/// the new disks are removed again.
pub(crate) async fn copy_disks(
    env: &Env<'_>,
    inst: &Instance,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let mut created: Vec<Disk> = Vec::new();
    let r = async {
        for disk in &inst.disks {
            let dir = storage_dir(&cfg, disk.dev_type.template());
            let _: Value = env
                .rpc(
                    dst,
                    NodeRequest::BlockdevCreate {
                        disk: disk.clone(),
                        instance_name: inst.name.clone(),
                        file_storage_dir: dir.clone(),
                    },
                )
                .await?;
            created.push(disk.clone());
            copy_one(env, disk, &dir, src, dst).await?;
        }
        Ok::<(), OpError>(())
    }
    .await;
    if r.is_err() {
        undo_disks(env, dst, &created).await;
    }
    r
}

/// What [`create_on_nodes`] did.
pub(crate) struct Created {
    /// The disks made, node by node in the order of the targets, each node's in disk order.
    pub made: Vec<(Node, Disk)>,
    /// On each node that failed, the disk whose creation failed (it may be partly made).
    pub failed: Vec<(Node, Disk)>,
    /// The first failure, in the order of the targets.
    pub error: Option<OpError>,
}

/// Creates `disks` on every node of `targets` at once (Ganeti creates on the secondary,
/// then the primary; side by side the wait is the slower node's, not the sum), each node's
/// disks one after the other, stopping on that node at its first failure. The caller undoes
/// what [`Created`] lists when anything failed; the config is not touched here.
pub(crate) async fn create_on_nodes(
    env: &Env<'_>,
    targets: &[Node],
    instance_name: &str,
    disks: &[Disk],
    storage_dir: &str,
    verb: &str,
) -> Created {
    let per_node = targets.iter().map(|target| async move {
        let mut made = Vec::new();
        for disk in disks {
            env.log(format!(
                "{verb} disk {} ({} MiB) on node {}",
                disk.iv_name, disk.size, target.name
            ));
            let res: Result<Value, OpError> = env
                .rpc(
                    target,
                    NodeRequest::BlockdevCreate {
                        disk: disk.clone(),
                        instance_name: instance_name.to_string(),
                        file_storage_dir: storage_dir.to_string(),
                    },
                )
                .await;
            match res {
                Ok(_) => made.push((target.clone(), disk.clone())),
                Err(e) => return (made, Some(((target.clone(), disk.clone()), e))),
            }
        }
        (made, None)
    });
    let mut out = Created {
        made: Vec::new(),
        failed: Vec::new(),
        error: None,
    };
    for (made, failure) in futures::future::join_all(per_node).await {
        out.made.extend(made);
        if let Some((at, e)) = failure {
            out.failed.push(at);
            out.error.get_or_insert(e);
        }
    }
    out
}

/// Removes disks created by a failed creation, logging what it does.
pub(crate) async fn undo_disks(env: &Env<'_>, node: &Node, disks: &[Disk]) {
    let cfg = env.cfg();
    for disk in disks.iter().rev() {
        env.log(format!(
            "undoing: removing disk {} on node {}",
            disk.iv_name, node.name
        ));
        let res: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: disk.clone(),
                    file_storage_dir: crate::util::storage_dir(&cfg, disk.dev_type.template()),
                },
            )
            .await;
        if let Err(e) = res {
            env.log(format!("could not remove disk {}: {e}", disk.iv_name));
        }
    }
}

/// The command that resolves a split brain of `inst` in favour of its primary.
pub(crate) fn resolve_command(inst: &str) -> String {
    format!("maguey instance activate-disks --resolve-split-brain {inst}")
}

/// The message for a DRBD disk that will not connect because one end is StandAlone.
pub(crate) fn split_brain_message(
    inst: &str,
    iv_name: &str,
    standalone_on: &str,
    other: &str,
    other_state: &str,
    primary: &str,
) -> String {
    format!(
        "disk {iv_name} of instance {inst}: DRBD is StandAlone on node {standalone_on} \
         ({other}: {other_state}): the two nodes refuse to connect, which means a split \
         brain (both changed data while apart, e.g. after a failover while the old primary \
         was cut off). To keep the data of the primary node {primary} and discard what was \
         written on the other node since the split, run: {}",
        resolve_command(inst)
    )
}

/// Bytes per copy request (the node's limit).
const CHUNK: u64 = 8 << 20;

async fn copy_one(
    env: &Env<'_>,
    disk: &Disk,
    dir: &str,
    src: &Node,
    dst: &Node,
) -> Result<(), OpError> {
    let total = disk.size.saturating_mul(1 << 20);
    env.log(format!(
        "copying disk {} ({} MiB) from {} to {}",
        disk.iv_name, disk.size, src.name, dst.name
    ));
    let started = std::time::Instant::now();
    let (mut offset, mut data_bytes, mut last_pct) = (0u64, 0u64, 0u64);
    while offset < total {
        let length = CHUNK.min(total - offset);
        let chunk: BlockdevChunk = env
            .rpc(
                src,
                NodeRequest::BlockdevRead {
                    disk: disk.clone(),
                    file_storage_dir: dir.to_string(),
                    offset,
                    length,
                },
            )
            .await?;
        if chunk.length != length {
            return Err(OpError::Exec(format!(
                "node {} sent {} bytes instead of {length}",
                src.name, chunk.length
            )));
        }
        // Holes are skipped on fresh image files; an LV needs its zeroes written.
        if chunk.data.is_some() || disk.dev_type == maguey_model::DevType::Plain {
            data_bytes += length;
            let _: Value = env
                .rpc(
                    dst,
                    NodeRequest::BlockdevWrite {
                        disk: disk.clone(),
                        file_storage_dir: dir.to_string(),
                        offset,
                        chunk,
                    },
                )
                .await?;
        }
        offset += length;
        let pct = offset * 100 / total;
        if pct >= last_pct + 10 || offset == total {
            last_pct = pct;
            env.log(format!(
                "copy of disk {}: {pct}% ({}/{} MiB)",
                disk.iv_name,
                offset >> 20,
                total >> 20
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    env.log(format!(
        "disk {} copied in {secs:.1} s ({} MiB of data, the rest holes)",
        disk.iv_name,
        data_bytes >> 20
    ));
    Ok(())
}
