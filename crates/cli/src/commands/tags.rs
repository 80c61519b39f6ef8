//! `add-tags`, `remove-tags` and `list-tags` of the cluster, nodes and instances (Ganeti's
//! `gnt-cluster add-tags TAG...`, `gnt-instance add-tags NAME TAG...`).

use crate::args::JobOpts;
use crate::input::usage;
use crate::master::{client, run_job};
use crate::CliResult;
use maguey_model::{OpCode, OpTagsDel, OpTagsSet, TagKind};
use std::path::Path;

/// What a tag command does.
#[derive(Debug, Clone, Copy)]
pub enum TagAction {
    Add,
    Remove,
    List,
}

pub async fn run(
    dir: &Path,
    kind: TagKind,
    name: Option<String>,
    action: TagAction,
    tags: Vec<String>,
    job: JobOpts,
) -> CliResult<u8> {
    let c = client(dir)?;
    let op = match action {
        TagAction::List => {
            let cfg = c.config().await?;
            let missing = |what: &str, n: &str| usage(format!("{what} '{n}' is not known"));
            let n = name.clone().unwrap_or_default();
            let list = match kind {
                TagKind::Cluster => cfg.cluster.tags.clone(),
                TagKind::Node => cfg
                    .node_by_name(&n)
                    .ok_or_else(|| missing("node", &n))?
                    .tags
                    .clone(),
                TagKind::Instance => cfg
                    .instance_by_name(&n)
                    .ok_or_else(|| missing("instance", &n))?
                    .tags
                    .clone(),
                TagKind::NodeGroup => cfg
                    .group_by_name(&n)
                    .ok_or_else(|| missing("node group", &n))?
                    .tags
                    .clone(),
                TagKind::Network => cfg
                    .networks
                    .values()
                    .find(|x| x.name == n)
                    .ok_or_else(|| missing("network", &n))?
                    .tags
                    .clone(),
            };
            for t in list {
                println!("{t}");
            }
            return Ok(0);
        }
        _ if tags.is_empty() => return Err(usage("no tags given")),
        TagAction::Add => OpCode::TagsSet(OpTagsSet { kind, name, tags }),
        TagAction::Remove => OpCode::TagsDel(OpTagsDel { kind, name, tags }),
    };
    run_job(&c, vec![op], job).await.map(|_| 0)
}
