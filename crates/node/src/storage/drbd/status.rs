//! The state of one DRBD device, the same for both dialects: 8.4's `/proc/drbd` line
//! (`cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent`) and DRBD 9's
//! `drbdsetup status --json` (role, connection-state, replication-state, disk-state, ...).

use serde::{Deserialize, Serialize};

/// A node's role for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Primary,
    Secondary,
    /// The peer's role while disconnected.
    Unknown,
    Other(String),
}

impl Role {
    pub fn parse(s: &str) -> Self {
        match s {
            "Primary" => Role::Primary,
            "Secondary" => Role::Secondary,
            "Unknown" => Role::Unknown,
            other => Role::Other(other.to_string()),
        }
    }
}

/// The network connection to the peer (DRBD 9's `connection-state`; 8.4's `cs:` folded into
/// it: `WFConnection` is `Connecting`, every sync state is `Connected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    /// No network configuration (never connected, disconnected, or dropped after a split
    /// brain).
    StandAlone,
    Disconnecting,
    Unconnected,
    /// Waiting for the peer (8.4 `WFConnection`/`WFReportParams`).
    Connecting,
    Connected,
    /// `Timeout`, `BrokenPipe`, `NetworkFailure`, `ProtocolError`, `TearDown`.
    Failing(String),
    Other(String),
}

impl ConnectionState {
    pub fn parse(s: &str) -> Self {
        match s {
            "StandAlone" => ConnectionState::StandAlone,
            "Disconnecting" => ConnectionState::Disconnecting,
            "Unconnected" => ConnectionState::Unconnected,
            "Connecting" | "WFConnection" | "WFReportParams" => ConnectionState::Connecting,
            "Connected" => ConnectionState::Connected,
            "Timeout" | "BrokenPipe" | "NetworkFailure" | "ProtocolError" | "TearDown" => {
                ConnectionState::Failing(s.to_string())
            }
            other => ConnectionState::Other(other.to_string()),
        }
    }
}

/// Replication with the peer (DRBD 9's `replication-state`; 8.4's `cs:` when connected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationState {
    /// Not connected.
    Off,
    /// Connected and replicating normally (8.4 `cs:Connected`).
    Established,
    SyncSource,
    SyncTarget,
    PausedSyncSource,
    PausedSyncTarget,
    VerifySource,
    VerifyTarget,
    Ahead,
    Behind,
    /// `StartingSyncS`, `WFBitMapS`, `WFSyncUUID`, ... (about to sync).
    Starting(String),
    Other(String),
}

impl ReplicationState {
    pub fn parse(s: &str) -> Self {
        use ReplicationState::*;
        match s {
            "Off" => Off,
            "Established" | "Connected" => Established,
            "SyncSource" => SyncSource,
            "SyncTarget" => SyncTarget,
            "PausedSyncS" => PausedSyncSource,
            "PausedSyncT" => PausedSyncTarget,
            "VerifyS" => VerifySource,
            "VerifyT" => VerifyTarget,
            "Ahead" => Ahead,
            "Behind" => Behind,
            "StartingSyncS" | "StartingSyncT" | "WFBitMapS" | "WFBitMapT" | "WFSyncUUID" => {
                Starting(s.to_string())
            }
            other => Other(other.to_string()),
        }
    }

    /// A resync is running or paused.
    pub fn is_resync(&self) -> bool {
        use ReplicationState::*;
        matches!(
            self,
            SyncSource | SyncTarget | PausedSyncSource | PausedSyncTarget | Starting(_)
        )
    }
}

/// A backing disk's state (`ds:` / `disk-state` / `peer-disk-state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskState {
    Diskless,
    Attaching,
    Detaching,
    Failed,
    Negotiating,
    Inconsistent,
    Outdated,
    /// The peer's disk while disconnected.
    DUnknown,
    Consistent,
    UpToDate,
    Other(String),
}

impl DiskState {
    pub fn parse(s: &str) -> Self {
        use DiskState::*;
        match s {
            "Diskless" => Diskless,
            "Attaching" => Attaching,
            "Detaching" => Detaching,
            "Failed" => Failed,
            "Negotiating" => Negotiating,
            "Inconsistent" => Inconsistent,
            "Outdated" => Outdated,
            "DUnknown" => DUnknown,
            "Consistent" => Consistent,
            "UpToDate" => UpToDate,
            other => Other(other.to_string()),
        }
    }

    /// Holds data that can be used (possibly stale).
    pub fn has_data(&self) -> bool {
        matches!(
            self,
            DiskState::UpToDate | DiskState::Consistent | DiskState::Outdated
        )
    }
}

/// Ganeti's `ldisk` status of the local disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalDiskStatus {
    /// Up to date.
    Okay,
    /// Being resynchronised.
    Sync,
    /// No usable local disk.
    Faulty,
    Unknown,
}

/// One configured DRBD device, as seen from this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrbdStatus {
    pub minor: u32,
    pub role: Role,
    pub peer_role: Role,
    pub connection: ConnectionState,
    pub replication: ReplicationState,
    pub disk: DiskState,
    pub peer_disk: DiskState,
    /// Percentage done, only while a resync runs (or is paused).
    pub sync_percent: Option<f64>,
    /// Seconds until the resync ends, when the module estimates it (8.4's `finish:`).
    pub sync_eta_secs: Option<u64>,
    /// KiB this node knows to differ from the peer (8.4 `oos:`, 9 `out-of-sync`).
    pub out_of_sync_kib: Option<u64>,
}

impl DrbdStatus {
    pub fn is_standalone(&self) -> bool {
        self.connection == ConnectionState::StandAlone
    }

    /// Connected and replicating (resync included).
    pub fn is_connected(&self) -> bool {
        self.connection == ConnectionState::Connected
    }

    pub fn is_primary(&self) -> bool {
        self.role == Role::Primary
    }

    /// A resync is running or paused.
    pub fn is_syncing(&self) -> bool {
        self.replication.is_resync()
    }

    /// Both copies are up to date and replicating: what `drbd_wait_sync` waits for.
    pub fn is_in_sync(&self) -> bool {
        self.is_connected()
            && self.replication == ReplicationState::Established
            && self.disk == DiskState::UpToDate
            && self.peer_disk == DiskState::UpToDate
    }

    /// The mirror does not currently hold two good copies (Ganeti: not connected or the local
    /// disk not up to date; here the peer's disk counts too).
    pub fn is_degraded(&self) -> bool {
        !self.is_in_sync()
    }

    /// Ganeti's `ldisk`: the local disk's health.
    pub fn local_disk_status(&self) -> LocalDiskStatus {
        if self.disk == DiskState::UpToDate {
            LocalDiskStatus::Okay
        } else if matches!(self.disk, DiskState::Diskless | DiskState::Failed) {
            LocalDiskStatus::Faulty
        } else if self.is_syncing() {
            LocalDiskStatus::Sync
        } else {
            LocalDiskStatus::Unknown
        }
    }

    /// A hint (from this side only) that the copies may have diverged: the device is
    /// StandAlone with usable local data and blocks written since the peer was last seen.
    /// A split brain makes DRBD drop to StandAlone exactly like this; confirm with the peer's
    /// status ([`split_brain_between`]).
    pub fn is_split_brain_hint(&self) -> bool {
        self.is_standalone() && self.disk.has_data() && self.out_of_sync_kib.unwrap_or(0) > 0
    }
}

/// Both ends' statuses say split brain: both StandAlone with data, and both were primary or
/// both changed blocks the other does not have.
pub fn split_brain_between(a: &DrbdStatus, b: &DrbdStatus) -> bool {
    let standalone = |s: &DrbdStatus| s.is_standalone() && s.disk.has_data();
    if !(standalone(a) && standalone(b)) {
        return false;
    }
    (a.is_primary() && b.is_primary()) || (a.is_split_brain_hint() && b.is_split_brain_hint())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(cs: &str, repl: &str, role: &str, ds: &str, pds: &str, oos: u64) -> DrbdStatus {
        DrbdStatus {
            minor: 0,
            role: Role::parse(role),
            peer_role: Role::Unknown,
            connection: ConnectionState::parse(cs),
            replication: ReplicationState::parse(repl),
            disk: DiskState::parse(ds),
            peer_disk: DiskState::parse(pds),
            sync_percent: None,
            sync_eta_secs: None,
            out_of_sync_kib: Some(oos),
        }
    }

    #[test]
    fn classification() {
        let ok = st(
            "Connected",
            "Established",
            "Primary",
            "UpToDate",
            "UpToDate",
            0,
        );
        assert!(ok.is_in_sync() && !ok.is_degraded() && !ok.is_split_brain_hint());
        assert_eq!(ok.local_disk_status(), LocalDiskStatus::Okay);
        let sync = st(
            "Connected",
            "SyncTarget",
            "Secondary",
            "Inconsistent",
            "UpToDate",
            9,
        );
        assert!(sync.is_degraded() && sync.is_syncing());
        assert_eq!(sync.local_disk_status(), LocalDiskStatus::Sync);
        let diskless = st(
            "Connected",
            "Established",
            "Secondary",
            "Diskless",
            "UpToDate",
            0,
        );
        assert_eq!(diskless.local_disk_status(), LocalDiskStatus::Faulty);
        let wf = st(
            "WFConnection",
            "Off",
            "Secondary",
            "UpToDate",
            "DUnknown",
            0,
        );
        assert_eq!(wf.connection, ConnectionState::Connecting);
        assert!(wf.is_degraded() && !wf.is_standalone() && !wf.is_split_brain_hint());
        let sb = st(
            "StandAlone",
            "Off",
            "Primary",
            "UpToDate",
            "DUnknown",
            20480,
        );
        assert!(sb.is_split_brain_hint() && sb.is_degraded());
        let clean = st("StandAlone", "Off", "Secondary", "UpToDate", "DUnknown", 0);
        assert!(!clean.is_split_brain_hint());
        assert!(!split_brain_between(&sb, &clean));
        let mut other = sb.clone();
        other.role = Role::Secondary;
        assert!(split_brain_between(&sb, &other));
        assert_eq!(
            ConnectionState::parse("NetworkFailure"),
            ConnectionState::Failing("NetworkFailure".into())
        );
        assert_eq!(
            ReplicationState::parse("Connected"),
            ReplicationState::Established
        );
    }
}
