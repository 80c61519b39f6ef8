//! The commands, one module per noun: its clap flags, their validation into opcodes and the
//! execution (raw flags → validated opcodes → jobs). New nouns go beside these.

pub mod balance;
pub mod cluster;
pub mod console;
pub mod debug;
pub mod group;
pub mod instance;
pub mod job;
pub mod lab;
pub mod network;
pub mod node;
pub mod plan;

use crate::args::{Cli, Top};
use crate::CliResult;

pub async fn run(cli: Cli) -> CliResult<u8> {
    crate::master::set_cluster(cli.cluster.clone());
    let dir = cli.state_dir.clone();
    match cli.command {
        Top::Cluster(c) => cluster::run(&dir, c).await,
        Top::Node(c) => node::run(&dir, c).await,
        Top::Instance(c) => instance::run(&dir, c).await,
        Top::Job(c) => job::run(&dir, c).await,
        Top::Debug(c) => debug::run(&dir, c).await,
        Top::Plan(p) => plan::run(&dir, p).await,
        Top::Lab(l) => lab::run(l).await,
        Top::Group(c) => group::run(&dir, c).await,
        Top::Network(c) => network::run(&dir, c).await,
    }
}
