//! `maguey node` (gnt-node).

use crate::args::{JobOpts, ListOpts};
use crate::input::{name_ok, usage};
use crate::master::{client, priority, run_job};
use crate::query::{info, list, list_fields};
use crate::{CliError, CliResult};
use clap::Subcommand;
use maguey_client::api::JoinTokenRequest;
use maguey_client::MasterClient;
use maguey_client::Resource;
use maguey_model::OpCode;
use std::path::Path;

const NODE_DEFAULT_FIELDS: &[&str] = &[
    "name",
    "dtotal",
    "dfree",
    "mtotal",
    "mnode",
    "mfree",
    "pinst_cnt",
    "sinst_cnt",
    "room",
];

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Adds tags to a node.
    AddTags {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        job: crate::args::JobOpts,
    },
    /// Removes tags from a node (each must be there).
    RemoveTags {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        job: crate::args::JobOpts,
    },
    /// Lists a node's tags.
    ListTags { name: String },
    /// Prepares a node's join: prints the token its magueyd needs.
    Add {
        name: String,
        /// The node's primary IP address.
        #[arg(long, short = 'a', required_unless_present = "readd")]
        address: Option<String>,
        #[arg(long, short = 's')]
        secondary_ip: Option<String>,
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// The node's room (failure domain).
        #[arg(long)]
        room: Option<String>,
        /// Print only the token.
        #[arg(long)]
        token_only: bool,
        /// The node joins as a witness of a replicated cluster: it votes for the master and
        /// stores the config's log, is never the master and runs no instances (run its
        /// magueyd with --witness: no hypervisor or storage needed).
        #[arg(long)]
        witness: bool,
        /// Ganeti's --readd: the node is in the cluster already (e.g. kept offline past its
        /// certificate's end) and joins again with a new certificate, keeping its instances
        /// (run its magueyd with --join ... --readd).
        #[arg(long, conflicts_with_all = ["secondary_ip", "group", "room", "witness"])]
        readd: bool,
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
    Info {
        names: Vec<String>,
        #[arg(long, value_enum, default_value_t = crate::args::Format::Table)]
        output: crate::args::Format,
    },
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
        /// Accept new secondaries in their primary's room (failure domain).
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
        /// Moves the node to this room (failure domain); "" takes it out of any room.
        #[arg(long)]
        room: Option<String>,
        #[arg(long, short = 'f')]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
}

/// Parses a yes/no flag value.
/// `node add NAME --readd`: a token for a node of the config to join again.
async fn readd_token(
    dir: &Path,
    name: &str,
    address: Option<String>,
    token_only: bool,
) -> CliResult<u8> {
    let c = client(dir)?;
    let r = c
        .readd_token(&maguey_client::api::ReaddTokenRequest {
            node_name: name.to_string(),
            primary_ip: address,
        })
        .await?;
    if token_only {
        println!("{}", r.token);
    } else {
        println!("Re-add token for node {name} (valid for one hour, usable once):");
        println!("  {}", r.token);
        println!("On {name}, with its magueyd stopped, run:");
        println!(
            "  magueyd --join {} --token {} --node-name {name} --readd",
            r.master_url, r.token
        );
        println!(
            "The node gets a new certificate and is back online (OP_NODE_ADD with readd) when \
             its daemon has joined; its instances are kept."
        );
    }
    Ok(0)
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("expected yes or no, not '{s}'")),
    }
}

pub async fn run(dir: &Path, cmd: NodeCmd) -> CliResult<u8> {
    use crate::commands::tags::{run as tags, TagAction};
    use maguey_model::TagKind::Node as K;
    let no_job = crate::args::JobOpts {
        submit: false,
        priority: crate::args::Priority::Normal,
    };
    match cmd {
        NodeCmd::AddTags { name, tags: t, job } => {
            tags(dir, K, Some(name), TagAction::Add, t, job).await
        }
        NodeCmd::RemoveTags { name, tags: t, job } => {
            tags(dir, K, Some(name), TagAction::Remove, t, job).await
        }
        NodeCmd::ListTags { name } => {
            tags(dir, K, Some(name), TagAction::List, vec![], no_job).await
        }
        NodeCmd::Add {
            name,
            address,
            secondary_ip,
            group,
            room,
            token_only,
            witness,
            readd,
        } => {
            name_ok("node", &name)?;
            if readd {
                return readd_token(dir, &name, address, token_only).await;
            }
            let address = address.unwrap_or_default();
            if let Some(r) = &room {
                maguey_model::rooms::validate_room(r).map_err(|e| usage(e.to_string()))?;
            }
            let c = client(dir)?;
            let r = c
                .join_token(&JoinTokenRequest {
                    node_name: name.clone(),
                    primary_ip: address.clone(),
                    secondary_ip,
                    group,
                    room,
                    witness,
                })
                .await?;
            if token_only {
                println!("{}", r.token);
            } else {
                println!("Join token for node {name} (valid for one hour, usable once):");
                println!("  {}", r.token);
                println!("On {name}, run:");
                println!(
                    "  magueyd --join {} --token {} --node-name {name} --listen {address}:{}{}",
                    r.master_url,
                    r.token,
                    r.master_url.rsplit(':').next().unwrap_or("1811"),
                    if witness { " --witness" } else { "" }
                );
                println!(
                    "The node is added to the cluster (OP_NODE_ADD) when its daemon has joined."
                );
            }
            Ok(0)
        }
        NodeCmd::Migrate {
            name,
            target_node,
            non_live,
            iallocator,
            max_parallel,
            force: _,
            job,
        } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeMigrate(maguey_model::OpNodeMigrate {
                    node_name: name,
                    mode: non_live.then_some(maguey_model::MigrationMode::NonLive),
                    live: None,
                    target_node,
                    iallocator,
                    ignore_ipolicy: false,
                    allow_runtime_changes: true,
                    max_parallel,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        NodeCmd::Evacuate {
            name,
            primary_only,
            secondary_only,
            remote_node,
            iallocator,
            max_parallel,
            force,
            job,
        } => {
            let mode = if primary_only {
                maguey_model::EvacMode::PrimaryOnly
            } else if secondary_only {
                maguey_model::EvacMode::SecondaryOnly
            } else {
                maguey_model::EvacMode::All
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeEvacuate(maguey_model::OpNodeEvacuate {
                    node_name: name,
                    mode,
                    remote_node,
                    iallocator,
                    early_release: false,
                    max_parallel,
                    force,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        NodeCmd::Failover {
            name,
            ignore_consistency,
            force: _,
            job,
        } => node_failover(&client(dir)?, name, ignore_consistency, job).await,
        NodeCmd::Remove { name, job } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeRemove(maguey_model::OpNodeRemove {
                    node_name: name,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        NodeCmd::List { names, list: l } => {
            list(
                &client(dir)?,
                Resource::Node,
                names,
                &l,
                NODE_DEFAULT_FIELDS,
            )
            .await
        }
        NodeCmd::ListFields => list_fields(&client(dir)?, "node").await,
        NodeCmd::Info { names, output } => info(&client(dir)?, Resource::Node, names, output).await,
        NodeCmd::Modify {
            name,
            offline,
            drained,
            master_candidate,
            master_capable,
            vm_capable,
            room,
            force,
            job,
        } => {
            if let Some(r) = room.as_deref().filter(|r| !r.is_empty()) {
                maguey_model::rooms::validate_room(r).map_err(|e| usage(e.to_string()))?;
            }
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeSetParams(maguey_model::OpNodeSetParams {
                    node_name: name,
                    offline,
                    drained,
                    master_candidate,
                    master_capable,
                    vm_capable,
                    force,
                    room,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
    }
}

/// `node failover`: one OP_INSTANCE_FAILOVER job per primary instance of the node (Ganeti's
/// gnt-node failover, client side). Refused, nothing submitted, when an instance has no
/// secondary node to fail over to.
async fn node_failover(
    c: &MasterClient,
    node: String,
    ignore_consistency: bool,
    opts: JobOpts,
) -> CliResult<u8> {
    let r = c
        .query(
            Resource::Node,
            vec![node.clone()],
            vec!["name".into(), "pinst_list".into()],
        )
        .await?;
    let Some(row) = r.rows.first() else {
        return Err(usage(format!("unknown node '{node}'")));
    };
    let node = row[0].as_str().unwrap_or(&node).to_string();
    let pinst: Vec<String> = row[1]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if pinst.is_empty() {
        println!("No primary instances on node {node}, exiting.");
        return Ok(0);
    }
    let r = c
        .query(
            Resource::Instance,
            pinst,
            vec!["name".into(), "snodes".into()],
        )
        .await?;
    let mut names = Vec::new();
    let mut refused = Vec::new();
    for row in &r.rows {
        let name = row[0].as_str().unwrap_or_default().to_string();
        if row[1].as_array().is_none_or(|a| a.is_empty()) {
            refused.push(name);
        } else {
            names.push(name);
        }
    }
    if !refused.is_empty() {
        return Err(CliError::Other(format!(
            "instance(s) without a secondary node cannot fail over: {} (nothing was done)",
            refused.join(", ")
        )));
    }
    let prio = priority(opts.priority);
    let mut ids = Vec::new();
    for name in names {
        let id = c
            .submit(
                vec![OpCode::InstanceFailover(maguey_model::OpInstanceFailover {
                    instance_name: name.clone(),
                    shutdown_timeout: 120,
                    ignore_consistency,
                    target_node: None,
                    iallocator: None,
                    ignore_ipolicy: false,
                    cleanup: false,
                })],
                prio,
            )
            .await?;
        println!("job {id}: failing over {name}");
        ids.push((name, id));
    }
    if opts.submit {
        return Ok(0);
    }
    let mut failed = 0;
    for (name, id) in ids {
        let job = crate::wait::follow(c, id, true).await?;
        if job.status == maguey_model::JobStatus::Success {
            println!("job {id} ({name}) succeeded");
        } else {
            let why = job
                .opresult
                .last()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default();
            println!("job {id} ({name}) {}: {why}", job.status.as_str());
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
