//! Query fields of node groups beyond the basic ones, and of networks (Ganeti's names).

use maguey_model::{ConfigData, Network, NodeGroup};
use serde_json::{json, Value};

pub(crate) const NETWORK_FIELDS: &[(&str, &str)] = &[
    ("name", "Network name"),
    ("uuid", "Network UUID"),
    ("network", "IPv4 subnet"),
    ("gateway", "IPv4 gateway"),
    ("network6", "IPv6 subnet"),
    ("gateway6", "IPv6 gateway"),
    ("mac_prefix", "MAC prefix"),
    ("free_count", "Free addresses"),
    ("reserved_count", "Reserved addresses"),
    ("map", "Address map (X reserved, . free)"),
    ("external_reservations", "Addresses reserved by the admin"),
    ("group_list", "Groups connected (name, mode, link)"),
    ("group_cnt", "Number of connected groups"),
    ("inst_list", "Instances with a NIC in the network"),
    ("inst_cnt", "Number of instances"),
    ("tags", "Tags"),
    ("serial_no", "Serial number"),
    ("ctime", "Creation time"),
    ("mtime", "Modification time"),
];

pub(crate) fn group_extra(cfg: &ConfigData, g: &NodeGroup, f: &str) -> Value {
    match f {
        "ipolicy" => json!(cfg.ipolicy_for_group(Some(&g.uuid))),
        "custom_ipolicy" => json!(g.ipolicy),
        "ndparams" => {
            let mut p = maguey_model::ParamKind::Nd.defaults();
            p.extend(cfg.cluster.ndparams.clone());
            p.extend(g.ndparams.clone());
            json!(p)
        }
        "custom_ndparams" => json!(g.ndparams),
        "diskparams" | "custom_diskparams" => json!(g.diskparams),
        "networks" => json!(g
            .networks
            .keys()
            .filter_map(|u| cfg.networks.get(u).map(|n| n.name.clone()))
            .collect::<Vec<_>>()),
        "network_links" => json!(g
            .networks
            .iter()
            .filter_map(|(u, c)| cfg
                .networks
                .get(u)
                .map(|n| json!([n.name, c.mode, c.link, c.vlan])))
            .collect::<Vec<_>>()),
        _ => Value::Null,
    }
}

pub(crate) fn network_field(cfg: &ConfigData, n: &Network, f: &str) -> Value {
    let used = || -> Vec<std::net::Ipv4Addr> {
        maguey_config::network::used_addresses(cfg, &n.uuid, None)
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    };
    match f {
        "name" => json!(n.name),
        "uuid" => json!(n.uuid),
        "network" => json!(n.network),
        "gateway" => json!(n.gateway),
        "network6" => json!(n.network6),
        "gateway6" => json!(n.gateway6),
        "mac_prefix" => json!(n.mac_prefix),
        "map" => json!(n.map(&used())),
        "free_count" | "reserved_count" => {
            let map = n.map(&used());
            let free = map.chars().filter(|c| *c == '.').count();
            if f == "free_count" {
                json!(free)
            } else {
                json!(map.len() - free)
            }
        }
        "external_reservations" => json!(n.ext_reservations.join(", ")),
        "group_list" | "group_cnt" => {
            let groups: Vec<Value> = cfg
                .nodegroups
                .values()
                .filter_map(|g| {
                    g.networks
                        .get(&n.uuid)
                        .map(|c| json!([g.name, c.mode, c.link, c.vlan]))
                })
                .collect();
            if f == "group_cnt" {
                json!(groups.len())
            } else {
                json!(groups)
            }
        }
        "inst_list" | "inst_cnt" => {
            let users = maguey_config::network::users(cfg, &n.uuid);
            if f == "inst_cnt" {
                json!(users.len())
            } else {
                json!(users)
            }
        }
        "tags" => json!(n.tags),
        "serial_no" => json!(n.serial_no),
        "ctime" => json!(n.ctime),
        "mtime" => json!(n.mtime),
        _ => Value::Null,
    }
}
