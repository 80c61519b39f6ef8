//! The commands that groups and networks share: `list`, `list-fields`, `info` and their tags
//! (flattened into `maguey group` and `maguey network`).

use crate::args::{JobOpts, ListOpts};
use crate::commands::tags::{self, TagAction};
use crate::query::{info, list, list_fields};
use crate::CliResult;
use clap::Subcommand;
use maguey_client::{MasterClient, Resource};
use maguey_model::TagKind;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum ObjectCmd {
    /// Lists all of them, or the ones named.
    List {
        names: Vec<String>,
        #[command(flatten)]
        list: ListOpts,
    },
    /// Lists the fields that `list` knows.
    ListFields,
    /// Shows the ones named (or all) in detail.
    Info {
        names: Vec<String>,
        #[arg(long, value_enum, default_value_t = crate::args::Format::Table)]
        output: crate::args::Format,
    },
    /// Lists the tags of the one named.
    ListTags { name: String },
    /// Adds tags to the one named.
    AddTags {
        name: String,
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Removes tags from the one named (each must be there).
    RemoveTags {
        name: String,
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        job: JobOpts,
    },
}

/// What kind of object an [`ObjectCmd`] is about.
pub struct Object {
    pub resource: Resource,
    pub tag_kind: TagKind,
    /// The name `list-fields` knows it by.
    pub noun: &'static str,
    pub default_fields: &'static [&'static str],
}

/// Job options of a command that submits nothing.
pub fn no_job() -> JobOpts {
    JobOpts {
        submit: false,
        priority: crate::args::Priority::Normal,
    }
}

pub async fn run(dir: &Path, c: &MasterClient, what: &Object, cmd: ObjectCmd) -> CliResult<u8> {
    let tag = |name, action, t, job| tags::run(dir, what.tag_kind, Some(name), action, t, job);
    match cmd {
        ObjectCmd::List { names, list: l } => {
            list(c, what.resource, names, &l, what.default_fields).await
        }
        ObjectCmd::ListFields => list_fields(c, what.noun).await,
        ObjectCmd::Info { names, output } => info(c, what.resource, names, output).await,
        ObjectCmd::ListTags { name } => tag(name, TagAction::List, vec![], no_job()).await,
        ObjectCmd::AddTags { name, tags: t, job } => tag(name, TagAction::Add, t, job).await,
        ObjectCmd::RemoveTags { name, tags: t, job } => tag(name, TagAction::Remove, t, job).await,
    }
}
