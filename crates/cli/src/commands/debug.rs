//! `maguey debug` (gnt-debug).

use crate::args::JobOpts;
use crate::master::{client, run_job};
use crate::CliResult;
use clap::Subcommand;
use maguey_model::OpCode;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum DebugCmd {
    /// Submits OP_TEST_DELAY.
    Delay {
        /// Seconds.
        duration: f64,
        /// Also sleep on these nodes.
        #[arg(short = 'n', long = "node")]
        nodes: Vec<String>,
        #[arg(long, default_value_t = 0)]
        repeat: u32,
        /// Fail after sleeping.
        #[arg(long)]
        fail: bool,
        #[command(flatten)]
        job: JobOpts,
    },
}

pub async fn run(dir: &Path, cmd: DebugCmd) -> CliResult<u8> {
    match cmd {
        DebugCmd::Delay {
            duration,
            nodes,
            repeat,
            fail,
            job,
        } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::TestDelay(maguey_model::OpTestDelay {
                    duration,
                    on_master: true,
                    on_nodes: nodes,
                    repeat,
                    fail,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
    }
}
