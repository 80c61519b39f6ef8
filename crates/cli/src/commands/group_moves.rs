//! `maguey instance change-group` and `maguey group evacuate` (gnt-instance change-group,
//! gnt-group evacuate): instances move to other node groups, one child job each.

use crate::args::JobOpts;
use crate::input::usage;
use crate::CliResult;
use clap::Args;
use maguey_model::{OpCode, OpGroupEvacuate, OpInstanceChangeGroup};

fn iallocator_ok(a: &Option<String>) -> CliResult {
    match a.as_deref() {
        None | Some("hail") | Some("maguey") => Ok(()),
        Some(other) => Err(usage(format!(
            "unknown iallocator '{other}' (Maguey's placement engine answers as 'hail')"
        ))),
    }
}

/// Flags of `instance change-group`.
#[derive(Debug, Args)]
pub struct ChangeGroupArgs {
    pub name: String,
    /// A group the instance may go to (repeatable); without it, any other group.
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// The allocator (Maguey's placement engine answers as `hail`).
    #[arg(short = 'I', long)]
    pub iallocator: Option<String>,
    /// Ganeti's flag; Maguey's moves never release a copy early.
    #[arg(long)]
    pub early_release: bool,
    /// Only print the plan.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub job: JobOpts,
}

impl ChangeGroupArgs {
    pub fn op(self) -> CliResult<(OpCode, JobOpts)> {
        iallocator_ok(&self.iallocator)?;
        let op = OpInstanceChangeGroup {
            instance_name: self.name,
            early_release: self.early_release,
            iallocator: self.iallocator,
            target_groups: self.to,
            dry_run: self.dry_run,
            ..Default::default()
        };
        Ok((op.into(), self.job))
    }
}

/// Flags of `group evacuate`.
#[derive(Debug, Args)]
pub struct EvacuateArgs {
    pub group: String,
    /// A group the instances may go to (repeatable); without it, any other group.
    #[arg(long = "to")]
    pub to: Vec<String>,
    #[arg(short = 'I', long)]
    pub iallocator: Option<String>,
    #[arg(long)]
    pub early_release: bool,
    /// One move at a time.
    #[arg(long)]
    pub sequential: bool,
    /// Stop and restart the instances on their new nodes instead of migrating them.
    #[arg(long)]
    pub force_failover: bool,
    /// Only print the plan.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub job: JobOpts,
}

impl EvacuateArgs {
    pub fn op(self) -> CliResult<(OpCode, JobOpts)> {
        iallocator_ok(&self.iallocator)?;
        if self.to.contains(&self.group) {
            return Err(usage(format!(
                "group {} cannot be a target of its own evacuation",
                self.group
            )));
        }
        let op = OpGroupEvacuate {
            group_name: self.group,
            early_release: self.early_release,
            iallocator: self.iallocator,
            target_groups: self.to,
            sequential: self.sequential,
            force_failover: self.force_failover,
            dry_run: self.dry_run,
        };
        Ok((op.into(), self.job))
    }
}
