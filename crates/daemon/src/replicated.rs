//! magueyd on a master candidate of a replicated cluster (docs/replication.md).
//!
//! The config lives in a [`Replica`] (`raft.redb`) instead of `config.redb`, and the **Raft
//! leader is the master**: when this node wins an election it brings its config up to date
//! (a read-index round), records itself as the master with a master term above every earlier
//! one (`Cluster::master_term`, stamped on every node RPC: nodes then refuse the deposed
//! master), opens its job queue (jobs that were running end as error, queued ones run, as
//! after a master restart), and starts the scheduler, the watcher, the master API and the
//! Remote API. When it loses the leadership it stops them.
//!
//! On a follower the master API answers with a redirect (307) to the leader, so `maguey`
//! works against any candidate; without a leader it answers 503 with the replica's
//! no-quorum error, which names the voters seen and missing.
//!
//! A candidate becomes one in two ways: `cluster init --replicated` leaves a marker beside
//! `config.redb`, turned into the first snapshot of a one-voter group at start
//! ([`upgrade_if_asked`]); a node the leader adds as a voter opens its (empty) replica on the
//! leader's first `/raft` request. The leader adds every master candidate of the config as a
//! voter (and removes voters that no longer are), after handing it the cluster CA's key and
//! the admin certificate (`/raft/secrets`), so that it can serve and sign as master later.

use crate::api::{self, MasterState};
use crate::auth::NodeAuth;
use crate::raft::RaftHttps;
use crate::{files, rapi_users, Args, RapiServer};
use anyhow::{Context, Result};
use axum::Router;
use maguey_config::{Command, ConfigStore};
use maguey_jobs::{JobQueue, JobReplication, JobWrite};
use maguey_model::{ConfigData, Node};
use maguey_ops::{BoxFuture, ConfigBackend, ConfigWriteError, Executor, Master};
use maguey_replication::{
    upgrade_config_store, Member, NodeId, Replica, ReplicaOptions, ReplicationError, Role,
};
use maguey_rpc::ca::{ClusterCa, NodeIdentity};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The replica's store in the state directory.
pub const RAFT_FILE: &str = "raft.redb";
/// This node's id in the Raft group (JSON), written when its replica is created.
pub const RAFT_ID_FILE: &str = "raft-id.json";
/// Where `config.redb` goes once it became the replica's first snapshot.
pub const SINGLE_MASTER_BACKUP: &str = "config.redb.single-master";

pub fn raft_path(dir: &Path) -> PathBuf {
    dir.join(RAFT_FILE)
}

/// A node's Raft id: the first 64 bits of its uuid (stable for the node's life, never 0).
pub fn raft_id(uuid: &str) -> NodeId {
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    u64::from_str_radix(&hex, 16).unwrap_or(0).max(1)
}

/// What the group records of a node: its name and the address of its magueyd.
pub fn member(cfg: &ConfigData, node: &Node) -> Member {
    Member {
        name: node.name.clone(),
        addr: maguey_ops::node_addr(cfg, node),
    }
}

/// At start: after `cluster init --replicated` (the marker), the single-master store becomes
/// the first snapshot of a group with this node as the only voter; `config.redb` is kept as
/// [`SINGLE_MASTER_BACKUP`].
pub fn upgrade_if_asked(dir: &Path, node_name: &str) -> Result<()> {
    let marker = dir.join(files::REPLICATE_MARKER);
    if !marker.exists() {
        return Ok(());
    }
    let config = files::config_path(dir);
    let raft = raft_path(dir);
    if !raft.exists() {
        let (id, m) = {
            let store = ConfigStore::open(&config).context("opening the config store")?;
            let cfg = store.snapshot();
            let node = cfg
                .node_by_name(node_name)
                .with_context(|| format!("node {node_name} is not in the config"))?;
            (raft_id(&node.uuid), member(&cfg, node))
        };
        upgrade_config_store(&config, &raft, id, m)?;
        save_id(dir, id)?;
        tracing::info!("the config is now replicated: {} holds it", raft.display());
    }
    if config.exists() {
        std::fs::rename(&config, dir.join(SINGLE_MASTER_BACKUP))
            .with_context(|| format!("moving {} aside", config.display()))?;
    }
    std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    Ok(())
}

fn save_id(dir: &Path, id: NodeId) -> Result<()> {
    maguey_node::write_atomic(&dir.join(RAFT_ID_FILE), &serde_json::to_vec(&id)?)
        .map_err(anyhow::Error::msg)
}

fn load_id(dir: &Path) -> Option<NodeId> {
    serde_json::from_slice(&std::fs::read(dir.join(RAFT_ID_FILE)).ok()?).ok()
}

/// The replicated config behind the seam units use ([`ConfigBackend`]).
pub struct ReplicatedConfig(pub Arc<Replica>);

impl ConfigBackend for ReplicatedConfig {
    fn snapshot(&self) -> Arc<ConfigData> {
        self.0.config()
    }

    fn apply(&self, command: Command) -> BoxFuture<'_, Result<u64, ConfigWriteError>> {
        Box::pin(async move {
            // A node that stops being a candidate leaves the voters first: once gone (told to
            // leave, or offline) it could no longer help commit its own removal.
            let leaving = match &command {
                Command::RemoveNode { uuid } => Some(uuid.clone()),
                Command::UpdateNode { node } if !node.master_candidate || node.offline => {
                    Some(node.uuid.clone())
                }
                _ => None,
            };
            if let Some(uuid) = leaving {
                let id = raft_id(&uuid);
                let st = self.0.status();
                if id != st.id && st.voters.contains_key(&id) {
                    self.0.remove_voter(id).await.map_err(|e| {
                        ConfigWriteError::Unavailable(format!("removing the voter first: {e}"))
                    })?;
                    tracing::info!("node {uuid} left the voters");
                }
            }
            self.0.apply(command).await.map_err(|e| match e {
                ReplicationError::Config(c) => ConfigWriteError::Config(c),
                other => ConfigWriteError::Unavailable(other.to_string()),
            })
        })
    }
}

/// What the leader hands a new voter: what a master needs besides the config.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Secrets {
    pub(crate) ca_key_pem: String,
    pub(crate) admin_cert_pem: String,
    pub(crate) admin_key_pem: String,
}

/// The master this node runs while it leads.
pub(crate) struct Active {
    term: u64,
    state: MasterState,
    pub(crate) router: Router,
    tasks: Vec<tokio::task::AbortHandle>,
    /// The Remote API's routes while this node is the master (the candidate's RAPI listener
    /// serves them; `crate::replicated_rapi`).
    pub(crate) rapi: Option<Router>,
}

impl Active {
    /// The master this node runs.
    pub(crate) fn master(&self) -> Arc<Master> {
        self.state.master.clone()
    }
}

/// A node that may be (or become) a master candidate of a replicated cluster.
pub struct Candidacy {
    pub(crate) dir: PathBuf,
    pub(crate) node_name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) identity: NodeIdentity,
    pub(crate) args: Args,
    pub(crate) auth: NodeAuth,
    /// This node's replica once opened (replaced by `cluster force-single`).
    replica: RwLock<Option<Arc<Replica>>>,
    /// Held while the replica is opened or replaced.
    opening: tokio::sync::Mutex<()>,
    /// Voters that `cluster force-single` cut off: the new master makes them non-candidates.
    pub(crate) cut_off: std::sync::Mutex<Vec<String>>,
    pub(crate) active: RwLock<Option<Arc<Active>>>,
    options: ReplicaOptions,
    /// Notified when OP_CLUSTER_DESTROY succeeded on the master this node runs: the daemon
    /// then removes its state and stops.
    pub destroy: Arc<tokio::sync::Notify>,
    /// The daemon stops: the master is not started again.
    stopping: std::sync::atomic::AtomicBool,
    /// The term this node gave up the mastership in (`cluster master-failover`): it does not
    /// start the master again while that term lasts.
    stepped_down: std::sync::atomic::AtomicU64,
    /// The Remote API's listener of this candidate (leader or follower).
    pub(crate) rapi_server: std::sync::Mutex<Option<RapiServer>>,
}

impl Candidacy {
    pub fn new(
        args: &Args,
        node_name: &str,
        listen: SocketAddr,
        identity: &NodeIdentity,
    ) -> Arc<Candidacy> {
        Arc::new(Candidacy {
            dir: args.state_dir.clone(),
            node_name: node_name.to_string(),
            listen,
            identity: identity.clone(),
            args: args.clone(),
            auth: NodeAuth {
                state_dir: args.state_dir.clone(),
            },
            replica: RwLock::new(None),
            opening: tokio::sync::Mutex::new(()),
            cut_off: std::sync::Mutex::new(Vec::new()),
            active: RwLock::new(None),
            options: if args.witness {
                // A witness campaigns late: the nodes that can be master usually win first.
                let o = ReplicaOptions::default();
                ReplicaOptions {
                    election_min: o.election_min * 2,
                    election_max: o.election_max * 2,
                    ..o
                }
            } else {
                ReplicaOptions::default()
            },
            stepped_down: std::sync::atomic::AtomicU64::new(0),
            destroy: Arc::new(tokio::sync::Notify::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            rapi_server: std::sync::Mutex::new(None),
        })
    }

    /// Whether this node holds a replica store (it is a candidate of a replicated cluster).
    pub fn has_store(&self) -> bool {
        raft_path(&self.dir).exists()
    }

    /// Opens this node's replica (creating an empty store) and starts following the group;
    /// the master's parts start whenever it leads.
    pub async fn open(self: &Arc<Self>) -> Result<Arc<Replica>> {
        let _opening = self.opening.lock().await;
        if let Some(r) = self.replica() {
            return Ok(r);
        }
        let me = self.clone();
        let replica = async move {
            let id = match load_id(&me.dir) {
                Some(id) => id,
                None => {
                    let uuid = maguey_node::read_ssconf(&me.dir)
                        .and_then(|ss| ss.node_uuids.get(&me.node_name).cloned())
                        .context("this node's uuid is not known yet (no ssconf)")?;
                    let id = raft_id(&uuid);
                    save_id(&me.dir, id)?;
                    id
                }
            };
            // Raft requests present the node certificate as renewed (renew-crypto).
            let client = maguey_rpc::reload::rpc_client(&me.dir, Duration::from_secs(10))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let replica = Replica::open(
                id,
                &raft_path(&me.dir),
                Arc::new(RaftHttps::new(client)),
                me.options,
            )
            .await?;
            tracing::info!("replica {id} of the config opened");
            tokio::spawn(me.clone().follow(replica.clone()));
            crate::replicated_rapi::start(&me).await;
            anyhow::Ok(replica)
        }
        .await?;
        if let Ok(mut slot) = self.replica.write() {
            *slot = Some(replica.clone());
        }
        Ok(replica)
    }

    /// This node's replica, once opened.
    pub(crate) fn replica(&self) -> Option<Arc<Replica>> {
        self.replica.read().ok().and_then(|r| r.clone())
    }

    /// Stops the master's parts and the replica (the daemon stops).
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let active = self.active.write().map(|mut a| a.take()).ok().flatten();
        if let Some(a) = active {
            stop(a).await;
        }
        let rapi = self.rapi_server.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = rapi {
            r.stop().await;
        }
        if let Some(r) = self.replica() {
            r.shutdown().await;
        }
    }

    /// Watches the replica's role: starts the master when it leads, stops it when not.
    async fn follow(self: Arc<Self>, replica: Arc<Replica>) {
        let mut failures = 0u32;
        let mut ssconf_serial = 0u64;
        loop {
            // At once when it wins an election (or loses the leadership), else every 100 ms.
            replica.changed(Duration::from_millis(100)).await;
            let status = replica.status();
            if status.role == Role::Shutdown
                || self.stopping.load(std::sync::atomic::Ordering::SeqCst)
            {
                break;
            }
            if status.role != Role::Leader {
                self.refresh_ssconf(&replica, &mut ssconf_serial);
            }
            let current = self.active.read().ok().and_then(|a| a.clone());
            let leads = status.role == Role::Leader;
            match current {
                Some(a) if leads && a.term == status.term => {}
                Some(_) => {
                    let old = self.active.write().ok().and_then(|mut a| a.take());
                    if let Some(a) = old {
                        tracing::warn!(
                            "no longer the Raft leader (term {}): stopping the master",
                            status.term
                        );
                        stop(a).await;
                    }
                }
                None if leads
                    && self.stepped_down.load(std::sync::atomic::Ordering::SeqCst)
                        == status.term => {}
                None if leads && self.is_witness(&replica) => self.hand_over(&replica).await,
                None if leads => match self.become_master(&replica, status.term).await {
                    Ok(a) => {
                        failures = 0;
                        if let Ok(mut slot) = self.active.write() {
                            *slot = Some(Arc::new(a));
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(50) {
                            tracing::warn!("Raft leader, but cannot start the master: {e:#}");
                        }
                    }
                },
                None => {}
            }
        }
    }

    /// `cluster master-failover [--to NODE]`: stops the master here, steps down, and waits
    /// for another voter (`to`, asked to campaign) to lead; the new master's name.
    pub(crate) async fn master_failover(
        &self,
        replica: Arc<Replica>,
        to: Option<String>,
    ) -> Result<String> {
        let status = replica.status();
        let target = match &to {
            Some(name) => {
                let (id, m) = status
                    .voters
                    .iter()
                    .find(|(_, m)| &m.name == name)
                    .with_context(|| format!("{name} is not a voter (master candidate)"))?;
                anyhow::ensure!(*id != status.id, "{name} is the master already");
                Some(m.clone())
            }
            None => None,
        };
        anyhow::ensure!(status.voters.len() > 1, "this master is the only voter");
        let term = status.term;
        self.stepped_down
            .store(term, std::sync::atomic::Ordering::SeqCst);
        // No more writes from here: they would keep the followers from campaigning.
        let old = self.active.write().ok().and_then(|mut a| a.take());
        if let Some(a) = old {
            stop(a).await;
        }
        replica.step_down()?;
        tracing::info!("master failover: stepping down in term {term}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = maguey_rpc::reload::rpc_client(&self.dir, Duration::from_secs(2))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let moved = loop {
            let st = replica.status();
            if st.term > term {
                if let Some(m) = st
                    .leader
                    .filter(|l| *l != st.id)
                    .and_then(|l| st.voters.get(&l))
                {
                    break Some(m.name.clone());
                }
            }
            if tokio::time::Instant::now() > deadline {
                break None;
            }
            if let Some(m) = &target {
                let url = format!("https://{}/raft/campaign", m.addr);
                let _ = client.http().post(&url).json(&()).send().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        replica.resume();
        match moved {
            Some(name) => {
                tracing::info!("master failover: {name} is the master");
                Ok(name)
            }
            None => {
                // Nobody took over: this node leads on (it starts the master again).
                self.stepped_down
                    .store(0, std::sync::atomic::Ordering::SeqCst);
                anyhow::bail!("no other candidate took over in time; this node stays master")
            }
        }
    }

    /// A follower's ssconf follows its replica of the config (the master it names too), so
    /// that `cluster getmaster` on any candidate names the leader.
    fn refresh_ssconf(&self, replica: &Replica, written: &mut u64) {
        let cfg = replica.config();
        if cfg.serial_no <= *written || !cfg.cluster.replicated {
            return;
        }
        *written = cfg.serial_no;
        let stored = maguey_node::read_ssconf(&self.dir);
        if stored.is_some_and(|s| s.config_serial >= cfg.serial_no) {
            return;
        }
        let ssconf = maguey_model::Ssconf::from_config(&cfg);
        let written = serde_json::to_vec_pretty(&ssconf)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                maguey_node::write_atomic(&self.dir.join(maguey_node::SSCONF_FILE), &b)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!("writing the ssconf from the replicated config: {e}");
        }
    }

    async fn become_master(&self, replica: &Arc<Replica>, term: u64) -> Result<Active> {
        let started = std::time::Instant::now();
        // Everything committed before this term is applied here first.
        replica.read_config().await?;
        let read = started.elapsed();
        let cfg = replica.config();
        let me = cfg
            .node_by_name(&self.node_name)
            .with_context(|| format!("node {} is not in the config", self.node_name))?
            .clone();
        // The certificate on disk now (renewals replace it under a running daemon).
        let fingerprint = NodeIdentity::load(&self.dir)
            .map(|id| id.fingerprint())
            .unwrap_or_else(|_| self.identity.fingerprint());
        if me.certificate_fingerprint != fingerprint {
            let mut node = me.clone();
            node.certificate_fingerprint = fingerprint;
            replica.apply(Command::UpdateNode { node }).await?;
        }
        let mut cluster = cfg.cluster.clone();
        let uuid = cluster.uuid.clone();
        let master_term = if cluster.master_node == me.uuid
            && cluster.replicated
            && cluster.master_term >= term
        {
            // Recorded in this term already (a retry after a failed start).
            cluster.master_term
        } else {
            // Above every earlier master's: nodes that hear it refuse the older masters.
            let master_term = (cluster.master_term + 1).max(term);
            cluster.master_node = me.uuid.clone();
            cluster.master_term = master_term;
            cluster.replicated = true;
            replica.apply(Command::UpdateCluster { cluster }).await?;
            master_term
        };
        tracing::info!("Raft leader in term {term}: master (master term {master_term})");
        self.cut_off_voters(replica).await?;

        let rpc = maguey_rpc::reload::rpc_client(&self.dir, Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_fence(maguey_rpc::Fence::new(&uuid, master_term));
        let master = Arc::new(Master {
            config: Arc::new(ReplicatedConfig(replica.clone())),
            rpc,
            node_name: self.node_name.clone(),
            destroy: self.destroy.clone(),
        });
        let termed = started.elapsed();
        let queue = open_queue(
            replica.clone(),
            files::jobs_path(&self.dir),
            self.args.max_running_jobs,
        )
        .await?;
        let opened = started.elapsed();
        let ca = ClusterCa::load(&self.dir).context("loading the cluster CA")?;
        if NodeIdentity::load_admin(&self.dir).is_err() {
            ca.issue_admin()
                .and_then(|admin| admin.save_admin(&self.dir))
                .map_err(|e| anyhow::anyhow!("creating the admin certificate: {e}"))?;
        }
        let watcher = Arc::new(maguey_ops::watcher::Watcher::new(
            master.clone(),
            queue.clone(),
            Arc::new(maguey_ops::watcher::SystemClock),
            maguey_ops::watcher::WatcherOptions {
                job_age: Duration::from_secs(self.args.watcher_job_age),
                state_file: Some(self.dir.join("watcher.json")),
                ..Default::default()
            },
        ));
        let state = MasterState {
            master: master.clone(),
            queue: queue.clone(),
            ca: Arc::new(ca),
            listen: self.listen,
            watcher,
            admin: Arc::new(maguey_rpc::rotate::CurrentAdmin::new(&self.dir)),
            state_dir: self.dir.clone(),
            users_file: self
                .args
                .rapi_users
                .clone()
                .unwrap_or_else(|| maguey_rapi::default_users_file(&self.dir)),
        };
        let users = master.config.snapshot().rapi_users.clone();
        if !users.is_empty() {
            if let Err(e) = rapi_users::sync_users_file(&state.users_file, &users, &[]) {
                tracing::warn!("writing the RAPI users file: {e}");
            }
        }
        let router = api::master_router(state.clone());
        queue.start(Arc::new(Executor {
            master: master.clone(),
        }));
        let mut tasks = Vec::new();
        if self.args.watcher_interval > 0 {
            let watcher = state.watcher.clone();
            let every = Duration::from_secs(self.args.watcher_interval);
            tasks.push(
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        for line in watcher.run_once().await.lines() {
                            tracing::info!("watcher: {line}");
                        }
                    }
                })
                .abort_handle(),
            );
        }
        {
            let master = master.clone();
            tasks.push(
                tokio::spawn(async move {
                    for (name, e) in master.distribute_ssconf().await {
                        tracing::warn!("ssconf to node {name}: {e}");
                    }
                    // The floating master IP follows the leader (docs/master-ip.md).
                    match maguey_ops::master_ip::activate_configured(&master).await {
                        Ok(Some(m)) => tracing::info!("master IP {} up on {}", m.cidr(), m.netdev),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("master IP: {e}"),
                    }
                })
                .abort_handle(),
            );
        }
        tasks.push(
            tokio::spawn(voters::voters(
                replica.clone(),
                master.clone(),
                self.dir.clone(),
            ))
            .abort_handle(),
        );
        // Short-lived node certificates renewed by whichever candidate leads (docs/security.md).
        tasks.push(
            tokio::spawn(maguey_ops::cert_renewal::run(master.clone(), queue.clone()))
                .abort_handle(),
        );
        let rapi = match crate::rapi_router(&self.args, &self.dir, &master, &queue, &state) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("the Remote API does not run on this master: {e:#}");
                None
            }
        };
        tracing::info!(
            "master started in {} ms (read index {} ms, master term {} ms, job queue {} ms)",
            started.elapsed().as_millis(),
            read.as_millis(),
            (termed - read).as_millis(),
            (opened - termed).as_millis()
        );
        Ok(Active {
            term,
            state,
            router,
            tasks,
            rapi,
        })
    }
}

/// Opens the job queue from the replicated job records: the jobs that were running on the
/// previous master end as error, queued ones run; every durable change is replicated first.
async fn open_queue(
    replica: Arc<Replica>,
    path: PathBuf,
    max_running: usize,
) -> Result<Arc<JobQueue>> {
    let records = replica
        .job_records()?
        .into_iter()
        .map(|(id, record, archived)| JobWrite {
            id,
            json: record.to_string(),
            archived,
        })
        .collect();
    let replication = Arc::new(RaftJobs {
        replica,
        handle: tokio::runtime::Handle::current(),
    });
    tokio::task::spawn_blocking(move || {
        JobQueue::open_replicated(&path, max_running, records, replication)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("opening the job queue: {e}"))
}

/// The job queue's durable changes, through the Raft log (`Request::JobPut`/`JobArchive`).
struct RaftJobs {
    replica: Arc<Replica>,
    handle: tokio::runtime::Handle,
}

impl JobReplication for RaftJobs {
    fn replicate(&self, batch: Vec<JobWrite>) -> Result<(), String> {
        let replica = self.replica.clone();
        // The whole batch in one entry (shared with whatever other writes wait: batch.rs).
        let jobs = batch
            .into_iter()
            .map(|w| {
                serde_json::from_str(&w.json)
                    .map(|record| (w.id, record, w.archived))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        self.handle
            .block_on(async move { replica.put_jobs(jobs).await.map_err(|e| e.to_string()) })
    }
}

async fn stop(active: Arc<Active>) {
    active.state.queue.halt();
    for t in &active.tasks {
        t.abort();
    }
    // No longer the leader: the floating master IP leaves this node (taken down here, not
    // through an RPC, which a node that saw a higher term would refuse).
    if let Some(m) = active
        .state
        .master
        .config
        .snapshot()
        .cluster
        .master_ip
        .clone()
    {
        let down = tokio::task::spawn_blocking(move || {
            maguey_node::master_ip::deactivate(maguey_node::exec::system().as_ref(), &m)
        })
        .await;
        if let Ok(Err(e)) = down {
            tracing::warn!("master IP: {e}");
        }
    }
}

pub use crate::replicated_http::router;

mod two_nodes;
mod voters;
