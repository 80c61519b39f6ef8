//! The lock manager: Ganeti's lock levels, shared or exclusive, taken in level order.
//!
//! Every job owns its locks (the owner is the job id). Within one level a request names a set
//! of locks (`Names`) or the whole level (`All`, Ganeti's `[lockset]`), and is granted for all
//! its names at once or not at all. Requests that cannot be granted wait in a FIFO queue per
//! level; a waiting request also blocks later requests that conflict with it, so that a stream
//! of shared requests cannot starve an exclusive waiter. Since a job only waits for a level
//! higher than every level it holds, there is no deadlock.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Ganeti's lock levels, in the order they must be acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockLevel {
    #[serde(rename = "cluster")]
    Cluster,
    #[serde(rename = "instance")]
    Instance,
    #[serde(rename = "nodegroup")]
    NodeGroup,
    #[serde(rename = "node")]
    Node,
    #[serde(rename = "node-res")]
    NodeRes,
    #[serde(rename = "network")]
    Network,
}

impl LockLevel {
    /// Every level, in acquisition order.
    pub const ALL: [LockLevel; 6] = [
        LockLevel::Cluster,
        LockLevel::Instance,
        LockLevel::NodeGroup,
        LockLevel::Node,
        LockLevel::NodeRes,
        LockLevel::Network,
    ];

    /// Ganeti's name of the level (`cluster`, `instance`, `nodegroup`, `node`, `node-res`,
    /// `network`).
    pub fn as_str(self) -> &'static str {
        match self {
            LockLevel::Cluster => "cluster",
            LockLevel::Instance => "instance",
            LockLevel::NodeGroup => "nodegroup",
            LockLevel::Node => "node",
            LockLevel::NodeRes => "node-res",
            LockLevel::Network => "network",
        }
    }
}

impl fmt::Display for LockLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to lock at one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockNames {
    /// The whole level (Ganeti's `[lockset]`): conflicts with every exclusive lock of the level,
    /// and when exclusive with every lock of the level.
    All,
    /// These names.
    Names(Vec<String>),
}

impl LockNames {
    /// Convenience constructor.
    pub fn names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LockNames::Names(names.into_iter().map(Into::into).collect())
    }
}

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// The name under which a whole-level lock is listed.
pub const LOCKSET_NAME: &str = "[lockset]";

/// One lock as listed by [`crate::JobQueue::locks`] (Ganeti's `gnt-debug locks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub level: LockLevel,
    /// The lock's name, or [`LOCKSET_NAME`] for the whole level.
    pub name: String,
    /// Mode of the current owners; `None` if nobody holds it (only pending requests).
    pub mode: Option<LockMode>,
    /// Job ids holding the lock.
    pub owners: Vec<u64>,
    /// Job ids waiting for the lock, in queue order, with the mode they asked for.
    pub pending: Vec<(u64, LockMode)>,
}

/// A normalized request: sorted, de-duplicated names.
#[derive(Debug, Clone)]
enum Set {
    All,
    Names(BTreeSet<String>),
}

impl Set {
    fn from(names: LockNames) -> Set {
        match names {
            LockNames::All => Set::All,
            LockNames::Names(v) => Set::Names(v.into_iter().collect()),
        }
    }
    fn overlaps(&self, other: &Set) -> bool {
        match (self, other) {
            (Set::Names(a), Set::Names(b)) => {
                let (small, big) = if a.len() <= b.len() { (a, b) } else { (b, a) };
                small.iter().any(|n| big.contains(n))
            }
            (Set::Names(a), Set::All) | (Set::All, Set::Names(a)) => !a.is_empty(),
            (Set::All, Set::All) => true,
        }
    }
    fn to_names(&self) -> Vec<String> {
        match self {
            Set::All => vec![LOCKSET_NAME.to_string()],
            Set::Names(n) => n.iter().cloned().collect(),
        }
    }
}

fn conflicts(a: &Set, am: LockMode, b: &Set, bm: LockMode) -> bool {
    (am == LockMode::Exclusive || bm == LockMode::Exclusive) && a.overlaps(b)
}

struct Held {
    set: Set,
    mode: LockMode,
}

struct Waiter {
    ticket: u64,
    owner: u64,
    set: Set,
    mode: LockMode,
    tx: oneshot::Sender<()>,
}

#[derive(Default)]
struct Level {
    /// owner → what it holds at this level.
    held: BTreeMap<u64, Held>,
    queue: VecDeque<Waiter>,
}

impl Level {
    fn conflicts_with_holders(&self, owner: u64, set: &Set, mode: LockMode) -> bool {
        self.held
            .iter()
            .any(|(o, h)| *o != owner && conflicts(set, mode, &h.set, h.mode))
    }

    /// Grants every waiter that conflicts neither with holders nor with an earlier waiter.
    fn pump(&mut self) {
        let mut kept: VecDeque<Waiter> = VecDeque::with_capacity(self.queue.len());
        while let Some(w) = self.queue.pop_front() {
            let blocked = self.conflicts_with_holders(w.owner, &w.set, w.mode)
                || kept
                    .iter()
                    .any(|k| k.owner != w.owner && conflicts(&w.set, w.mode, &k.set, k.mode));
            if blocked {
                kept.push_back(w);
                continue;
            }
            if w.tx.send(()).is_ok() {
                self.held.insert(
                    w.owner,
                    Held {
                        set: w.set,
                        mode: w.mode,
                    },
                );
            }
            // A closed receiver means the request was abandoned; just drop it.
        }
        self.queue = kept;
    }
}

/// Result of [`LockManager::request`].
pub(crate) enum Request {
    Granted,
    Pending(u64, oneshot::Receiver<()>),
}

#[derive(Default)]
struct Inner {
    levels: HashMap<LockLevel, Level>,
    next_ticket: u64,
}

/// The lock manager (shared by all jobs of a queue).
#[derive(Default)]
pub(crate) struct LockManager {
    inner: Mutex<Inner>,
}

impl LockManager {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for locks; granted at once if nothing (holder or earlier waiter) conflicts.
    pub(crate) fn request(
        &self,
        owner: u64,
        level: LockLevel,
        names: LockNames,
        mode: LockMode,
    ) -> Request {
        let set = Set::from(names);
        let mut inner = self.lock();
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        let lvl = inner.levels.entry(level).or_default();
        let blocked = lvl.conflicts_with_holders(owner, &set, mode)
            || lvl
                .queue
                .iter()
                .any(|w| w.owner != owner && conflicts(&set, mode, &w.set, w.mode));
        if !blocked {
            lvl.held.insert(owner, Held { set, mode });
            return Request::Granted;
        }
        let (tx, rx) = oneshot::channel();
        lvl.queue.push_back(Waiter {
            ticket,
            owner,
            set,
            mode,
            tx,
        });
        Request::Pending(ticket, rx)
    }

    /// Withdraws a pending request. Returns false if it is no longer pending (it was granted).
    pub(crate) fn withdraw(&self, level: LockLevel, ticket: u64) -> bool {
        let mut inner = self.lock();
        let Some(lvl) = inner.levels.get_mut(&level) else {
            return false;
        };
        let before = lvl.queue.len();
        lvl.queue.retain(|w| w.ticket != ticket);
        let removed = lvl.queue.len() != before;
        if removed {
            lvl.pump();
        }
        removed
    }

    /// Withdraws every pending request of an owner (its receivers see a closed channel).
    /// Returns true if there was one.
    pub(crate) fn withdraw_owner(&self, owner: u64) -> bool {
        let mut inner = self.lock();
        let mut any = false;
        for lvl in inner.levels.values_mut() {
            let before = lvl.queue.len();
            lvl.queue.retain(|w| w.owner != owner);
            if lvl.queue.len() != before {
                any = true;
                lvl.pump();
            }
        }
        any
    }

    /// Releases what an owner holds at one level.
    pub(crate) fn release(&self, owner: u64, level: LockLevel) {
        let mut inner = self.lock();
        if let Some(lvl) = inner.levels.get_mut(&level) {
            if lvl.held.remove(&owner).is_some() {
                lvl.pump();
            }
        }
    }

    /// Releases everything an owner holds and withdraws its pending requests.
    pub(crate) fn release_all(&self, owner: u64) {
        let mut inner = self.lock();
        for lvl in inner.levels.values_mut() {
            let before = lvl.queue.len();
            lvl.queue.retain(|w| w.owner != owner);
            let withdrew = lvl.queue.len() != before;
            if lvl.held.remove(&owner).is_some() || withdrew {
                lvl.pump();
            }
        }
    }

    /// Held and pending locks, by level then name.
    pub(crate) fn info(&self) -> Vec<LockInfo> {
        fn slot(
            map: &mut BTreeMap<String, LockInfo>,
            level: LockLevel,
            name: String,
        ) -> &mut LockInfo {
            map.entry(name.clone()).or_insert_with(|| LockInfo {
                level,
                name,
                mode: None,
                owners: Vec::new(),
                pending: Vec::new(),
            })
        }
        let inner = self.lock();
        let mut out = Vec::new();
        for level in LockLevel::ALL {
            let Some(lvl) = inner.levels.get(&level) else {
                continue;
            };
            let mut by_name: BTreeMap<String, LockInfo> = BTreeMap::new();
            for (owner, h) in &lvl.held {
                for name in h.set.to_names() {
                    let info = slot(&mut by_name, level, name);
                    info.mode = Some(h.mode);
                    info.owners.push(*owner);
                }
            }
            for w in &lvl.queue {
                for name in w.set.to_names() {
                    slot(&mut by_name, level, name)
                        .pending
                        .push((w.owner, w.mode));
                }
            }
            out.extend(by_name.into_values());
        }
        out
    }

    /// What an owner holds at a level (names; [`LOCKSET_NAME`] for the whole level).
    #[cfg(test)]
    pub(crate) fn held_by(&self, owner: u64, level: LockLevel) -> Option<Vec<String>> {
        let inner = self.lock();
        inner
            .levels
            .get(&level)
            .and_then(|l| l.held.get(&owner))
            .map(|h| h.set.to_names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockLevel::*;
    use LockMode::*;

    fn names(n: &[&str]) -> LockNames {
        LockNames::names(n.iter().copied())
    }

    fn granted(r: &Request) -> bool {
        matches!(r, Request::Granted)
    }

    fn pending(r: Request) -> oneshot::Receiver<()> {
        match r {
            Request::Pending(_, rx) => rx,
            Request::Granted => panic!("expected a pending request"),
        }
    }

    #[test]
    fn shared_coexist_exclusive_conflicts() {
        let m = LockManager::default();
        assert!(granted(&m.request(1, Instance, names(&["a"]), Shared)));
        assert!(granted(&m.request(2, Instance, names(&["a", "b"]), Shared)));
        // different name, exclusive: fine
        assert!(granted(&m.request(3, Instance, names(&["c"]), Exclusive)));
        // same name exclusive: waits
        let mut rx = pending(m.request(4, Instance, names(&["b"]), Exclusive));
        // other levels are independent
        assert!(granted(&m.request(5, Node, names(&["b"]), Exclusive)));
        m.release(2, Instance);
        assert!(rx.try_recv().is_ok());
        assert_eq!(m.held_by(4, Instance), Some(vec!["b".to_string()]));
    }

    #[test]
    fn all_vs_names() {
        let m = LockManager::default();
        // All shared coexists with shared names, conflicts with exclusive names
        assert!(granted(&m.request(1, Instance, LockNames::All, Shared)));
        assert!(granted(&m.request(2, Instance, names(&["x"]), Shared)));
        let mut x_excl = pending(m.request(3, Instance, names(&["y"]), Exclusive));
        m.release(1, Instance);
        assert!(x_excl.try_recv().is_ok());
        // All exclusive conflicts with everything held at the level
        let mut all_excl = pending(m.request(4, Instance, LockNames::All, Exclusive));
        m.release(2, Instance);
        assert!(all_excl.try_recv().is_err());
        m.release(3, Instance);
        assert!(all_excl.try_recv().is_ok());
        // ... and everything conflicts with it
        let mut s = pending(m.request(5, Instance, names(&["z"]), Shared));
        let mut a = pending(m.request(6, Instance, LockNames::All, Shared));
        m.release(4, Instance);
        assert!(s.try_recv().is_ok());
        assert!(a.try_recv().is_ok());
        // an empty name list conflicts with nothing
        assert!(granted(&m.request(7, Instance, names(&[]), Exclusive)));
    }

    #[test]
    fn exclusive_waiter_is_not_starved() {
        let m = LockManager::default();
        assert!(granted(&m.request(1, Node, names(&["n1"]), Shared)));
        let mut excl = pending(m.request(2, Node, names(&["n1"]), Exclusive));
        // a later shared request queues behind the exclusive waiter
        let mut shared = pending(m.request(3, Node, names(&["n1"]), Shared));
        // but unrelated names still go ahead
        assert!(granted(&m.request(4, Node, names(&["n2"]), Shared)));
        m.release(1, Node);
        assert!(excl.try_recv().is_ok());
        assert!(shared.try_recv().is_err());
        m.release(2, Node);
        assert!(shared.try_recv().is_ok());
    }

    #[test]
    fn withdraw_and_release_all() {
        let m = LockManager::default();
        assert!(granted(&m.request(1, Cluster, LockNames::All, Exclusive)));
        let r = m.request(2, Cluster, LockNames::All, Shared);
        let Request::Pending(ticket, mut rx2) = r else {
            panic!()
        };
        let mut rx3 = pending(m.request(3, Cluster, names(&["BGL"]), Shared));
        assert!(m.withdraw(Cluster, ticket));
        assert!(rx2.try_recv().is_err());
        assert!(!m.withdraw_owner(2));
        m.release_all(1);
        assert!(rx3.try_recv().is_ok());
        assert!(!m.withdraw(Cluster, ticket));
        let info = m.info();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].name, "BGL");
        assert_eq!(info[0].owners, vec![3]);
        assert_eq!(info[0].mode, Some(Shared));
    }

    #[test]
    fn abandoned_requests_are_skipped() {
        let m = LockManager::default();
        assert!(granted(&m.request(1, Network, names(&["net"]), Exclusive)));
        drop(pending(m.request(2, Network, names(&["net"]), Exclusive)));
        let mut rx = pending(m.request(3, Network, names(&["net"]), Shared));
        m.release(1, Network);
        assert!(rx.try_recv().is_ok());
        assert_eq!(m.held_by(2, Network), None);
    }

    #[test]
    fn level_names_and_order() {
        let names: Vec<String> = LockLevel::ALL
            .iter()
            .map(|l| {
                serde_json::to_value(l)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let strs: Vec<&str> = LockLevel::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(names, strs);
        assert_eq!(
            strs,
            [
                "cluster",
                "instance",
                "nodegroup",
                "node",
                "node-res",
                "network"
            ]
        );
        assert!(LockLevel::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn info_lists_owners_and_pending() {
        let m = LockManager::default();
        assert!(granted(&m.request(1, Instance, names(&["a", "b"]), Shared)));
        assert!(granted(&m.request(2, Instance, names(&["a"]), Shared)));
        let _rx = pending(m.request(3, Instance, LockNames::All, Exclusive));
        let info = m.info();
        let a = info.iter().find(|i| i.name == "a").unwrap();
        assert_eq!(a.owners, vec![1, 2]);
        let set = info.iter().find(|i| i.name == LOCKSET_NAME).unwrap();
        assert_eq!(set.mode, None);
        assert_eq!(set.pending, vec![(3, Exclusive)]);
    }
}
