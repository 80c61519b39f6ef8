//! `maguey`: the admin CLI, shaped like Ganeti's `gnt-*` commands.
//!
//! Exit codes: 0 success, 1 the job failed, 2 bad usage or input, 3 the master cannot be reached.

mod args;
mod commands;
mod input;
mod master;
mod output;
mod query;
mod wait;

use clap::Parser;
use std::process::ExitCode;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// The job ran and failed (exit 1).
    JobFailed(String),
    /// Bad usage or input, refused before anything changed (exit 2).
    Usage(String),
    /// The master cannot be reached (exit 3).
    Unreachable(String),
    /// Anything else (exit 1).
    Other(String),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::JobFailed(_) | CliError::Other(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
        }
    }
    fn message(&self) -> &str {
        match self {
            CliError::JobFailed(m)
            | CliError::Usage(m)
            | CliError::Unreachable(m)
            | CliError::Other(m) => m,
        }
    }
}

impl From<maguey_client::ClientError> for CliError {
    fn from(e: maguey_client::ClientError) -> Self {
        match e {
            maguey_client::ClientError::Unreachable(m) => {
                CliError::Unreachable(format!("cannot reach the master: {m}"))
            }
            maguey_client::ClientError::Refused(m) => CliError::Usage(m),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(format!("{e:#}"))
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maguey: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("maguey: {}", e.message());
            ExitCode::from(e.code())
        }
    }
}
