//! Raft between master candidates over the cluster's mTLS HTTPS (`/raft/...`): a store upgraded
//! from the single-master config grows to three voters, the leader dies, the other two go on;
//! certificates of non-candidates and admins are refused.

use maguey_config::{Command, ConfigStore};
use maguey_daemon::auth::{JoinedMaster, NodeAuth};
use maguey_daemon::raft::{raft_router, RaftHttps, RaftState};
use maguey_model::{Cluster, Node, NodeGroup};
use maguey_replication::{upgrade_config_store, Member, Replica, ReplicaOptions, Role};
use maguey_rpc::{fingerprint_pem, ClusterCa, NodeIdentity, RpcClient};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUP: &str = "g0000000-0000-0000-0000-000000000000";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn name(id: u64) -> String {
    format!("node{id}.example.com")
}

fn node(id: u64, identity: &NodeIdentity) -> Node {
    Node {
        uuid: format!("n0000000-0000-0000-0000-{id:012}"),
        name: name(id),
        primary_ip: format!("192.0.2.{id}"),
        secondary_ip: format!("192.0.2.{id}"),
        group: GROUP.into(),
        master_candidate: true,
        master_capable: true,
        vm_capable: true,
        certificate_fingerprint: fingerprint_pem(&identity.cert_pem).unwrap(),
        ..Default::default()
    }
}

fn options() -> ReplicaOptions {
    ReplicaOptions {
        heartbeat: Duration::from_millis(100),
        election_min: Duration::from_millis(500),
        election_max: Duration::from_millis(1000),
        write_timeout: Duration::from_secs(3),
        snapshot_every: 1000,
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Candidate {
    replica: Arc<Replica>,
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts node `id`'s replica behind `/raft` on a fresh local port.
async fn start(id: u64, dir: &Path, identity: &NodeIdentity) -> Candidate {
    let state_dir = dir.join(format!("state{id}"));
    std::fs::create_dir_all(&state_dir).unwrap();
    let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = RpcClient::new(identity, Duration::from_secs(2)).unwrap();
    let replica = Replica::open(
        id,
        &dir.join(format!("raft{id}.redb")),
        Arc::new(RaftHttps::new(client)),
        options(),
    )
    .await
    .unwrap();
    let router = raft_router(RaftState {
        replica: replica.clone(),
        auth: NodeAuth { state_dir },
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = maguey_rpc::server_config(identity).unwrap();
    tokio::spawn(maguey_rpc::serve(listener, tls, router, async {
        let _ = stopped.await;
    }));
    Candidate {
        replica,
        addr,
        stop,
    }
}

fn member(id: u64, c: &Candidate) -> Member {
    Member {
        name: name(id),
        addr: c.addr.clone(),
    }
}

/// Today's single-master store at `path`: three candidates (node4 is no node of the cluster).
fn single_master_store(path: &Path, ids: &[NodeIdentity]) {
    let store = ConfigStore::open(path).unwrap();
    store
        .apply(Command::InitCluster {
            cluster: Cluster {
                uuid: "c0000000-0000-0000-0000-000000000000".into(),
                cluster_name: "cluster.example.com".into(),
                master_node: node(1, &ids[0]).uuid,
                rpc_port: 1811,
                mac_prefix: "aa:00:00".into(),
                file_storage_dir: "file-storage".into(),
                enabled_hypervisors: vec![maguey_model::Hypervisor::Fake],
                enabled_disk_templates: vec![maguey_model::DiskTemplate::Diskless],
                candidate_pool_size: 10,
                ..Default::default()
            },
            group: NodeGroup {
                uuid: GROUP.into(),
                name: "default".into(),
                alloc_policy: maguey_model::AllocPolicy::Preferred,
                ..Default::default()
            },
            master: node(1, &ids[0]),
        })
        .unwrap();
    for id in 2..=3u64 {
        let node = node(id, &ids[id as usize - 1]);
        store.apply(Command::AddNode { node }).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn candidates_replicate_over_mtls_and_survive_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("cluster.example.com").unwrap();
    let ids: Vec<NodeIdentity> = (1..=4)
        .map(|id| ca.issue(&name(id), &[LOCAL]).unwrap())
        .collect();
    let config_path = dir.path().join("config.redb");
    single_master_store(&config_path, &ids);
    let first = Member {
        name: name(1),
        addr: String::new(),
    };
    upgrade_config_store(&config_path, &dir.path().join("raft1.redb"), 1, first).unwrap();

    let c1 = start(1, dir.path(), &ids[0]).await;
    eventually("node1 to lead", || async {
        (c1.replica.status().role == Role::Leader).then_some(())
    })
    .await;
    let mut others = Vec::new();
    for id in 2..=3u64 {
        // Fresh voters joined node1: they hear it before their config names the candidates.
        let state_dir = dir.path().join(format!("state{id}"));
        std::fs::create_dir_all(&state_dir).unwrap();
        let joined = JoinedMaster {
            name: name(1),
            certificate: fingerprint_pem(&ids[0].cert_pem).unwrap(),
        };
        joined.save(&state_dir).unwrap();
        let c = start(id, dir.path(), &ids[id as usize - 1]).await;
        c1.replica.add_voter(id, member(id, &c)).await.unwrap();
        others.push(c);
    }
    let want = c1.replica.export_json().unwrap();
    for c in &others {
        eventually("a new voter to hold the config", || async {
            (c.replica.export_json().unwrap() == want).then_some(())
        })
        .await;
    }

    // Not a candidate, or an admin: refused.
    let admin = ca.issue_admin().unwrap();
    for (who, identity) in [("node4", &ids[3]), ("admin", &admin)] {
        let client = RpcClient::new(identity, Duration::from_secs(2)).unwrap();
        let resp = client
            .http()
            .post(format!("https://{}/raft/vote", others[0].addr))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{who}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("is not a master candidate") || text.contains("admin certificate"),
            "{who}: {text}"
        );
    }

    // The leader dies: the other two elect one of them, which takes writes.
    c1.replica.shutdown().await;
    let _ = c1.stop.send(());
    let leader = eventually("a new leader", || async {
        others
            .iter()
            .find(|c| c.replica.status().role == Role::Leader)
            .map(|c| c.replica.clone())
    })
    .await;
    let mut cluster = leader.config().cluster.clone();
    cluster.tags.push("after-failover".into());
    let serial = leader
        .apply(Command::UpdateCluster { cluster })
        .await
        .unwrap();
    for c in &others {
        eventually("both to apply it", || async {
            (c.replica.config().serial_no == serial).then_some(())
        })
        .await;
        assert_eq!(c.replica.config().cluster.tags, ["after-failover"]);
    }
}
