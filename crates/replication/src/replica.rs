//! A replica of the cluster config: one Raft node, its redb store and its network.

use crate::db;
use crate::log_store::LogStore;
use crate::network::{self, Network, Reachability, RpcKind, Transport};
use crate::state_machine::{Shared, StateMachine};
use crate::types::{Member, NodeId, Raft, Request, Response};
use maguey_config::{Command, ConfigError};
use maguey_model::ConfigData;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Timing of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaOptions {
    /// The leader's heartbeat.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range campaigns.
    pub election_min: Duration,
    pub election_max: Duration,
    /// How long a write waits for its commit before it is reported as not acknowledged.
    pub write_timeout: Duration,
    /// A snapshot is built (and the log purged behind it) every this many entries.
    pub snapshot_every: u64,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            // openraft 0.9 also times AppendEntries out after one heartbeat interval: shorter
            // (150 ms was tried) and a loaded debug build's replication fails and backs off,
            // so that a new leader cannot commit.
            heartbeat: Duration::from_millis(250),
            // A follower that knew a leader campaigns after the leader's lease (openraft: the
            // election maximum) plus a random election timeout: 1.5-2 s without a heartbeat
            // here (it was 3-4 s with 1-2 s).
            election_min: Duration::from_millis(500),
            election_max: Duration::from_millis(1000),
            write_timeout: Duration::from_secs(5),
            snapshot_every: 1000,
        }
    }
}

/// Why a replica refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// This replica is not the leader; writes go to the one named (when known).
    #[error("not the master{}", leader.as_ref().map(|(id, m)| format!(": the master is node {id}, {m}")).unwrap_or_default())]
    NotLeader { leader: Option<(NodeId, Member)> },
    /// Too few voters answer for a write to commit.
    #[error(
        "no quorum: this node sees {} of {} voters ({}); missing: {}; config changes need {needed}{}",
        seen.len(), voters.len(), seen.join(", "), missing(voters, seen), if *unacknowledged { " (the change was not acknowledged)" } else { "" }
    )]
    NoQuorum {
        /// The voters this node exchanged messages with recently (itself included).
        seen: Vec<String>,
        voters: Vec<String>,
        needed: usize,
        /// The change was proposed but did not commit in time.
        unacknowledged: bool,
    },
    /// The command does not apply to the current config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command was committed but refused when applied (a concurrent change won).
    #[error("refused: {0}")]
    Refused(String),
    #[error("replication store {}: {message}", path.display())]
    Store { path: PathBuf, message: String },
    #[error("raft: {0}")]
    Raft(String),
}

fn missing(voters: &[String], seen: &[String]) -> String {
    let m: Vec<&str> = voters
        .iter()
        .filter(|v| !seen.contains(v))
        .map(String::as_str)
        .collect();
    if m.is_empty() {
        "none".to_string()
    } else {
        m.join(", ")
    }
}

/// A replica's role in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// What a replica knows of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: BTreeMap<NodeId, Member>,
    /// Index of the last applied log entry.
    pub last_applied: Option<u64>,
    /// Index of the last entry in this replica's log (committed or not).
    pub last_log_index: Option<u64>,
    /// Index of the last entry of the latest snapshot, and of the last purged from the log.
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// On the leader: each peer's last replicated index.
    pub matched: BTreeMap<NodeId, Option<u64>>,
}

/// One member of the replicated config group.
pub struct Replica {
    id: NodeId,
    path: PathBuf,
    transport: Arc<dyn Transport>,
    db: Arc<redb::Database>,
    raft: Raft,
    shared: Arc<Shared>,
    reach: Arc<Reachability>,
    options: ReplicaOptions,
    /// Concurrent writes share entries (`batch.rs`); validated against the state they will
    /// apply to.
    pub(crate) group: crate::batch::GroupCommit,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens (creating if missing) the store at `path` and starts the Raft node `id`.
    pub async fn open(
        id: NodeId,
        path: &Path,
        transport: Arc<dyn Transport>,
        options: ReplicaOptions,
    ) -> Result<Arc<Replica>, ReplicationError> {
        let store_err = |message: String| ReplicationError::Store {
            path: path.to_path_buf(),
            message,
        };
        let db = Arc::new(open_db(path).map_err(store_err)?);
        Self::start(id, path, db, transport, options).await
    }

    /// Starts the Raft node `id` on the opened store `db` (kept at `path`).
    async fn start(
        id: NodeId,
        path: &Path,
        db: Arc<redb::Database>,
        transport: Arc<dyn Transport>,
        options: ReplicaOptions,
    ) -> Result<Arc<Replica>, ReplicationError> {
        let store_err = |message: String| ReplicationError::Store {
            path: path.to_path_buf(),
            message,
        };
        let sm = StateMachine::open(db.clone()).map_err(|e| store_err(e.to_string()))?;
        let shared = sm.shared();
        let config = Config {
            cluster_name: "maguey".to_string(),
            heartbeat_interval: millis(options.heartbeat),
            election_timeout_min: millis(options.election_min),
            election_timeout_max: millis(options.election_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            // Followers that lag less than half a snapshot interval catch up from the log.
            max_in_snapshot_log_to_keep: options.snapshot_every / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ReplicationError::Raft(e.to_string()))?;
        let reach = Arc::new(Reachability::default());
        let net = Network {
            transport: transport.clone(),
            reach: reach.clone(),
        };
        let raft = Raft::new(id, Arc::new(config), net, LogStore::new(db.clone()), sm)
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()))?;
        Ok(Arc::new(Replica {
            id,
            path: path.to_path_buf(),
            transport,
            db,
            raft,
            shared,
            reach,
            options,
            group: Default::default(),
        }))
    }

    /// This replica's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// `cluster force-single` (see `force.rs`): stops this replica, makes this node the only
    /// voter in a new term above every earlier one, and starts it again; the new term and
    /// the replica that replaces this one (this one is shut down).
    pub async fn force_single(
        &self,
        member: Member,
    ) -> Result<(u64, Arc<Replica>), ReplicationError> {
        let status = self.status();
        if !status.voters.contains_key(&self.id) {
            return Err(ReplicationError::Refused(
                "this node is not a voter (master candidate)".into(),
            ));
        }
        self.shutdown().await;
        let term = crate::force::make_single(&self.db, self.id, member).map_err(|message| {
            ReplicationError::Store {
                path: self.path.clone(),
                message,
            }
        })?;
        let replica = Self::start(
            self.id,
            &self.path,
            self.db.clone(),
            self.transport.clone(),
            self.options,
        )
        .await?;
        Ok((term, replica))
    }

    /// Makes a new group of `members` (all voters). Only on a fresh store, on one member.
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, Member>,
    ) -> Result<(), ReplicationError> {
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()))
    }

    /// Adds `id` as a voter: it first catches up as a learner, then joins by joint consensus.
    pub async fn add_voter(&self, id: NodeId, member: Member) -> Result<(), ReplicationError> {
        self.raft
            .add_learner(id, member, true)
            .await
            .map_err(|e| self.write_error(e))?;
        let mut voters: BTreeSet<NodeId> = self.status().voters.into_keys().collect();
        voters.insert(id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// Removes `id` from the voters (joint consensus); it no longer receives the log.
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), ReplicationError> {
        let mut voters: BTreeSet<NodeId> = self.status().voters.into_keys().collect();
        if !voters.remove(&id) {
            return Err(ReplicationError::Refused(format!(
                "node {id} is not a voter"
            )));
        }
        if voters.is_empty() {
            return Err(ReplicationError::Refused(format!(
                "node {id} is the last voter"
            )));
        }
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// The config as this replica has applied it: maybe stale on a follower.
    pub fn config(&self) -> Arc<ConfigData> {
        self.shared.config()
    }

    /// Pretty JSON of this replica's config (the same form as `ConfigStore::export_json`).
    pub fn export_json(&self) -> Result<String, ReplicationError> {
        serde_json::to_string_pretty(&*self.config())
            .map_err(|e| ReplicationError::Raft(e.to_string()))
    }

    /// The config with every write acknowledged before this call, on any replica: the leader
    /// confirms with a quorum that it still leads (read-index); a follower asks the leader for
    /// that index and waits until it has applied it. Without a leader or a quorum: an error,
    /// never a stale answer ([`Replica::config`] is the stale one).
    pub async fn read_config(&self) -> Result<Arc<ConfigData>, ReplicationError> {
        let status = self.status();
        match status.leader {
            Some(leader) if leader != self.id && status.role != Role::Leader => {
                self.read_through(leader, &status).await
            }
            _ => self.read_on_leader().await,
        }
    }

    async fn read_on_leader(&self) -> Result<Arc<ConfigData>, ReplicationError> {
        match tokio::time::timeout(self.options.write_timeout, self.raft.ensure_linearizable())
            .await
        {
            Err(_) => Err(self.no_quorum(false)),
            Ok(Ok(_)) => Ok(self.config()),
            Ok(Err(RaftError::APIError(e))) => match e {
                openraft::error::CheckIsLeaderError::ForwardToLeader(f) => {
                    Err(self.not_leader(f.leader_id))
                }
                openraft::error::CheckIsLeaderError::QuorumNotEnough(_) => {
                    Err(self.no_quorum(false))
                }
            },
            Ok(Err(e)) => Err(ReplicationError::Raft(e.to_string())),
        }
    }

    async fn read_through(
        &self,
        leader: NodeId,
        status: &Status,
    ) -> Result<Arc<ConfigData>, ReplicationError> {
        let member = status.voters.get(&leader).cloned().unwrap_or_default();
        let timeout = self.options.write_timeout;
        let asked = self
            .transport
            .call(
                leader,
                &member,
                RpcKind::ReadIndex,
                b"null".to_vec(),
                timeout,
            )
            .await
            .map_err(|_| self.no_quorum(false))?;
        let index: Result<Option<u64>, String> =
            serde_json::from_slice(&asked).map_err(|e| ReplicationError::Raft(e.to_string()))?;
        let index = index.map_err(|_| self.no_quorum(false))?;
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(index, "read index")
            .await
            .map_err(|e| ReplicationError::Raft(format!("waiting for the read index: {e}")))?;
        Ok(self.config())
    }

    /// Proposes `command` (stamped now) and waits until it is committed and applied here.
    /// Returns the config's new `serial_no`. Refused at once without a quorum or off the leader.
    pub async fn apply(&self, command: Command) -> Result<u64, ReplicationError> {
        self.apply_at(maguey_model::now(), command).await
    }

    /// [`Replica::apply`] with the proposer's timestamp given.
    pub async fn apply_at(&self, ts: f64, command: Command) -> Result<u64, ReplicationError> {
        let name = command.name();
        #[cfg(feature = "unsafe-ack-before-commit")]
        if self.unsafe_ack() {
            self.writable().await?;
            maguey_config::validate(&self.config(), &command)?;
            return match self.propose(Request::Config { ts, command }).await? {
                Response::Config { result: Ok(s) } => Ok(s),
                _ => Err(ReplicationError::Raft(format!("no answer to {name}"))),
            };
        }
        #[allow(unreachable_code)]
        let answer = self
            .propose_grouped(vec![Request::Config { ts, command }])
            .await?;
        match answer.into_iter().next() {
            Some(Response::Config {
                result: Ok(serial_no),
            }) => {
                tracing::debug!(
                    command = name,
                    serial_no,
                    "replicated config command applied"
                );
                Ok(serial_no)
            }
            Some(Response::Config { result: Err(e) }) => Err(ReplicationError::Refused(e)),
            _ => Err(ReplicationError::Raft(format!("no answer to {name}"))),
        }
    }

    /// Replicates a job's durable transition (submitted, status, result, log lines): its whole
    /// record after it, stored under `id` on every replica once committed.
    pub async fn put_job(
        &self,
        id: u64,
        record: serde_json::Value,
    ) -> Result<(), ReplicationError> {
        self.put_jobs(vec![(id, record, false)]).await
    }

    /// Moves job `id` to the archive on every replica (refused if it is not in the queue).
    pub async fn archive_job(&self, id: u64) -> Result<(), ReplicationError> {
        self.jobs_answer(
            self.propose_grouped(vec![Request::JobArchive { id }])
                .await?,
        )
    }

    /// Replicates several jobs' records at once (`(id, record, archived)`; an archived one
    /// is stored, then moved to the archive), in one entry with whatever other writes wait.
    pub async fn put_jobs(
        &self,
        jobs: Vec<(u64, serde_json::Value, bool)>,
    ) -> Result<(), ReplicationError> {
        let mut requests = Vec::with_capacity(jobs.len());
        for (id, record, archived) in jobs {
            requests.push(Request::JobPut { id, record });
            if archived {
                requests.push(Request::JobArchive { id });
            }
        }
        self.jobs_answer(self.propose_grouped(requests).await?)
    }

    fn jobs_answer(&self, responses: Vec<Response>) -> Result<(), ReplicationError> {
        for r in responses {
            self.job_answer(r)?;
        }
        Ok(())
    }

    /// Job `id`'s record as this replica has applied it, and whether it is archived.
    pub fn job(&self, id: u64) -> Result<Option<(serde_json::Value, bool)>, ReplicationError> {
        let read = |table| -> Result<Option<serde_json::Value>, String> {
            let txn = self.db.begin_read().map_err(|e| e.to_string())?;
            let t = txn.open_table(table).map_err(|e| e.to_string())?;
            let record = match t.get(id).map_err(|e| e.to_string())? {
                Some(v) => serde_json::from_slice(v.value())
                    .map(Some)
                    .map_err(|e| e.to_string()),
                None => Ok(None),
            };
            record
        };
        let found = match read(db::SM_JOBS) {
            Ok(Some(record)) => Ok(Some((record, false))),
            Ok(None) => read(db::SM_ARCHIVE).map(|r| r.map(|record| (record, true))),
            Err(e) => Err(e),
        };
        found.map_err(|message| ReplicationError::Store {
            path: PathBuf::new(),
            message: format!("job {id}: {message}"),
        })
    }

    /// Every job record this replica has applied: (id, record, archived), live ones first.
    pub fn job_records(&self) -> Result<Vec<(u64, serde_json::Value, bool)>, ReplicationError> {
        let read = || -> Result<Vec<(u64, serde_json::Value, bool)>, String> {
            let txn = self.db.begin_read().map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (table, archived) in [(db::SM_JOBS, false), (db::SM_ARCHIVE, true)] {
                let t = txn.open_table(table).map_err(|e| e.to_string())?;
                for row in t.iter().map_err(|e| e.to_string())? {
                    let (k, v) = row.map_err(|e| e.to_string())?;
                    let record = serde_json::from_slice(v.value()).map_err(|e| e.to_string())?;
                    out.push((k.value(), record, archived));
                }
            }
            Ok(out)
        };
        read().map_err(|message| ReplicationError::Store {
            path: PathBuf::new(),
            message: format!("job records: {message}"),
        })
    }

    fn job_answer(&self, response: Response) -> Result<(), ReplicationError> {
        match response {
            Response::Job { result } => result.map_err(ReplicationError::Refused),
            _ => Err(ReplicationError::Raft(
                "no answer to a job transition".into(),
            )),
        }
    }

    /// Proposes one entry and waits for its answer (committed and applied here).
    pub(crate) async fn propose(&self, request: Request) -> Result<Response, ReplicationError> {
        #[cfg(feature = "unsafe-ack-before-commit")]
        if self.unsafe_ack() {
            // Deliberately wrong (tests only): acknowledged once proposed, before any commit.
            fn acked(r: &Request) -> Response {
                match r {
                    Request::Config { .. } => Response::Config { result: Ok(0) },
                    Request::JobPut { .. } | Request::JobArchive { .. } => {
                        Response::Job { result: Ok(()) }
                    }
                    Request::Batch { requests } => Response::Batch {
                        responses: requests.iter().map(acked).collect(),
                    },
                }
            }
            let answer = acked(&request);
            self.raft
                .client_write_ff(request)
                .await
                .map_err(|e| ReplicationError::Raft(e.to_string()))?;
            return Ok(answer);
        }
        #[allow(unreachable_code)]
        let written =
            tokio::time::timeout(self.options.write_timeout, self.raft.client_write(request)).await;
        match written {
            Err(_) => Err(self.no_quorum(true)),
            Ok(r) => Ok(r.map_err(|e| self.write_error(e))?.data),
        }
    }

    /// Built with the test-only `unsafe-ack-before-commit` feature: whether writes are
    /// acknowledged before they commit, i.e. whether the file `unsafe-ack-before-commit`
    /// exists beside the store (so that a cluster can form first, then turn it on).
    #[cfg(feature = "unsafe-ack-before-commit")]
    fn unsafe_ack(&self) -> bool {
        self.path
            .with_file_name("unsafe-ack-before-commit")
            .exists()
    }

    /// Returns when this replica's view changes (role, term, leader, indexes), or after
    /// `within` at the latest.
    pub async fn changed(&self, within: Duration) {
        let mut rx = self.raft.metrics();
        // Seen up to now: only a later change wakes this.
        rx.borrow_and_update();
        let _ = tokio::time::timeout(within, rx.changed()).await;
    }

    /// What this replica knows of the group.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        let voters = membership
            .voter_ids()
            .map(|id| (id, membership.get_node(&id).cloned().unwrap_or_default()))
            .collect();
        let matched = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default();
        Status {
            id: self.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            voters,
            last_applied: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            matched,
        }
    }

    /// Answers one Raft RPC from a peer (the body of `/raft/{kind}`); `Err` for a body that
    /// does not decode.
    pub async fn serve(&self, kind: RpcKind, body: &[u8]) -> Result<Vec<u8>, String> {
        network::serve(&self.raft, &self.reach, kind, body).await
    }

    /// A planned move of the leadership (openraft 0.9 has no transfer): this leader stops
    /// sending heartbeats and will not campaign, so that another voter's election timer fires
    /// (or [`Replica::campaign`] on it wins once the lease ran out). Undone by
    /// [`Replica::resume`].
    pub fn step_down(&self) -> Result<(), ReplicationError> {
        if self.status().role != Role::Leader {
            return Err(self.not_leader(self.status().leader));
        }
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        Ok(())
    }

    /// Heartbeats and elections again after [`Replica::step_down`].
    pub fn resume(&self) {
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
    }

    /// Starts an election here now (refused by the others while they hear a leader).
    pub async fn campaign(&self) -> Result<(), ReplicationError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()))
    }

    /// Stops the Raft node (its store is closed once its tasks end).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// [`Replica::check_writable`], given a heartbeat's time to change its mind: right after
    /// a voter joins or a leader wins, the voters it has heard from may not make a quorum
    /// yet. A node that is not the leader is answered at once.
    pub(crate) async fn writable(&self) -> Result<(), ReplicationError> {
        let deadline = tokio::time::Instant::now() + self.options.heartbeat * 4;
        loop {
            match self.check_writable() {
                Err(ReplicationError::NoQuorum { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r => return r,
            }
        }
    }

    fn check_writable(&self) -> Result<(), ReplicationError> {
        let status = self.status();
        match status.role {
            Role::Leader => {
                let (ok, _) = self.quorum_seen(&status);
                if ok {
                    Ok(())
                } else {
                    Err(self.no_quorum(false))
                }
            }
            _ if status.leader.is_some_and(|l| l != self.id) => Err(self.not_leader(status.leader)),
            _ => Err(self.no_quorum(false)),
        }
    }

    /// Whether the voters seen recently (this node included) form a quorum of every config
    /// of the membership (two during a joint change), and which they are.
    fn quorum_seen(&self, status: &Status) -> (bool, BTreeSet<NodeId>) {
        let window = self.options.election_max;
        let seen: BTreeSet<NodeId> = status
            .voters
            .keys()
            .copied()
            .filter(|id| *id == self.id || self.reach.seen_within(*id, window))
            .collect();
        let m = self.raft.metrics().borrow().membership_config.clone();
        let ok = m
            .membership()
            .get_joint_config()
            .iter()
            .all(|set| set.iter().filter(|id| seen.contains(id)).count() > set.len() / 2);
        (ok, seen)
    }

    fn no_quorum(&self, unacknowledged: bool) -> ReplicationError {
        let status = self.status();
        let (_, seen) = self.quorum_seen(&status);
        let name = |id: &NodeId| match status.voters.get(id) {
            Some(m) if !m.name.is_empty() => m.name.clone(),
            _ => format!("node {id}"),
        };
        ReplicationError::NoQuorum {
            seen: seen.iter().map(name).collect(),
            voters: status.voters.keys().map(name).collect(),
            needed: status.voters.len() / 2 + 1,
            unacknowledged,
        }
    }

    fn not_leader(&self, leader: Option<NodeId>) -> ReplicationError {
        match leader {
            Some(id) => ReplicationError::NotLeader {
                leader: Some((
                    id,
                    self.status().voters.get(&id).cloned().unwrap_or_default(),
                )),
            },
            None => self.no_quorum(false),
        }
    }

    fn write_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    ) -> ReplicationError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                self.not_leader(f.leader_id)
            }
            other => ReplicationError::Raft(other.to_string()),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Opens the redb file of a replica, creating its tables.
pub(crate) fn open_db(path: &Path) -> Result<redb::Database, String> {
    let db = maguey_redb::open(path).map_err(|e| e.to_string())?;
    db::init(&db).map_err(|e| e.to_string())?;
    Ok(db)
}
