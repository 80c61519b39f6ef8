//! Offline copies of disks between nodes (`instance move`): the master reads chunks from
//! the source node and writes them on the target, both over the cluster's mutual TLS.
//! All-zero chunks travel as holes, so sparse disks stay sparse and copy fast.

use crate::error::{NodeError, NodeResult};
use crate::storage::{self, StorageContext};
use base64::Engine;
use maguey_model::Disk;
use maguey_rpc::BlockdevChunk;
use std::io::{Read, Seek, SeekFrom, Write};

/// Largest chunk one request may carry (the master uses this size).
pub const MAX_CHUNK: u64 = 8 << 20;

fn device(ctx: &StorageContext, disk: &Disk) -> NodeResult<std::path::PathBuf> {
    storage::for_disk(disk)?.device_path(ctx, disk)
}

fn check_range(disk: &Disk, offset: u64, length: u64) -> NodeResult<()> {
    if length > MAX_CHUNK {
        return Err(NodeError::bad_request(format!(
            "chunk of {length} bytes is larger than the limit of {MAX_CHUNK}"
        )));
    }
    let size = disk.size.saturating_mul(1 << 20);
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(NodeError::bad_request(format!(
            "range {offset}+{length} is outside disk {} ({size} bytes)",
            disk.iv_name
        )));
    }
    Ok(())
}

/// Reads `length` bytes at `offset` of `disk`.
pub fn read(
    ctx: &StorageContext,
    disk: &Disk,
    offset: u64,
    length: u64,
) -> NodeResult<BlockdevChunk> {
    check_range(disk, offset, length)?;
    let path = device(ctx, disk)?;
    let mut f = std::fs::File::open(&path)
        .map_err(|e| NodeError::io(format!("cannot open {}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| NodeError::io(format!("cannot seek in {}: {e}", path.display())))?;
    let mut buf = Vec::with_capacity(length as usize);
    (&mut f)
        .take(length)
        .read_to_end(&mut buf)
        .map_err(|e| NodeError::io(format!("cannot read {}: {e}", path.display())))?;
    // Past the end of a shorter file reads as zeroes.
    buf.resize(length as usize, 0);
    let data = if buf.iter().all(|b| *b == 0) {
        None
    } else {
        Some(base64::engine::general_purpose::STANDARD.encode(&buf))
    };
    Ok(BlockdevChunk { length, data })
}

/// Writes a chunk at `offset` of `disk`; a hole writes nothing on a fresh (sparse) image
/// file, and zeroes on a logical volume (a new LV holds whatever its extents held before).
pub fn write(
    ctx: &StorageContext,
    disk: &Disk,
    offset: u64,
    chunk: &BlockdevChunk,
) -> NodeResult<()> {
    check_range(disk, offset, chunk.length)?;
    let bytes = match &chunk.data {
        Some(data) => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| NodeError::bad_request(format!("invalid chunk data: {e}")))?,
        // A DRBD device on fresh LVs too (a group move copies into a new pair).
        None if matches!(
            disk.dev_type,
            maguey_model::DevType::Plain | maguey_model::DevType::Drbd
        ) =>
        {
            vec![0u8; chunk.length as usize]
        }
        None => return Ok(()),
    };
    if bytes.len() as u64 != chunk.length {
        return Err(NodeError::bad_request(format!(
            "chunk says {} bytes but carries {}",
            chunk.length,
            bytes.len()
        )));
    }
    let path = device(ctx, disk)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| NodeError::io(format!("cannot open {}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| NodeError::io(format!("cannot seek in {}: {e}", path.display())))?;
    f.write_all(&bytes)
        .map_err(|e| NodeError::io(format!("cannot write {}: {e}", path.display())))?;
    f.sync_data()
        .map_err(|e| NodeError::io(format!("cannot sync {}: {e}", path.display())))
}
