//! Builders shared by the integration tests.
#![allow(dead_code)]

use maguey_config::Command;
use maguey_model::{
    AdminState, Cluster, ConfigData, Disk, Instance, JoinToken, LogicalId, Nic, Node, NodeGroup,
};
use std::path::Path;

/// A timestamp with a fractional part that does not round-trip through naive float printing.
pub fn ts(n: u64) -> f64 {
    1_700_000_000.0 + n as f64 * 0.1 + 1.0 / 3.0
}

pub const CLUSTER_UUID: &str = "c0000000-0000-0000-0000-000000000000";
pub const DEFAULT_GROUP_UUID: &str = "g0000000-0000-0000-0000-000000000000";
pub const MASTER_UUID: &str = "n0000000-0000-0000-0000-000000000001";

pub fn cluster() -> Cluster {
    Cluster {
        uuid: CLUSTER_UUID.into(),
        cluster_name: "cluster.example.com".into(),
        master_node: MASTER_UUID.into(),
        rpc_port: 1811,
        mac_prefix: "aa:00:00".into(),
        file_storage_dir: "file-storage".into(),
        enabled_hypervisors: vec![maguey_model::Hypervisor::Fake],
        enabled_disk_templates: vec![
            maguey_model::DiskTemplate::Diskless,
            maguey_model::DiskTemplate::File,
            maguey_model::DiskTemplate::Drbd,
        ],
        candidate_pool_size: 10,
        ..Default::default()
    }
}

pub fn group(uuid: &str, name: &str) -> NodeGroup {
    NodeGroup {
        uuid: uuid.into(),
        name: name.into(),
        alloc_policy: maguey_model::AllocPolicy::Preferred,
        ..Default::default()
    }
}

pub fn node(uuid: &str, name: &str, ip: &str) -> Node {
    Node {
        uuid: uuid.into(),
        name: name.into(),
        primary_ip: ip.into(),
        secondary_ip: ip.into(),
        group: DEFAULT_GROUP_UUID.into(),
        master_candidate: true,
        master_capable: true,
        vm_capable: true,
        ..Default::default()
    }
}

pub fn init() -> Command {
    Command::InitCluster {
        cluster: cluster(),
        group: group(DEFAULT_GROUP_UUID, "default"),
        master: node(MASTER_UUID, "node1.example.com", "192.0.2.1"),
    }
}

pub fn mac(n: u32) -> String {
    format!(
        "aa:00:00:{:02x}:{:02x}:{:02x}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

pub fn file_disk(uuid: &str, node: &str) -> Disk {
    Disk {
        uuid: uuid.into(),
        name: None,
        dev_type: maguey_model::DevType::File,
        size: 1024,
        mode: maguey_model::DiskMode::ReadWrite,
        logical_id: LogicalId::File {
            driver: "loop".into(),
            path: format!("/srv/{uuid}.img"),
        },
        children: vec![],
        nodes: vec![node.into()],
        iv_name: "disk/0".into(),
        serial_no: 0,
        ctime: 0.0,
        mtime: 0.0,
    }
}

/// An instance `inst<n>` with one file disk and one NIC on `primary`.
pub fn instance(n: u32, primary: &str) -> Instance {
    Instance {
        uuid: format!("i{n:07}-0000-0000-0000-000000000000"),
        name: format!("inst{n}.example.com"),
        primary_node: primary.into(),
        os: "debootstrap+default".into(),
        hypervisor: maguey_model::Hypervisor::Fake,
        admin_state: AdminState::Up,
        disk_template: maguey_model::DiskTemplate::File,
        disks: vec![file_disk(
            &format!("d{n:07}-0000-0000-0000-000000000000"),
            primary,
        )],
        nics: vec![Nic {
            uuid: format!("m{n:07}-0000-0000-0000-000000000000"),
            name: None,
            mac: mac(n),
            ip: None,
            nicparams: Default::default(),
            network: None,
        }],
        ..Default::default()
    }
}

pub fn add_instance(n: u32, primary: &str) -> Command {
    Command::AddInstance {
        instance: instance(n, primary),
    }
}

pub fn token(name: &str, ip: &str) -> JoinToken {
    JoinToken {
        node_name: name.into(),
        primary_ip: ip.into(),
        secondary_ip: ip.into(),
        group: DEFAULT_GROUP_UUID.into(),
        secret_sha256: "00".repeat(32),
        expires: ts(1_000_000),
        room: String::new(),
        witness: false,
        readd: false,
    }
}

/// Applies commands one after the other with ts(1), ts(2), ...; panics on refusal.
pub fn build(commands: &[Command]) -> ConfigData {
    let mut state = ConfigData::default();
    for (i, c) in commands.iter().enumerate() {
        maguey_config::apply(&mut state, ts(i as u64 + 1), c)
            .unwrap_or_else(|e| panic!("command {i} ({}) refused: {e}", c.name()));
    }
    state
}

/// A fresh replay of the file: its snapshot record, then every later log entry through
/// `maguey_config::apply`, read with redb directly (independent of `ConfigStore::open`).
pub fn replay_file(path: &Path) -> (ConfigData, u64) {
    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
    let log: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
    let snap: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
    let db = Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let (mut state, mut index) = match txn.open_table(snap).unwrap().get("state").unwrap() {
        Some(v) => {
            let rec: serde_json::Value = serde_json::from_slice(v.value()).unwrap();
            (
                serde_json::from_value::<ConfigData>(rec["config"].clone()).unwrap(),
                rec["last_index"].as_u64().unwrap(),
            )
        }
        None => (ConfigData::default(), 0),
    };
    for item in txn.open_table(log).unwrap().range(index + 1..).unwrap() {
        let (k, v) = item.unwrap();
        let e: maguey_config::Entry = serde_json::from_slice(v.value()).unwrap();
        assert_eq!((k.value(), e.index), (index + 1, index + 1));
        maguey_config::apply(&mut state, e.ts, &e.command).unwrap();
        index = e.index;
    }
    (state, index)
}
