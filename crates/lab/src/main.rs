//! `maguey-lab`: lab clusters on one machine. Users run it as `maguey lab up|env|down` (the
//! `maguey` CLI runs this program); the production `maguey` and `magueyd` do not link the lab.
//!
//! Exit codes as `maguey`'s: 0 success, 1 `up` failed, 2 bad usage or no lab in `--dir`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "maguey-lab",
    bin_name = "maguey lab",
    version,
    about = "Local lab clusters of real daemons"
)]
struct Cli {
    #[command(subcommand)]
    cmd: LabCmd,
}

#[derive(Debug, Subcommand)]
enum LabCmd {
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
    /// Kills a node's daemon and its VMs at once (SIGKILL), like a power loss; `lab up`
    /// starts it again.
    Kill {
        #[arg(long)]
        dir: PathBuf,
        /// The node: its name (node2) or number (2).
        node: String,
    },
    /// Cuts a node off the lab's network (its link down); it keeps running. Needs a lab with
    /// network namespaces (run as root).
    Cut {
        #[arg(long)]
        dir: PathBuf,
        /// The node: its name (node2) or number (2).
        node: String,
    },
    /// Brings a cut node's link back up.
    Heal {
        #[arg(long)]
        dir: PathBuf,
        /// The node: its name (node2) or number (2).
        node: String,
    },
}

/// The lab directory `dir` (canonical); exit 2 when it holds no lab or no node `node`.
fn lab_dir(dir: &std::path::Path, node: &str) -> Result<PathBuf, Failure> {
    let d = dir
        .canonicalize()
        .map_err(|_| Failure(2, format!("no lab in {}", dir.display())))?;
    if !maguey_lab::vmnodes::is_vm_lab(&d) {
        let lab = maguey_lab::Lab::load(&d).map_err(|e| Failure(2, format!("{e:#}")))?;
        maguey_lab::faults::node_index(&lab, node).map_err(|e| Failure(2, format!("{e:#}")))?;
    }
    Ok(d)
}

/// A failure and its exit code; printed as `maguey: MESSAGE`, as the CLI prints its own.
struct Failure(u8, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maguey: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("maguey: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(cmd: LabCmd) -> Result<(), Failure> {
    match cmd {
        LabCmd::Up(opts) => {
            let lab = maguey_lab::up(&opts)
                .await
                .map_err(|e| Failure(1, format!("lab up: {e:#}")))?;
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
        }
        LabCmd::Env { dir } => {
            print!(
                "{}",
                maguey_lab::env(&dir).map_err(|e| Failure(2, format!("{e:#}")))?
            );
        }
        LabCmd::Down { dir } => {
            let n = maguey_lab::down(&dir).map_err(|e| Failure(2, format!("{e:#}")))?;
            println!("stopped {n} daemons");
        }
        LabCmd::Kill { dir, node } => {
            let dir = lab_dir(&dir, &node)?;
            let k =
                maguey_lab::faults::kill(&dir, &node).map_err(|e| Failure(1, format!("{e:#}")))?;
            match k.daemon {
                Some(pid) => println!(
                    "killed {}: magueyd (pid {pid}) and {} VMs; `maguey lab up --dir {}` starts it again",
                    k.node,
                    k.vms,
                    dir.display()
                ),
                None => println!("{}: magueyd was not running; killed {} VMs", k.node, k.vms),
            }
        }
        LabCmd::Cut { dir, node } => {
            let dir = lab_dir(&dir, &node)?;
            let name = maguey_lab::faults::set_link(&dir, &node, false)
                .map_err(|e| Failure(1, format!("{e:#}")))?;
            println!("cut {name} off the lab's network");
        }
        LabCmd::Heal { dir, node } => {
            let dir = lab_dir(&dir, &node)?;
            let name = maguey_lab::faults::set_link(&dir, &node, true)
                .map_err(|e| Failure(1, format!("{e:#}")))?;
            println!("{name} is back on the lab's network");
        }
    }
    Ok(())
}
