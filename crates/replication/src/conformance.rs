//! openraft's storage conformance suite, run on our redb storage.

use crate::log_store::LogStore;
use crate::replica::open_db;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;
use tempfile::TempDir;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = TempDir::new().expect("temporary directory");
        let db = Arc::new(open_db(&dir.path().join("raft.redb")).expect("open the store"));
        let sm = StateMachine::open(db.clone())?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn redb_storage_passes_openraft_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(RedbBuilder)
}
