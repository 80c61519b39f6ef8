//! Command-line syntax shared by every command (clap): the top level, job and list options.
//! Each noun's own flags live beside its handlers in `commands/<noun>`, where their values
//! are validated and turned into opcodes.

use crate::commands::{
    cluster::ClusterCmd, debug::DebugCmd, instance::InstanceCmd, job::JobCmd, lab::LabArgs,
    node::NodeCmd, room::RoomCmd,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "maguey",
    version,
    about = "Maguey cluster virtualization manager",
    after_help = "Exit codes: 0 success, 1 the job failed, 2 bad usage or input, 3 the master cannot be reached."
)]
pub struct Cli {
    /// A node's state directory: its certificate and ssconf tell where the master is.
    #[arg(
        long,
        global = true,
        env = "MAGUEY_DIR",
        default_value = "/var/lib/maguey"
    )]
    pub state_dir: PathBuf,
    /// Work remotely through the master's Remote API (https://MASTER:5080) instead of a
    /// state directory: user from MAGUEY_RAPI_USER and MAGUEY_RAPI_PASSWORD (or the file
    /// MAGUEY_RAPI_CREDENTIALS, "user password"), CA from MAGUEY_RAPI_CA.
    #[arg(long, global = true, env = "MAGUEY_CLUSTER")]
    pub cluster: Option<String>,
    /// Lists and infos: on a master candidate of a replicated cluster, answer from this
    /// node's replica of the config, possibly stale (e.g. without a quorum); marked so.
    #[arg(long, global = true)]
    pub stale_ok: bool,
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Debug, Subcommand)]
pub enum Top {
    /// Cluster-wide operations (gnt-cluster).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Node operations (gnt-node).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Instance operations (gnt-instance).
    #[command(subcommand)]
    Instance(InstanceCmd),
    /// Job queue (gnt-job).
    #[command(subcommand)]
    Job(JobCmd),
    /// Debugging helpers (gnt-debug).
    #[command(subcommand)]
    Debug(DebugCmd),
    /// Placement engine: balance, allocate, capacity, rolling reboots (htools).
    #[command(subcommand)]
    Plan(maguey_placement::cli::PlanCommand),
    /// OS definitions on the nodes (gnt-os).
    #[command(subcommand)]
    Os(crate::commands::os::OsCmd),
    /// Remote API users, kept in the config (written to the RAPI users file).
    #[command(subcommand)]
    RapiUser(crate::commands::rapi_user::RapiUserCmd),
    /// Prints the shell completion script of `maguey` (e.g. `maguey completions bash >
    /// /etc/bash_completion.d/maguey`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Writes the man pages, one per command (maguey.1, maguey-cluster-modify.1, ...),
    /// generated from these very definitions, into DIR.
    Man { dir: PathBuf },
    /// A local cluster of real daemons on this machine (runs the `maguey-lab` program).
    #[command(disable_help_flag = true)]
    Lab(LabArgs),
    /// Rooms (failure domains): list, evacuate, return, failover.
    #[command(subcommand)]
    Room(RoomCmd),
    /// Node groups (gnt-group).
    #[command(subcommand)]
    Group(crate::commands::group::GroupCmd),
    /// Networks and address pools (gnt-network).
    #[command(subcommand)]
    Network(crate::commands::network::NetworkCmd),
}

/// Options of every command that submits a job.
#[derive(Debug, Args, Clone, Copy)]
pub struct JobOpts {
    /// Print the job id and return without waiting.
    #[arg(long)]
    pub submit: bool,
    /// Job priority.
    #[arg(long, value_enum, default_value_t = Priority::Normal)]
    pub priority: Priority,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Priority {
    Low,
    Normal,
    High,
}

/// Options of list commands.
#[derive(Debug, Args, Clone)]
pub struct ListOpts {
    /// Fields to show (Ganeti's names); `+a,b` adds to the defaults.
    #[arg(short = 'o', long = "fields")]
    pub fields: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
    /// Separator instead of aligned columns.
    #[arg(long)]
    pub separator: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}
