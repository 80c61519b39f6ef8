//! Errors of the config state machine and of its store.

use maguey_model::names::NameError;
use std::path::PathBuf;

/// Why a command was refused, or why the store could not be read or written.
///
/// Validation variants (everything but the last group) leave the state and the log unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cluster is not initialised")]
    NotInitialised,
    #[error("cluster is already initialised")]
    AlreadyInitialised,
    #[error("invalid {kind} name: {source}")]
    InvalidName {
        kind: &'static str,
        #[source]
        source: NameError,
    },
    #[error("{kind} name '{name}' is already in use")]
    NameInUse { kind: &'static str, name: String },
    #[error("{kind} has an empty uuid")]
    EmptyUuid { kind: &'static str },
    #[error("uuid '{uuid}' is already in use (by {used_by})")]
    UuidInUse { uuid: String, used_by: String },
    #[error("unknown {kind} uuid '{uuid}'")]
    Unknown { kind: &'static str, uuid: String },
    #[error("cluster uuid mismatch: the config has '{expected}', the command has '{got}'")]
    ClusterUuidMismatch { expected: String, got: String },
    #[error("invalid IP address '{ip}' for node '{node}'")]
    InvalidIp { ip: String, node: String },
    #[error("IP address {ip} is already used by node {node}")]
    IpInUse { ip: String, node: String },
    #[error("invalid MAC '{mac}' (expected six lowercase hex bytes, e.g. aa:00:00:12:34:56)")]
    InvalidMac { mac: String },
    #[error("MAC {mac} is already used by instance {instance}")]
    MacInUse { mac: String, instance: String },
    #[error("unknown hypervisor '{0}' (known: fake, kvm)")]
    UnknownHypervisor(String),
    #[error("unknown disk template '{0}' (known: diskless, file, sharedfile, plain, drbd)")]
    UnknownDiskTemplate(String),
    #[error("node '{0}' is offline")]
    NodeOffline(String),
    #[error("node '{node}' still hosts instances: {instances}")]
    NodeHostsInstances { node: String, instances: String },
    #[error("cannot remove the master node")]
    RemoveMaster,
    #[error("node group '{group}' still has nodes: {nodes}")]
    GroupHasNodes { group: String, nodes: String },
    #[error("cannot remove the 'default' node group")]
    RemoveDefaultGroup,
    #[error("node group '{group}' is used by the join token of node '{node}'")]
    GroupHasJoinTokens { group: String, node: String },
    #[error("no join token for node '{0}'")]
    NoJoinToken(String),
    /// Any other invariant of the config (message says which).
    #[error("{0}")]
    Invalid(String),

    // Storage, I/O and format errors.
    #[error("config storage error: {0}")]
    Storage(Box<redb::Error>),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("config store is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported config store format version {found} (this build reads {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },
    #[error("a config store already exists at {0}")]
    StoreExists(PathBuf),
    #[error("config store: {0}")]
    Upgrade(#[from] maguey_redb::UpgradeError),
}

impl From<maguey_redb::OpenError> for ConfigError {
    fn from(e: maguey_redb::OpenError) -> Self {
        match e {
            maguey_redb::OpenError::Database(e) => e.into(),
            maguey_redb::OpenError::Upgrade(e) => e.into(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for ConfigError {
            fn from(e: $t) -> Self {
                ConfigError::Storage(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl ConfigError {
    /// True for refusals of a command (the config was not changed because the command is
    /// invalid), false for storage, I/O and format errors.
    pub fn is_validation(&self) -> bool {
        !matches!(
            self,
            ConfigError::Storage(_)
                | ConfigError::Io(_)
                | ConfigError::Json(_)
                | ConfigError::Corrupt(_)
                | ConfigError::UnsupportedFormat { .. }
                | ConfigError::StoreExists(_)
                | ConfigError::Upgrade(_)
        )
    }
}
