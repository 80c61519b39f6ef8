use super::*;

const TABLE: redb::TableDefinition<u64, &str> = redb::TableDefinition::new("t");
const TABLE2: redb2::TableDefinition<u64, &str> = redb2::TableDefinition::new("t");

/// A file written by redb 2.6 in its default format (v2), as Maguey 0.1 wrote its stores.
fn write_v2(path: &Path, rows: u64) {
    let db = redb2::Database::create(path).unwrap();
    for i in 0..rows {
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE2)
            .unwrap()
            .insert(i, format!("row {i}").as_str())
            .unwrap();
        txn.commit().unwrap();
    }
}

fn rows(db: &redb::Database) -> Vec<(u64, String)> {
    use redb::{ReadableDatabase, ReadableTable};
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    table
        .iter()
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.value(), v.value().to_string())
        })
        .collect()
}

fn expected(n: u64) -> Vec<(u64, String)> {
    (0..n).map(|i| (i, format!("row {i}"))).collect()
}

fn refuses_as_v2(path: &Path) -> bool {
    matches!(
        redb::Database::create(path),
        Err(redb::DatabaseError::UpgradeRequired(2))
    )
}

#[test]
fn a_v2_file_is_upgraded_once_and_its_original_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_v2(&path, 50);
    let original = fs::read(&path).unwrap();
    assert!(refuses_as_v2(&path), "redb refuses the v2 file as such");
    assert_eq!(
        fs::read(&path).unwrap(),
        original,
        "refusing it left it as it was"
    );

    let db = open(&path).unwrap();
    assert_eq!(rows(&db), expected(50));
    {
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap().insert(50, "row 50").unwrap();
        txn.commit().unwrap();
    }
    drop(db);

    let backup = backup_path(&path);
    assert_eq!(
        fs::read(&backup).unwrap(),
        original,
        "the backup is the original"
    );
    assert!(refuses_as_v2(&backup));
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");

    // Opened again: nothing to upgrade, the backup stays as it was.
    fs::write(&backup, b"not touched").unwrap();
    let db = open(&path).unwrap();
    assert_eq!(rows(&db), expected(51));
    assert_eq!(fs::read(&backup).unwrap(), b"not touched");
}

#[test]
fn an_interrupted_upgrade_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_v2(&path, 20);
    // What a crash in the middle of an earlier upgrade leaves beside the untouched original.
    fs::write(sibling(&path, UPGRADE_SUFFIX), b"half a copy").unwrap();
    fs::write(sibling(&backup_path(&path), TMP_SUFFIX), b"half a backup").unwrap();
    let original = fs::read(&path).unwrap();

    let db = open(&path).unwrap();
    assert_eq!(rows(&db), expected(20));
    assert_eq!(fs::read(backup_path(&path)).unwrap(), original);
    assert!(!sibling(&path, UPGRADE_SUFFIX).exists());
}

/// redb itself refuses a file another process has locked; `upgrade` checks again under its
/// own lock, for a process that takes it in between.
fn refused_as_in_use(err: &OpenError) -> bool {
    matches!(
        err,
        OpenError::Database(redb::DatabaseError::DatabaseAlreadyOpen)
            | OpenError::Upgrade(UpgradeError::Locked { .. })
    )
}

#[test]
fn a_v2_file_in_use_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_v2(&path, 5);
    let original = fs::read(&path).unwrap();
    let untouched = || {
        assert_eq!(fs::read(&path).unwrap(), original);
        assert!(!backup_path(&path).exists());
        assert!(!sibling(&path, UPGRADE_SUFFIX).exists());
    };

    // An old daemon holding it: redb 2 locks its file with flock.
    let old = redb2::Database::create(&path).unwrap();
    let err = open(&path).unwrap_err();
    assert!(refused_as_in_use(&err), "{err}");
    drop(old);
    untouched();

    // The same lock taken by anything else.
    let holder = File::open(&path).unwrap();
    holder.lock().unwrap();
    let err = open(&path).unwrap_err();
    assert!(refused_as_in_use(&err), "{err}");
    drop(holder);
    untouched();
    assert!(open(&path).is_ok(), "upgraded once the lock is gone");
}

#[test]
fn new_and_current_files_open_without_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let db = open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap().insert(7, "row 7").unwrap();
        txn.commit().unwrap();
    }
    let db = open(&path).unwrap();
    assert_eq!(rows(&db), vec![(7, "row 7".to_string())]);
    assert!(!backup_path(&path).exists());
}

#[test]
fn a_v2_file_left_by_a_killed_daemon_is_repaired_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let killed = dir.path().join("killed.redb");
    {
        let db = redb2::Database::create(&path).unwrap();
        for i in 0..10 {
            let txn = db.begin_write().unwrap();
            txn.open_table(TABLE2)
                .unwrap()
                .insert(i, format!("row {i}").as_str())
                .unwrap();
            txn.commit().unwrap();
        }
        // The file as a SIGKILL leaves it: committed, never closed.
        fs::copy(&path, &killed).unwrap();
    }
    let db = open(&killed).unwrap();
    assert_eq!(rows(&db), expected(10));
}
