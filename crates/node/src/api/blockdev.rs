//! Requests about block devices: create, remove, find, list, grow, and the chunks of offline
//! copies between nodes.

use crate::error::{Context, NodeError, NodeResult};
use crate::storage::{self, BlockStorage, StorageContext};
use crate::{blockcopy, NodeRuntime};
use maguey_model::Disk;
use maguey_rpc::{BlockdevChunk, BlockdevInfo};

/// `blockdev_create`: creates `disk` for instance `owner`.
pub async fn create(
    rt: &NodeRuntime,
    disk: Disk,
    owner: &str,
    file_storage_dir: &str,
) -> NodeResult<BlockdevInfo> {
    let ctx = rt.storage_ctx(file_storage_dir).with_owner(owner);
    NodeRuntime::blocking(move || storage::for_disk(&disk)?.create(&ctx, &disk)).await
}

/// `blockdev_remove`: removes `disk` (a missing disk is no error).
pub async fn remove(rt: &NodeRuntime, disk: Disk, file_storage_dir: &str) -> NodeResult<()> {
    let ctx = rt.storage_ctx(file_storage_dir);
    NodeRuntime::blocking(move || storage::for_disk(&disk)?.remove(&ctx, &disk)).await
}

/// `blockdev_find`: `disk` when it exists.
pub async fn find(
    rt: &NodeRuntime,
    disk: Disk,
    file_storage_dir: &str,
) -> NodeResult<Option<BlockdevInfo>> {
    let ctx = rt.storage_ctx(file_storage_dir);
    NodeRuntime::blocking(move || storage::for_disk(&disk)?.find(&ctx, &disk)).await
}

/// `file_storage_list`: every disk file under the file storage directory.
pub async fn file_storage_list(
    rt: &NodeRuntime,
    file_storage_dir: &str,
) -> NodeResult<Vec<String>> {
    let ctx = rt.storage_ctx(file_storage_dir);
    NodeRuntime::blocking(move || storage::file::FileStorage.list(&ctx)).await
}

/// `blockdev_read`: `length` bytes at `offset` of `disk`.
pub async fn read(
    rt: &NodeRuntime,
    disk: Disk,
    file_storage_dir: &str,
    offset: u64,
    length: u64,
) -> NodeResult<BlockdevChunk> {
    let ctx = rt.storage_ctx(file_storage_dir);
    NodeRuntime::blocking(move || blockcopy::read(&ctx, &disk, offset, length)).await
}

/// `blockdev_write`: writes `chunk` at `offset` of `disk`.
pub async fn write(
    rt: &NodeRuntime,
    disk: Disk,
    file_storage_dir: &str,
    offset: u64,
    chunk: BlockdevChunk,
) -> NodeResult<()> {
    let ctx = rt.storage_ctx(file_storage_dir);
    NodeRuntime::blocking(move || blockcopy::write(&ctx, &disk, offset, &chunk)).await
}

/// `blockdev_grow`: grows `disk` by `amount` MiB.
pub async fn grow(
    rt: &NodeRuntime,
    disk: Disk,
    file_storage_dir: &str,
    amount: u64,
    backingstore: bool,
) -> NodeResult<()> {
    let ctx = rt.storage_ctx(file_storage_dir);
    NodeRuntime::blocking(move || grow_disk(&ctx, &disk, amount, backingstore)).await
}

/// Ganeti's `blockdev_grow`: with `backingstore` the storage grows by `amount` MiB (`plain`:
/// lvextend; `drbd`: this node's data LV; `file`/`sharedfile`: the image); without it, only a
/// `drbd` device takes its new size (`drbdsetup resize` to the disk's size + `amount`).
fn grow_disk(ctx: &StorageContext, disk: &Disk, amount: u64, backingstore: bool) -> NodeResult<()> {
    if amount == 0 {
        return Err(NodeError::bad_request(format!(
            "disk {}: nothing to grow (0 MiB)",
            disk.iv_name
        )));
    }
    let new_size = disk.size.checked_add(amount).ok_or_else(|| {
        NodeError::bad_request(format!("disk {}: new size is too large", disk.iv_name))
    })?;
    let which = || format!("disk {}", disk.iv_name);
    use maguey_model::DevType;
    match (disk.dev_type, backingstore) {
        (DevType::Plain, true) => storage::lvm::LvmStorage.grow(ctx, disk, amount),
        (DevType::Drbd, true) => {
            storage::drbd::drbd_grow_backing(ctx, disk, amount).context_with(which)
        }
        (DevType::Drbd, false) => {
            storage::drbd::drbd_resize(ctx, disk, new_size).context_with(which)
        }
        (DevType::File | DevType::Sharedfile, true) => {
            storage::file::FileStorage.grow(ctx, disk, amount)
        }
        (DevType::Plain | DevType::File | DevType::Sharedfile, false) => Ok(()),
    }
}
