//! Standalone `maguey-plan` (the same commands as `maguey plan`).

use clap::Parser;
use maguey_placement::cli::{run, PlanCommand};

#[derive(Parser)]
#[command(
    name = "maguey-plan",
    about = "Maguey placement engine (htools-compatible)"
)]
struct Args {
    #[command(subcommand)]
    cmd: PlanCommand,
}

fn main() {
    let args = Args::parse();
    let mut out = std::io::stdout();
    match run(args.cmd, &mut out) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}
