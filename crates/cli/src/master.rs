//! The master: which one this process talks to, and submitting jobs to it.

use crate::args::{JobOpts, Priority};
use crate::wait::finish;
use crate::CliResult;
use maguey_client::MasterClient;
use maguey_model::{OpCode, PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL};
use std::path::Path;

/// `--cluster URL`: the master's Remote API, set once by [`set_cluster`].
static CLUSTER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Records `--cluster` (once per process).
pub fn set_cluster(url: Option<String>) {
    let _ = CLUSTER.set(url);
}

/// `--cluster URL`, if given.
pub fn cluster_url() -> Option<String> {
    CLUSTER.get().cloned().flatten()
}

/// The master's client: through the Remote API with `--cluster`, else from the state dir.
pub fn client(dir: &Path) -> CliResult<MasterClient> {
    match cluster_url() {
        Some(url) => Ok(MasterClient::remote_from_env(&url)?),
        None => Ok(MasterClient::from_state_dir(dir)?),
    }
}

pub fn priority(p: Priority) -> i32 {
    match p {
        Priority::Low => PRIORITY_LOW,
        Priority::Normal => PRIORITY_NORMAL,
        Priority::High => PRIORITY_HIGH,
    }
}

/// Submits one job; waits for it and streams its log unless `--submit`.
pub async fn run_job(
    c: &MasterClient,
    ops: Vec<OpCode>,
    opts: JobOpts,
) -> CliResult<Option<maguey_model::Job>> {
    let id = c.submit(ops, priority(opts.priority)).await?;
    if opts.submit {
        println!("{id}");
        return Ok(None);
    }
    finish(c, id).await.map(Some)
}
