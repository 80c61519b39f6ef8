//! Networks (Ganeti's `gnt-network`): an IPv4 subnet with an address pool, optional IPv6
//! prefix and gateway and MAC prefix, connected to node groups with a NIC mode and link.

use crate::vocab::NicMode;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// An L3 network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub uuid: String,
    pub name: String,
    /// IPv4 subnet, `a.b.c.d/len` (Ganeti: /16 to /30).
    pub network: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub network6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    /// Three bytes, e.g. `aa:00:01`: prefix of the MACs of NICs in this network.
    #[serde(default)]
    pub mac_prefix: Option<String>,
    /// Addresses reserved by the admin (the network, broadcast and gateway addresses are
    /// always reserved and not listed here).
    #[serde(default)]
    pub ext_reservations: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
}

/// How a group reaches a network: the mode and link its NICs get (Ganeti's `connect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConnection {
    pub mode: NicMode,
    pub link: String,
    #[serde(default)]
    pub vlan: String,
}

/// A parsed IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub base: u32,
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parses `a.b.c.d/len`, len 16..=30, host bits zero.
    pub fn parse(s: &str) -> Result<Ipv4Net, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid network '{s}' (expected a.b.c.d/len)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid network address '{a}'"))?;
        let prefix: u8 = l
            .parse()
            .map_err(|_| format!("invalid prefix length '{l}'"))?;
        if !(16..=30).contains(&prefix) {
            return Err(format!(
                "network {s}: the prefix length must be between 16 and 30"
            ));
        }
        let base = u32::from(addr);
        let net = Ipv4Net { base, prefix };
        if base & !net.mask() != 0 {
            return Err(format!("network {s}: host bits are set"));
        }
        Ok(net)
    }
    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }
    /// Number of addresses, network and broadcast included.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.base
    }
    /// Offset of `ip` in the subnet.
    pub fn index(&self, ip: Ipv4Addr) -> Option<u32> {
        self.contains(ip).then(|| u32::from(ip) - self.base)
    }
    pub fn addr(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + index)
    }
}

impl Network {
    pub fn subnet(&self) -> Result<Ipv4Net, String> {
        Ipv4Net::parse(&self.network)
    }

    /// Addresses no NIC may take from the pool: network, broadcast, gateway and the admin's
    /// reservations.
    pub fn fixed_reservations(&self) -> Vec<Ipv4Addr> {
        let Ok(net) = self.subnet() else {
            return Vec::new();
        };
        let mut out = vec![net.addr(0), net.addr(net.size() - 1)];
        for ip in self.gateway.iter().chain(&self.ext_reservations) {
            if let Ok(a) = ip.parse::<Ipv4Addr>() {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// The first address that is neither fixed nor in `used`.
    pub fn first_free(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let net = self.subnet().ok()?;
        let fixed = self.fixed_reservations();
        (0..net.size())
            .map(|i| net.addr(i))
            .find(|a| !fixed.contains(a) && !used.contains(a))
    }

    /// Ganeti's `map` field: one character per address, `X` reserved, `.` free.
    pub fn map(&self, used: &[Ipv4Addr]) -> String {
        let Ok(net) = self.subnet() else {
            return String::new();
        };
        let fixed = self.fixed_reservations();
        (0..net.size())
            .map(|i| {
                let a = net.addr(i);
                if fixed.contains(&a) || used.contains(&a) {
                    'X'
                } else {
                    '.'
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_skips_network_broadcast_gateway_and_reservations() {
        let n = Network {
            network: "10.0.0.0/30".into(),
            gateway: Some("10.0.0.1".into()),
            ..Default::default()
        };
        assert_eq!(n.first_free(&[]), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(n.first_free(&["10.0.0.2".parse().unwrap()]), None);
        assert_eq!(n.map(&[]), "XX.X");
        assert!(Ipv4Net::parse("10.0.0.1/24").is_err());
        assert!(Ipv4Net::parse("10.0.0.0/8").is_err());
        assert!(Ipv4Net::parse("10.0.0.0/31").is_err());
        let net = Ipv4Net::parse("192.168.4.0/24").unwrap();
        assert!(net.contains("192.168.4.200".parse().unwrap()));
        assert!(!net.contains("192.168.5.1".parse().unwrap()));
    }
}
