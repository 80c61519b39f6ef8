//! Networks: add, modify, rename, connect, disconnect, remove; NICs with `network=` and
//! `ip=pool`; reservations per job; allocation aware of networks.

use crate::refused;
use maguey_test_infra::inprocess::{InProcessCluster, TEST_OS};
use serde_json::{json, Value};

fn nic_op(name: &str, pnode: Option<&str>, nic: Value, maxmem: u64) -> Value {
    let mut op = json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name,
        "disk_template": "diskless", "os_type": TEST_OS, "nics": [nic],
        "beparams": {"maxmem": maxmem, "minmem": 128, "vcpus": 1}});
    match pnode {
        Some(p) => op["pnode"] = json!(p),
        None => op["iallocator"] = json!("hail"),
    }
    op
}

fn ip_of(c: &InProcessCluster, inst: &str) -> Option<String> {
    c.config()
        .instance_by_name(inst)
        .and_then(|i| i.nics.first().and_then(|n| n.ip.clone()))
}

async fn net_setup(c: &InProcessCluster) {
    c.run(json!({"OP_ID": "OP_NETWORK_ADD", "network_name": "net1",
                 "network": "10.0.9.0/29", "gateway": "10.0.9.1",
                 "add_reserved_ips": ["10.0.9.2"], "mac_prefix": "AA:00:09",
                 "network6": "2001:db8::/64", "tags": ["lan"]}))
        .await
        .ok();
    c.run(
        json!({"OP_ID": "OP_NETWORK_CONNECT", "network_name": "net1",
                 "group_name": "default", "network_mode": "bridged", "network_link": "br9"}),
    )
    .await
    .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_addresses_are_given_released_and_exhausted() {
    let c = InProcessCluster::new(2).await;
    net_setup(&c).await;
    let cfg = c.config();
    let net = cfg.network_by_name("net1").expect("the network");
    assert_eq!(net.mac_prefix.as_deref(), Some("aa:00:09"));
    refused(
        &c,
        json!({"OP_ID": "OP_NETWORK_ADD", "network_name": "bad", "network": "10.0.9.1/24"}),
        "host bits",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_NETWORK_ADD", "network_name": "bad", "network": "10.1.0.0/24",
               "gateway": "10.2.0.1"}),
        "not in 10.1.0.0/24",
    )
    .await;

    let pool = json!({"network": "net1", "ip": "pool"});
    c.run(nic_op("i1", Some("node2"), pool.clone(), 128))
        .await
        .ok();
    // Network, gateway (.1) and the reservation (.2) are skipped.
    assert_eq!(ip_of(&c, "i1").as_deref(), Some("10.0.9.3"));
    // Its generated MAC has the network's prefix.
    let mac = c
        .config()
        .instance_by_name("i1")
        .map(|i| i.nics[0].mac.clone());
    assert!(
        mac.as_deref().is_some_and(|m| m.starts_with("aa:00:09:")),
        "{mac:?}"
    );
    // The NIC takes the group's mode and link; the OS scripts and the node get the network.
    let cfg = c.config();
    let rt = maguey_ops::instance_runtime(&cfg, cfg.instance_by_name("i1").expect("i1"));
    assert_eq!(rt.nics[0].link, "br9");
    let n = rt.nics[0].network.as_ref().expect("the NIC's network");
    assert_eq!(
        (n.name.as_str(), n.subnet.as_str()),
        ("net1", "10.0.9.0/29")
    );
    assert_eq!(n.gateway.as_deref(), Some("10.0.9.1"));

    // A job that fails after taking an address gives it back.
    let failed = c
        .run(nic_op("big", Some("node2"), pool.clone(), 100_000))
        .await;
    assert!(failed.result.is_err());
    assert!(c.config().instance_by_name("big").is_none());
    c.run(nic_op("i2", Some("node2"), pool.clone(), 128))
        .await
        .ok();
    assert_eq!(ip_of(&c, "i2").as_deref(), Some("10.0.9.4"));

    // A given address: checked against the pool.
    refused(
        &c,
        nic_op(
            "x1",
            Some("node2"),
            json!({"network": "net1", "ip": "10.0.9.4"}),
            128,
        ),
        "already in use",
    )
    .await;
    refused(
        &c,
        nic_op(
            "x1",
            Some("node2"),
            json!({"network": "net1", "ip": "10.0.9.1"}),
            128,
        ),
        "reserved",
    )
    .await;
    c.run(nic_op(
        "i3",
        Some("node2"),
        json!({"network": "net1", "ip": "10.0.9.6"}),
        128,
    ))
    .await
    .ok();
    c.run(nic_op("i4", Some("node2"), pool.clone(), 128))
        .await
        .ok();
    assert_eq!(ip_of(&c, "i4").as_deref(), Some("10.0.9.5"));
    refused(
        &c,
        nic_op("i5", Some("node2"), pool.clone(), 128),
        "pool exhausted",
    )
    .await;

    // Removing an instance frees its address.
    c.run(json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "i2"}))
        .await
        .ok();
    c.run(nic_op("i5", Some("node2"), pool.clone(), 128))
        .await
        .ok();
    assert_eq!(ip_of(&c, "i5").as_deref(), Some("10.0.9.4"));

    // A reservation on an address in use is refused; a free one taken out of the pool.
    refused(
        &c,
        json!({"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "net1",
               "add_reserved_ips": ["10.0.9.3"]}),
        "used by instance i1",
    )
    .await;
    c.run(
        json!({"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "net1",
                 "remove_reserved_ips": ["10.0.9.2"]}),
    )
    .await
    .ok();
    c.run(nic_op("i6", Some("node2"), pool.clone(), 128))
        .await
        .ok();
    assert_eq!(ip_of(&c, "i6").as_deref(), Some("10.0.9.2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_in_use_is_neither_disconnected_nor_removed() {
    let c = InProcessCluster::new(2).await;
    net_setup(&c).await;
    c.run(nic_op(
        "i1",
        Some("node2"),
        json!({"network": "net1", "ip": "pool"}),
        128,
    ))
    .await
    .ok();
    refused(
        &c,
        json!({"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "net1", "group_name": "default"}),
        "in use by instance(s) i1",
    )
    .await;
    refused(
        &c,
        json!({"OP_ID": "OP_NETWORK_REMOVE", "network_name": "net1"}),
        "in use by instance(s) i1",
    )
    .await;
    c.run(json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "i1"}))
        .await
        .ok();
    refused(
        &c,
        json!({"OP_ID": "OP_NETWORK_REMOVE", "network_name": "net1"}),
        "still connected to group(s) default",
    )
    .await;
    c.run(
        json!({"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "net1", "group_name": "default"}),
    )
    .await
    .ok();
    assert!(c
        .config()
        .group_by_name("default")
        .is_some_and(|g| g.networks.is_empty()));
    c.run(json!({"OP_ID": "OP_NETWORK_RENAME", "network_name": "net1", "new_name": "lan1"}))
        .await
        .ok();
    c.run(json!({"OP_ID": "OP_TAGS_SET", "kind": "network", "name": "lan1", "tags": ["t1"]}))
        .await
        .ok();
    assert!(c
        .config()
        .network_by_name("lan1")
        .is_some_and(|n| n.tags.contains(&"t1".to_string())));
    c.run(json!({"OP_ID": "OP_NETWORK_REMOVE", "network_name": "lan1"}))
        .await
        .ok();
    assert!(c.config().networks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_go_to_groups_connected_to_their_network_and_follow_its_link() {
    let c = InProcessCluster::new(3).await;
    net_setup(&c).await;
    c.run(json!({"OP_ID": "OP_NETWORK_ADD", "network_name": "net2", "network": "10.0.10.0/24"}))
        .await
        .ok();
    c.run(json!({"OP_ID": "OP_GROUP_ADD", "group_name": "g2"}))
        .await
        .ok();
    c.run(json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g2", "nodes": ["node3"]}))
        .await
        .ok();
    c.run(
        json!({"OP_ID": "OP_NETWORK_CONNECT", "network_name": "net2", "group_name": "g2",
                 "network_mode": "routed", "network_link": "rt10"}),
    )
    .await
    .ok();
    let nic2 = json!({"network": "net2", "ip": "pool"});
    refused(
        &c,
        nic_op("n1", Some("node2"), nic2.clone(), 128),
        "not connected to the group of node node2",
    )
    .await;
    // The allocator places it in the only group connected to net2.
    c.run(nic_op("n1", None, nic2.clone(), 128)).await.ok();
    assert_eq!(c.primary_of("n1"), "node3");
    assert_eq!(ip_of(&c, "n1").as_deref(), Some("10.0.10.1"));
    let cfg = c.config();
    let rt = maguey_ops::instance_runtime(&cfg, cfg.instance_by_name("n1").expect("n1"));
    assert_eq!(rt.nics[0].link, "rt10");
    assert_eq!(rt.nics[0].mode.as_str(), "routed");

    // The instance's group changes: its NIC takes the new group's link.
    c.run(
        json!({"OP_ID": "OP_NETWORK_CONNECT", "network_name": "net2",
                 "group_name": "default", "network_mode": "bridged", "network_link": "br10"}),
    )
    .await
    .ok();
    c.run(json!({"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "default", "nodes": ["node3"]}))
        .await
        .ok();
    let cfg = c.config();
    let rt = maguey_ops::instance_runtime(&cfg, cfg.instance_by_name("n1").expect("n1"));
    assert_eq!(rt.nics[0].link, "br10");
    assert_eq!(rt.nics[0].mode.as_str(), "bridged");
}
