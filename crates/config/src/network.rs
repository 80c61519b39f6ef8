//! Networks: the checks and changes of `AddNetwork`, `UpdateNetwork` and `RemoveNetwork`, and
//! the NIC addresses of instances in networks.

use crate::error::ConfigError;
use maguey_model::{ConfigData, Instance, Ipv4Net, Network};
use std::net::Ipv4Addr;

fn net_err(n: &Network, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("network {}: {e}", n.name))
}

/// Checks of a network that do not look at the rest of the config.
fn check_fields(n: &Network) -> Result<Ipv4Net, ConfigError> {
    if n.uuid.is_empty() {
        return Err(ConfigError::EmptyUuid { kind: "network" });
    }
    crate::commands::check_name("network", &n.name)?;
    let net = n.subnet().map_err(|e| net_err(n, e))?;
    let in_net = |ip: &str, what: &str| -> Result<(), ConfigError> {
        let a: Ipv4Addr = ip
            .parse()
            .map_err(|_| net_err(n, format!("invalid {what} '{ip}'")))?;
        if !net.contains(a) {
            return Err(net_err(n, format!("{what} {ip} is not in {}", n.network)));
        }
        Ok(())
    };
    if let Some(g) = &n.gateway {
        in_net(g, "gateway")?;
    }
    for ip in &n.ext_reservations {
        in_net(ip, "reserved address")?;
    }
    if let Some(p) = &n.network6 {
        let (a, l) = p
            .split_once('/')
            .ok_or_else(|| net_err(n, format!("invalid IPv6 prefix '{p}'")))?;
        if a.parse::<std::net::Ipv6Addr>().is_err() || l.parse::<u8>().map_or(true, |l| l > 128) {
            return Err(net_err(n, format!("invalid IPv6 prefix '{p}'")));
        }
    }
    if let Some(g) = &n.gateway6 {
        if g.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(net_err(n, format!("invalid IPv6 gateway '{g}'")));
        }
    }
    if let Some(m) = &n.mac_prefix {
        if !crate::commands::is_hex_bytes(m, 3) {
            return Err(net_err(
                n,
                format!("invalid MAC prefix '{m}' (expected three lowercase hex bytes)"),
            ));
        }
    }
    Ok(net)
}

pub(crate) fn check_add(state: &ConfigData, n: &Network) -> Result<(), ConfigError> {
    check_fields(n)?;
    crate::commands::check_uuid_free(state, &n.uuid)?;
    if state.networks.contains_key(&n.uuid) {
        return Err(ConfigError::UuidInUse {
            uuid: n.uuid.clone(),
            used_by: "a network".into(),
        });
    }
    check_name_free(state, n)
}

pub(crate) fn check_update(state: &ConfigData, n: &Network) -> Result<(), ConfigError> {
    check_fields(n)?;
    let old = network(state, &n.uuid)?;
    if old.network != n.network {
        return Err(net_err(n, "the subnet of a network cannot change"));
    }
    check_name_free(state, n)?;
    // A new reservation (or gateway) must not be an address a NIC holds.
    let used = used_addresses(state, &n.uuid, None);
    for ip in n.fixed_reservations() {
        if let Some((_, inst)) = used.iter().find(|(a, _)| *a == ip) {
            return Err(net_err(
                n,
                format!("address {ip} is used by instance {inst}"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_remove(state: &ConfigData, uuid: &str) -> Result<(), ConfigError> {
    let n = network(state, uuid)?;
    let groups: Vec<&str> = state
        .nodegroups
        .values()
        .filter(|g| g.networks.contains_key(uuid))
        .map(|g| g.name.as_str())
        .collect();
    if !groups.is_empty() {
        return Err(net_err(
            n,
            format!("still connected to group(s) {}", groups.join(", ")),
        ));
    }
    let users = users(state, uuid);
    if !users.is_empty() {
        return Err(net_err(
            n,
            format!("used by instance(s) {}", users.join(", ")),
        ));
    }
    Ok(())
}

fn check_name_free(state: &ConfigData, n: &Network) -> Result<(), ConfigError> {
    if state
        .networks
        .values()
        .any(|o| o.name == n.name && o.uuid != n.uuid)
    {
        return Err(ConfigError::NameInUse {
            kind: "network",
            name: n.name.clone(),
        });
    }
    Ok(())
}

fn network<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a Network, ConfigError> {
    state
        .networks
        .get(uuid)
        .ok_or_else(|| ConfigError::Unknown {
            kind: "network",
            uuid: uuid.to_string(),
        })
}

/// Names of the instances with a NIC in the network.
pub fn users(state: &ConfigData, net: &str) -> Vec<String> {
    state
        .instances
        .values()
        .filter(|i| i.nics.iter().any(|n| n.network.as_deref() == Some(net)))
        .map(|i| i.name.clone())
        .collect()
}

/// Names of the instances of a group (by primary node) with a NIC in the network.
pub fn users_in_group(state: &ConfigData, net: &str, group: &str) -> Vec<String> {
    state
        .instances
        .values()
        .filter(|i| {
            state.nodes.get(&i.primary_node).map(|n| n.group.as_str()) == Some(group)
                && i.nics.iter().any(|n| n.network.as_deref() == Some(net))
        })
        .map(|i| i.name.clone())
        .collect()
}

/// Addresses of the network held by NICs, with the instance holding each (`skip`: an
/// instance left out).
pub fn used_addresses(
    state: &ConfigData,
    net: &str,
    skip: Option<&str>,
) -> Vec<(Ipv4Addr, String)> {
    let mut out = Vec::new();
    for i in state.instances.values() {
        if Some(i.uuid.as_str()) == skip {
            continue;
        }
        for nic in &i.nics {
            if nic.network.as_deref() == Some(net) {
                if let Some(a) = nic.ip.as_deref().and_then(|ip| ip.parse().ok()) {
                    out.push((a, i.name.clone()));
                }
            }
        }
    }
    out
}

/// An instance's NICs in networks: the network exists; an address is in its subnet, not
/// reserved, and held by no other NIC.
pub(crate) fn check_instance_nics(state: &ConfigData, inst: &Instance) -> Result<(), ConfigError> {
    let mut mine: Vec<(String, Ipv4Addr)> = Vec::new();
    for (idx, nic) in inst.nics.iter().enumerate() {
        let Some(net_uuid) = &nic.network else {
            continue;
        };
        let n = network(state, net_uuid)?;
        let Some(ip) = &nic.ip else { continue };
        let Ok(a) = ip.parse::<Ipv4Addr>() else {
            return Err(ConfigError::Invalid(format!(
                "NIC {idx} of instance {}: invalid address '{ip}'",
                inst.name
            )));
        };
        let subnet = n.subnet().map_err(|e| net_err(n, e))?;
        if !subnet.contains(a) {
            return Err(ConfigError::Invalid(format!(
                "NIC {idx} of instance {}: address {ip} is not in network {} ({})",
                inst.name, n.name, n.network
            )));
        }
        if n.fixed_reservations().contains(&a) {
            return Err(ConfigError::Invalid(format!(
                "NIC {idx} of instance {}: address {ip} is reserved in network {}",
                inst.name, n.name
            )));
        }
        if mine.iter().any(|(u, m)| u == net_uuid && *m == a) {
            return Err(ConfigError::Invalid(format!(
                "address {ip} is used twice by instance {} in network {}",
                inst.name, n.name
            )));
        }
        if let Some((_, other)) = used_addresses(state, net_uuid, Some(&inst.uuid))
            .into_iter()
            .find(|(x, _)| *x == a)
        {
            return Err(ConfigError::Invalid(format!(
                "address {ip} of network {} is already used by instance {other}",
                n.name
            )));
        }
        mine.push((net_uuid.clone(), a));
    }
    Ok(())
}
