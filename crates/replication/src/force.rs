//! `cluster force-single`: a voter left without a quorum makes itself the only voter, in a
//! new epoch (docs/replication.md, "Two-node clusters").
//!
//! With the Raft node stopped, the store gets, in one transaction:
//! * a membership entry at the end of the log naming this node alone, in a term above every
//!   term stored here and above the Unix time in seconds: a voter campaigning alone raises
//!   its term at most once per election timeout (a second or more) since the cluster was
//!   made, so no other replica can have reached it;
//! * the vote in that term (for this node, not yet committed).
//!
//! Raft takes a membership from the log as soon as it is appended, so on restart the node is
//! a one-voter group and elects itself; every entry its log held (everything the old group
//! committed is in it: a commit needed this node's copy in a two-voter group, or it was
//! still in the log of the voter that is left) is committed in the new term. The other voters
//! are no longer members; the daemon removes them from the candidates, so that their Raft
//! messages are refused until an admin adds them again.

use crate::db::{get_json, to_json, LAST_PURGED, RAFT_LOG, RAFT_META, VOTE};
use crate::types::{Entry, LogId, Member, NodeId};
use openraft::{CommittedLeaderId, EntryPayload, Membership, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};

/// Rewrites the stopped store `db` as described above; the new term.
pub(crate) fn make_single(db: &Database, id: NodeId, member: Member) -> Result<u64, String> {
    let vote: Option<Vote<NodeId>> = get_json(db, RAFT_META, VOTE)?;
    let purged: Option<LogId> = get_json(db, RAFT_META, LAST_PURGED)?;
    let last: Option<LogId> = {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let t = txn.open_table(RAFT_LOG).map_err(|e| e.to_string())?;
        let last = match t.last().map_err(|e| e.to_string())? {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(v.value()).map_err(|e| e.to_string())?;
                Some(e.log_id)
            }
            None => purged,
        };
        last
    };
    let stored_term = vote
        .map(|v| v.leader_id().term)
        .unwrap_or(0)
        .max(last.map(|l| l.leader_id.term).unwrap_or(0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let term = (stored_term + 1).max(now);
    let index = last.map(|l| l.index + 1).unwrap_or(0);
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, id), index),
        payload: EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([id])],
            BTreeMap::from([(id, member)]),
        )),
    };
    let vote = Vote::new(term, id);
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| e.to_string())?;
    {
        let mut log = txn.open_table(RAFT_LOG).map_err(|e| e.to_string())?;
        let bytes = to_json(&entry).map_err(|e| e.to_string())?;
        log.insert(index, bytes.as_slice())
            .map_err(|e| e.to_string())?;
        let mut meta = txn.open_table(RAFT_META).map_err(|e| e.to_string())?;
        let bytes = to_json(&vote).map_err(|e| e.to_string())?;
        meta.insert(VOTE, bytes.as_slice())
            .map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(term)
}
