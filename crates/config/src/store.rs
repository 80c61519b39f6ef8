//! The persistent config store: a redb file holding a snapshot and the command log after it.
//!
//! Layout (one redb file):
//! * table `meta`: `"format_version"` → [`FORMAT_VERSION`];
//! * table `log`: index (u64, from 1, contiguous) → JSON [`Entry`];
//! * table `snapshot`: `"state"` → JSON `{last_index, last_ts, config}`; the log only holds
//!   entries after `last_index`.
//!
//! The state is the snapshot's config with every later log entry applied through
//! [`crate::apply`], so a replica fed the same entries gets the same config.
//!
//! A file written by Maguey 0.1 (redb 2, file format v2) is upgraded when opened, keeping a
//! backup beside it (see [`maguey_redb`]).

use crate::commands::{is_initialised, mutate, validate, verify, Command, Entry};
use crate::error::ConfigError;
use maguey_model::ConfigData;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const SNAPSHOT_KEY: &str = "state";
const FORMAT_KEY: &str = "format_version";

/// Version of the on-disk layout described in the module docs.
pub const FORMAT_VERSION: u32 = 1;
/// A snapshot is written (and the log entries it covers dropped) every this many entries.
pub const DEFAULT_COMPACT_EVERY: u64 = 1000;

/// Tuning of a [`ConfigStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Compact automatically once the log holds this many entries (0: never automatically).
    pub compact_every: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compact_every: DEFAULT_COMPACT_EVERY,
        }
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    last_index: u64,
    last_ts: f64,
    config: &'a ConfigData,
}

/// A snapshot record as stored in the `snapshot` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct SnapshotRecord {
    last_index: u64,
    last_ts: f64,
    config: ConfigData,
}

/// Log position, only touched with the writer lock held.
#[derive(Debug)]
struct Writer {
    last_index: u64,
    last_ts: f64,
    snapshot_index: u64,
}

/// The cluster configuration, persisted in one redb file. Thread-safe; share it in an `Arc`.
pub struct ConfigStore {
    db: Database,
    path: PathBuf,
    options: StoreOptions,
    /// Serialises writers: commands are validated, logged and published one at a time.
    writer: Mutex<Writer>,
    /// The published state. Replaced (or changed in place when nobody else holds it) only
    /// after the entry that produced it is durable.
    state: RwLock<Arc<ConfigData>>,
    last_index: AtomicU64,
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigStore")
            .field("path", &self.path)
            .field("last_index", &self.last_index())
            .finish_non_exhaustive()
    }
}

impl ConfigStore {
    /// Opens the store at `path`, creating an empty one if missing; replays snapshot + log.
    pub fn open(path: &Path) -> Result<Self, ConfigError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// [`ConfigStore::open`] with explicit options.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Self, ConfigError> {
        let db = maguey_redb::open(path)?;
        init_tables(&db)?;
        let (snapshot, entries) = read_all(&db)?;
        let mut config = snapshot.config;
        let mut last_index = snapshot.last_index;
        let mut last_ts = snapshot.last_ts;
        for entry in entries {
            if entry.index != last_index + 1 {
                return Err(ConfigError::Corrupt(format!(
                    "log entry {} follows entry {last_index}",
                    entry.index
                )));
            }
            crate::apply(&mut config, entry.ts, &entry.command).map_err(|e| {
                ConfigError::Corrupt(format!(
                    "log entry {} ({}) does not apply: {e}",
                    entry.index,
                    entry.command.name()
                ))
            })?;
            last_index = entry.index;
            last_ts = entry.ts;
        }
        tracing::debug!(
            path = %path.display(),
            snapshot_index = snapshot.last_index,
            last_index,
            serial_no = config.serial_no,
            "config store opened"
        );
        Ok(ConfigStore {
            db,
            path: path.to_path_buf(),
            options,
            writer: Mutex::new(Writer {
                last_index,
                last_ts,
                snapshot_index: snapshot.last_index,
            }),
            state: RwLock::new(Arc::new(config)),
            last_index: AtomicU64::new(last_index),
        })
    }

    /// The current config: consistent, cheap (an `Arc` clone), never a half-applied state.
    pub fn snapshot(&self) -> Arc<ConfigData> {
        self.state
            .read()
            .expect("config state lock poisoned")
            .clone()
    }

    /// Validates `command`, appends it durably to the log, then publishes the new state.
    /// Returns the new `serial_no`. Commands are applied one at a time, in log order.
    pub fn apply(&self, command: Command) -> Result<u64, ConfigError> {
        self.apply_at(maguey_model::now(), command)
    }

    /// [`ConfigStore::apply`] with the timestamp given by the caller (the proposer's clock).
    pub fn apply_at(&self, ts: f64, command: Command) -> Result<u64, ConfigError> {
        let mut w = self.writer.lock().expect("config writer lock poisoned");
        {
            // Only this thread changes the state, so it cannot move under us after this check.
            let current = self.snapshot();
            if let Err(e) = validate(&current, &command) {
                tracing::debug!(command = command.name(), error = %e, "config command refused");
                return Err(e);
            }
        }
        let entry = Entry {
            index: w.last_index + 1,
            ts,
            command,
        };
        let bytes = serde_json::to_vec(&entry)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut log = txn.open_table(LOG)?;
            if log.insert(entry.index, bytes.as_slice())?.is_some() {
                // Dropping the transaction aborts it: the existing entry stays.
                return Err(ConfigError::Corrupt(format!(
                    "log entry {} already exists",
                    entry.index
                )));
            }
        }
        txn.commit()?;

        let serial_no = {
            let mut guard = self.state.write().expect("config state lock poisoned");
            // Changes in place unless a reader still holds the previous snapshot.
            let state = Arc::make_mut(&mut guard);
            mutate(state, ts, &entry.command);
            state.serial_no
        };
        w.last_index = entry.index;
        w.last_ts = ts;
        self.last_index.store(entry.index, Ordering::SeqCst);
        tracing::debug!(
            index = entry.index,
            serial_no,
            command = entry.command.name(),
            "config command applied"
        );

        let every = self.options.compact_every;
        if every > 0 && w.last_index - w.snapshot_index >= every {
            // The command is applied and durable whatever happens here.
            if let Err(e) = self.compact_locked(&mut w) {
                tracing::warn!(error = %e, "config log compaction failed");
            }
        }
        Ok(serial_no)
    }

    /// True once `InitCluster` has been applied (or an initialised config imported).
    pub fn is_initialised(&self) -> bool {
        is_initialised(&self.snapshot())
    }

    /// Index of the last applied log entry (0 if none).
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::SeqCst)
    }

    /// Path of the redb file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pretty JSON of the whole config.
    pub fn export_json(&self) -> Result<String, ConfigError> {
        Ok(serde_json::to_string_pretty(&*self.snapshot())?)
    }

    /// Creates a new store at `path` (refuses if a file exists there) whose state is the config
    /// in `json`, after checking every invariant of it.
    pub fn import_json(path: &Path, json: &str) -> Result<Self, ConfigError> {
        if path.exists() {
            return Err(ConfigError::StoreExists(path.to_path_buf()));
        }
        let config: ConfigData = serde_json::from_str(json)?;
        verify(&config)?;
        let written = (|| -> Result<(), ConfigError> {
            let db = Database::create(path)?;
            init_tables(&db)?;
            write_snapshot(&db, 0, config.mtime, &config)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Self::open(path)
    }

    /// Writes a snapshot of the current state and drops the log entries it covers, in one
    /// transaction.
    pub fn compact(&self) -> Result<(), ConfigError> {
        let mut w = self.writer.lock().expect("config writer lock poisoned");
        self.compact_locked(&mut w)
    }

    fn compact_locked(&self, w: &mut Writer) -> Result<(), ConfigError> {
        let state = self.snapshot();
        write_snapshot(&self.db, w.last_index, w.last_ts, &state)?;
        tracing::debug!(
            index = w.last_index,
            dropped = w.last_index - w.snapshot_index,
            "config log compacted"
        );
        w.snapshot_index = w.last_index;
        Ok(())
    }

    /// The log entries after `index` still in the log (the ones a snapshot covers are gone).
    pub fn log_entries(&self, after: u64) -> Result<Vec<Entry>, ConfigError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let mut out = Vec::new();
        for item in log.range(after.saturating_add(1)..)? {
            let (k, v) = item?;
            out.push(parse_entry(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Index of the last snapshot (0 if none was written).
    pub fn snapshot_index(&self) -> u64 {
        self.writer
            .lock()
            .expect("config writer lock poisoned")
            .snapshot_index
    }
}

/// Creates the tables and the format marker if missing; refuses other format versions.
fn init_tables(db: &Database) -> Result<(), ConfigError> {
    {
        let txn = db.begin_read()?;
        if let Ok(meta) = txn.open_table(META) {
            if let Some(v) = meta.get(FORMAT_KEY)? {
                let found = v.value();
                if found != FORMAT_VERSION {
                    return Err(ConfigError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                return Ok(());
            }
        }
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION)?;
        txn.open_table(LOG)?;
        txn.open_table(SNAPSHOT)?;
    }
    txn.commit()?;
    Ok(())
}

fn write_snapshot(
    db: &Database,
    last_index: u64,
    last_ts: f64,
    config: &ConfigData,
) -> Result<(), ConfigError> {
    let bytes = serde_json::to_vec(&SnapshotRef {
        last_index,
        last_ts,
        config,
    })?;
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut snap = txn.open_table(SNAPSHOT)?;
        snap.insert(SNAPSHOT_KEY, bytes.as_slice())?;
        let mut log = txn.open_table(LOG)?;
        log.retain_in(..=last_index, |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

fn parse_entry(key: u64, bytes: &[u8]) -> Result<Entry, ConfigError> {
    let entry: Entry = serde_json::from_slice(bytes)
        .map_err(|e| ConfigError::Corrupt(format!("log entry {key}: {e}")))?;
    if entry.index != key {
        return Err(ConfigError::Corrupt(format!(
            "log entry stored under {key} has index {}",
            entry.index
        )));
    }
    Ok(entry)
}

/// The snapshot (empty if none) and every log entry after it, in one read transaction.
fn read_all(db: &Database) -> Result<(SnapshotRecord, Vec<Entry>), ConfigError> {
    let txn = db.begin_read()?;
    let snap = txn.open_table(SNAPSHOT)?;
    let snapshot = match snap.get(SNAPSHOT_KEY)? {
        Some(v) => serde_json::from_slice::<SnapshotRecord>(v.value())
            .map_err(|e| ConfigError::Corrupt(format!("snapshot: {e}")))?,
        None => SnapshotRecord {
            last_index: 0,
            last_ts: 0.0,
            config: ConfigData::default(),
        },
    };
    let log = txn.open_table(LOG)?;
    let mut entries = Vec::new();
    for item in log.range(snapshot.last_index + 1..)? {
        let (k, v) = item?;
        entries.push(parse_entry(k.value(), v.value())?);
    }
    Ok((snapshot, entries))
}
