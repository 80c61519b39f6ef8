//! An in-process [`Transport`] for tests: replicas in one process, with faults.
//!
//! Like openraft's own test router: a node can be cut off (every RPC to or from it fails as
//! unreachable, as when its link is down) and healed, or removed (as when it dies).

use crate::network::{BoxFuture, RpcKind, Transport, TransportError};
use crate::replica::Replica;
use crate::types::{Member, NodeId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    nodes: HashMap<NodeId, Arc<Replica>>,
    cut: HashSet<NodeId>,
}

/// Routes Raft RPCs between replicas of one process.
#[derive(Clone, Default)]
pub struct LocalRouter {
    state: Arc<Mutex<State>>,
}

impl LocalRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The transport node `from` sends with.
    pub fn transport(&self, from: NodeId) -> Arc<dyn Transport> {
        Arc::new(LocalTransport {
            router: self.clone(),
            from,
        })
    }

    /// Makes `replica` reachable as its id.
    pub fn add(&self, replica: Arc<Replica>) {
        self.lock().nodes.insert(replica.id(), replica);
    }

    /// Makes node `id` unreachable for good (it died); returns its replica.
    pub fn remove(&self, id: NodeId) -> Option<Arc<Replica>> {
        self.lock().nodes.remove(&id)
    }

    /// Cuts node `id`'s link: nothing reaches it, nothing it sends arrives.
    pub fn cut(&self, id: NodeId) {
        self.lock().cut.insert(id);
    }

    /// Restores node `id`'s link.
    pub fn heal(&self, id: NodeId) {
        self.lock().cut.remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("router lock poisoned")
    }

    fn linked(&self, from: NodeId, to: NodeId) -> Result<Arc<Replica>, TransportError> {
        let s = self.lock();
        if s.cut.contains(&from) || s.cut.contains(&to) {
            return Err(TransportError::Unreachable(format!(
                "link between {from} and {to} is cut"
            )));
        }
        s.nodes
            .get(&to)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable(format!("node {to} is down")))
    }
}

struct LocalTransport {
    router: LocalRouter,
    from: NodeId,
}

impl Transport for LocalTransport {
    fn call(
        &self,
        target: NodeId,
        _member: &Member,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let router = self.router.clone();
        let from = self.from;
        Box::pin(async move {
            let replica = router.linked(from, target)?;
            let reply = tokio::time::timeout(timeout, replica.serve(kind, &body))
                .await
                .map_err(|_| {
                    TransportError::Network(format!("{} to node {target} timed out", kind.as_str()))
                })?
                .map_err(TransportError::Network)?;
            // A link cut while the request was in flight loses the answer.
            router.linked(from, target)?;
            Ok(reply)
        })
    }
}
