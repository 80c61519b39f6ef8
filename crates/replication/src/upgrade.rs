//! Upgrade of a single-master config store to a one-voter replicated group.
//!
//! The `ConfigStore`'s state becomes the first snapshot of the new Raft store: applied at log
//! id (term 0, index 0), with this node as the only voter, and the log purged up to it. The
//! node then elects itself (term 1) on start, and voters added later receive the snapshot.

use crate::db::{Applied, SmImage, StoredSnapshot};
use crate::replica::{open_db, ReplicationError};
use crate::state_machine::{snapshot_id, write_image};
use crate::types::{LogId, Member, NodeId, SnapshotMeta, StoredMembership};
use maguey_config::ConfigStore;
use openraft::{CommittedLeaderId, Membership};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Creates the replica store at `raft_path` (refused if it exists) from the single-master
/// config store at `config_path` (left as it is), with node `id` as the only voter.
pub fn upgrade_config_store(
    config_path: &Path,
    raft_path: &Path,
    id: NodeId,
    member: Member,
) -> Result<(), ReplicationError> {
    let err = |message: String| ReplicationError::Store {
        path: raft_path.to_path_buf(),
        message,
    };
    if raft_path.exists() {
        return Err(err("exists already".to_string()));
    }
    let config = ConfigStore::open(config_path)?.snapshot();
    let log_id = LogId::new(CommittedLeaderId::new(0, id), 0);
    let voters = BTreeSet::from([id]);
    let membership = Membership::new(vec![voters], BTreeMap::from([(id, member)]));
    let applied = Applied {
        last_applied: Some(log_id),
        membership: StoredMembership::new(Some(log_id), membership),
    };
    let image = SmImage {
        applied: applied.clone(),
        config: (*config).clone(),
        jobs: Default::default(),
        archive: Default::default(),
    };
    let mut tmp = raft_path.as_os_str().to_owned();
    tmp.push(".upgrade");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| -> Result<(), String> {
        let db = open_db(&tmp)?;
        let data = serde_json::to_vec(&image).map_err(|e| e.to_string())?;
        let snapshot = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: applied.membership.clone(),
                snapshot_id: snapshot_id(Some(&log_id), 0),
            },
            data,
        };
        crate::log_store::seed_purged(&db, &log_id)?;
        write_image(&db, &image, Some(&snapshot), true)?;
        drop(db);
        std::fs::rename(&tmp, raft_path).map_err(|e| e.to_string())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    tracing::info!(
        config = %config_path.display(),
        raft = %raft_path.display(),
        serial_no = config.serial_no,
        "single-master config store upgraded to a one-voter replicated store"
    );
    Ok(())
}
