//! Which instances `instance start|stop` act on: named ones (the default), those of nodes
//! (`--node`, `--primary`), those with tags (`--tags`) or all (`--all`), as gnt-instance.

use crate::args::JobOpts;
use crate::input::{confirm, usage};
use crate::master::{client, priority};
use crate::wait::finish;
use crate::CliResult;
use clap::Args;
use maguey_model::OpCode;
use std::path::Path;

/// How the positional names are read.
#[derive(Debug, Args, Clone)]
pub struct Selection {
    /// Every instance (no names).
    #[arg(long, conflicts_with_all = ["node", "primary", "tags"])]
    pub all: bool,
    /// The names are nodes: their instances (primary or secondary).
    #[arg(long, conflicts_with_all = ["primary", "tags"])]
    pub node: bool,
    /// The names are nodes: the instances whose primary they are.
    #[arg(long, conflicts_with = "tags")]
    pub primary: bool,
    /// The names are tags: the instances that carry any of them.
    #[arg(long)]
    pub tags: bool,
    /// Act on several instances without asking.
    #[arg(long)]
    pub force_multiple: bool,
}

impl Selection {
    fn by_name(&self) -> bool {
        !(self.all || self.node || self.primary || self.tags)
    }
}

/// Runs `op(instance)` on the selected instances, one job each (submitted together, then
/// waited for in order). Exit 1 if one failed.
pub async fn run_each(
    dir: &Path,
    sel: &Selection,
    names: Vec<String>,
    job: JobOpts,
    op: impl Fn(String) -> OpCode,
) -> CliResult<u8> {
    if sel.all && !names.is_empty() {
        return Err(usage("--all takes no names"));
    }
    if !sel.all && names.is_empty() {
        return Err(usage("no names given (or --all)"));
    }
    let c = client(dir)?;
    let targets: Vec<String> = if sel.by_name() {
        names
    } else {
        let cfg = c.config().await?;
        let node_uuids: Vec<&str> = names
            .iter()
            .map(|n| {
                cfg.node_by_name(n)
                    .map(|x| x.uuid.as_str())
                    .ok_or_else(|| usage(format!("node '{n}' is not known")))
            })
            .collect::<CliResult<_>>()
            .or_else(|e| {
                if sel.node || sel.primary {
                    Err(e)
                } else {
                    Ok(vec![])
                }
            })?;
        let mut v: Vec<String> = cfg
            .instances
            .values()
            .filter(|i| {
                sel.all
                    || (sel.tags && i.tags.iter().any(|t| names.contains(t)))
                    || (sel.primary && node_uuids.contains(&i.primary_node.as_str()))
                    || (sel.node
                        && (node_uuids.contains(&i.primary_node.as_str())
                            || i.secondary_nodes().iter().any(|s| node_uuids.contains(s))))
            })
            .map(|i| i.name.clone())
            .collect();
        v.sort();
        v
    };
    if targets.is_empty() {
        println!("No instances selected.");
        return Ok(0);
    }
    if targets.len() > 1 && !sel.force_multiple {
        confirm(&format!(
            "The following instances will be affected: {} (--force-multiple to skip this). \
             Continue?",
            targets.join(", ")
        ))?;
    }
    let mut ids = Vec::new();
    for t in &targets {
        ids.push((
            t.clone(),
            c.submit(vec![op(t.clone())], priority(job.priority))
                .await?,
        ));
    }
    if job.submit {
        for (_, id) in &ids {
            println!("{id}");
        }
        return Ok(0);
    }
    let mut failed = Vec::new();
    for (name, id) in ids {
        if let Err(e) = finish(&c, id).await {
            eprintln!("{name}: {}", e.message());
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(crate::CliError::JobFailed(format!(
            "failed for: {}",
            failed.join(", ")
        )))
    }
}
