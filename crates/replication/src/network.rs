//! Raft's RPCs (append-entries, vote, install-snapshot) over a pluggable [`Transport`].
//!
//! A request travels as JSON to the target's `/raft/{kind}` route, where
//! [`crate::Replica::serve`] decodes it, hands it to the local Raft node and encodes its
//! answer (`Ok(reply)` or `Err(raft error)`). The daemon serves those routes over the
//! cluster's mTLS HTTPS; [`crate::local::LocalRouter`] carries them in process for tests, with
//! faults. Which peers answered recently is recorded here, for the "no quorum" error.

use crate::types::{Member, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The three Raft RPCs; `/raft/{kind}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    Append,
    Vote,
    Snapshot,
    /// Not Raft's: a follower asks the leader for the index a linearizable read must wait for.
    ReadIndex,
}

impl RpcKind {
    pub const ALL: [RpcKind; 4] = [
        RpcKind::Append,
        RpcKind::Vote,
        RpcKind::Snapshot,
        RpcKind::ReadIndex,
    ];

    /// The route's last segment.
    pub fn as_str(self) -> &'static str {
        match self {
            RpcKind::Append => "append",
            RpcKind::Vote => "vote",
            RpcKind::Snapshot => "snapshot",
            RpcKind::ReadIndex => "read-index",
        }
    }
}

impl FromStr for RpcKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RpcKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown Raft RPC {s:?} (known: append, vote, snapshot, read-index)")
            })
    }
}

/// Why an RPC did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer cannot be reached (connection refused, link down): back off.
    #[error("{0}")]
    Unreachable(String),
    /// The exchange failed after reaching the peer: retry.
    #[error("{0}")]
    Network(String),
}

/// A boxed future, so that [`Transport`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries one encoded Raft RPC to a peer and brings back its encoded answer.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        target: NodeId,
        member: &Member,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// When each peer last exchanged an RPC with this node (either direction).
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    last: Mutex<HashMap<NodeId, Instant>>,
}

impl Reachability {
    pub(crate) fn saw(&self, peer: NodeId) {
        self.last
            .lock()
            .expect("reachability lock poisoned")
            .insert(peer, Instant::now());
    }

    /// True if `peer` answered or called within `window`.
    pub(crate) fn seen_within(&self, peer: NodeId, window: Duration) -> bool {
        self.last
            .lock()
            .expect("reachability lock poisoned")
            .get(&peer)
            .is_some_and(|t| t.elapsed() <= window)
    }
}

/// openraft's network factory: one [`Connection`] per target.
pub(crate) struct Network {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) reach: Arc<Reachability>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        Connection {
            transport: self.transport.clone(),
            reach: self.reach.clone(),
            target,
            member: node.clone(),
        }
    }
}

pub(crate) struct Connection {
    transport: Arc<dyn Transport>,
    reach: Arc<Reachability>,
    target: NodeId,
    member: Member,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Connection {
    async fn send<Req, Resp, E>(
        &self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .transport
            .call(self.target, &self.member, kind, body, option.hard_ttl())
            .await
            .map_err(|e| match e {
                TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                TransportError::Network(_) => RPCError::Network(NetworkError::new(&e)),
            })?;
        let decoded: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.reach.saw(self.target);
        decoded.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.member.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.send(RpcKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.send(RpcKind::Vote, &rpc, &option).await
    }
}

/// Decodes a request of `kind`, runs it on `raft`, encodes its answer.
pub(crate) async fn serve(
    raft: &crate::types::Raft,
    reach: &Reachability,
    kind: RpcKind,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(v).map_err(|e| e.to_string())
    }
    let bad = |e: serde_json::Error| format!("bad Raft {} request: {e}", kind.as_str());
    match kind {
        RpcKind::Append => {
            let req: AppendEntriesRequest<TypeConfig> =
                serde_json::from_slice(body).map_err(bad)?;
            reach.saw(req.vote.leader_id().voted_for().unwrap_or_default());
            encode(&raft.append_entries(req).await)
        }
        RpcKind::Vote => {
            let req: VoteRequest<NodeId> = serde_json::from_slice(body).map_err(bad)?;
            reach.saw(req.vote.leader_id().voted_for().unwrap_or_default());
            encode(&raft.vote(req).await)
        }
        RpcKind::ReadIndex => {
            // The leader confirms it still leads (a heartbeat round) and names the last index
            // it had committed: a read applied up to there sees every acknowledged write.
            let answer: Result<Option<u64>, String> = raft
                .ensure_linearizable()
                .await
                .map(|id| id.map(|id| id.index))
                .map_err(|e| e.to_string());
            encode(&answer)
        }
        RpcKind::Snapshot => {
            let req: InstallSnapshotRequest<TypeConfig> =
                serde_json::from_slice(body).map_err(bad)?;
            reach.saw(req.vote.leader_id().voted_for().unwrap_or_default());
            encode(&raft.install_snapshot(req).await)
        }
    }
}
