//! Where the master's config lives, behind one seam: units read a snapshot and apply
//! commands through [`ConfigBackend`], whether the config is the single-master
//! [`ConfigStore`] (one redb file on the master) or replicated with Raft among the master
//! candidates (magueyd's `daemon::replicated`, docs/replication.md).

use maguey_config::{Command, ConfigError, ConfigStore};
use maguey_model::ConfigData;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future (the seam is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a config change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigWriteError {
    /// The command does not apply to the current config (nothing changed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The replicated config could not commit it: this node is no longer the master, or
    /// too few master candidates answer (the message names them).
    #[error("{0}")]
    Unavailable(String),
}

/// The master's config: a consistent snapshot to read, commands to apply.
pub trait ConfigBackend: Send + Sync {
    /// The config as last applied here.
    fn snapshot(&self) -> Arc<ConfigData>;
    /// Applies `command` durably (committed on a quorum when replicated); the new serial.
    fn apply(&self, command: Command) -> BoxFuture<'_, Result<u64, ConfigWriteError>>;
}

impl ConfigBackend for ConfigStore {
    fn snapshot(&self) -> Arc<ConfigData> {
        ConfigStore::snapshot(self)
    }

    fn apply(&self, command: Command) -> BoxFuture<'_, Result<u64, ConfigWriteError>> {
        let applied = ConfigStore::apply(self, command).map_err(ConfigWriteError::from);
        Box::pin(std::future::ready(applied))
    }
}
