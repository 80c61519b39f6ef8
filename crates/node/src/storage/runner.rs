//! How storage code touches the node: commands through the node's one command runner
//! ([`crate::exec`], re-exported here) and reads of kernel status files (`/proc/drbd`,
//! `/sys/module/...`); [`StorageError`] is what storage operations fail with.

pub use crate::exec::{
    Cmd, CmdOutput, CommandRunner, ExecError, ScriptMismatch, ScriptedRunner, SystemRunner,
    DEFAULT_TIMEOUT,
};
use std::path::Path;

/// [`crate::exec::run_checked`] for storage code.
pub fn run_checked(runner: &dyn CommandRunner, cmd: &Cmd) -> Result<String, StorageError> {
    Ok(crate::exec::run_checked(runner, cmd)?)
}

/// [`crate::exec::failed`] for storage code.
pub fn failed(cmd: &Cmd, out: &CmdOutput) -> StorageError {
    crate::exec::failed(cmd, out).into()
}

/// [`crate::exec::read_optional`] for storage code.
pub fn read_optional(
    runner: &dyn CommandRunner,
    path: &Path,
) -> Result<Option<String>, StorageError> {
    Ok(crate::exec::read_optional(runner, path)?)
}

/// Errors of storage operations that run commands or parse their outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The program could not be started at all (missing binary, ...).
    #[error("cannot run `{cmd}`: {reason}")]
    Spawn { cmd: String, reason: String },
    /// The command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A command's output or a status file could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    /// The request itself is wrong (bad logical id, missing address, ...).
    #[error("{0}")]
    Invalid(String),
}

impl StorageError {
    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        StorageError::Parse {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Standard error of a failed command (empty for other errors).
    pub fn stderr(&self) -> &str {
        match self {
            StorageError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

impl From<ExecError> for StorageError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Spawn { cmd, reason } => StorageError::Spawn { cmd, reason },
            ExecError::Failed {
                cmd,
                status,
                stderr,
            } => StorageError::Failed {
                cmd,
                status,
                stderr,
            },
            ExecError::Read { path, reason } => StorageError::Read { path, reason },
        }
    }
}
