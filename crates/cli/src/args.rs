//! Command-line syntax (clap). Validation of values happens in `cmd`.

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
    /// A local cluster of real daemons on this machine.
    #[command(subcommand)]
    Lab(LabCmd),
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

// Parsed once per process: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Creates a cluster on this node and starts its daemon.
    Init {
        /// Cluster name.
        name: String,
        /// This node's name (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// This node's primary IP address.
        #[arg(long, short = 'a')]
        address: String,
        /// Secondary IP address (replication traffic).
        #[arg(long, short = 's')]
        secondary_ip: Option<String>,
        /// Node daemon port on every node.
        #[arg(long, default_value_t = maguey_model::DEFAULT_RPC_PORT)]
        port: u16,
        /// Directory of `file` disks on every node (relative: under each node's state dir).
        #[arg(long, default_value = "/srv/maguey/file-storage")]
        file_storage_dir: String,
        /// Directory of `sharedfile` disks, the same on every node (NFS in real life).
        #[arg(long, default_value = "/srv/maguey/shared-file-storage")]
        shared_file_storage_dir: String,
        /// Enabled hypervisors, comma-separated.
        #[arg(long, default_value = "fake")]
        enabled_hypervisors: String,
        /// Enabled disk templates, comma-separated.
        #[arg(long, default_value = "file,diskless")]
        enabled_disk_templates: String,
        /// MAC prefix of generated addresses.
        #[arg(long, default_value = "aa:00:00")]
        mac_prefix: String,
        /// LVM volume group of `plain` and `drbd` disks on every node.
        #[arg(long, default_value = maguey_model::DEFAULT_VG_NAME)]
        vg_name: String,
        /// Cluster-level backend parameters, k=v,...
        #[arg(short = 'B', long)]
        backend_parameters: Option<String>,
        /// Cluster-level NIC parameters, k=v,...
        #[arg(short = 'N', long)]
        nic_parameters: Option<String>,
        /// Memory (MiB) the fake hypervisor reports on this node.
        #[arg(long)]
        fake_memory: Option<u64>,
        /// Do not start magueyd.
        #[arg(long)]
        no_start: bool,
    },
    /// Shows the cluster's settings.
    Info {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Plans moves that even out the load (hbal on the live cluster); --execute runs them,
    /// set after set, each move its own job.
    Balance {
        /// At most this many moves.
        #[arg(long, short = 'l')]
        max_moves: Option<usize>,
        /// Stop when a move gains less than this (hbal's -g).
        #[arg(long, short = 'g')]
        min_gain: Option<f64>,
        /// No replace-disks moves.
        #[arg(long)]
        no_disk_moves: bool,
        /// Submit the moves as jobs and wait for them.
        #[arg(long, short = 'X')]
        execute: bool,
        #[arg(long, value_enum, default_value_t = Priority::Normal)]
        priority: Priority,
    },
    /// Checks the configuration against every node.
    Verify {
        #[command(flatten)]
        job: JobOpts,
    },
    /// Finds instances whose disks should be active but are not (a node rebooted) and
    /// activates them, one job each; reports unreachable nodes, missing volumes and DRBD
    /// split brains (never resolved here).
    VerifyDisks {
        /// Only the instances of this node group.
        #[arg(long, short = 'g')]
        group: Option<String>,
        #[arg(long, value_enum, default_value_t = Priority::Normal)]
        priority: Priority,
    },
    /// Destroys the cluster (only the master left, no instances).
    Destroy {
        /// Required: you really mean it.
        #[arg(long)]
        yes_do_it: bool,
    },
    /// Prints the whole configuration as JSON (backup, debugging).
    ExportConfig,
    /// Creates a state directory's config store from a JSON export (offline).
    ImportConfig { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Prepares a node's join: prints the token its magueyd needs.
    Add {
        name: String,
        /// The node's primary IP address.
        #[arg(long, short = 'a')]
        address: String,
        #[arg(long, short = 's')]
        secondary_ip: Option<String>,
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// Print only the token.
        #[arg(long)]
        token_only: bool,
    },
    /// Removes an empty node.
    Remove {
        name: String,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Lists nodes.
    List {
        names: Vec<String>,
        #[command(flatten)]
        list: ListOpts,
    },
    /// Lists the fields of `node list`.
    ListFields,
    /// Shows nodes in detail.
    Info { names: Vec<String> },
    /// Live-migrates every primary instance off a node, each as its own job.
    Migrate {
        name: String,
        /// One target node for all (default: the placement engine plans).
        #[arg(short = 'n', long = "target-node")]
        target_node: Option<String>,
        #[arg(long)]
        non_live: bool,
        #[arg(short = 'I', long)]
        iallocator: Option<String>,
        /// At most this many migrations at once.
        #[arg(long, default_value_t = 4)]
        max_parallel: u32,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves instances off a node, as the placement engine plans, each as its own job.
    Evacuate {
        name: String,
        /// Only the instances whose primary node this is.
        #[arg(short = 'p', long, conflicts_with = "secondary_only")]
        primary_only: bool,
        /// Only the instances whose secondary node this is.
        #[arg(short = 's', long)]
        secondary_only: bool,
        /// One target node for all.
        #[arg(short = 'n', long = "new-secondary")]
        remote_node: Option<String>,
        #[arg(short = 'I', long)]
        iallocator: Option<String>,
        /// At most this many moves at once.
        #[arg(long, default_value_t = 4)]
        max_parallel: u32,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Fails over every instance whose primary is this node to its secondary (one job per
    /// instance; the instances are stopped and started again).
    Failover {
        name: String,
        /// Go on although the node (its disks) cannot be reached: it is down.
        #[arg(long)]
        ignore_consistency: bool,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Changes node flags.
    Modify {
        name: String,
        #[arg(long, short = 'O', value_parser = yes_no)]
        offline: Option<bool>,
        #[arg(long, short = 'D', value_parser = yes_no)]
        drained: Option<bool>,
        #[arg(long, short = 'C', value_parser = yes_no)]
        master_candidate: Option<bool>,
        #[arg(long, value_parser = yes_no)]
        master_capable: Option<bool>,
        #[arg(long, value_parser = yes_no)]
        vm_capable: Option<bool>,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("expected yes or no, not '{s}'")),
    }
}

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Creates an instance.
    Add(InstanceAdd),
    /// Removes an instance and its disks.
    Remove {
        name: String,
        #[arg(long, short = 'f')]
        force: bool,
        #[arg(long)]
        ignore_failures: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Lists instances.
    List {
        names: Vec<String>,
        #[command(flatten)]
        list: ListOpts,
    },
    /// Lists the fields of `instance list`.
    ListFields,
    /// Shows instances in detail.
    Info { names: Vec<String> },
    /// Starts an instance.
    #[command(alias = "startup")]
    Start {
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Stops an instance.
    #[command(alias = "shutdown")]
    Stop {
        name: String,
        /// Seconds before a hard stop.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Reboots an instance.
    Reboot {
        name: String,
        /// soft, hard or full.
        #[arg(long = "type", short = 't', default_value = "soft")]
        reboot_type: String,
        #[arg(long, default_value_t = 120)]
        shutdown_timeout: u64,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves a running instance to another node without stopping it (local file disks move
    /// with it); a stopped instance is moved offline.
    Migrate {
        name: String,
        /// Target node (default: the placement engine chooses).
        #[arg(short = 'n', long = "target-node")]
        target_node: Option<String>,
        /// Repair the state after a failed migration instead of migrating.
        #[arg(long, conflicts_with = "target_node")]
        cleanup: bool,
        /// Fail instead of failing over when the instance is not running.
        #[arg(long)]
        no_allow_failover: bool,
        /// Only live migration is supported; --non-live is refused with an explanation.
        #[arg(long)]
        non_live: bool,
        /// Ganeti's --migration-mode: live or non-live.
        #[arg(long)]
        migration_mode: Option<String>,
        /// Allocator for the target (built in: hail).
        #[arg(short = 'I', long)]
        iallocator: Option<String>,
        /// Accepted for Ganeti compatibility; Maguey never prompts.
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Brings an instance's disks up on its nodes (DRBD: connected, primary on the primary
    /// node) and prints NODE:DISK:DEVICE for each.
    ActivateDisks {
        name: String,
        /// Accepted for Ganeti compatibility (the recorded sizes are used).
        #[arg(long)]
        ignore_size: bool,
        /// Wait until DRBD disks are in sync.
        #[arg(long)]
        wait_for_sync: bool,
        /// DRBD split brain: keep the primary node's data, discard the secondary's changes
        /// since the split (it resyncs from the primary).
        #[arg(long)]
        resolve_split_brain: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Shuts an instance's disks down (DRBD devices torn down; the volumes stay).
    DeactivateDisks {
        name: String,
        /// Skip the checks that the instance is down.
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Stops an instance and starts it on another node that sees its disks (sharedfile).
    Failover {
        name: String,
        #[arg(short = 'n', long = "target-node")]
        target_node: Option<String>,
        /// Go on when the primary node cannot be reached (it is down).
        #[arg(long)]
        ignore_consistency: bool,
        #[arg(long, default_value_t = 120)]
        shutdown_timeout: u64,
        #[arg(short = 'I', long)]
        iallocator: Option<String>,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Stops an instance, copies its disks to another node and starts it there.
    Move {
        name: String,
        #[arg(short = 'n', long = "target-node")]
        target_node: String,
        #[arg(long, default_value_t = 120)]
        shutdown_timeout: u64,
        #[arg(long)]
        ignore_consistency: bool,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Reinstalls the OS of a stopped instance.
    Reinstall {
        name: String,
        /// Another OS to install.
        #[arg(short = 'o', long = "os-type")]
        os: Option<String>,
        /// OS parameters k=v,... (replace the instance's).
        #[arg(short = 'O', long)]
        os_parameters: Option<String>,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Renames a stopped instance.
    Rename {
        name: String,
        new_name: String,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Grows disk DISK (its index) of an instance by AMOUNT (e.g. 512, 64M, 1G; MiB by
    /// default), or to AMOUNT with --absolute; a running guest sees the new size at once.
    GrowDisk {
        name: String,
        disk: usize,
        amount: String,
        /// AMOUNT is the new size, not the increment.
        #[arg(long)]
        absolute: bool,
        /// drbd: do not wait for the resync of the new area.
        #[arg(long)]
        no_wait_for_sync: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Replaces the storage under a drbd instance's disks: on the primary (-p), on the
    /// secondary (-s), on a new secondary node (-n NODE, or -I ALLOC to let the allocator
    /// choose), or on whichever node has faulty disks (-a).
    #[command(group(clap::ArgGroup::new("replace_mode").required(true).args(
        ["on_primary", "on_secondary", "new_secondary", "auto", "iallocator"]
    )))]
    ReplaceDisks {
        name: String,
        /// Replace the disks on the primary node.
        #[arg(short = 'p', long = "on-primary")]
        on_primary: bool,
        /// Replace the disks on the secondary node.
        #[arg(short = 's', long = "on-secondary")]
        on_secondary: bool,
        /// Move the disks' secondary side to this node.
        #[arg(short = 'n', long = "new-secondary")]
        new_secondary: Option<String>,
        /// Replace the disks on the node whose disks are faulty (nothing if none is).
        #[arg(short = 'a', long = "auto")]
        auto: bool,
        /// Allocator choosing the new secondary (built in: hail).
        #[arg(short = 'I', long)]
        iallocator: Option<String>,
        /// Disk indices to replace (-p/-s only), e.g. 0,1; default: all.
        #[arg(long)]
        disks: Option<String>,
        /// Remove the old storage before the resync ends.
        #[arg(long)]
        early_release: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Creates a stopped instance's disks again, empty (after a node lost them), on its
    /// current nodes or on new ones (-n PNODE[:SNODE]).
    RecreateDisks {
        name: String,
        /// Disk indices to recreate, e.g. 0,1; default: all.
        #[arg(long)]
        disk: Option<String>,
        /// New nodes: PNODE, or PNODE:SNODE for drbd.
        #[arg(short = 'n', long = "node")]
        nodes: Option<String>,
        /// Allocator choosing new nodes (built in: hail).
        #[arg(short = 'I', long, conflicts_with = "nodes")]
        iallocator: Option<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Attaches to an instance's serial console (--show-cmd: print the command; --log: the
    /// last output).
    Console(crate::console::ConsoleArgs),
    /// Changes an instance's parameters.
    Modify {
        name: String,
        #[arg(short = 'B', long)]
        backend_parameters: Option<String>,
        #[arg(short = 'H', long)]
        hypervisor_parameters: Option<String>,
        #[arg(short = 'O', long)]
        os_parameters: Option<String>,
        /// Memory of the running instance, changed now (balloon), e.g. 512M.
        #[arg(short = 'm', long)]
        runtime_memory: Option<String>,
        #[arg(long, conflicts_with = "online")]
        offline: bool,
        #[arg(long)]
        online: bool,
        /// Converts the (stopped) instance's disks to this template: plain or drbd.
        #[arg(short = 't', long = "disk-template")]
        disk_template: Option<String>,
        /// The new secondary node of a conversion to drbd.
        #[arg(short = 'n', long = "node")]
        node: Option<String>,
        /// Conversion to drbd: do not wait for the data to be copied to the secondary.
        #[arg(long)]
        no_wait_for_sync: bool,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
}

#[derive(Debug, Args)]
pub struct InstanceAdd {
    pub name: String,
    /// Disk template: diskless, file (sharedfile, plain, drbd later).
    #[arg(short = 't', long = "disk-template")]
    pub template: String,
    /// A disk: N:size=SIZE[,mode=rw|ro] (repeatable).
    #[arg(long = "disk")]
    pub disks: Vec<String>,
    /// Primary node, or PRIMARY:SECONDARY.
    #[arg(short = 'n', long = "node")]
    pub node: Option<String>,
    /// Allocator that picks the node(s) when -n is not given (built in: maguey, hail).
    #[arg(short = 'I', long = "iallocator")]
    pub iallocator: Option<String>,
    /// OS definition (name or name+variant).
    #[arg(short = 'o', long = "os-type")]
    pub os: Option<String>,
    #[arg(long)]
    pub no_install: bool,
    #[arg(long)]
    pub no_start: bool,
    /// `drbd`: do not wait for the initial resync of the new disks.
    #[arg(long)]
    pub no_wait_for_sync: bool,
    /// HYPERVISOR[:k=v,...].
    #[arg(short = 'H', long)]
    pub hypervisor: Option<String>,
    /// Backend parameters k=v,...
    #[arg(short = 'B', long)]
    pub backend_parameters: Option<String>,
    /// OS parameters k=v,...
    #[arg(short = 'O', long)]
    pub os_parameters: Option<String>,
    /// A NIC: N:k=v,... (mac, ip, mode, link, network) (repeatable).
    #[arg(long = "net")]
    pub nets: Vec<String>,
    /// No NICs.
    #[arg(long)]
    pub no_nics: bool,
    /// Tags.
    #[arg(long)]
    pub tags: Option<String>,
    #[command(flatten)]
    pub job: JobOpts,
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Lists jobs.
    List {
        #[arg(long)]
        archived: bool,
        /// Fields: id, status, summary, priority, received_ts, start_ts, end_ts.
        #[command(flatten)]
        list: ListOpts,
    },
    /// Shows jobs in detail.
    Info { ids: Vec<u64> },
    /// Follows a job's log until it ends.
    Watch { id: u64 },
    /// Cancels a queued or waiting job.
    Cancel { id: u64 },
    /// Archives finished jobs older than AGE seconds.
    Archive {
        #[arg(long, default_value_t = 0.0)]
        age: f64,
    },
}

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
