//! What the replication tests share: config objects, a cluster of replicas in one process,
//! polling with deadlines.
#![allow(dead_code)]

use maguey_config::Command;
use maguey_model::{Cluster, Node, NodeGroup};
use maguey_replication::local::LocalRouter;
use maguey_replication::{Member, NodeId, Replica, ReplicaOptions, Role};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const GROUP_UUID: &str = "g0000000-0000-0000-0000-000000000000";
pub const MASTER_UUID: &str = "n0000000-0000-0000-0000-000000000001";

pub fn init() -> Command {
    Command::InitCluster {
        cluster: Cluster {
            uuid: "c0000000-0000-0000-0000-000000000000".into(),
            cluster_name: "cluster.example.com".into(),
            master_node: MASTER_UUID.into(),
            rpc_port: 1811,
            mac_prefix: "aa:00:00".into(),
            file_storage_dir: "file-storage".into(),
            enabled_hypervisors: vec![maguey_model::Hypervisor::Fake],
            enabled_disk_templates: vec![maguey_model::DiskTemplate::Diskless],
            candidate_pool_size: 10,
            ..Default::default()
        },
        group: group(0),
        master: Node {
            uuid: MASTER_UUID.into(),
            name: "node1.example.com".into(),
            primary_ip: "192.0.2.1".into(),
            secondary_ip: "192.0.2.1".into(),
            group: GROUP_UUID.into(),
            master_candidate: true,
            master_capable: true,
            vm_capable: true,
            ..Default::default()
        },
    }
}

/// Group `n` (0: the default group), with a unique uuid and name.
pub fn group(n: u32) -> NodeGroup {
    NodeGroup {
        uuid: format!("g0000000-0000-0000-0000-{n:012}"),
        name: if n == 0 {
            "default".into()
        } else {
            format!("group{n}")
        },
        alloc_policy: maguey_model::AllocPolicy::Preferred,
        ..Default::default()
    }
}

pub fn add_group(n: u32) -> Command {
    Command::AddGroup { group: group(n) }
}

/// The names of the groups in a replica's config.
pub fn groups(r: &Replica) -> Vec<String> {
    let mut names: Vec<String> = r
        .config()
        .nodegroups
        .values()
        .map(|g| g.name.clone())
        .collect();
    names.sort();
    names
}

pub fn options() -> ReplicaOptions {
    ReplicaOptions {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        write_timeout: Duration::from_secs(2),
        snapshot_every: 1000,
    }
}

pub fn member(id: NodeId) -> Member {
    Member {
        name: format!("node{id}"),
        addr: format!("192.0.2.{id}:1811"),
    }
}

/// Polls `check` every 20 ms until it gives `Some`, for at most 15 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replicas of one group in one process, linked by a [`LocalRouter`].
pub struct Replicas {
    pub dir: tempfile::TempDir,
    pub router: LocalRouter,
    pub replicas: BTreeMap<NodeId, Arc<Replica>>,
    pub options: ReplicaOptions,
}

impl Replicas {
    /// `n` fresh replicas (ids 1..=n), all voters of a new group.
    pub async fn start(n: NodeId) -> Replicas {
        Self::start_with(n, options()).await
    }

    /// [`Replicas::start`] with other options.
    pub async fn start_with(n: NodeId, options: ReplicaOptions) -> Replicas {
        let mut c = Replicas {
            dir: tempfile::tempdir().unwrap(),
            router: LocalRouter::new(),
            replicas: BTreeMap::new(),
            options,
        };
        for id in 1..=n {
            c.open(id).await;
        }
        let members = (1..=n).map(|id| (id, member(id))).collect();
        c.replicas[&1].initialize(members).await.unwrap();
        c
    }

    /// Opens (or reopens) replica `id` on its store and links it.
    pub async fn open(&mut self, id: NodeId) -> Arc<Replica> {
        let path = self.dir.path().join(format!("raft{id}.redb"));
        let r = Replica::open(id, &path, self.router.transport(id), self.options)
            .await
            .unwrap();
        self.router.add(r.clone());
        self.replicas.insert(id, r.clone());
        r
    }

    /// Reopens replica `id` once its previous incarnation has released its store.
    pub async fn reopen(&mut self, id: NodeId) -> Arc<Replica> {
        let path = self.dir.path().join(format!("raft{id}.redb"));
        let (router, options) = (self.router.clone(), self.options);
        let r = eventually("the store to reopen", || {
            let (path, router) = (path.clone(), router.clone());
            async move {
                Replica::open(id, &path, router.transport(id), options)
                    .await
                    .ok()
            }
        })
        .await;
        self.router.add(r.clone());
        self.replicas.insert(id, r.clone());
        r
    }

    /// Stops replica `id` as if it died: unreachable, its node shut down.
    pub async fn kill(&mut self, id: NodeId) {
        self.router.remove(id);
        if let Some(r) = self.replicas.remove(&id) {
            r.shutdown().await;
        }
    }

    /// The leader all of `ids` agree on, once there is one.
    pub async fn leader_of(&self, ids: &[NodeId]) -> NodeId {
        eventually("a leader", || async {
            let leader = self.replicas[&ids[0]].status().leader?;
            let agreed = ids
                .iter()
                .all(|id| self.replicas[id].status().leader == Some(leader));
            let leads =
                ids.contains(&leader) && self.replicas[&leader].status().role == Role::Leader;
            (agreed && leads).then_some(leader)
        })
        .await
    }

    /// The leader of every live replica.
    pub async fn leader(&self) -> NodeId {
        let ids: Vec<NodeId> = self.replicas.keys().copied().collect();
        self.leader_of(&ids).await
    }

    pub fn get(&self, id: NodeId) -> &Arc<Replica> {
        &self.replicas[&id]
    }

    /// Waits until every one of `ids` exports the same config as `like`.
    pub async fn converge(&self, ids: &[NodeId], like: NodeId) {
        eventually("the replicas to converge", || async {
            let want = self.replicas[&like].export_json().unwrap();
            ids.iter()
                .all(|id| self.replicas[id].export_json().unwrap() == want)
                .then_some(())
        })
        .await
    }
}
