//! A config store written by Maguey 0.1 (redb 2, file format v2; see `data/README.md`) is
//! upgraded when it is opened, and holds the config `export-config` showed before.

mod common;

use maguey_config::{Command, ConfigStore};
use maguey_model::ConfigData;
use std::io::Read;
use std::path::Path;

const STORE: &str = "tests/data/config-0.1.redb.gz";
const EXPORT: &str = "tests/data/config-0.1-export.json";

/// Writes the gunzipped fixture to `dest`; returns its bytes.
fn unpack(gz: &str, dest: &Path) -> Vec<u8> {
    let file = std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(gz)).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(dest, &bytes).unwrap();
    bytes
}

fn export() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPORT)).unwrap()
}

#[test]
fn a_0_1_store_is_upgraded_and_keeps_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.redb");
    let original = unpack(STORE, &path);
    assert!(
        matches!(
            redb::Database::create(&path),
            Err(redb::DatabaseError::UpgradeRequired(2))
        ),
        "the fixture is in redb's old file format"
    );

    let store = ConfigStore::open(&path).unwrap();
    // As `maguey cluster export-config` compares: the parsed config, and its JSON.
    let exported = export();
    let expected: ConfigData = serde_json::from_str(&exported).unwrap();
    assert_eq!(*store.snapshot(), expected);
    assert_eq!(
        serde_json::to_value(&*store.snapshot()).unwrap(),
        serde_json::from_str::<serde_json::Value>(&exported).unwrap()
    );
    assert_eq!(format!("{}\n", store.export_json().unwrap()), exported);
    assert_eq!(expected.instances.len(), 4, "web1, db1, app1, api1");
    assert_eq!(expected.cluster.tags, ["legacy", "site:lab"]);

    let backup = maguey_redb::backup_path(&path);
    assert_eq!(std::fs::read(&backup).unwrap(), original);

    // The upgraded store keeps working: a change is logged and survives reopening.
    let mut cluster = expected.cluster.clone();
    cluster.tags.push("upgraded".into());
    let serial = store.apply(Command::UpdateCluster { cluster }).unwrap();
    assert_eq!(serial, expected.serial_no + 1);
    let after = store.snapshot();
    drop(store);
    let store = ConfigStore::open(&path).unwrap();
    assert_eq!(store.snapshot(), after);
    drop(store);
    assert_eq!(common::replay_file(&path).0, *after);
    assert_eq!(std::fs::read(&backup).unwrap(), original, "upgraded once");
}
