//! Basic enums and value types shared by the whole engine (htools' `Types.hs`).

use std::fmt;

/// Errors of the placement engine (parsing and invalid requests).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid data: {0}")]
    Invalid(String),
    #[error("{0}")]
    Request(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Disk templates, with Ganeti's raw names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiskTemplate {
    Diskless,
    File,
    SharedFile,
    Plain,
    Block,
    Drbd,
    Rbd,
    Ext,
    Gluster,
}

/// How an instance's storage is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorType {
    None,
    Internal,
    External,
}

impl DiskTemplate {
    pub fn from_raw(s: &str) -> Result<Self> {
        Ok(match s {
            "diskless" => Self::Diskless,
            "file" => Self::File,
            "sharedfile" => Self::SharedFile,
            "plain" => Self::Plain,
            "blockdev" => Self::Block,
            "drbd" => Self::Drbd,
            "rbd" => Self::Rbd,
            "ext" => Self::Ext,
            "gluster" => Self::Gluster,
            _ => return Err(Error::Parse(format!("unknown disk template '{s}'"))),
        })
    }
    pub fn to_raw(self) -> &'static str {
        match self {
            Self::Diskless => "diskless",
            Self::File => "file",
            Self::SharedFile => "sharedfile",
            Self::Plain => "plain",
            Self::Block => "blockdev",
            Self::Drbd => "drbd",
            Self::Rbd => "rbd",
            Self::Ext => "ext",
            Self::Gluster => "gluster",
        }
    }
    pub fn mirror_type(self) -> MirrorType {
        match self {
            Self::Drbd => MirrorType::Internal,
            Self::SharedFile | Self::Block | Self::Rbd | Self::Ext | Self::Gluster => {
                MirrorType::External
            }
            _ => MirrorType::None,
        }
    }
    /// Templates whose data lives on the nodes' local disks.
    pub fn uses_local_storage(self) -> bool {
        matches!(self, Self::Drbd | Self::Plain)
    }
    /// Templates htools is willing to move while balancing.
    pub fn supports_moves(self) -> bool {
        matches!(
            self,
            Self::Drbd | Self::Block | Self::SharedFile | Self::Gluster | Self::Rbd | Self::Ext
        )
    }
    pub fn required_nodes(self) -> usize {
        if self == Self::Drbd {
            2
        } else {
            1
        }
    }
}

impl fmt::Display for DiskTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_raw())
    }
}

/// Instance run status, with Ganeti's raw names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    AdminDown,
    AdminOffline,
    ErrorDown,
    ErrorUp,
    NodeDown,
    NodeOffline,
    Running,
    UserDown,
    WrongNode,
}

impl InstanceStatus {
    pub fn from_raw(s: &str) -> Result<Self> {
        Ok(match s {
            "ADMIN_down" => Self::AdminDown,
            "ADMIN_offline" => Self::AdminOffline,
            "ERROR_down" => Self::ErrorDown,
            "ERROR_up" => Self::ErrorUp,
            "ERROR_nodedown" => Self::NodeDown,
            "ERROR_nodeoffline" => Self::NodeOffline,
            "running" => Self::Running,
            "USER_down" => Self::UserDown,
            "ERROR_wrongnode" => Self::WrongNode,
            _ => return Err(Error::Parse(format!("unknown instance status '{s}'"))),
        })
    }
    pub fn to_raw(self) -> &'static str {
        match self {
            Self::AdminDown => "ADMIN_down",
            Self::AdminOffline => "ADMIN_offline",
            Self::ErrorDown => "ERROR_down",
            Self::ErrorUp => "ERROR_up",
            Self::NodeDown => "ERROR_nodedown",
            Self::NodeOffline => "ERROR_nodeoffline",
            Self::Running => "running",
            Self::UserDown => "USER_down",
            Self::WrongNode => "ERROR_wrongnode",
        }
    }
}

/// Node group allocation policy. The order is the preference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AllocPolicy {
    Preferred,
    LastResort,
    Unallocable,
}

impl AllocPolicy {
    pub fn from_raw(s: &str) -> Result<Self> {
        Ok(match s {
            "preferred" | "p" => Self::Preferred,
            "last_resort" | "allocable" | "a" => Self::LastResort,
            "unallocable" | "u" => Self::Unallocable,
            _ => return Err(Error::Parse(format!("unknown alloc policy '{s}'"))),
        })
    }
    pub fn to_raw(self) -> &'static str {
        match self {
            Self::Preferred => "preferred",
            Self::LastResort => "last_resort",
            Self::Unallocable => "unallocable",
        }
    }
    pub fn is_allocable(self) -> bool {
        self != Self::Unallocable
    }
}

/// Why a placement was rejected (htools' `FailMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailMode {
    FailMem,
    FailDisk,
    FailCPU,
    FailN1,
    FailTags,
    FailMig,
    FailDiskCount,
    FailSpindles,
    FailInternal,
}

impl FailMode {
    pub const ALL: [FailMode; 9] = [
        FailMode::FailMem,
        FailMode::FailDisk,
        FailMode::FailCPU,
        FailMode::FailN1,
        FailMode::FailTags,
        FailMode::FailMig,
        FailMode::FailDiskCount,
        FailMode::FailSpindles,
        FailMode::FailInternal,
    ];
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// One instance spec (memory MiB, cpus, disk MiB, disk count, nic count, spindles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ISpec {
    pub mem: i64,
    pub cpu: i64,
    pub disk: i64,
    pub disk_count: i64,
    pub nic_count: i64,
    pub spindle_use: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinMax {
    pub min: ISpec,
    pub max: ISpec,
}

/// Instance policy of the cluster or a group.
#[derive(Debug, Clone, PartialEq)]
pub struct IPolicy {
    pub minmax: Vec<MinMax>,
    pub std: ISpec,
    pub disk_templates: Vec<DiskTemplate>,
    pub vcpu_ratio: f64,
    pub spindle_ratio: f64,
}

impl Default for IPolicy {
    /// Ganeti's built-in default policy.
    fn default() -> Self {
        IPolicy {
            minmax: vec![MinMax {
                min: ISpec {
                    mem: 128,
                    cpu: 1,
                    disk: 1024,
                    disk_count: 1,
                    nic_count: 1,
                    spindle_use: 1,
                },
                max: ISpec {
                    mem: 32768,
                    cpu: 8,
                    disk: 1024 * 1024,
                    disk_count: 16,
                    nic_count: 8,
                    spindle_use: 12,
                },
            }],
            std: ISpec {
                mem: 128,
                cpu: 1,
                disk: 1024,
                disk_count: 1,
                nic_count: 1,
                spindle_use: 1,
            },
            disk_templates: vec![
                DiskTemplate::Diskless,
                DiskTemplate::File,
                DiskTemplate::SharedFile,
                DiskTemplate::Plain,
                DiskTemplate::Block,
                DiskTemplate::Drbd,
                DiskTemplate::Rbd,
                DiskTemplate::Ext,
                DiskTemplate::Gluster,
            ],
            vcpu_ratio: 4.0,
            spindle_ratio: 32.0,
        }
    }
}

/// Dynamic utilisation (cpu, mem, disk, net).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynUtil {
    pub cpu: f64,
    pub mem: f64,
    pub dsk: f64,
    pub net: f64,
}

impl DynUtil {
    pub const ZERO: DynUtil = DynUtil {
        cpu: 0.0,
        mem: 0.0,
        dsk: 0.0,
        net: 0.0,
    };
    pub const BASE: DynUtil = DynUtil {
        cpu: 1.0,
        mem: 1.0,
        dsk: 1.0,
        net: 1.0,
    };
    pub fn plus(self, o: DynUtil) -> DynUtil {
        DynUtil {
            cpu: self.cpu + o.cpu,
            mem: self.mem + o.mem,
            dsk: self.dsk + o.dsk,
            net: self.net + o.net,
        }
    }
    pub fn minus(self, o: DynUtil) -> DynUtil {
        DynUtil {
            cpu: self.cpu - o.cpu,
            mem: self.mem - o.mem,
            dsk: self.dsk - o.dsk,
            net: self.net - o.net,
        }
    }
}

/// Evacuation mode of a node-evacuate request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvacMode {
    PrimaryOnly,
    SecondaryOnly,
    All,
}

impl EvacMode {
    pub fn from_raw(s: &str) -> Result<Self> {
        Ok(match s {
            "primary-only" => Self::PrimaryOnly,
            "secondary-only" => Self::SecondaryOnly,
            "all" => Self::All,
            _ => return Err(Error::Parse(format!("unknown evacuation mode '{s}'"))),
        })
    }
}

/// An instance move (htools' `IMove`); node arguments are node indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IMove {
    Failover,
    FailoverToAny(usize),
    ReplacePrimary(usize),
    ReplaceSecondary(usize),
    ReplaceAndFailover(usize),
    FailoverAndReplace(usize),
}

impl IMove {
    /// Whether the move copies disk data to a new node.
    pub fn moves_disks(self) -> bool {
        !matches!(self, IMove::Failover | IMove::FailoverToAny(_))
    }
}

/// Parse a string as an integer, accepting Haskell-style `read` of integral
/// values written like "12" (and floats with a zero fraction, e.g. "12.0").
pub fn parse_int(what: &str, s: &str) -> Result<i64> {
    let t = s.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Ok(v);
    }
    match t.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.is_finite() => Ok(f as i64),
        _ => Err(Error::Parse(format!(
            "{what}: cannot parse '{s}' as integer"
        ))),
    }
}

pub fn parse_f64(what: &str, s: &str) -> Result<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| Error::Parse(format!("{what}: cannot parse '{s}' as number")))
}
