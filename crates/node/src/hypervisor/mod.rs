//! Hypervisors: what starts, stops and inspects instances on a node.
//!
//! Ganeti's `fake` hypervisor ([`fake::FakeHypervisor`]) and `kvm` ([`kvm::KvmHypervisor`]:
//! daemonized QEMU driven over QMP).

use crate::error::{NodeError, NodeResult};
pub mod fake;
pub mod kvm;

use maguey_rpc::{InstanceRunInfo, InstanceRuntime, MigrationStatus};
use std::collections::BTreeMap;
use std::time::Duration;

/// A boxed, sendable future (keeps [`Hypervisor`] object-safe without async-trait).
pub use crate::exec::BoxFuture;

/// Memory of the node as the hypervisor sees it, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMemory {
    pub total: u64,
    /// Left for new instances.
    pub free: u64,
    /// Used by the node itself (Ganeti's `memory_dom0`).
    pub dom0: u64,
}

/// Where and how a migration source sends an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationTarget<'a> {
    /// The target node's address.
    pub target: &'a str,
    /// The port the target's QEMU listens on for the RAM.
    pub port: u16,
    /// MiB/s.
    pub bandwidth: u64,
    /// Longest pause of the guest, in milliseconds.
    pub downtime: u64,
    /// Local-disk migration: the target's NBD exports of the disks.
    pub nbd_port: Option<u16>,
    /// Over TLS: the target node's name, which its certificate must carry (None: plain TCP).
    pub tls_peer: Option<&'a str>,
    /// Migration capabilities to switch on (names from `KVM_MIGRATION_CAPS`; others are
    /// refused).
    pub caps: &'a [String],
}

/// How to reboot an instance (`full` = stop + start is done by the master).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootKind {
    Soft,
    Hard,
}

impl std::str::FromStr for RebootKind {
    type Err = NodeError;
    fn from_str(s: &str) -> NodeResult<Self> {
        match s {
            "soft" => Ok(RebootKind::Soft),
            "hard" => Ok(RebootKind::Hard),
            other => Err(NodeError::bad_request(format!(
                "invalid reboot type '{other}' (a node does 'soft' or 'hard')"
            ))),
        }
    }
}

pub trait Hypervisor: Send + Sync {
    /// `fake`, `kvm`, ...
    fn name(&self) -> &'static str;

    /// Starts an instance; refuses when it is already running or does not fit in memory.
    fn start<'a>(&'a self, inst: &'a InstanceRuntime) -> BoxFuture<'a, NodeResult<()>>;

    /// Stops an instance (soft, then hard after `timeout`). Stopping a stopped one succeeds.
    fn stop<'a>(&'a self, name: &'a str, timeout: Duration) -> BoxFuture<'a, NodeResult<()>>;

    /// Reboots a running instance.
    /// A soft reboot gives the guest `shutdown_timeout` to power off cleanly.
    fn reboot<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        kind: RebootKind,
        shutdown_timeout: Duration,
    ) -> BoxFuture<'a, NodeResult<()>>;

    /// Names of the running instances, sorted.
    fn list(&self) -> BoxFuture<'_, NodeResult<Vec<String>>>;

    /// Live data of one instance; `None` when it is not running.
    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, NodeResult<Option<InstanceRunInfo>>>;

    /// Live data of every running instance.
    fn all_info(&self) -> BoxFuture<'_, NodeResult<BTreeMap<String, InstanceRunInfo>>> {
        Box::pin(async move {
            let mut out = BTreeMap::new();
            for name in self.list().await? {
                if let Some(info) = self.info(&name).await? {
                    out.insert(name, info);
                }
            }
            Ok(out)
        })
    }

    /// Sets the memory (MiB) of a running instance.
    fn balloon<'a>(&'a self, name: &'a str, memory: u64) -> BoxFuture<'a, NodeResult<()>>;

    /// Node memory as this hypervisor accounts it.
    fn node_memory(&self) -> BoxFuture<'_, NodeResult<NodeMemory>>;

    /// Migration target: starts the instance waiting for its state on `address:port`; with
    /// `nbd_port`, also exports its (fresh) disks over NBD there for the source to mirror into.
    /// With `tls_peer`, both over TLS, admitting only that node's certificate.
    fn accept_instance<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        _address: &'a str,
        _port: u16,
        _nbd_port: Option<u16>,
        _tls_peer: Option<&'a str>,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            Err(NodeError::unsupported(format!(
                "hypervisor {} cannot migrate instance {}",
                self.name(),
                inst.name
            )))
        })
    }

    /// Migration source: sends the running instance to `target:port` and waits until the
    /// migration ends (bandwidth in MiB/s, downtime in ms); with `nbd_port`, first mirrors
    /// its disks into the target's NBD exports (live migration with local storage).
    fn migrate<'a>(
        &'a self,
        name: &'a str,
        _to: MigrationTarget<'a>,
    ) -> BoxFuture<'a, NodeResult<MigrationStatus>> {
        Box::pin(async move {
            Err(NodeError::unsupported(format!(
                "hypervisor {} cannot migrate instance {name}",
                self.name()
            )))
        })
    }

    /// After a migration: the target keeps the instance running (`success`) or drops it.
    fn finalize_migration_dst<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        _success: bool,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            Err(NodeError::unsupported(format!(
                "hypervisor {} cannot migrate instance {}",
                self.name(),
                inst.name
            )))
        })
    }

    /// After a migration: the source stops its copy (`success`) or resumes it.
    fn finalize_migration_src<'a>(
        &'a self,
        name: &'a str,
        _success: bool,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            Err(NodeError::unsupported(format!(
                "hypervisor {} cannot migrate instance {name}",
                self.name()
            )))
        })
    }

    /// Tells a running instance that its disk `index` is now `size_mib` MiB (after the
    /// storage grew), so the guest sees the new size.
    fn resize_disk<'a>(
        &'a self,
        name: &'a str,
        _index: usize,
        _size_mib: u64,
    ) -> BoxFuture<'a, NodeResult<()>> {
        Box::pin(async move {
            Err(NodeError::unsupported(format!(
                "hypervisor {} cannot resize the disks of instance {name}",
                self.name()
            )))
        })
    }

    /// The unix socket of a running instance's interactive serial console (one client at a
    /// time), for a daemon to proxy.
    fn serial_socket(&self, name: &str) -> NodeResult<std::path::PathBuf> {
        Err(NodeError::unsupported(format!(
            "hypervisor {} has no serial console for instance {name}",
            self.name()
        )))
    }

    /// The last `max_bytes` of an instance's serial console output.
    fn console_log<'a>(
        &'a self,
        name: &'a str,
        _max_bytes: u64,
    ) -> BoxFuture<'a, NodeResult<String>> {
        Box::pin(async move {
            Err(NodeError::unsupported(format!(
                "hypervisor {} has no serial console for instance {name}",
                self.name()
            )))
        })
    }
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in MiB.
pub fn host_meminfo() -> NodeResult<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| NodeError::io(format!("cannot read /proc/meminfo: {e}")))?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> NodeResult<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    let total = field("MemTotal").ok_or_else(|| NodeError::io("no MemTotal in /proc/meminfo"))?;
    let available = field("MemAvailable")
        .or_else(|| Some(field("MemFree")? + field("Buffers")? + field("Cached")?))
        .unwrap_or(total);
    Ok((total / 1024, available.min(total) / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let text = "MemTotal:       16316412 kB\nMemFree:         1000000 kB\nMemAvailable:    8158206 kB\n";
        assert_eq!(parse_meminfo(text), Ok((15933, 7966)));
        assert!(parse_meminfo("garbage").is_err());
        assert!("soft".parse::<RebootKind>().is_ok());
        assert!("full".parse::<RebootKind>().is_err());
    }
}
