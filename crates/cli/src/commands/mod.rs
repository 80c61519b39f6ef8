//! The commands, one module per noun: its clap flags, their validation into opcodes and the
//! execution (raw flags → validated opcodes → jobs). New nouns go beside these.

pub mod balance;
pub mod cluster;
pub mod cluster_crypto;
pub mod cluster_modify;
pub mod console;
pub mod debug;
pub mod group;
pub mod group_moves;
pub mod instance;
pub mod ipolicy_opts;
pub mod job;
pub mod lab;
pub mod network;
pub mod node;
pub mod object;
pub mod os;
pub mod plan;
pub mod rapi_user;
pub mod room;
pub mod tags;
pub mod watcher;

use crate::args::{Cli, Top};
use crate::CliResult;

pub async fn run(cli: Cli) -> CliResult<u8> {
    crate::master::set_cluster(cli.cluster.clone());
    crate::master::set_stale_ok(cli.stale_ok);
    let dir = cli.state_dir.clone();
    match cli.command {
        Top::Cluster(c) => cluster::run(&dir, c).await,
        Top::Node(c) => node::run(&dir, c).await,
        Top::Instance(c) => instance::run(&dir, c).await,
        Top::Job(c) => job::run(&dir, c).await,
        Top::Debug(c) => debug::run(&dir, c).await,
        Top::Plan(p) => plan::run(&dir, p).await,
        Top::Lab(l) => lab::run(l).await,
        Top::Room(c) => room::run(&dir, c).await,
        Top::RapiUser(c) => rapi_user::run(&dir, c).await,
        Top::Os(c) => os::run(&dir, c).await,
        Top::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "maguey", &mut std::io::stdout());
            Ok(0)
        }
        Top::Man { dir } => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
                })
                .map_err(|e| crate::CliError::Other(format!("{}: {e}", dir.display())))?;
            println!("man pages written to {}", dir.display());
            Ok(0)
        }
        Top::Group(c) => group::run(&dir, c).await,
        Top::Network(c) => network::run(&dir, c).await,
    }
}
