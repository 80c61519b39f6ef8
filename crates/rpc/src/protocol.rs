//! The node RPC protocol: one enum of requests the master sends to node daemons.
//!
//! On the wire: `POST /rpc` with the JSON of a [`NodeRequest`] (`{"procedure": ..., "args": ...}`),
//! answered with the JSON of an [`RpcReply`]. Procedure names follow Ganeti's noded RPCs.

use maguey_model::{Disk, Ssconf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything the master can ask a node daemon to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "procedure", content = "args", rename_all = "snake_case")]
pub enum NodeRequest {
    /// Version handshake: answers [`VersionInfo`].
    Version,
    /// Live node facts: answers [`NodeInfo`].
    NodeInfo {
        /// The cluster's file storage directory (relative: under the node's state dir).
        file_storage_dir: String,
        hypervisor: String,
    },
    /// Stores the cluster-wide facts (Ganeti's `write_ssconf_files`). Answers null.
    WriteSsconf { ssconf: Ssconf },
    /// Creates a disk on this node (sparse file for `file`). Answers [`BlockdevInfo`].
    BlockdevCreate {
        disk: Disk,
        instance_name: String,
        file_storage_dir: String,
    },
    /// Removes a disk; removing a disk that does not exist succeeds. Answers null.
    BlockdevRemove {
        disk: Disk,
        file_storage_dir: String,
    },
    /// Looks a disk up: answers `Option<BlockdevInfo>` (null when missing).
    BlockdevFind {
        disk: Disk,
        file_storage_dir: String,
    },
    /// Every disk file under the file storage directory: answers `Vec<String>` of paths
    /// relative to that directory (used by cluster verify to find orphans).
    FileStorageList { file_storage_dir: String },
    /// Every LVM logical volume on this node, as `vg/lv` (Ganeti's `node_volumes`; cluster
    /// verify finds missing and orphan LVs with it): answers `Vec<String>`.
    NodeVolumes,
    /// Starts an instance. Answers null.
    InstanceStart { instance: InstanceRuntime },
    /// Stops an instance (soft, then hard after `timeout` seconds). Answers null.
    InstanceShutdown {
        name: String,
        hypervisor: String,
        timeout: u64,
    },
    /// Reboots an instance (`soft`, `hard`; `full` is stop + start by the master). Answers null.
    InstanceReboot {
        instance: InstanceRuntime,
        reboot_type: String,
        shutdown_timeout: u64,
    },
    /// Names of the instances running here: answers `Vec<String>`.
    InstanceList { hypervisor: String },
    /// Live data of one instance: answers `Option<InstanceRunInfo>`.
    InstanceInfo { name: String, hypervisor: String },
    /// Live data of every instance here: answers `BTreeMap<String, InstanceRunInfo>`.
    AllInstancesInfo { hypervisor: String },
    /// Changes the memory of a running instance (ballooning). Answers null.
    InstanceBalloonMemory {
        name: String,
        hypervisor: String,
        memory: u64,
    },
    /// Migration target: starts the instance waiting for its state on `address:port`
    /// (Ganeti's `accept_instance`). Port 0 (and NBD port `Some(0)`): the node picks free
    /// ports. Answers [`AcceptedPorts`].
    AcceptInstance {
        instance: InstanceRuntime,
        address: String,
        port: u16,
        /// Local-disk migration: also export the instance's fresh disks over NBD on this port.
        #[serde(default)]
        nbd_port: Option<u16>,
        /// Over TLS (QEMU's x509 credentials from the cluster CA): the source node's name, the
        /// only certificate the migration stream and the NBD exports admit. None (a master
        /// from before TLS): plain TCP.
        #[serde(default)]
        tls_peer: Option<String>,
    },
    /// Migration source: live-migrates a running instance to `target:port` and waits for the
    /// end (`bandwidth` MiB/s, `downtime` ms). Answers [`MigrationStatus`].
    InstanceMigrate {
        name: String,
        hypervisor: String,
        target: String,
        port: u16,
        bandwidth: u64,
        downtime: u64,
        /// Local-disk migration: mirror the disks to the target's NBD exports on this port
        /// first.
        #[serde(default)]
        nbd_port: Option<u16>,
        /// Over TLS: the target node's name, which its certificate must carry. None: plain TCP.
        #[serde(default)]
        tls_peer: Option<String>,
        /// QEMU migration capabilities to switch on (the `migration_caps` hypervisor
        /// parameter, split); the node switches the other known ones off.
        #[serde(default)]
        caps: Vec<String>,
    },
    /// Migration target, afterwards: keep the instance (`success`) or drop it. Answers null.
    FinalizeMigrationDst {
        instance: InstanceRuntime,
        success: bool,
    },
    /// Migration source, afterwards: stop the old copy (`success`) or resume it. Answers null.
    FinalizeMigrationSrc {
        name: String,
        hypervisor: String,
        success: bool,
    },
    /// The last `max_bytes` of an instance's serial console output: answers a string.
    InstanceConsole {
        name: String,
        hypervisor: String,
        max_bytes: u64,
    },
    /// Progress of the migration a source is running for `name`: answers
    /// `Option<MigrationProgress>` (null when none runs).
    InstanceMigrationProgress { name: String, hypervisor: String },
    /// Reads `length` bytes at `offset` of a disk (offline copies between nodes, over the
    /// cluster's TLS channel). Answers [`BlockdevChunk`].
    BlockdevRead {
        disk: Disk,
        file_storage_dir: String,
        offset: u64,
        length: u64,
    },
    /// Writes a chunk read by [`NodeRequest::BlockdevRead`] at `offset` of a disk (a chunk
    /// with no data is a hole: nothing is written). Answers null.
    BlockdevWrite {
        disk: Disk,
        file_storage_dir: String,
        offset: u64,
        chunk: BlockdevChunk,
    },
    /// Grows a disk by `amount` MiB (Ganeti's `blockdev_grow`). With `backingstore`, the
    /// storage itself grows (`plain`: lvextend; `drbd`: this node's data LV; `file`: the
    /// image file is extended); without it, the logical device takes its new size (`drbd`:
    /// `drbdsetup resize` on the primary, once both nodes' data LVs grew; nothing for the
    /// others). Answers null.
    BlockdevGrow {
        disk: Disk,
        file_storage_dir: String,
        amount: u64,
        #[serde(default)]
        backingstore: bool,
    },
    /// Tells the hypervisor that disk `disk_index` of a running instance is now `size` MiB
    /// (Ganeti's `resize_disk`; kvm: QMP `block_resize`), so the guest sees it. Answers null.
    InstanceResizeDisk {
        name: String,
        hypervisor: String,
        disk_index: usize,
        size: u64,
    },
    /// `drbd`: assembles this node's ends of `disks` (backing LVs active, device attached,
    /// connected to the peer's secondary IP) and gives them `role`; what is already up stays.
    /// The master sends it to the secondary first, then the primary. Answers null.
    DrbdAssemble {
        disks: Vec<Disk>,
        instance_name: String,
        role: DrbdRole,
    },
    /// `drbd`: promotes (`primary`; `force` for a new disk's first primary or when the peer
    /// is gone) or demotes the local devices. Answers null.
    DrbdSetRole {
        disks: Vec<Disk>,
        primary: bool,
        #[serde(default)]
        force: bool,
    },
    /// `drbd`: the first promotion of new disks: waits on the node until every local device
    /// is connected to its peer (at most `timeout_secs`; StandAlone or not configured fails
    /// at once), then promotes them with `--force` (the full initial sync starts). Nothing is
    /// promoted when it fails. Answers null.
    DrbdPromoteConnected { disks: Vec<Disk>, timeout_secs: u64 },
    /// `drbd`: allows (`enable`) or forbids two primaries on the live connections (the
    /// window of a live migration). Answers null.
    DrbdSetDualPrimary { disks: Vec<Disk>, enable: bool },
    /// `drbd`: one status read of the local devices: answers `Vec<Option<DrbdDiskStatus>>`
    /// (null for a device that is not configured), in the order of `disks`.
    DrbdStatus { disks: Vec<Disk> },
    /// `drbd`: one step of Ganeti's `drbd_wait_sync` (the master polls): answers
    /// [`DrbdSyncProgress`]; a device neither connected nor resyncing is an error.
    DrbdSyncProgress { disks: Vec<Disk> },
    /// `drbd`: the loaded module's version and whether it runs `usermode_helper` (empty:
    /// `/bin/true`): answers [`DrbdNodeCheck`] (cluster verify).
    DrbdNodeCheck {
        #[serde(default)]
        usermode_helper: String,
    },
    /// `drbd`: tears the local devices down (`drbdsetup down`); the LVs stay. Answers null.
    DrbdShutdown { disks: Vec<Disk> },
    /// `drbd`: resolves a split brain against this node: assembles the local devices if
    /// needed, demotes them and connects again with `--discard-my-data` (what this node
    /// changed since the split is discarded; it resyncs from the peer). Connected devices
    /// are left alone. Answers null.
    DrbdReconnectDiscard {
        disks: Vec<Disk>,
        instance_name: String,
    },
    /// `drbd` replace-disks on this node: per disk, new data and meta LVs (fresh metadata)
    /// replace the old ones under the device, which resyncs them from its peer; the old LVs
    /// are kept as `<lv>_replaced-<suffix>`. Answers `Vec<String>`: the old LVs set aside
    /// (`vg/lv`), for a later `blockdev_remove`.
    DrbdReplaceStorage {
        disks: Vec<Disk>,
        instance_name: String,
        suffix: String,
    },
    /// `drbd`: drops the connection to the peer and forgets it (StandAlone), so that the
    /// devices can connect to a new secondary. Answers null.
    DrbdDisconnect { disks: Vec<Disk> },
    /// Runs the OS definition's `verify parameters` (API 15+) on the instance's OS
    /// parameters, before anything is created (Ganeti's `os_validate`). Answers its output.
    OsValidate { install: OsInstall },
    /// Runs the OS definition's `rename` script for an instance renamed from `old_name`
    /// (`install` names the new one). Answers the script's output.
    InstanceOsRename {
        install: OsInstall,
        old_name: String,
    },
    /// Runs the OS definition's `create` (or `reinstall`) script. Answers the script's output.
    InstanceOsAdd { install: OsInstall, reinstall: bool },
    /// Lists the OS definitions found on this node: answers `Vec<OsInfo>`.
    OsDiagnose,
    /// Sleeps (OP_TEST_DELAY on nodes). Answers null.
    TestDelay { duration: f64 },
    /// Runs the hook scripts of `HOOKS_DIR/<hpath>-<phase>.d/` (Ganeti's `hooks_runner`)
    /// with `env`. Answers `Vec<HookResult>`.
    HooksRunner {
        hpath: String,
        phase: HookPhase,
        env: BTreeMap<String, String>,
    },
    /// Leaves the cluster: removes the node's certificates and ssconf, then stops serving.
    /// Answers null (the reply is sent before the daemon stops).
    LeaveCluster,
    /// Brings the floating master IP up on this node (`ip addr replace`, then gratuitous
    /// ARP for IPv4). Answers null.
    ActivateMasterIp { master_ip: maguey_model::MasterIp },
    /// Takes the floating master IP down; absent already is fine. Answers null.
    DeactivateMasterIp { master_ip: maguey_model::MasterIp },
    /// Certificate renewal (`cluster renew-crypto`, [`crate::renew`]), step 1: the node makes
    /// a new key, kept aside, and answers its CSR (text).
    CertificatePrepare,
    /// Step 2, on the master (it holds the CA): signs `csr` for `node_name` and `ips`.
    /// Answers the certificate (text).
    CertificateSign {
        csr: String,
        node_name: String,
        ips: Vec<String>,
        /// Signed by the new CA of a CA roll in progress ([`crate::ca_roll`]).
        #[serde(default)]
        next_ca: bool,
        /// Valid this many seconds from now (short-lived certificates); 0: ten years.
        #[serde(default)]
        lifetime_secs: u64,
    },
    /// Step 3: the node checks the certificate (its CA, its name, the key of step 1) and makes
    /// it its own, after writing `ssconf` when given (the master's renewal: from then on the
    /// nodes obey its new certificate). Answers the new fingerprint (text).
    CertificateInstall {
        certificate: String,
        #[serde(default)]
        ssconf: Option<Ssconf>,
    },
    /// `drbd`: declares brand-new, connected devices on fresh volumes identical on both
    /// sides (`new-current-uuid --clear-bitmap`): no initial full sync. Sent to one node of
    /// a new pair before its first promotion. Answers null.
    DrbdSkipInitialSync { disks: Vec<Disk> },
    /// On the master (it holds the CA): a new admin certificate replaces `admin.pem` and
    /// `admin.key`; the old one is refused by the master API from then on
    /// ([`crate::rotate`]). Answers its fingerprint (text).
    AdminCertificateRenew,
    /// On the master: a new Remote API certificate (`rapi.pem`): the PEM file `file` names
    /// on the master (certificate and key), or, without one, a certificate the cluster CA
    /// issues for this node's name and `ips`. Answers its fingerprint (text).
    RapiCertificateRenew {
        #[serde(default)]
        file: Option<String>,
        #[serde(default)]
        ips: Vec<String>,
    },
    /// CA roll ([`crate::ca_roll`]) step 1, on the master: a new CA kept aside. Answers its
    /// certificate (text).
    CaPrepare,
    /// CA roll step 2, on every node: trust `ca` beside the current CA. Answers null.
    CaTrust { ca: String },
    /// CA roll step 4, on every node (the master last): trust `ca` alone (this node's
    /// certificate must be from it); on the master the new CA's key becomes the CA key.
    /// Answers null.
    CaFinish { ca: String },
}

impl NodeRequest {
    /// The procedure name, as in Ganeti's RPC list.
    pub fn procedure(&self) -> &'static str {
        match self {
            NodeRequest::Version => "version",
            NodeRequest::NodeInfo { .. } => "node_info",
            NodeRequest::WriteSsconf { .. } => "write_ssconf",
            NodeRequest::BlockdevCreate { .. } => "blockdev_create",
            NodeRequest::BlockdevRemove { .. } => "blockdev_remove",
            NodeRequest::BlockdevFind { .. } => "blockdev_find",
            NodeRequest::FileStorageList { .. } => "file_storage_list",
            NodeRequest::NodeVolumes => "node_volumes",
            NodeRequest::InstanceStart { .. } => "instance_start",
            NodeRequest::InstanceShutdown { .. } => "instance_shutdown",
            NodeRequest::InstanceReboot { .. } => "instance_reboot",
            NodeRequest::InstanceList { .. } => "instance_list",
            NodeRequest::InstanceInfo { .. } => "instance_info",
            NodeRequest::AllInstancesInfo { .. } => "all_instances_info",
            NodeRequest::InstanceBalloonMemory { .. } => "instance_balloon_memory",
            NodeRequest::InstanceConsole { .. } => "instance_console",
            NodeRequest::AcceptInstance { .. } => "accept_instance",
            NodeRequest::InstanceMigrate { .. } => "instance_migrate",
            NodeRequest::FinalizeMigrationDst { .. } => "instance_finalize_migration_dst",
            NodeRequest::FinalizeMigrationSrc { .. } => "instance_finalize_migration_src",
            NodeRequest::InstanceMigrationProgress { .. } => "instance_migration_progress",
            NodeRequest::BlockdevRead { .. } => "blockdev_read",
            NodeRequest::BlockdevWrite { .. } => "blockdev_write",
            NodeRequest::BlockdevGrow { .. } => "blockdev_grow",
            NodeRequest::InstanceResizeDisk { .. } => "resize_disk",
            NodeRequest::DrbdAssemble { .. } => "drbd_assemble",
            NodeRequest::DrbdSetRole { .. } => "drbd_set_role",
            NodeRequest::DrbdPromoteConnected { .. } => "drbd_promote_connected",
            NodeRequest::DrbdSetDualPrimary { .. } => "drbd_set_dual_primary",
            NodeRequest::DrbdStatus { .. } => "drbd_status",
            NodeRequest::DrbdSyncProgress { .. } => "drbd_wait_sync",
            NodeRequest::DrbdShutdown { .. } => "drbd_shutdown",
            NodeRequest::DrbdReconnectDiscard { .. } => "drbd_reconnect_discard",
            NodeRequest::DrbdReplaceStorage { .. } => "drbd_replace_storage",
            NodeRequest::DrbdDisconnect { .. } => "drbd_disconnect_net",
            NodeRequest::DrbdNodeCheck { .. } => "drbd_node_check",
            NodeRequest::InstanceOsAdd { .. } => "instance_os_add",
            NodeRequest::InstanceOsRename { .. } => "instance_run_rename",
            NodeRequest::OsValidate { .. } => "os_validate",
            NodeRequest::OsDiagnose => "os_diagnose",
            NodeRequest::TestDelay { .. } => "test_delay",
            NodeRequest::HooksRunner { .. } => "hooks_runner",
            NodeRequest::LeaveCluster => "leave_cluster",
            NodeRequest::ActivateMasterIp { .. } => "node_activate_master_ip",
            NodeRequest::DeactivateMasterIp { .. } => "node_deactivate_master_ip",
            NodeRequest::CertificatePrepare => "certificate_prepare",
            NodeRequest::CertificateSign { .. } => "certificate_sign",
            NodeRequest::CertificateInstall { .. } => "certificate_install",
            NodeRequest::DrbdSkipInitialSync { .. } => "drbd_skip_initial_sync",
            NodeRequest::AdminCertificateRenew => "admin_certificate_renew",
            NodeRequest::RapiCertificateRenew { .. } => "rapi_certificate_renew",
            NodeRequest::CaPrepare => "ca_prepare",
            NodeRequest::CaTrust { .. } => "ca_trust",
            NodeRequest::CaFinish { .. } => "ca_finish",
        }
    }
}

impl NodeRequest {
    /// How long the master waits for the answer: most requests are quick; those that wait
    /// for a guest, a migration, an OS script or a copy say how long they may take.
    pub fn timeout(&self, default: Duration) -> Duration {
        const HOUR: Duration = Duration::from_secs(3600);
        match self {
            NodeRequest::InstanceShutdown { timeout, .. } => {
                default.max(Duration::from_secs(timeout.saturating_add(30)))
            }
            NodeRequest::InstanceReboot {
                shutdown_timeout, ..
            } => default.max(Duration::from_secs(shutdown_timeout.saturating_add(60))),
            NodeRequest::InstanceMigrate { .. }
            | NodeRequest::InstanceOsAdd { .. }
            | NodeRequest::InstanceOsRename { .. }
            | NodeRequest::BlockdevCreate { .. } => default.max(6 * HOUR),
            NodeRequest::HooksRunner { .. } => default.max(HOUR),
            NodeRequest::DrbdPromoteConnected { timeout_secs, .. } => {
                default.max(Duration::from_secs(timeout_secs.saturating_add(30)))
            }
            NodeRequest::TestDelay { duration } if duration.is_finite() && *duration >= 0.0 => {
                default.max(Duration::from_secs_f64(duration.min(86_400.0) + 30.0))
            }
            _ => default,
        }
    }
}

/// The answer to any request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcReply {
    Ok(serde_json::Value),
    Error(String),
}

/// The typed answer of a node to one [`NodeRequest`] (like Firecracker's `VmmData`): each
/// variant is the reply type of the requests listed on it. On the wire (inside
/// [`RpcReply::Ok`]) a reply is its bare value, so `Empty` is `null` and the others are the
/// JSON of the type they carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum NodeReply {
    /// `null`: requests that only act (`write_ssconf`, `instance_start`, `blockdev_remove`,
    /// the DRBD steps, ...).
    Empty,
    /// `version`.
    Version(VersionInfo),
    /// `node_info`.
    NodeInfo(NodeInfo),
    /// `blockdev_create`.
    Blockdev(BlockdevInfo),
    /// `blockdev_find`: `None` when the disk is missing.
    BlockdevFound(Option<BlockdevInfo>),
    /// `blockdev_read`.
    Chunk(BlockdevChunk),
    /// Names or paths: `file_storage_list`, `node_volumes`, `instance_list`,
    /// `drbd_replace_storage`.
    Names(Vec<String>),
    /// `instance_info`: `None` when the instance is not running.
    InstanceInfo(Option<InstanceRunInfo>),
    /// `all_instances_info`.
    AllInstancesInfo(BTreeMap<String, InstanceRunInfo>),
    /// `accept_instance`.
    AcceptedPorts(AcceptedPorts),
    /// `instance_migrate`.
    Migration(MigrationStatus),
    /// `instance_migration_progress`: `None` when no migration runs.
    MigrationProgress(Option<MigrationProgress>),
    /// Text: `instance_console`, and the output of OS scripts (`os_validate`,
    /// `instance_run_rename`, `instance_os_add` of a script OS definition).
    Text(String),
    /// `instance_os_add` of the built-in `image` provider.
    ImageInstall(ImageInstallOutput),
    /// `os_diagnose`.
    OsList(Vec<OsInfo>),
    /// `drbd_status`: per disk, `None` when its device is not configured.
    DrbdStatus(Vec<Option<DrbdDiskStatus>>),
    /// `drbd_wait_sync`.
    DrbdSync(DrbdSyncProgress),
    /// `drbd_node_check`.
    DrbdNodeCheck(DrbdNodeCheck),
    /// `hooks_runner`.
    Hooks(Vec<HookResult>),
}

/// Before or after an operation (Ganeti's hook phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPhase {
    Pre,
    Post,
}

impl HookPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::Pre => "pre",
            HookPhase::Post => "post",
        }
    }
}

/// What became of one hook script (Ganeti's `HKR_SUCCESS`, `HKR_FAIL`, `HKR_SKIP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookStatus {
    Success,
    Fail,
    Skip,
}

/// One hook script's outcome on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    /// The script's file name.
    pub script: String,
    pub status: HookStatus,
    /// Its standard output and error (or why it was skipped or failed).
    pub output: String,
}

impl NodeReply {
    /// The reply's JSON, as carried by [`RpcReply::Ok`].
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Maguey's version string.
    pub version: String,
    /// Must equal [`maguey_model::PROTOCOL_VERSION`] on both ends.
    pub protocol: u32,
    /// The node's name as it knows itself (from its certificate).
    pub node_name: String,
}

/// Storage space of one kind on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageInfo {
    /// Storage type: `file`, `sharedfile`, `lvm-vg`, ...
    #[serde(rename = "type")]
    pub storage_type: String,
    /// Path or VG name.
    pub name: String,
    /// MiB.
    pub storage_size: u64,
    /// MiB.
    pub storage_free: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub cpu_count: u32,
    /// MiB, as the hypervisor sees it.
    pub memory_total: u64,
    /// MiB left for new instances.
    pub memory_free: u64,
    /// MiB used by the node itself (Ganeti's `memory_dom0`).
    pub memory_dom0: u64,
    pub storage: Vec<StorageInfo>,
    /// Changes at every boot of the node.
    pub bootid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockdevInfo {
    /// Absolute path of the device or file on the node.
    pub path: String,
    /// MiB.
    pub size: u64,
}

/// Everything a node needs to start or reboot an instance, with parameters already filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRuntime {
    pub name: String,
    pub uuid: String,
    pub hypervisor: String,
    /// MiB at start (maxmem).
    pub memory: u64,
    pub vcpus: u32,
    pub hvparams: BTreeMap<String, serde_json::Value>,
    pub disks: Vec<Disk>,
    pub nics: Vec<NicRuntime>,
    pub file_storage_dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NicRuntime {
    pub mac: String,
    pub ip: Option<String>,
    pub mode: maguey_model::NicMode,
    pub link: String,
    /// The network the NIC is in (OS scripts get Ganeti's `NIC_n_NETWORK_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NicNetwork>,
}

/// What a guest needs to know of its NIC's network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NicNetwork {
    pub name: String,
    pub uuid: String,
    /// `a.b.c.d/len`.
    pub subnet: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub subnet6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    #[serde(default)]
    pub mac_prefix: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Live state of a running instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRunInfo {
    /// `running`, `paused`, `shutdown` (guest stopped itself) ...
    pub state: String,
    /// MiB currently assigned.
    pub memory: u64,
    pub vcpus: u32,
    pub pid: Option<u32>,
    /// Seconds since start.
    pub uptime: f64,
    /// TCP port of the instance's VNC console, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_port: Option<u16>,
    /// The accelerator the instance runs on (`kvm`, `tcg`), when the hypervisor has one: a
    /// migration target must use the same (QEMU cannot load a KVM guest's state into TCG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
}

/// The outcome of a live migration, as the source saw it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// `completed`, `failed`, `cancelled`.
    pub status: String,
    /// Milliseconds from start to end.
    pub total_time: u64,
    /// Milliseconds the guest was paused.
    pub downtime: u64,
    /// RAM bytes sent.
    pub transferred: u64,
    /// Disk bytes mirrored to the target (local-disk migration).
    #[serde(default)]
    pub disk_transferred: u64,
    /// Milliseconds the disk mirror took until it was in sync.
    #[serde(default)]
    pub disk_time: u64,
}

/// An OS installation request (Ganeti's OS API, version 20 environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsInstall {
    pub instance_name: String,
    /// `name` or `name+variant`.
    pub os: String,
    pub hypervisor: String,
    pub osparams: BTreeMap<String, serde_json::Value>,
    pub disks: Vec<Disk>,
    pub nics: Vec<NicRuntime>,
    pub file_storage_dir: String,
    pub debug_level: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsInfo {
    pub name: String,
    pub path: String,
    pub valid: bool,
    /// Why the definition is invalid, if it is.
    pub status: String,
    pub variants: Vec<String>,
    pub parameters: Vec<(String, String)>,
    pub api_versions: Vec<u32>,
}

/// What `instance_os_add` answers for the built-in `image` OS provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInstallOutput {
    /// What was done, for the job log.
    pub output: String,
    /// Format of the image (given or detected).
    pub image_format: String,
    /// Virtual size of the image, in bytes.
    pub image_size: u64,
    /// Absolute path of the cloud-init seed on the node (`cloud_init` true), to set as the
    /// instance's kvm hvparam `cdrom_image_path`; `None` without cloud-init.
    pub cdrom_image_path: Option<String>,
}

/// Ports a migration target listens on (answer to [`NodeRequest::AcceptInstance`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AcceptedPorts {
    pub port: u16,
    #[serde(default)]
    pub nbd_port: Option<u16>,
}

/// A running migration as the source sees it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MigrationProgress {
    /// `setup`, `mirroring` (local disks), `active` (RAM), `completed`, `failed` ...
    pub status: String,
    /// RAM bytes sent so far, and the total.
    pub ram_transferred: u64,
    pub ram_total: u64,
    /// Disk bytes mirrored so far, and the total (local-disk migration).
    pub disk_transferred: u64,
    pub disk_total: u64,
}

/// A piece of a disk: base64 data, or `None` for a hole (all zeroes).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BlockdevChunk {
    /// Bytes this chunk covers.
    pub length: u64,
    /// base64 of the bytes; `None` when they are all zero.
    #[serde(default)]
    pub data: Option<String>,
}

/// The role a node's DRBD devices take in [`NodeRequest::DrbdAssemble`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrbdRole {
    /// Connected, not promoted (the secondary node).
    Secondary,
    /// Connected and promoted (the primary node, single primary).
    Primary,
    /// Connected allowing two primaries, and promoted (live migration target).
    DualPrimary,
}

/// One DRBD device as its node sees it (answer of [`NodeRequest::DrbdStatus`]). The states
/// are DRBD's names: connection `StandAlone`, `Connecting`, `Connected`, ...; roles
/// `Primary`, `Secondary`, `Unknown`; disks `UpToDate`, `Inconsistent`, `Diskless`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrbdDiskStatus {
    pub minor: u32,
    pub connection: String,
    /// `Established`, `SyncSource`, `SyncTarget`, ... (`Off` when not connected).
    pub replication: String,
    pub role: String,
    pub peer_role: String,
    pub disk: String,
    pub peer_disk: String,
    /// Resync progress while resynchronising.
    #[serde(default)]
    pub sync_percent: Option<f64>,
    /// Connected with both disks UpToDate.
    pub in_sync: bool,
    /// No good peer or no good local disk.
    pub degraded: bool,
    /// Estimated time to the end of the resync, when the module tells it (8.4).
    #[serde(default)]
    pub sync_eta_secs: Option<u64>,
}

/// One wait-sync step for a set of DRBD disks (answer of [`NodeRequest::DrbdSyncProgress`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrbdSyncProgress {
    /// No device is resynchronising any more.
    pub all_done: bool,
    /// The lowest resync percentage (100 when none resyncs).
    pub min_percent: f64,
    /// The longest estimated time to the end, when known.
    #[serde(default)]
    pub max_eta_secs: Option<u64>,
}

/// A node's DRBD module as cluster verify sees it (answer of [`NodeRequest::DrbdNodeCheck`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrbdNodeCheck {
    /// `8.4.11`, `9.2.12`, ...; `None` when the module is not loaded.
    #[serde(default)]
    pub version: Option<String>,
    /// What is wrong with the usermode helper, if anything.
    #[serde(default)]
    pub helper_error: Option<String>,
}

#[cfg(test)]
mod reply_tests {
    use super::*;

    #[test]
    fn replies_are_their_bare_values_on_the_wire() {
        assert_eq!(NodeReply::Empty.to_json().unwrap(), serde_json::Value::Null);
        assert_eq!(
            NodeReply::BlockdevFound(None).to_json().unwrap(),
            serde_json::Value::Null
        );
        assert_eq!(
            NodeReply::Names(vec!["a".into()]).to_json().unwrap(),
            serde_json::json!(["a"])
        );
        assert_eq!(
            NodeReply::Text("out".into()).to_json().unwrap(),
            serde_json::json!("out")
        );
        let ports = AcceptedPorts {
            port: 8102,
            nbd_port: None,
        };
        assert_eq!(
            NodeReply::AcceptedPorts(ports.clone()).to_json().unwrap(),
            serde_json::to_value(&ports).unwrap()
        );
    }
}
