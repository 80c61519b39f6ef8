//! The `network-config` (version 2) of the image provider's cloud-init seed: the first NIC
//! (matched by its MAC) gets the `network` OS parameter's setting; a NIC holding an address
//! of a Maguey network (`--net N:network=NET,ip=pool`) gets that address with the network's
//! prefix, and its gateway as the default route, unless the parameter sets the first NIC
//! statically. Other NICs appear only when they have such an address (no DHCP waits on them).
//! docs/networks.md.

use crate::image::SeedNetwork;
use maguey_rpc::NicRuntime;
use std::net::IpAddr;

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn yq(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The static setting of a NIC with an address in a network: `(IP/PREFIX, gateway)`.
pub fn pool_address(nic: &NicRuntime) -> Option<(String, Option<IpAddr>)> {
    let ip: IpAddr = nic.ip.as_deref()?.trim().parse().ok()?;
    let net = nic.network.as_ref()?;
    let prefix: u8 = net.subnet.split_once('/')?.1.trim().parse().ok()?;
    let gateway = net.gateway.as_deref().and_then(|g| g.trim().parse().ok());
    Some((format!("{ip}/{prefix}"), gateway))
}

fn push_static(
    out: &mut String,
    address: &str,
    gateway: Option<&IpAddr>,
    default_route: &mut bool,
) {
    out.push_str(&format!(
        "    dhcp4: false\n    addresses:\n      - {}\n",
        yq(address)
    ));
    if let Some(gw) = gateway.filter(|_| !*default_route) {
        let to = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        out.push_str(&format!(
            "    routes:\n      - to: {}\n        via: {}\n",
            yq(to),
            yq(&gw.to_string())
        ));
        *default_route = true;
    }
}

/// The seed's `network-config`.
pub fn network_config(param: &SeedNetwork, nics: &[NicRuntime]) -> String {
    let mut net = String::from("version: 2\nethernets:\n");
    let mut default_route = false;
    if nics.is_empty() {
        net.push_str("  nic0:\n    match:\n      name: \"e*\"\n");
    }
    for (k, nic) in nics.iter().enumerate() {
        let pool = pool_address(nic);
        let first_static = match param {
            SeedNetwork::Static { address, gateway } if k == 0 => Some((address, gateway)),
            _ => None,
        };
        if k > 0 && pool.is_none() {
            continue;
        }
        net.push_str(&format!(
            "  nic{k}:\n    match:\n      macaddress: {}\n",
            yq(&nic.mac.to_ascii_lowercase())
        ));
        match (first_static, &pool) {
            (Some((address, gateway)), _) => {
                push_static(&mut net, address, gateway.as_ref(), &mut default_route)
            }
            (None, Some((address, gateway))) => {
                push_static(&mut net, address, gateway.as_ref(), &mut default_route)
            }
            (None, None) => net.push_str("    dhcp4: true\n"),
        }
    }
    if nics.is_empty() {
        match param {
            SeedNetwork::Dhcp => net.push_str("    dhcp4: true\n"),
            SeedNetwork::Static { address, gateway } => {
                push_static(&mut net, address, gateway.as_ref(), &mut default_route)
            }
        }
    }
    net
}

/// The first NIC's setting, for the install log: `dhcp`, or `static IP/PREFIX [via GW]`
/// (`(pool)` when the address comes from the NIC's network).
pub fn describe(param: &SeedNetwork, nics: &[NicRuntime]) -> String {
    let (address, gateway, from) = match (param, nics.first().and_then(pool_address)) {
        (SeedNetwork::Static { address, gateway }, _) => (address.clone(), *gateway, ""),
        (SeedNetwork::Dhcp, Some((a, g))) => (a, g, " (pool)"),
        (SeedNetwork::Dhcp, None) => return "dhcp".into(),
    };
    match gateway {
        Some(g) => format!("static {address} via {g}{from}"),
        None => format!("static {address}{from}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maguey_rpc::NicNetwork;

    fn nic(mac: &str, ip: Option<&str>, subnet: Option<(&str, Option<&str>)>) -> NicRuntime {
        NicRuntime {
            mac: mac.into(),
            ip: ip.map(String::from),
            mode: maguey_model::NicMode::Bridged,
            link: "br0".into(),
            network: subnet.map(|(s, g)| NicNetwork {
                name: "net1".into(),
                uuid: "u".into(),
                subnet: s.into(),
                gateway: g.map(String::from),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_pool_address_reaches_the_seed() {
        let nics = vec![
            nic(
                "AA:00:00:00:00:01",
                Some("10.77.0.3"),
                Some(("10.77.0.0/29", Some("10.77.0.1"))),
            ),
            // No address: not in the config (no DHCP wait on it).
            nic("aa:00:00:00:00:02", None, None),
            // A second network address: static, no second default route.
            nic(
                "aa:00:00:00:00:03",
                Some("192.0.2.9"),
                Some(("192.0.2.0/24", Some("192.0.2.1"))),
            ),
        ];
        let net = network_config(&SeedNetwork::Dhcp, &nics);
        assert_eq!(
            net,
            "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"aa:00:00:00:00:01\"\n    dhcp4: false\n    addresses:\n      - \"10.77.0.3/29\"\n    routes:\n      - to: \"0.0.0.0/0\"\n        via: \"10.77.0.1\"\n  nic2:\n    match:\n      macaddress: \"aa:00:00:00:00:03\"\n    dhcp4: false\n    addresses:\n      - \"192.0.2.9/24\"\n"
        );
        // The OS parameter's static setting wins on the first NIC.
        let param = SeedNetwork::Static {
            address: "198.51.100.5/24".into(),
            gateway: None,
        };
        let net = network_config(&param, &nics[..1]);
        assert!(net.contains("- \"198.51.100.5/24\"") && !net.contains("10.77.0.3"));
        // An address without a network (no prefix known), or no address: DHCP.
        for n in [
            nic("aa:00:00:00:00:01", Some("10.0.0.5"), None),
            nic("aa:00:00:00:00:01", None, Some(("10.0.0.0/24", None))),
        ] {
            let net = network_config(&SeedNetwork::Dhcp, &[n]);
            assert!(net.ends_with("    dhcp4: true\n"), "{net}");
        }
        assert_eq!(
            describe(&SeedNetwork::Dhcp, &nics),
            "static 10.77.0.3/29 via 10.77.0.1 (pool)"
        );
        assert_eq!(
            pool_address(&nics[0]),
            Some(("10.77.0.3/29".into(), Some("10.77.0.1".parse().unwrap())))
        );
    }
}
