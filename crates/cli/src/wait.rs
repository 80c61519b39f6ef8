//! Waiting for a job while streaming its log, as Ganeti's CLI does.

use crate::{CliError, CliResult};
use maguey_daemon::client::MasterClient;
use maguey_model::{Job, JobStatus};
use std::time::Duration;

fn fmt_ts(ts: f64) -> String {
    let secs = ts as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

/// Follows a job until it is finalized, printing each new log line; returns the final job.
pub async fn follow(client: &MasterClient, id: u64, quiet: bool) -> CliResult<Job> {
    let mut status: Option<JobStatus> = None;
    let mut serial = 0u64;
    loop {
        let job = match client
            .wait(id, status, serial, Duration::from_secs(20))
            .await?
        {
            Some(j) => j,
            None => client.job(id).await?,
        };
        let seen = serial;
        for e in job.all_log().filter(|e| e.serial > seen) {
            if !quiet {
                println!("{} {}", fmt_ts(e.timestamp), e.message);
            }
            serial = serial.max(e.serial);
        }
        status = Some(job.status);
        if job.status.is_finalized() {
            return Ok(job);
        }
    }
}

/// Submits-and-waits epilogue: success → Ok(job), error or canceled → CliError::JobFailed.
pub async fn finish(client: &MasterClient, id: u64) -> CliResult<Job> {
    let job = follow(client, id, false).await?;
    match job.status {
        JobStatus::Success => Ok(job),
        JobStatus::Canceled => Err(CliError::JobFailed(format!("job {id} was canceled"))),
        _ => {
            let msg = job
                .opresult
                .iter()
                .zip(&job.opstatus)
                .find(|(_, s)| **s == JobStatus::Error)
                .map(|(r, _)| {
                    r.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| r.to_string())
                })
                .unwrap_or_else(|| "unknown error".into());
            Err(CliError::JobFailed(format!("job {id} failed: {msg}")))
        }
    }
}
