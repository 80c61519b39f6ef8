//! `maguey lab ...`: a local cluster of real daemons on this machine. The lab lives in its own
//! program, `maguey-lab` (crate `maguey-lab`), so that `maguey` links neither the lab nor the
//! VM testbed: `maguey lab ARGS` runs `maguey-lab ARGS` in this process's place, with the same
//! flags, output and exit codes.

use crate::{CliError, CliResult};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// `maguey lab`'s arguments, handed to `maguey-lab` as they are.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// `up`, `env` or `down` and their flags (`maguey lab --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub async fn run(a: LabArgs) -> CliResult<u8> {
    Err(exec_lab(&a.args))
}

/// The lab program's name.
pub const LAB_PROGRAM: &str = "maguey-lab";

/// `maguey-lab` beside the running `maguey`, else on PATH.
pub fn find_lab_program() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(LAB_PROGRAM)))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(LAB_PROGRAM))
            .find(|p| p.is_file())
    })
}

/// Replaces this process with `maguey-lab ARGS`; returns only on failure.
pub fn exec_lab(args: &[OsString]) -> CliError {
    let Some(prog) = find_lab_program() else {
        let here = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "the maguey executable".into());
        return CliError::Other(format!(
            "`maguey lab` needs the {LAB_PROGRAM} program, found neither in {here} nor on PATH \
             (build it with `cargo build -p maguey-lab`)"
        ));
    };
    let err = std::process::Command::new(&prog).args(args).exec();
    CliError::Other(format!("cannot run {}: {err}", prog.display()))
}
