//! Fencing by term, the node's side: the highest master term this node has seen, persisted
//! in its state directory ([`TERM_FILE`], written atomically with fsync, mode 0600), and the
//! check of every master request's [`FenceStamp`] against it.
//!
//! * A request for another cluster is refused.
//! * A request whose term is lower than the stored one is refused ([`NodeError::Fenced`]): a
//!   newer master has commanded this node, the sender was deposed.
//! * A higher term is stored only when it comes from the certificate of a current master
//!   candidate (the ssconf names their fingerprints): any other certificate, whatever term it
//!   sends, changes nothing.
//! * A request without a stamp (a peer of an older protocol) is not checked.

use crate::error::{NodeError, NodeResult};
use maguey_model::Ssconf;
use maguey_rpc::FenceStamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file, in the state directory, holding the highest master term seen.
pub const TERM_FILE: &str = "master-term.json";

/// What [`TERM_FILE`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTerm {
    /// The cluster (uuid) the term belongs to; empty before the first stamped request.
    #[serde(default)]
    pub cluster: String,
    pub term: u64,
}

/// The highest master term this node has seen, shared by its request handlers.
#[derive(Debug)]
pub struct TermStore {
    path: PathBuf,
    state: Mutex<StoredTerm>,
}

impl TermStore {
    /// Loads `state_dir/`[`TERM_FILE`] (none yet: term 0). A file that cannot be read or
    /// parsed is an error: the daemon must not forget a term it promised to honour.
    pub fn open(state_dir: &Path) -> NodeResult<TermStore> {
        let path = state_dir.join(TERM_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| NodeError::io(format!("cannot parse {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredTerm::default(),
            Err(e) => {
                return Err(NodeError::io(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(TermStore {
            path,
            state: Mutex::new(state),
        })
    }

    /// The stored term.
    pub fn current(&self) -> StoredTerm {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoredTerm> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks one request's stamp. `ssconf`: the node's current ssconf (its cluster and the
    /// candidates' fingerprints; `None` before the first one); `peer_fingerprint`: the
    /// sender's certificate; `authorized_master`: whether the sender is the master this node
    /// obeys (it counts as a candidate when the ssconf names no candidate certificates).
    pub fn admit(
        &self,
        stamp: &FenceStamp,
        ssconf: Option<&Ssconf>,
        peer_fingerprint: &str,
        authorized_master: bool,
    ) -> NodeResult<()> {
        let mut stored = self.lock();
        let ours = ssconf
            .map(|s| s.cluster_uuid.as_str())
            .filter(|c| !c.is_empty())
            .or_else(|| Some(stored.cluster.as_str()).filter(|c| !c.is_empty()));
        if let Some(ours) = ours {
            if stamp.cluster != ours {
                return Err(NodeError::Fenced(format!(
                    "this node belongs to cluster {ours}; the request is for cluster {}",
                    stamp.cluster
                )));
            }
        }
        // A term of another cluster (this directory held one before) does not count.
        let seen = if stored.cluster.is_empty() || stored.cluster == stamp.cluster {
            stored.term
        } else {
            0
        };
        if stamp.term < seen {
            return Err(NodeError::Fenced(format!(
                "refused: the sender's master term {} is lower than term {seen}, which this \
                 node has seen: a newer master commands it (the sender was deposed)",
                stamp.term
            )));
        }
        let candidates = ssconf
            .map(|s| s.master_candidate_certificates.as_slice())
            .unwrap_or_default();
        let candidate = if candidates.is_empty() {
            authorized_master
        } else {
            !peer_fingerprint.is_empty() && candidates.iter().any(|c| c == peer_fingerprint)
        };
        if candidate && (stamp.term > seen || stored.cluster != stamp.cluster) {
            let new = StoredTerm {
                cluster: stamp.cluster.clone(),
                term: stamp.term,
            };
            let bytes = serde_json::to_vec(&new)
                .map_err(|e| NodeError::internal(format!("cannot encode the term: {e}")))?;
            crate::state::write_atomic_private(&self.path, &bytes)?;
            *stored = new;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(cluster: &str, term: u64) -> FenceStamp {
        FenceStamp {
            cluster: cluster.into(),
            term,
        }
    }

    fn ssconf() -> Ssconf {
        Ssconf {
            cluster_uuid: "c1".into(),
            master_certificate: "m".into(),
            master_candidate_certificates: vec!["m".into(), "cand".into()],
            ..Default::default()
        }
    }

    #[test]
    fn terms_only_rise_from_candidates_and_survive_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ss = ssconf();
        let t = TermStore::open(dir.path()).unwrap();
        assert_eq!(t.current().term, 0);
        t.admit(&stamp("c1", 1), Some(&ss), "m", true).unwrap();
        assert_eq!(
            t.current(),
            StoredTerm {
                cluster: "c1".into(),
                term: 1
            }
        );
        let mode = std::fs::metadata(dir.path().join(TERM_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A certificate that is not a candidate's raises nothing, whatever it sends.
        t.admit(&stamp("c1", 1001), Some(&ss), "other", false)
            .unwrap();
        assert_eq!(t.current().term, 1);
        t.admit(&stamp("c1", 1), Some(&ss), "m", true).unwrap();
        // A candidate's higher term is stored; the old master's is then refused.
        t.admit(&stamp("c1", 5), Some(&ss), "cand", false).unwrap();
        assert_eq!(t.current().term, 5);
        let e = t.admit(&stamp("c1", 1), Some(&ss), "m", true).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Fenced);
        assert!(e.to_string().contains("lower than term 5"), "{e}");
        // Another cluster is refused.
        let e = t.admit(&stamp("c2", 9), Some(&ss), "m", true).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Fenced);
        assert!(e.to_string().contains("cluster c1"), "{e}");
        // After a restart.
        drop(t);
        let t = TermStore::open(dir.path()).unwrap();
        assert_eq!(t.current().term, 5);
        assert!(t.admit(&stamp("c1", 4), Some(&ss), "m", true).is_err());
        t.admit(&stamp("c1", 5), Some(&ss), "m", true).unwrap();
        // Without an ssconf the stored cluster still counts.
        assert!(t.admit(&stamp("c2", 9), None, "m", true).is_err());
    }

    #[test]
    fn without_candidate_certificates_the_authorized_master_counts() {
        let dir = tempfile::tempdir().unwrap();
        let t = TermStore::open(dir.path()).unwrap();
        // Before the first ssconf (just joined): the master named at join time.
        t.admit(&stamp("c1", 2), None, "m", true).unwrap();
        assert_eq!(t.current().term, 2);
        t.admit(&stamp("c1", 3), None, "x", false).unwrap();
        assert_eq!(t.current().term, 2);
        // A new cluster in the same directory (destroyed, initialised again): its ssconf
        // names it, and the old cluster's term does not count.
        let ss = Ssconf {
            cluster_uuid: "c9".into(),
            ..Default::default()
        };
        t.admit(&stamp("c9", 1), Some(&ss), "m", true).unwrap();
        assert_eq!(
            t.current(),
            StoredTerm {
                cluster: "c9".into(),
                term: 1
            }
        );
        // A corrupt file is refused rather than forgotten.
        std::fs::write(dir.path().join(TERM_FILE), b"{").unwrap();
        assert!(TermStore::open(dir.path()).is_err());
    }
}
