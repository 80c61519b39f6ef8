//! The `drbdsetup`/`drbdmeta` argv of every operation, per dialect. Pure functions: what runs
//! them (and in which order) is in the parent module.
//!
//! Ganeti's conventions: resource `resource<minor>` (one volume each), external metadata on
//! the 128 MiB meta LV, protocol C, `after-sb-0pri discard-zero-changes`, `after-sb-1pri
//! consensus`, `after-sb-2pri disconnect`, `cram-hmac-alg md5` with the disk's secret, and
//! `allow-two-primaries` only while a live migration runs.

use super::version::Dialect;
use super::DrbdDevice;
use crate::storage::runner::Cmd;
use std::net::{IpAddr, SocketAddr};

/// Replication protocol (synchronous).
pub const PROTOCOL: &str = "C";
/// Ganeti's default split-brain policies.
pub const AFTER_SB_0PRI: &str = "discard-zero-changes";
pub const AFTER_SB_1PRI: &str = "consensus";
pub const AFTER_SB_2PRI: &str = "disconnect";
/// Peer authentication with the disk's shared secret.
pub const HMAC: &str = "md5";
/// Ganeti's default `resync-rate` (KiB/s); a fixed rate (`c-plan-ahead` 0).
pub const RESYNC_RATE_KIB: u64 = 61440;
/// DRBD 8.4 metadata index on the meta LV (index 0: the 128 MiB external slot; the layout
/// driven on the testbed).
pub const META_INDEX_84: &str = "0";
/// DRBD 9 metadata on the meta LV: flexible external (sized for one peer).
pub const META_INDEX_9_MD: &str = "flex-external";
pub const META_INDEX_9_ATTACH: &str = "flexible";

fn drbdsetup(args: &[String]) -> Cmd {
    Cmd::new("drbdsetup", args)
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

/// `ipv4:10.0.0.1:11000` / `ipv6:[fd00::1]:11000`.
pub fn address(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("ipv4:{}", SocketAddr::new(ip, port)),
        IpAddr::V6(_) => format!("ipv6:{}", SocketAddr::new(ip, port)),
    }
}

/// The two ends of a DRBD connection (both use the disk's port on their secondary IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrbdNet {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub port: u16,
}

impl DrbdNet {
    pub fn local_addr(&self) -> String {
        address(self.local, self.port)
    }

    pub fn remote_addr(&self) -> String {
        address(self.remote, self.port)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The network options of a connection (8.4 `connect`, 9 `new-peer`).
fn net_options(dev: &DrbdDevice, dual_primary: bool) -> Vec<String> {
    let mut opts = vec![
        format!("--protocol={PROTOCOL}"),
        format!("--after-sb-0pri={AFTER_SB_0PRI}"),
        format!("--after-sb-1pri={AFTER_SB_1PRI}"),
        format!("--after-sb-2pri={AFTER_SB_2PRI}"),
    ];
    if dual_primary {
        opts.push("--allow-two-primaries=yes".to_string());
    }
    opts.push(format!("--cram-hmac-alg={HMAC}"));
    opts.push(format!("--shared-secret={}", dev.secret));
    opts
}

/// Fresh metadata on the meta LV.
pub fn create_md(d: Dialect, dev: &DrbdDevice) -> Cmd {
    let meta = dev.meta.device_path().display().to_string();
    let minor_dev = dev.device_path().display().to_string();
    match d {
        Dialect::V84 => Cmd::new(
            "drbdmeta",
            &[
                "--force",
                &minor_dev,
                "v08",
                &meta,
                META_INDEX_84,
                "create-md",
            ],
        ),
        // The trailing 1: bitmap slots for one peer.
        Dialect::V9 => Cmd::new(
            "drbdmeta",
            &[
                "--force",
                &minor_dev,
                "v09",
                &meta,
                META_INDEX_9_MD,
                "create-md",
                "1",
            ],
        ),
    }
}

/// Replays the activity log into the bitmap: metadata left unclean by a crash or power loss
/// (`attach` refuses it with "Unclean meta-data found ... apply-al").
pub fn apply_al(d: Dialect, dev: &DrbdDevice) -> Cmd {
    let meta = dev.meta.device_path().display().to_string();
    let minor_dev = dev.device_path().display().to_string();
    let (format, index) = match d {
        Dialect::V84 => ("v08", META_INDEX_84),
        Dialect::V9 => ("v09", META_INDEX_9_MD),
    };
    Cmd::new(
        "drbdmeta",
        &["--force", &minor_dev, format, &meta, index, "apply-al"],
    )
}

/// The local device: resource, minor, backing disks (no network).
pub fn assemble(d: Dialect, dev: &DrbdDevice) -> Vec<Cmd> {
    let res = dev.resource();
    let minor = s(dev.minor);
    let data = dev.data.device_path().display().to_string();
    let meta = dev.meta.device_path().display().to_string();
    let size = format!("--size={}m", dev.size_mib);
    match d {
        Dialect::V84 => vec![
            drbdsetup(&[s("new-resource"), res.clone()]),
            drbdsetup(&[s("new-minor"), res, minor.clone(), s("0")]),
            drbdsetup(&[
                s("attach"),
                minor,
                data,
                meta,
                s(META_INDEX_84),
                s("--on-io-error=detach"),
                s("--c-plan-ahead=0"),
                format!("--resync-rate={RESYNC_RATE_KIB}"),
                size,
            ]),
        ],
        Dialect::V9 => vec![
            drbdsetup(&[s("new-resource"), res.clone(), s(dev.node_id)]),
            drbdsetup(&[s("new-minor"), res, minor.clone(), s("0")]),
            drbdsetup(&[
                s("attach"),
                minor,
                data,
                meta,
                s(META_INDEX_9_ATTACH),
                s("--on-io-error=detach"),
                size,
            ]),
        ],
    }
}

/// Only the `attach` of [`assemble`] (a configured but diskless device).
pub fn attach_only(d: Dialect, dev: &DrbdDevice) -> Cmd {
    assemble(d, dev)
        .pop()
        .unwrap_or_else(|| drbdsetup(&[s("attach"), s(dev.minor)]))
}

/// Defines and starts the connection to the peer.
pub fn connect(d: Dialect, dev: &DrbdDevice, net: &DrbdNet, dual_primary: bool) -> Vec<Cmd> {
    let res = dev.resource();
    match d {
        Dialect::V84 => {
            let mut args = vec![s("connect"), res, net.local_addr(), net.remote_addr()];
            args.extend(net_options(dev, dual_primary));
            vec![drbdsetup(&args)]
        }
        Dialect::V9 => {
            let peer = s(dev.peer_node_id);
            let mut new_peer = vec![s("new-peer"), res.clone(), peer.clone()];
            new_peer.extend(net_options(dev, dual_primary));
            vec![
                drbdsetup(&new_peer),
                drbdsetup(&[
                    s("new-path"),
                    res.clone(),
                    peer.clone(),
                    net.local_addr(),
                    net.remote_addr(),
                ]),
                drbdsetup(&[
                    s("peer-device-options"),
                    res.clone(),
                    peer.clone(),
                    s("0"),
                    s("--c-plan-ahead=0"),
                    format!("--resync-rate={RESYNC_RATE_KIB}"),
                ]),
                drbdsetup(&[s("connect"), res, peer]),
            ]
        }
    }
}

/// DRBD 9: connects an already defined (StandAlone) peer again.
pub fn connect_defined_peer(dev: &DrbdDevice) -> Cmd {
    drbdsetup(&[s("connect"), dev.resource(), s(dev.peer_node_id)])
}

/// Connects with `--discard-my-data`: this side gives up what it changed since the peers
/// split and resyncs from the peer (split-brain resolution, on the node whose data loses).
/// 8.4: `connect RES LOCAL REMOTE <net options> --discard-my-data`; 9: the peer definition
/// as in [`connect`] (unless `peer_defined`), then `connect RES PEER --discard-my-data`.
pub fn connect_discard_my_data(
    d: Dialect,
    dev: &DrbdDevice,
    net: &DrbdNet,
    peer_defined: bool,
) -> Vec<Cmd> {
    let mut cmds = match d {
        Dialect::V9 if peer_defined => vec![connect_defined_peer(dev)],
        _ => connect(d, dev, net, false),
    };
    if let Some(last) = cmds.pop() {
        cmds.push(last.arg("--discard-my-data"));
    }
    cmds
}

/// Allows or forbids two primaries on a live connection.
pub fn dual_primary(d: Dialect, dev: &DrbdDevice, net: &DrbdNet, allow: bool) -> Cmd {
    let opt = format!("--allow-two-primaries={}", yes_no(allow));
    match d {
        Dialect::V84 => drbdsetup(&[s("net-options"), net.local_addr(), net.remote_addr(), opt]),
        Dialect::V9 => drbdsetup(&[s("net-options"), dev.resource(), s(dev.peer_node_id), opt]),
    }
}

/// Drops the connection (the device stays, StandAlone).
pub fn disconnect(d: Dialect, dev: &DrbdDevice, net: &DrbdNet) -> Cmd {
    match d {
        Dialect::V84 => drbdsetup(&[s("disconnect"), net.local_addr(), net.remote_addr()]),
        Dialect::V9 => drbdsetup(&[s("disconnect"), dev.resource(), s(dev.peer_node_id)]),
    }
}

/// Promotes (`force`: even without an up-to-date peer, e.g. the first primary of a new disk).
pub fn primary(d: Dialect, dev: &DrbdDevice, force: bool) -> Cmd {
    let target = match d {
        Dialect::V84 => s(dev.minor),
        Dialect::V9 => dev.resource(),
    };
    let mut args = vec![s("primary"), target];
    if force {
        args.push(s("--force"));
    }
    drbdsetup(&args)
}

/// Demotes.
pub fn secondary(d: Dialect, dev: &DrbdDevice) -> Cmd {
    match d {
        Dialect::V84 => drbdsetup(&[s("secondary"), s(dev.minor)]),
        Dialect::V9 => drbdsetup(&[s("secondary"), dev.resource()]),
    }
}

/// Detaches the backing disks (the device goes diskless).
pub fn detach(dev: &DrbdDevice) -> Cmd {
    drbdsetup(&[s("detach"), s(dev.minor)])
}

/// Tears the whole resource down (disconnect, detach, delete minor and resource).
pub fn down(dev: &DrbdDevice) -> Cmd {
    drbdsetup(&[s("down"), dev.resource()])
}

/// Sets the device's size after the backing LVs grew.
pub fn resize(dev: &DrbdDevice, size_mib: u64) -> Cmd {
    drbdsetup(&[s("resize"), s(dev.minor), format!("--size={size_mib}m")])
}

/// Declares both (new, connected, Inconsistent) sides identical: no initial full sync.
pub fn skip_initial_sync(dev: &DrbdDevice) -> Cmd {
    drbdsetup(&[s("new-current-uuid"), s(dev.minor), s("--clear-bitmap")])
}

/// DRBD 9's status of every resource.
pub fn status9() -> Cmd {
    Cmd::new("drbdsetup", &["status", "--json"])
}

/// DRBD 9: forgets a (disconnected) peer, so that the resource can connect to another node
/// (replace-disks with a new secondary).
pub fn del_peer(dev: &DrbdDevice) -> Cmd {
    drbdsetup(&[s("del-peer"), dev.resource(), s(dev.peer_node_id)])
}
