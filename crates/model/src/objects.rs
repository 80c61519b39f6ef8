//! Cluster configuration objects. Field names follow Ganeti's `config.data`.

use crate::params::Params;
use crate::vocab::{
    AdminState, AdminStateSource, AllocPolicy, DevType, DiskMode, DiskTemplate, Hypervisor,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the config layout, stored with every snapshot and export.
pub const CONFIG_VERSION: u32 = 1;

/// Ganeti's default cluster volume group.
pub const DEFAULT_VG_NAME: &str = "xenvg";
/// Ganeti's TCP/UDP port pool for DRBD (both ends use the same port on their secondary IPs).
pub const DRBD_PORT_FIRST: u16 = 11000;
pub const DRBD_PORT_LAST: u16 = 14999;
/// Ganeti's limit of DRBD minors per node (0..=255).
pub const DRBD_MAX_MINOR: u32 = 255;
/// Ganeti's `DRBD_META_SIZE` (MiB): the meta LV of every DRBD disk.
pub const DRBD_META_SIZE_MIB: u64 = 128;
/// Length of generated DRBD shared secrets (Ganeti: 20).
pub const DRBD_SECRET_LEN: usize = 20;

fn default_vg_name() -> String {
    DEFAULT_VG_NAME.to_string()
}

/// Ganeti's default DRBD usermode helper.
pub const DEFAULT_DRBD_HELPER: &str = "/bin/true";

fn default_drbd_helper() -> String {
    DEFAULT_DRBD_HELPER.to_string()
}

/// Left out of the JSON at its default, so that exports of older configs stay as they were.
fn is_default_drbd_helper(h: &str) -> bool {
    h == DEFAULT_DRBD_HELPER
}

/// The whole configuration: what Ganeti keeps in `config.data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigData {
    pub version: u32,
    pub cluster: Cluster,
    /// Nodes by uuid.
    pub nodes: BTreeMap<String, Node>,
    /// Node groups by uuid.
    pub nodegroups: BTreeMap<String, NodeGroup>,
    /// Instances by uuid.
    pub instances: BTreeMap<String, Instance>,
    /// Outstanding one-time join tokens, by node name.
    #[serde(default)]
    pub join_tokens: BTreeMap<String, JoinToken>,
    /// Rises with every applied change.
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
    /// Networks by uuid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, crate::network::Network>,
    /// Instances moved out of a room by `room evacuate` / `room failover`, by room name,
    /// so `room return` can bring them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub room_evacuations: BTreeMap<String, crate::rooms::RoomEvacuation>,
    /// Remote API users by name (`maguey rapi-user`), kept here so that every master carries
    /// them; the master writes them to its RAPI users file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rapi_users: BTreeMap<String, RapiUser>,
}

/// One Remote API user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RapiUser {
    pub name: String,
    /// `{HA1}` and the hex MD5 of `name:Ganeti Remote API:password`, as the users file has it.
    pub password: String,
    /// The `write` option (else read-only).
    pub write: bool,
}

impl ConfigData {
    pub fn node_by_name(&self, name: &str) -> Option<&Node> {
        self.nodes.values().find(|n| n.name == name)
    }
    pub fn instance_by_name(&self, name: &str) -> Option<&Instance> {
        self.instances.values().find(|i| i.name == name)
    }
    pub fn group_by_name(&self, name: &str) -> Option<&NodeGroup> {
        self.nodegroups.values().find(|g| g.name == name)
    }
    pub fn network_by_name(&self, name: &str) -> Option<&crate::network::Network> {
        self.networks.values().find(|n| n.name == name)
    }
    /// The group of a node (by node uuid).
    pub fn group_of_node(&self, node_uuid: &str) -> Option<&NodeGroup> {
        self.nodes
            .get(node_uuid)
            .and_then(|n| self.nodegroups.get(&n.group))
    }
    /// The effective instance policy of a group (cluster's without a group).
    pub fn ipolicy_for_group(&self, group_uuid: Option<&str>) -> crate::ipolicy::IPolicy {
        crate::ipolicy::effective_ipolicy(
            &self.cluster.enabled_disk_templates,
            &self.cluster.ipolicy,
            group_uuid
                .and_then(|g| self.nodegroups.get(g))
                .map(|g| &g.ipolicy),
        )
    }
    /// The master node, if the cluster is initialised.
    pub fn master_node(&self) -> Option<&Node> {
        self.nodes.get(&self.cluster.master_node)
    }
    /// Instances whose primary or secondary node is `node_uuid`.
    pub fn instances_on_node<'a>(
        &'a self,
        node_uuid: &'a str,
    ) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.values().filter(move |i| {
            i.primary_node == node_uuid || i.secondary_nodes().contains(&node_uuid)
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub uuid: String,
    pub cluster_name: String,
    /// uuid of the master node.
    pub master_node: String,
    /// Port of every node daemon.
    pub rpc_port: u16,
    /// Three bytes, e.g. `aa:00:00`: prefix of generated MAC addresses.
    pub mac_prefix: String,
    /// Where `file` disks live on every node (relative paths are under the node's state dir).
    pub file_storage_dir: String,
    pub shared_file_storage_dir: String,
    /// The LVM volume group of `plain` and `drbd` disks on every node (Ganeti's `vg_name`,
    /// default `xenvg`); a disk may name another (`vg=`).
    #[serde(default = "default_vg_name")]
    pub vg_name: String,
    /// Regular expressions over `vg/lv` that cluster verify does not report as orphans.
    #[serde(default)]
    pub reserved_lvs: Vec<String>,
    pub enabled_hypervisors: Vec<Hypervisor>,
    pub enabled_disk_templates: Vec<DiskTemplate>,
    pub default_iallocator: String,
    pub candidate_pool_size: u32,
    /// Cluster-level defaults, by hypervisor name.
    pub hvparams: BTreeMap<String, Params>,
    /// Cluster-level defaults, Ganeti keeps them under the key `default`.
    pub beparams: BTreeMap<String, Params>,
    pub nicparams: BTreeMap<String, Params>,
    pub ndparams: Params,
    /// OS parameters by OS name.
    pub osparams: BTreeMap<String, Params>,
    /// SHA-256 fingerprint (hex) of the cluster CA certificate.
    pub ca_fingerprint: String,
    pub tags: Vec<String>,
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
    /// The cluster's instance policy (unset values: Ganeti's defaults).
    #[serde(
        default,
        skip_serializing_if = "crate::ipolicy::IPolicyOverride::is_empty"
    )]
    pub ipolicy: crate::ipolicy::IPolicyOverride,
    /// The DRBD usermode helper the nodes' DRBD module is expected to call (Ganeti's
    /// `drbd_usermode_helper`, default `/bin/true`).
    #[serde(
        default = "default_drbd_helper",
        skip_serializing_if = "is_default_drbd_helper"
    )]
    pub drbd_usermode_helper: String,
    /// Set while the watcher is paused (`maguey cluster watcher pause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher_pause: Option<WatcherPause>,
    /// The master's term (epoch), stamped on every node RPC: a node refuses a master whose
    /// term is lower than the highest it has seen (docs/security.md). 0 (left out of the
    /// JSON) is the first term, 1, until a replicated master (a Raft leader) or a forced
    /// recovery raises it; see [`Cluster::fence_term`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub master_term: u64,
    /// The floating master IP (Ganeti's `master_ip`, `master_netdev`, `master_netmask`):
    /// brought up on the master node only; `None`: none (clients use the master's own address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_ip: Option<MasterIp>,
    /// The config is replicated with Raft among the master candidates, and the Raft leader is
    /// the master (docs/replication.md); set by the first leader. False: one master node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replicated: bool,
    /// uuids of the nodes `cluster force-single` cut off and that no admin has confirmed
    /// off yet: their instances may still run there, so nothing fails them over or starts
    /// them elsewhere (docs/replication.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut_off_nodes: Vec<String>,
    /// Lifetime (seconds) of the node certificates the cluster CA issues (`cluster
    /// renew-crypto --node-certificate-lifetime`); the master renews every online node's
    /// once two thirds of it have passed (docs/security.md). 0: ten years, renewed by hand.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub node_certificate_lifetime: u64,
    /// When every online node last got a new certificate (seconds since the epoch; 0: not
    /// recorded).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub node_certificates_renewed: f64,
}

fn is_zero(t: &u64) -> bool {
    *t == 0
}

fn is_zero_f64(t: &f64) -> bool {
    *t == 0.0
}

/// The floating master IP: an address that follows the master (docs/master-ip.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterIp {
    /// The address (IPv4 or IPv6).
    pub ip: std::net::IpAddr,
    /// Its prefix length on `netdev`.
    pub netmask: u8,
    /// The network device of the master node it is added to (e.g. `br0`, `eth0`).
    pub netdev: String,
}

impl MasterIp {
    /// Checks the prefix length against the address family and the device name (1 to 15
    /// printable characters, no `/` or `:`, not `.`/`..`, no leading `-`).
    pub fn validate(&self) -> Result<(), String> {
        let max = if self.ip.is_ipv4() { 32 } else { 128 };
        if self.netmask == 0 || self.netmask > max {
            return Err(format!(
                "invalid master netmask {} for {} (1 to {max})",
                self.netmask, self.ip
            ));
        }
        let d = &self.netdev;
        let ok = !d.is_empty()
            && d.len() <= 15
            && !d.starts_with('-')
            && d != "."
            && d != ".."
            && d.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if !ok {
            return Err(format!("invalid master network device '{d}'"));
        }
        if self.ip.is_unspecified() || self.ip.is_multicast() || self.ip.is_loopback() {
            return Err(format!("invalid master IP {}", self.ip));
        }
        Ok(())
    }

    /// `ip/netmask`, as `ip addr` takes it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.netmask)
    }
}

/// A pause of the watcher, kept in the config so that it survives a master restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatcherPause {
    /// Unix time the pause began.
    pub since: f64,
    /// Unix time it ends by itself; `None`: until `watcher continue`.
    #[serde(default)]
    pub until: Option<f64>,
}

impl WatcherPause {
    /// True while the pause holds at unix time `now`.
    pub fn active(&self, now: f64) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

impl Cluster {
    /// The term the master stamps on node RPCs: [`Cluster::master_term`], at least 1.
    pub fn fence_term(&self) -> u64 {
        self.master_term.max(1)
    }
    pub fn beparams_default(&self) -> Params {
        self.beparams.get("default").cloned().unwrap_or_default()
    }
    pub fn nicparams_default(&self) -> Params {
        self.nicparams.get("default").cloned().unwrap_or_default()
    }
    pub fn hvparams_for(&self, hv: Hypervisor) -> Params {
        self.hvparams.get(hv.as_str()).cloned().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeGroup {
    pub uuid: String,
    pub name: String,
    pub alloc_policy: AllocPolicy,
    pub ndparams: Params,
    pub beparams: Params,
    /// Group-level hypervisor parameters, by hypervisor name.
    pub hvparams: BTreeMap<String, Params>,
    pub nicparams: Params,
    pub tags: Vec<String>,
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
    /// Group overrides of the cluster's instance policy.
    #[serde(
        default,
        skip_serializing_if = "crate::ipolicy::IPolicyOverride::is_empty"
    )]
    pub ipolicy: crate::ipolicy::IPolicyOverride,
    /// Disk parameters per template (overrides of the cluster's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub diskparams: BTreeMap<String, Params>,
    /// Connected networks, by network uuid: the NIC mode and link in this group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, crate::network::NetConnection>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub uuid: String,
    pub name: String,
    pub primary_ip: String,
    /// Address for replication traffic; equals `primary_ip` on single-homed nodes.
    pub secondary_ip: String,
    /// uuid of the node's group.
    pub group: String,
    pub master_candidate: bool,
    pub master_capable: bool,
    pub vm_capable: bool,
    pub drained: bool,
    pub offline: bool,
    pub ndparams: Params,
    pub tags: Vec<String>,
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
    /// The node's room (failure domain), empty for none; see [`crate::rooms`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub room: String,
    /// SHA-256 (hex) of the node's certificate, recorded when it joined (empty in configs
    /// written before identities were recorded). Forgotten when the node is removed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate_fingerprint: String,
    /// A witness of a replicated cluster (docs/replication.md): a master candidate that
    /// votes and stores the config's log but is never the master, and runs no instances.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
}

impl Node {
    /// Ganeti's node role letter: M(aster), C(andidate), D(rained), O(ffline), R(egular).
    pub fn role(&self, master_uuid: &str) -> &'static str {
        if self.uuid == master_uuid {
            "M"
        } else if self.offline {
            "O"
        } else if self.drained {
            "D"
        } else if self.master_candidate {
            "C"
        } else {
            "R"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub uuid: String,
    pub name: String,
    /// uuid of the primary node.
    pub primary_node: String,
    pub os: String,
    pub hypervisor: Hypervisor,
    pub admin_state: AdminState,
    pub disk_template: DiskTemplate,
    pub beparams: Params,
    pub hvparams: Params,
    pub osparams: Params,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub tags: Vec<String>,
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
    /// Who set `admin_state` (`user`: the guest powered itself off; see the watcher).
    #[serde(default, skip_serializing_if = "AdminStateSource::is_admin")]
    pub admin_state_source: AdminStateSource,
    /// A move onto a new DRBD pair under way (`instance change-group`, `group evacuate`):
    /// recorded before the new pair is built, cleared when the config names it or when it is
    /// removed again. Left behind by a master that stopped in the middle: the next move of
    /// the instance removes that pair first, `cluster verify` names it, and its minors and
    /// port stay taken until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_move: Option<PendingPairMove>,
}

/// The new DRBD pair of a move in progress ([`Instance::pending_move`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingPairMove {
    /// uuid of the new primary node.
    pub primary: String,
    /// uuid of the new secondary node.
    pub secondary: String,
    /// The instance's disks on the new pair.
    pub disks: Vec<Disk>,
}

impl Instance {
    /// uuids of the secondary nodes (DRBD disks), in disk order, without duplicates.
    pub fn secondary_nodes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in &self.disks {
            for n in &d.nodes {
                if n != &self.primary_node && !out.contains(&n.as_str()) {
                    out.push(n);
                }
            }
        }
        out
    }
}

/// Where a disk's data lives, per template (Ganeti's `logical_id`). Its `Debug` shows a DRBD
/// secret as `<redacted>` (messages and logs never carry it).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogicalId {
    /// A sparse raw image file on the node.
    File { driver: String, path: String },
    /// A file in the shared directory.
    Sharedfile { driver: String, path: String },
    /// An LVM logical volume.
    Plain { vg: String, lv: String },
    /// A DRBD device between two nodes.
    Drbd {
        node_a: String,
        node_b: String,
        port: u16,
        minor_a: u32,
        minor_b: u32,
        secret: String,
    },
}

impl std::fmt::Debug for LogicalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogicalId::File { driver, path } => f
                .debug_struct("File")
                .field("driver", driver)
                .field("path", path)
                .finish(),
            LogicalId::Sharedfile { driver, path } => f
                .debug_struct("Sharedfile")
                .field("driver", driver)
                .field("path", path)
                .finish(),
            LogicalId::Plain { vg, lv } => f
                .debug_struct("Plain")
                .field("vg", vg)
                .field("lv", lv)
                .finish(),
            LogicalId::Drbd {
                node_a,
                node_b,
                port,
                minor_a,
                minor_b,
                secret: _,
            } => f
                .debug_struct("Drbd")
                .field("node_a", node_a)
                .field("node_b", node_b)
                .field("port", port)
                .field("minor_a", minor_a)
                .field("minor_b", minor_b)
                .field("secret", &"<redacted>")
                .finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub uuid: String,
    /// Optional user-given name.
    #[serde(default)]
    pub name: Option<String>,
    pub dev_type: DevType,
    /// Size in MiB.
    pub size: u64,
    pub mode: DiskMode,
    pub logical_id: LogicalId,
    #[serde(default)]
    pub children: Vec<Disk>,
    /// uuids of the nodes holding this disk (primary first).
    pub nodes: Vec<String>,
    /// Ganeti's `iv_name`: `disk/0`, `disk/1`, ...
    pub iv_name: String,
    pub serial_no: u64,
    pub ctime: f64,
    pub mtime: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub uuid: String,
    #[serde(default)]
    pub name: Option<String>,
    pub mac: String,
    #[serde(default)]
    pub ip: Option<String>,
    /// Partial nicparams (`mode`, `link`, `vlan`), filled from the cluster's defaults.
    pub nicparams: Params,
    /// uuid of the network the NIC is connected to, if any.
    #[serde(default)]
    pub network: Option<String>,
}

/// A one-time token that lets a new node obtain its certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinToken {
    pub node_name: String,
    pub primary_ip: String,
    pub secondary_ip: String,
    /// uuid of the group the node will join.
    pub group: String,
    /// SHA-256 (hex) of the token's secret part; the secret itself is never stored.
    pub secret_sha256: String,
    /// Unix time after which the token is refused.
    pub expires: f64,
    /// The room the node will be in (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub room: String,
    /// The node joins as a witness ([`Node::witness`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
    /// The node is in the config and joins again (`node add --readd`): its join re-adds it
    /// with a new certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readd: bool,
}

/// The small cluster-wide facts every node needs (Ganeti's ssconf).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ssconf {
    pub cluster_name: String,
    pub master_node: String,
    pub master_ip: String,
    pub rpc_port: u16,
    pub file_storage_dir: String,
    /// The cluster's LVM volume group (node info reports its size and free space).
    #[serde(default)]
    pub vg_name: String,
    /// node name → node uuid (a node finds its end of a DRBD disk by its uuid).
    #[serde(default)]
    pub node_uuids: BTreeMap<String, String>,
    /// node name → primary ip
    pub node_primary_ips: BTreeMap<String, String>,
    pub node_secondary_ips: BTreeMap<String, String>,
    pub offline_nodes: Vec<String>,
    pub master_candidates: Vec<String>,
    pub config_serial: u64,
    /// SHA-256 (hex) of the master's certificate: the only client whose commands a node's
    /// RPC server accepts (besides its own). Empty in configs without recorded identities.
    #[serde(default)]
    pub master_certificate: String,
    /// The cluster's uuid: a node refuses node RPCs stamped for another cluster.
    #[serde(default)]
    pub cluster_uuid: String,
    /// SHA-256 (hex) of the certificates of the master candidates (the master included):
    /// only their requests raise the master term a node has stored.
    #[serde(default)]
    pub master_candidate_certificates: Vec<String>,
    /// The master is the Raft leader of the candidates ([`Cluster::replicated`]): any
    /// candidate may become master, so a node obeys every candidate's certificate.
    #[serde(default)]
    pub replicated: bool,
}

impl Ssconf {
    /// Builds the ssconf view of a configuration.
    pub fn from_config(cfg: &ConfigData) -> Self {
        let master = cfg.master_node();
        Ssconf {
            cluster_name: cfg.cluster.cluster_name.clone(),
            master_node: master.map(|n| n.name.clone()).unwrap_or_default(),
            master_ip: master.map(|n| n.primary_ip.clone()).unwrap_or_default(),
            rpc_port: cfg.cluster.rpc_port,
            file_storage_dir: cfg.cluster.file_storage_dir.clone(),
            vg_name: cfg.cluster.vg_name.clone(),
            node_uuids: cfg
                .nodes
                .values()
                .map(|n| (n.name.clone(), n.uuid.clone()))
                .collect(),
            node_primary_ips: cfg
                .nodes
                .values()
                .map(|n| (n.name.clone(), n.primary_ip.clone()))
                .collect(),
            node_secondary_ips: cfg
                .nodes
                .values()
                .map(|n| (n.name.clone(), n.secondary_ip.clone()))
                .collect(),
            offline_nodes: cfg
                .nodes
                .values()
                .filter(|n| n.offline)
                .map(|n| n.name.clone())
                .collect(),
            master_candidates: cfg
                .nodes
                .values()
                .filter(|n| n.master_candidate)
                .map(|n| n.name.clone())
                .collect(),
            master_certificate: master
                .map(|n| n.certificate_fingerprint.clone())
                .unwrap_or_default(),
            config_serial: cfg.serial_no,
            cluster_uuid: cfg.cluster.uuid.clone(),
            master_candidate_certificates: cfg
                .nodes
                .values()
                .filter(|n| {
                    n.master_candidate || Some(n.uuid.as_str()) == master.map(|m| m.uuid.as_str())
                })
                .map(|n| n.certificate_fingerprint.clone())
                .filter(|f| !f.is_empty())
                .collect(),
            replicated: cfg.cluster.replicated,
        }
    }
}
