//! The redb-backed store: durability, replay, compaction, export/import, concurrency.

mod common;

use common::*;
use maguey_config::{Command, ConfigError, ConfigStore, StoreOptions};
use maguey_model::{AdminState, ConfigData};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("config.redb")
}

fn reopen_equals(path: &Path, expected: &ConfigData) -> ConfigStore {
    let store = ConfigStore::open(path).unwrap();
    assert_eq!(&*store.snapshot(), expected);
    store
}

#[test]
fn empty_store_refuses_commands_and_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = ConfigStore::open(&path).unwrap();
    assert!(path.exists());
    assert!(!store.is_initialised());
    assert_eq!(store.last_index(), 0);
    let err = store.apply(add_instance(1, MASTER_UUID)).unwrap_err();
    assert!(matches!(err, ConfigError::NotInitialised));
    assert_eq!(store.last_index(), 0);
    assert!(store.log_entries(0).unwrap().is_empty());
    assert_eq!(*store.snapshot(), ConfigData::default());
    drop(store);
    let store = reopen_equals(&path, &ConfigData::default());
    assert_eq!(store.last_index(), 0);
}

#[test]
fn applies_are_logged_and_replayed_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = ConfigStore::open(&path).unwrap();
    assert_eq!(store.apply_at(ts(1), init()).unwrap(), 1);
    assert!(store.is_initialised());
    for n in 1..=20 {
        assert_eq!(
            store.apply(add_instance(n, MASTER_UUID)).unwrap(),
            1 + n as u64
        );
    }
    // A refusal neither logs nor changes anything.
    let before = store.snapshot();
    let err = store.apply(add_instance(3, MASTER_UUID)).unwrap_err();
    assert!(err.to_string().contains("is already in use"), "{err}");
    assert_eq!(store.snapshot(), before);
    assert_eq!(store.last_index(), 21);
    let uuid = instance(5, MASTER_UUID).uuid;
    assert_eq!(
        store
            .apply(Command::SetInstanceAdminState {
                uuid: uuid.clone(),
                admin_state: AdminState::Down,
            })
            .unwrap(),
        22
    );
    store
        .apply(Command::RemoveInstance {
            uuid: instance(6, MASTER_UUID).uuid,
        })
        .unwrap();
    let state = store.snapshot();
    assert_eq!(state.serial_no, 23);
    assert_eq!(state.instances.len(), 19);
    let entries = store.log_entries(0).unwrap();
    assert_eq!(entries.len(), 23);
    assert!(entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == i as u64 + 1));
    assert_eq!(entries[0].ts, ts(1));
    assert_eq!(store.log_entries(20).unwrap().len(), 3);
    drop(store);

    assert_eq!(replay_file(&path), (state.as_ref().clone(), 23));
    let store = reopen_equals(&path, &state);
    assert_eq!(store.last_index(), 23);
    assert_eq!(
        store.snapshot().instances[&uuid].admin_state,
        AdminState::Down
    );
    // The reopened store continues the log.
    store.apply(add_instance(100, MASTER_UUID)).unwrap();
    assert_eq!(store.last_index(), 24);
    let state = store.snapshot();
    drop(store);
    reopen_equals(&path, &state);
}

#[test]
fn readers_keep_their_consistent_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(&db_path(&dir)).unwrap();
    store.apply(init()).unwrap();
    let old = store.snapshot();
    let old_copy = (*old).clone();
    store.apply(add_instance(1, MASTER_UUID)).unwrap();
    assert_eq!(*old, old_copy, "a held snapshot never changes");
    assert_eq!(store.snapshot().instances.len(), 1);
    assert_eq!(old.instances.len(), 0);
}

#[test]
fn manual_and_automatic_compaction_keep_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = ConfigStore::open_with(&path, StoreOptions { compact_every: 10 }).unwrap();
    store.apply(init()).unwrap();
    for n in 1..=24 {
        store.apply(add_instance(n, MASTER_UUID)).unwrap();
    }
    // 25 entries: snapshots were written at 10 and 20.
    assert_eq!(store.last_index(), 25);
    assert_eq!(store.snapshot_index(), 20);
    let tail = store.log_entries(0).unwrap();
    assert_eq!(
        tail.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![21, 22, 23, 24, 25]
    );
    let state = store.snapshot();
    drop(store);
    assert_eq!(replay_file(&path), (state.as_ref().clone(), 25));
    let store = reopen_equals(&path, &state);
    assert_eq!(store.snapshot_index(), 20);

    store.compact().unwrap();
    assert_eq!(store.snapshot_index(), 25);
    assert!(store.log_entries(0).unwrap().is_empty());
    assert_eq!(store.snapshot(), state);
    store.apply(add_instance(99, MASTER_UUID)).unwrap();
    assert_eq!(store.last_index(), 26);
    assert_eq!(store.log_entries(0).unwrap().len(), 1);
    let state = store.snapshot();
    drop(store);
    assert_eq!(replay_file(&path), (state.as_ref().clone(), 26));
    let store = reopen_equals(&path, &state);
    assert_eq!(store.last_index(), 26);
}

#[test]
fn default_compaction_happens_every_1000_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = ConfigStore::open(&path).unwrap();
    store.apply(init()).unwrap();
    for n in 1..=1000 {
        store.apply(add_instance(n, MASTER_UUID)).unwrap();
    }
    assert_eq!(store.snapshot_index(), 1000);
    assert_eq!(store.log_entries(0).unwrap().len(), 1);
    let state = store.snapshot();
    drop(store);
    reopen_equals(&path, &state);
}

#[test]
fn export_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = ConfigStore::open(&path).unwrap();
    store.apply(init()).unwrap();
    for n in 1..=5 {
        store.apply(add_instance(n, MASTER_UUID)).unwrap();
    }
    store
        .apply(Command::AddJoinToken {
            token: token("node2.example.com", "192.0.2.2"),
        })
        .unwrap();
    let json = store.export_json().unwrap();
    assert!(json.contains("\n  \"cluster\": {"), "pretty JSON");
    let parsed: ConfigData = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, *store.snapshot());

    // Import refuses an existing file, and leaves it alone.
    let err = ConfigStore::import_json(&path, &json).unwrap_err();
    assert!(matches!(err, ConfigError::StoreExists(_)), "{err}");

    let path2 = dir.path().join("imported.redb");
    let imported = ConfigStore::import_json(&path2, &json).unwrap();
    assert_eq!(imported.snapshot(), store.snapshot());
    assert_eq!(imported.export_json().unwrap(), json);
    assert!(imported.is_initialised());
    assert_eq!(imported.last_index(), 0);
    // The imported store works and persists.
    let serial = imported.apply(add_instance(6, MASTER_UUID)).unwrap();
    assert_eq!(serial, store.snapshot().serial_no + 1);
    let state = imported.snapshot();
    drop(imported);
    reopen_equals(&path2, &state);
}

#[test]
fn import_refuses_inconsistent_configs_without_creating_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = build(&[
        init(),
        add_instance(1, MASTER_UUID),
        add_instance(2, MASTER_UUID),
    ]);
    let i2 = instance(2, MASTER_UUID).uuid;
    state.instances.get_mut(&i2).unwrap().nics[0].mac = mac(1);
    let path = dir.path().join("bad.redb");
    let err = ConfigStore::import_json(&path, &serde_json::to_string(&state).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("MAC aa:00:00:00:00:01 is already used"),
        "{err}"
    );
    assert!(!path.exists());
    let err = ConfigStore::import_json(&path, "{ not json").unwrap_err();
    assert!(matches!(err, ConfigError::Json(_)), "{err}");
    assert!(!path.exists());
}

#[test]
fn concurrent_writers_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(ConfigStore::open(&path).unwrap());
    store.apply(init()).unwrap();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut serials = Vec::new();
                for k in 0..15u32 {
                    serials.push(store.apply(add_instance(t * 100 + k, MASTER_UUID)).unwrap());
                    // Readers in between always see a whole config.
                    let s = store.snapshot();
                    assert_eq!(s.instances.len() as u64 + 1, s.serial_no);
                }
                serials
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(
        all,
        (2..=61).collect::<Vec<u64>>(),
        "each serial handed out once"
    );
    let state = store.snapshot();
    assert_eq!(state.instances.len(), 60);
    drop(store);
    reopen_equals(&path, &state);
    assert_eq!(replay_file(&path).0, *state);
}

#[test]
fn thousand_adds_on_a_thousand_instance_config_are_fast() {
    let dir = tempfile::tempdir().unwrap();
    let mut commands = vec![init()];
    commands.extend((0..1000).map(|n| add_instance(n, MASTER_UUID)));
    let big = build(&commands);
    // The CPU part (validation scans every instance once) must stay small even in debug
    // builds; the durable commits are bound by the disk's fsync latency.
    let start = Instant::now();
    for n in 1000..2000 {
        maguey_config::validate(&big, &add_instance(n, MASTER_UUID)).unwrap();
    }
    let validating = start.elapsed();
    eprintln!("1000 validations on a 1000-instance config: {validating:?}");
    assert!(validating < Duration::from_secs(2), "{validating:?}");
    let path = db_path(&dir);
    let store = ConfigStore::import_json(&path, &serde_json::to_string(&big).unwrap()).unwrap();
    let start = Instant::now();
    for n in 1000..2000 {
        store.apply(add_instance(n, MASTER_UUID)).unwrap();
    }
    let elapsed = start.elapsed();
    eprintln!("1000 AddInstance on a 1000-instance config: {elapsed:?}");
    // About 3 ms per apply on a plain disk, nearly all of it the fsync of the commit; the
    // bound leaves room for a loaded machine.
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(store.snapshot().instances.len(), 2000);
    let state = store.snapshot();
    drop(store);
    let start = Instant::now();
    reopen_equals(&path, &state);
    eprintln!("reopen: {:?}", start.elapsed());
}

#[test]
fn open_refuses_foreign_format_and_corrupt_logs() {
    use redb::{Database, TableDefinition};
    let log: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
    let meta: TableDefinition<&str, u32> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();

    let path = dir.path().join("future.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(meta)
            .unwrap()
            .insert("format_version", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = ConfigStore::open(&path).unwrap_err();
    assert!(
        matches!(err, ConfigError::UnsupportedFormat { found: 99, .. }),
        "{err}"
    );

    let corrupt = |bytes: Vec<u8>, key: u64| {
        let path = dir
            .path()
            .join(format!("corrupt-{key}-{}.redb", bytes.len()));
        let store = ConfigStore::open(&path).unwrap();
        store.apply(init()).unwrap();
        store.apply(add_instance(1, MASTER_UUID)).unwrap();
        drop(store);
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(log)
            .unwrap()
            .insert(key, bytes.as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        ConfigStore::open(&path).unwrap_err()
    };
    let err = corrupt(b"garbage".to_vec(), 3);
    assert!(matches!(err, ConfigError::Corrupt(_)), "{err}");
    // A well-formed entry that does not apply (duplicate instance).
    let dup = maguey_config::Entry {
        index: 3,
        ts: ts(3),
        command: add_instance(1, MASTER_UUID),
    };
    let err = corrupt(serde_json::to_vec(&dup).unwrap(), 3);
    assert!(
        err.to_string()
            .contains("log entry 3 (add_instance) does not apply"),
        "{err}"
    );
    // A gap in the log.
    let gap = maguey_config::Entry { index: 5, ..dup };
    let err = corrupt(serde_json::to_vec(&gap).unwrap(), 5);
    assert!(
        err.to_string().contains("log entry 5 follows entry 2"),
        "{err}"
    );
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ConfigStore>();
}
