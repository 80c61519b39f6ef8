//! Waiting for a job while streaming its log, as Ganeti's CLI does.

use crate::{CliError, CliResult};
use maguey_client::MasterClient;
use maguey_model::{Job, JobStatus};
use std::time::Duration;

fn fmt_ts(ts: f64) -> String {
    let secs = ts as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

/// A progress line of the job log (`migration active: disks 100% (...), memory 48% (...)`,
/// `copy of disk disk/0: 30% (...)`): the last percentage in it.
pub fn progress_of(msg: &str) -> Option<u64> {
    if !(msg.starts_with("migration ") || msg.starts_with("copy of disk ")) {
        return None;
    }
    msg.split('%')
        .rev()
        .skip(1)
        .find_map(|before| before.rsplit(' ').next()?.parse::<u64>().ok())
        .map(|p| p.min(100))
}

/// Follows a job until it is finalized, printing each new log line; returns the final job.
/// On a terminal, progress lines (migrations, disk copies) drive a progress bar instead.
pub async fn follow(client: &MasterClient, id: u64, quiet: bool) -> CliResult<Job> {
    use std::io::IsTerminal;
    let tty = !quiet && std::io::stdout().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
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
            serial = serial.max(e.serial);
            if quiet {
                continue;
            }
            match progress_of(&e.message).filter(|_| tty) {
                Some(pct) => {
                    let b = bar.get_or_insert_with(|| {
                        let b = indicatif::ProgressBar::new(100);
                        if let Ok(style) =
                            indicatif::ProgressStyle::with_template("{bar:30} {pos:>3}% {msg}")
                        {
                            b.set_style(style);
                        }
                        b
                    });
                    b.set_position(pct);
                    b.set_message(e.message.clone());
                }
                None => {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                    println!("{} {}", fmt_ts(e.timestamp), e.message);
                }
            }
        }
        status = Some(job.status);
        if job.status.is_finalized() {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
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

#[cfg(test)]
mod tests {
    use super::progress_of;

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_of("migration active: disks 100% (64/64 MiB), memory 48% (61/128 MiB)"),
            Some(48)
        );
        assert_eq!(
            progress_of("copy of disk disk/0: 30% (19/64 MiB)"),
            Some(30)
        );
        assert_eq!(progress_of("migration done: 2810 ms in all"), None);
        assert_eq!(progress_of("starting instance vm1 on node node1"), None);
    }
}
