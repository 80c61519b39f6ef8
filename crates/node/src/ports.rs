//! Port ranges for the listeners a node opens on demand (the migration target's QEMU, its NBD
//! exports), so that a firewall can open them (`migration_ports`, `nbd_ports` in magueyd.toml;
//! docs/install.md). Without a range, a free ephemeral port is used.

use crate::error::{NodeError, NodeResult};
use std::fmt;
use std::str::FromStr;

/// An inclusive range of TCP ports, written `FIRST-LAST` (or one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port '{}' in range '{s}' (1-65535)", p.trim()))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!("port range '{s}' ends before it starts"));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// The port ranges of one node (both `None` by default: ephemeral ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRanges {
    pub migration: Option<PortRange>,
    pub nbd: Option<PortRange>,
}

/// A TCP port free on `address` right now: in `range` when given (tried from a varying
/// start, so that two migrations at once rarely try the same port first), else any.
pub fn free_port(address: &str, range: Option<PortRange>) -> NodeResult<u16> {
    let failed =
        |e: std::io::Error| NodeError::io(format!("cannot find a free port on {address}: {e}"));
    let Some(range) = range else {
        let l = std::net::TcpListener::bind((address, 0)).map_err(failed)?;
        return l.local_addr().map(|a| a.port()).map_err(failed);
    };
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0)
        % range.len();
    for i in 0..range.len() {
        let port = range.first + ((start + i) % range.len()) as u16;
        if std::net::TcpListener::bind((address, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(NodeError::conflict(format!(
        "no free port in {range} on {address} (all in use)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_refuses_bad_ones() {
        let r: PortRange = "40000-40009".parse().unwrap();
        assert_eq!((r.first, r.last, r.len()), (40000, 40009, 10));
        assert_eq!(r.to_string(), "40000-40009");
        let one: PortRange = "7000".parse().unwrap();
        assert_eq!(one.len(), 1);
        for bad in ["", "0-10", "10-5", "a-b", "1-70000", "5-"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn free_port_stays_in_range_and_skips_busy_ports() {
        let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = busy.local_addr().unwrap().port();
        // A one-port range that is busy: refused with a message naming the range.
        let r = PortRange { first: p, last: p };
        let e = free_port("127.0.0.1", Some(r)).unwrap_err();
        assert!(e.to_string().contains(&r.to_string()), "{e}");
        let got = free_port("127.0.0.1", None).unwrap();
        assert_ne!(got, 0);
        let wide = PortRange {
            first: 45000,
            last: 45999,
        };
        let got = free_port("127.0.0.1", Some(wide)).unwrap();
        assert!(wide.contains(got));
    }
}
