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

/// `--stale-ok`, set once by [`set_stale_ok`].
static STALE_OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

pub fn set_stale_ok(yes: bool) {
    let _ = STALE_OK.set(yes);
}

/// Whether reads may be answered by a replica that is not the master (`--stale-ok`).
pub fn stale_ok() -> bool {
    STALE_OK.get().copied().unwrap_or(false)
}

/// The master's client: through the Remote API with `--cluster`, else from the state dir.
/// On a master candidate of a replicated cluster, this node's own daemon: it serves when it
/// is the master, redirects to the master otherwise, or says why there is none (no quorum).
pub fn client(dir: &Path) -> CliResult<MasterClient> {
    match cluster_url() {
        Some(url) => Ok(MasterClient::remote_from_env(&url)?),
        None => match local_candidate(dir) {
            Some(base) => {
                let admin = maguey_rpc::ca::NodeIdentity::load_admin(dir)
                    .map_err(|e| maguey_client::ClientError::Unreachable(e.to_string()))?;
                Ok(MasterClient::new(&admin, base)?)
            }
            None => Ok(MasterClient::from_state_dir(dir)?),
        },
    }
}

/// `https://ADDR` of this node's daemon when `dir` is a master candidate's of a replicated
/// cluster (holding the admin certificate).
pub fn local_candidate(dir: &Path) -> Option<String> {
    let ss: maguey_model::Ssconf =
        serde_json::from_slice(&std::fs::read(dir.join("ssconf.json")).ok()?).ok()?;
    let daemon = maguey_bootstrap::files::DaemonFile::load(dir).ok()?;
    let candidate = ss.master_candidates.contains(&daemon.node_name);
    (ss.replicated && candidate && dir.join(maguey_rpc::ca::ADMIN_CERT_FILE).exists())
        .then(|| format!("https://{}", daemon.listen))
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
