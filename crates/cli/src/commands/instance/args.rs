//! `maguey instance` flags (gnt-instance).

use crate::args::{Format, JobOpts, ListOpts};
use crate::commands::instance::add::InstanceAdd;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Adds tags to a instance.
    AddTags {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Removes tags from a instance (each must be there).
    RemoveTags {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Lists a instance's tags.
    ListTags { name: String },
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
    Info {
        names: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Starts instances: by name, or with --all, --node, --primary or --tags.
    #[command(alias = "startup")]
    Start {
        names: Vec<String>,
        #[command(flatten)]
        select: crate::commands::instance::select::Selection,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Stops instances: by name, or with --all, --node, --primary or --tags.
    #[command(alias = "shutdown")]
    Stop {
        names: Vec<String>,
        #[command(flatten)]
        select: crate::commands::instance::select::Selection,
        /// Seconds before a hard stop.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Reboots an instance.
    Reboot {
        name: String,
        /// soft, hard or full (Ganeti's default: hard).
        #[arg(long = "type", short = 't', default_value = "hard")]
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
        /// Do not ask for confirmation (the instance's disks are overwritten).
        #[arg(long, short = 'f', visible_alias = "yes")]
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
        /// Grow even if the disk breaks the instance policy.
        #[arg(long)]
        ignore_ipolicy: bool,
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
        /// Accept a new secondary in the primary's room.
        #[arg(long, short = 'f')]
        force: bool,
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
    Console(crate::commands::console::ConsoleArgs),
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
        /// Change even if the instance then breaks its group's instance policy.
        #[arg(long)]
        ignore_ipolicy: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves the instance to another node group (live where it can).
    ChangeGroup(crate::commands::group_moves::ChangeGroupArgs),
}
