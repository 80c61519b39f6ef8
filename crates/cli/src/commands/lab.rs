//! `maguey lab`: a local cluster of real daemons on this machine.

use crate::input::usage;
use crate::{CliError, CliResult};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Starts (or restarts) a local cluster of real daemons.
    Up(maguey_lab::UpOptions),
    /// Prints the `export` lines that point the CLI at the lab.
    Env {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stops every daemon the lab started.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub async fn run(cmd: LabCmd) -> CliResult<u8> {
    match cmd {
        LabCmd::Up(opts) => {
            let lab = maguey_lab::up(&opts)
                .await
                .map_err(|e| CliError::Other(format!("lab up: {e:#}")))?;
            println!(
                "lab cluster '{}' is up with {} nodes in {}",
                lab.cluster_name,
                lab.nodes.len(),
                opts.dir.display()
            );
            println!(
                "point the CLI at it with: eval \"$(maguey lab env --dir {})\"",
                opts.dir.display()
            );
            Ok(0)
        }
        LabCmd::Env { dir } => {
            print!(
                "{}",
                maguey_lab::env(&dir).map_err(|e| usage(format!("{e:#}")))?
            );
            Ok(0)
        }
        LabCmd::Down { dir } => {
            let n = maguey_lab::down(&dir).map_err(|e| usage(format!("{e:#}")))?;
            println!("stopped {n} daemons");
            Ok(0)
        }
    }
}
