//! `maguey network` (gnt-network): networks with address pools, their connections to node
//! groups, and tags.

use crate::args::JobOpts;
use crate::commands::object::{self, Object, ObjectCmd};
use crate::input::{name_ok, usage};
use crate::master::{client, run_job};
use crate::CliResult;
use clap::Subcommand;
use maguey_client::Resource;
use maguey_model::{OpCode, TagKind};
use std::path::Path;

const OBJECT: Object = Object {
    resource: Resource::Network,
    tag_kind: TagKind::Network,
    noun: "network",
    default_fields: NETWORK_DEFAULT_FIELDS,
};

const NETWORK_DEFAULT_FIELDS: &[&str] = &[
    "name",
    "network",
    "gateway",
    "mac_prefix",
    "group_list",
    "free_count",
];

fn ip_list(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Adds a network.
    Add {
        name: String,
        /// The IPv4 subnet, `a.b.c.d/len` (/16 to /30).
        #[arg(long)]
        network: String,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        network6: Option<String>,
        #[arg(long)]
        gateway6: Option<String>,
        #[arg(long)]
        mac_prefix: Option<String>,
        /// Addresses kept out of the pool (comma-separated).
        #[arg(long)]
        add_reserved_ips: Option<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Changes a network (`none` clears a value).
    Modify {
        name: String,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        network6: Option<String>,
        #[arg(long)]
        gateway6: Option<String>,
        #[arg(long)]
        mac_prefix: Option<String>,
        #[arg(long)]
        add_reserved_ips: Option<String>,
        #[arg(long)]
        remove_reserved_ips: Option<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Removes a network used by no instance and connected to no group.
    Remove {
        name: String,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Renames a network.
    Rename {
        name: String,
        new_name: String,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Connects a network to a group: its NICs there get MODE (bridged, routed,
    /// openvswitch) and LINK.
    Connect {
        network: String,
        group: String,
        mode: String,
        link: String,
        #[arg(long, default_value = "")]
        vlan: String,
        /// Refuse when instances of the group have addresses in the subnet.
        #[arg(long)]
        conflicts_check: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Disconnects a network from a group (refused while instances there use it).
    Disconnect {
        network: String,
        group: String,
        #[command(flatten)]
        job: JobOpts,
    },
    #[command(flatten)]
    Object(ObjectCmd),
}

pub async fn run(dir: &Path, cmd: NetworkCmd) -> CliResult<u8> {
    let c = client(dir)?;
    let (op, job) = match cmd {
        NetworkCmd::Add {
            name,
            network,
            gateway,
            network6,
            gateway6,
            mac_prefix,
            add_reserved_ips,
            job,
        } => {
            name_ok("network", &name)?;
            maguey_model::Ipv4Net::parse(&network).map_err(usage)?;
            (
                OpCode::NetworkAdd(maguey_model::OpNetworkAdd {
                    network_name: name,
                    network,
                    gateway,
                    network6,
                    gateway6,
                    mac_prefix,
                    add_reserved_ips: ip_list(&add_reserved_ips),
                    conflicts_check: false,
                    tags: Vec::new(),
                }),
                job,
            )
        }
        NetworkCmd::Modify {
            name,
            gateway,
            network6,
            gateway6,
            mac_prefix,
            add_reserved_ips,
            remove_reserved_ips,
            job,
        } => (
            OpCode::NetworkSetParams(maguey_model::OpNetworkSetParams {
                network_name: name,
                gateway,
                network6,
                gateway6,
                mac_prefix,
                add_reserved_ips: ip_list(&add_reserved_ips),
                remove_reserved_ips: ip_list(&remove_reserved_ips),
            }),
            job,
        ),
        NetworkCmd::Remove { name, job } => (
            OpCode::NetworkRemove(maguey_model::OpNetworkRemove {
                network_name: name,
                force: false,
            }),
            job,
        ),
        NetworkCmd::Rename {
            name,
            new_name,
            job,
        } => {
            name_ok("network", &new_name)?;
            (
                OpCode::NetworkRename(maguey_model::OpNetworkRename {
                    network_name: name,
                    new_name,
                }),
                job,
            )
        }
        NetworkCmd::Connect {
            network,
            group,
            mode,
            link,
            vlan,
            conflicts_check,
            job,
        } => (
            OpCode::NetworkConnect(maguey_model::OpNetworkConnect {
                group_name: group,
                network_name: network,
                network_mode: mode
                    .parse()
                    .map_err(|e: maguey_model::VocabError| usage(e.to_string()))?,
                network_link: link,
                network_vlan: vlan,
                conflicts_check,
            }),
            job,
        ),
        NetworkCmd::Disconnect {
            network,
            group,
            job,
        } => (
            OpCode::NetworkDisconnect(maguey_model::OpNetworkDisconnect {
                group_name: group,
                network_name: network,
            }),
            job,
        ),
        NetworkCmd::Object(o) => return object::run(dir, &c, &OBJECT, o).await,
    };
    run_job(&c, vec![op], job).await?;
    Ok(0)
}
