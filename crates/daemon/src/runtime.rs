//! magueyd's process settings for a small, steady footprint (figures in
//! docs/benchmarks.md): a bounded tokio runtime and few malloc arenas.
//!
//! By default tokio starts one async worker per core and up to 512 blocking threads, and
//! glibc gives every thread that allocates under contention its own malloc arena (up to
//! 8 per core), each keeping freed memory of its own. On a 64-core host that is 64 idle
//! workers and dozens of arenas for a daemon whose work is waiting on sockets, QEMU and
//! commands. magueyd's async work is light (the heavy parts, commands, fsync and file I/O,
//! run on blocking threads), so a few workers serve it.

use std::time::Duration;

/// Async worker threads: one per core, at most this many.
pub const MAX_WORKERS: usize = 4;
/// Blocking threads at once (external commands, fsync, file I/O); more wait in a queue.
/// Well above what a node runs at once (the master runs at most 20 jobs).
pub const MAX_BLOCKING: usize = 64;
/// An idle blocking thread exits after this long.
pub const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// glibc malloc arenas (the main one included).
pub const MALLOC_ARENAS: i32 = 2;

/// Async workers for a host with `cores` cores.
pub fn workers(cores: usize) -> usize {
    cores.clamp(1, MAX_WORKERS)
}

/// Bounds glibc's malloc arenas; call before any thread starts.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets an allocator parameter; called while the process has a
    // single thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// The daemon's tokio runtime.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers(cores))
        .max_blocking_threads(MAX_BLOCKING)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .thread_name("magueyd")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_one_per_core_up_to_the_bound() {
        assert_eq!(workers(0), 1);
        assert_eq!(workers(2), 2);
        assert_eq!(workers(64), MAX_WORKERS);
    }

    #[test]
    fn the_runtime_runs_async_and_blocking_work() {
        let rt = build().unwrap();
        let n = rt.block_on(async { tokio::task::spawn_blocking(|| 21 * 2).await.unwrap() });
        assert_eq!(n, 42);
    }
}
