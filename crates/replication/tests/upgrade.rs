//! Upgrade: a single-master config store becomes the first snapshot of a one-voter group,
//! which then grows to three voters.

mod common;

use common::*;
use maguey_config::{Command, ConfigStore};
use maguey_replication::local::LocalRouter;
use maguey_replication::{upgrade_config_store, Replica, ReplicationError, Role};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The store Maguey 0.1 wrote (crates/config's fixture), unpacked to `dest`.
fn unpack_fixture(dest: &Path) {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/data/config-0.1.redb.gz");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(dest, bytes).unwrap();
}

async fn open(dir: &Path, router: &LocalRouter, id: u64) -> Arc<Replica> {
    let path = dir.join(format!("raft{id}.redb"));
    let r = Replica::open(id, &path, router.transport(id), options())
        .await
        .unwrap();
    router.add(r.clone());
    r
}

async fn leads(r: &Replica) {
    eventually("the single voter to lead", || async {
        (r.status().role == Role::Leader).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_master_store_becomes_a_replicated_group_with_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.redb");
    unpack_fixture(&config_path);
    let expected = {
        // Today's store, with a change in its log after its snapshot.
        let store = ConfigStore::open(&config_path).unwrap();
        let mut cluster = store.snapshot().cluster.clone();
        cluster.tags.push("before-raft".into());
        store.apply(Command::UpdateCluster { cluster }).unwrap();
        store.export_json().unwrap()
    };
    let raft_path = dir.path().join("raft1.redb");
    upgrade_config_store(&config_path, &raft_path, 1, member(1)).unwrap();
    let again = upgrade_config_store(&config_path, &raft_path, 1, member(1)).unwrap_err();
    assert!(matches!(again, ReplicationError::Store { .. }), "{again:?}");

    let router = LocalRouter::new();
    let r1 = open(dir.path(), &router, 1).await;
    assert_eq!(r1.export_json().unwrap(), expected, "before any election");
    leads(&r1).await;
    assert_eq!(r1.export_json().unwrap(), expected);
    assert_eq!(
        r1.read_config().await.unwrap().cluster.tags.last().unwrap(),
        "before-raft"
    );

    // It takes writes, and survives a restart from its store.
    let serial = r1.config().serial_no;
    let mut cluster = r1.config().cluster.clone();
    cluster.tags.push("replicated".into());
    assert_eq!(
        r1.apply(Command::UpdateCluster { cluster }).await.unwrap(),
        serial + 1
    );
    let written = r1.export_json().unwrap();
    router.remove(1);
    r1.shutdown().await;
    drop(r1);
    let r1 = eventually("the store to reopen", || {
        let path = raft_path.clone();
        let router = router.clone();
        async move {
            Replica::open(1, &path, router.transport(1), options())
                .await
                .ok()
        }
    })
    .await;
    router.add(r1.clone());
    assert_eq!(r1.export_json().unwrap(), written);
    leads(&r1).await;

    // Two new voters get the state through the snapshot the upgrade made.
    let r2 = open(dir.path(), &router, 2).await;
    let r3 = open(dir.path(), &router, 3).await;
    r1.add_voter(2, member(2)).await.unwrap();
    r1.add_voter(3, member(3)).await.unwrap();
    assert_eq!(r1.status().voters.len(), 3);
    eventually("the new voters to converge", || async {
        (r2.export_json().unwrap() == written && r3.export_json().unwrap() == written).then_some(())
    })
    .await;
    r1.apply(add_group(7)).await.unwrap();
    eventually("a write to reach the new voters", || async {
        groups(&r3).contains(&"group7".to_string()).then_some(())
    })
    .await;
}
