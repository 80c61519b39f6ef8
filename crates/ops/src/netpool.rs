//! Addresses of networks handed to jobs that have not committed them yet (Ganeti's wconfd
//! temporary IP reservations): a job that takes `ip=pool` or a given address holds an
//! [`IpReservation`]; the address is in the config once the job added its instance, and the
//! reservation goes when the job ends, whether it succeeded or failed.

use crate::prereq;
use maguey_jobs::OpError;
use maguey_model::ConfigData;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

static RESERVED: Mutex<BTreeSet<(String, Ipv4Addr)>> = Mutex::new(BTreeSet::new());

/// Addresses reserved by one job; released when dropped.
#[derive(Default)]
pub struct IpReservation {
    held: Vec<(String, Ipv4Addr)>,
}

impl Drop for IpReservation {
    fn drop(&mut self) {
        let mut r = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
        for h in &self.held {
            r.remove(h);
        }
    }
}

impl IpReservation {
    /// Reserves `ip` in network `net` (uuid), or the first free address with `None`.
    /// Refused when the address is outside the subnet, reserved, used by an instance (unless
    /// `conflicts_ok`), or held by another job; or when the pool is exhausted.
    pub fn take(
        &mut self,
        cfg: &ConfigData,
        net: &str,
        ip: Option<&str>,
        conflicts_ok: bool,
    ) -> Result<Ipv4Addr, OpError> {
        let n = cfg
            .networks
            .get(net)
            .ok_or_else(|| prereq(format!("unknown network {net}")))?;
        let mut r = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
        let mut used: Vec<Ipv4Addr> = maguey_config::network::used_addresses(cfg, net, None)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        used.extend(r.iter().filter(|(u, _)| u == net).map(|(_, a)| *a));
        let addr = match ip {
            None => n.first_free(&used).ok_or_else(|| {
                prereq(format!(
                    "network {} has no free address left (pool exhausted)",
                    n.name
                ))
            })?,
            Some(ip) => {
                let a: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| prereq(format!("invalid IPv4 address '{ip}'")))?;
                let subnet = n.subnet().map_err(prereq)?;
                if !subnet.contains(a) {
                    return Err(prereq(format!(
                        "address {a} is not in network {} ({})",
                        n.name, n.network
                    )));
                }
                if n.fixed_reservations().contains(&a) {
                    return Err(prereq(format!(
                        "address {a} is reserved in network {}",
                        n.name
                    )));
                }
                if r.contains(&(net.to_string(), a)) || (!conflicts_ok && used.contains(&a)) {
                    return Err(prereq(format!(
                        "address {a} of network {} is already in use",
                        n.name
                    )));
                }
                a
            }
        };
        r.insert((net.to_string(), addr));
        self.held.push((net.to_string(), addr));
        Ok(addr)
    }
}
