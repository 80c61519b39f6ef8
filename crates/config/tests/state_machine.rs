//! The pure state machine: validation, stamping of serials and times, whole-config checks.

mod common;

use common::*;
use maguey_config::{apply, verify, Command, ConfigError, Entry};
use maguey_model::{AdminState, ConfigData, LogicalId, Nic};

const NODE2: &str = "n0000000-0000-0000-0000-000000000002";
const NODE4: &str = "n0000000-0000-0000-0000-000000000004";
const GROUP2: &str = "g0000000-0000-0000-0000-000000000002";
const GROUP3: &str = "g0000000-0000-0000-0000-000000000003";

/// Cluster with the master, node2 (group2, secondary of the DRBD instance inst2), node4
/// (offline), group3 (empty, used by the join token of node3), inst1 (file) and inst2 (drbd).
fn base_commands() -> Vec<Command> {
    let mut node2 = node(NODE2, "node2.example.com", "192.0.2.2");
    node2.group = GROUP2.into();
    let mut node4 = node(NODE4, "node4.example.com", "192.0.2.4");
    node4.offline = true;
    node4.master_candidate = false;
    let mut inst2 = instance(2, MASTER_UUID);
    inst2.disk_template = maguey_model::DiskTemplate::Drbd;
    inst2.disks[0].dev_type = maguey_model::DevType::Drbd;
    inst2.disks[0].nodes = vec![MASTER_UUID.into(), NODE2.into()];
    inst2.disks[0].logical_id = LogicalId::Drbd {
        node_a: MASTER_UUID.into(),
        node_b: NODE2.into(),
        port: 11000,
        minor_a: 0,
        minor_b: 0,
        secret: "s".into(),
    };
    let mut tok = token("node3.example.com", "192.0.2.3");
    tok.group = GROUP3.into();
    vec![
        init(),
        Command::AddGroup {
            group: group(GROUP2, "group2"),
        },
        Command::AddGroup {
            group: group(GROUP3, "group3"),
        },
        Command::AddNode { node: node2 },
        Command::AddNode { node: node4 },
        add_instance(1, MASTER_UUID),
        Command::AddInstance { instance: inst2 },
        Command::AddJoinToken { token: tok },
    ]
}

fn base() -> ConfigData {
    build(&base_commands())
}

#[test]
fn init_stamps_every_object() {
    let s = build(&[init()]);
    assert_eq!(s.serial_no, 1);
    assert_eq!((s.ctime, s.mtime), (ts(1), ts(1)));
    assert_eq!(s.version, maguey_model::CONFIG_VERSION);
    assert_eq!(s.cluster.serial_no, 1);
    assert_eq!((s.cluster.ctime, s.cluster.mtime), (ts(1), ts(1)));
    assert_eq!(s.cluster.master_node, MASTER_UUID);
    let g = &s.nodegroups[DEFAULT_GROUP_UUID];
    assert_eq!((g.serial_no, g.ctime, g.mtime), (1, ts(1), ts(1)));
    let m = s.master_node().unwrap();
    assert_eq!((m.serial_no, m.ctime, m.mtime), (1, ts(1), ts(1)));
    assert!(maguey_config::is_initialised(&s));
    verify(&s).unwrap();
}

#[test]
fn init_fills_an_empty_master_node() {
    let mut c = cluster();
    c.master_node.clear();
    let g = group(DEFAULT_GROUP_UUID, "default");
    let s = build(&[Command::InitCluster {
        cluster: c,
        group: g,
        master: node(MASTER_UUID, "node1.example.com", "192.0.2.1"),
    }]);
    assert_eq!(s.cluster.master_node, MASTER_UUID);
    assert_eq!(
        s.nodegroups[DEFAULT_GROUP_UUID].alloc_policy,
        maguey_model::AllocPolicy::Preferred
    );
}

/// Words outside the vocabulary (templates, hypervisors, policies) cannot even be expressed
/// in a command: its JSON is refused when it is read, naming the allowed values.
#[test]
fn commands_with_unknown_words_are_refused_when_read() {
    let cmds = base_commands();
    let init = serde_json::to_value(&cmds[0]).unwrap();
    let cases: [(&[&str], serde_json::Value, &str); 4] = [
        (
            &["cluster", "enabled_hypervisors"],
            serde_json::json!(["fake", "xen"]),
            "unknown hypervisor 'xen' (known: fake, kvm)",
        ),
        (
            &["cluster", "enabled_disk_templates"],
            serde_json::json!(["tape"]),
            "unknown disk template 'tape' (known: diskless, file, sharedfile, plain, drbd)",
        ),
        (
            &["group", "alloc_policy"],
            serde_json::json!("sometimes"),
            "unknown allocation policy 'sometimes' (known: preferred, last_resort, unallocable)",
        ),
        (
            &["group", "alloc_policy"],
            serde_json::json!(""),
            "unknown allocation policy ''",
        ),
    ];
    for (path, bad, needle) in cases {
        let mut v = init.clone();
        v[path[0]][path[1]] = bad;
        let e = serde_json::from_value::<Command>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{path:?}: {e}");
    }
    let mut inst = serde_json::to_value(maguey_model::Instance {
        disks: vec![],
        ..instance(9, MASTER_UUID)
    })
    .unwrap();
    inst["disk_template"] = "floppy".into();
    let e = serde_json::from_value::<maguey_model::Instance>(inst.clone()).unwrap_err();
    assert!(
        e.to_string().contains("unknown disk template 'floppy'"),
        "{e}"
    );
    inst["disk_template"] = "file".into();
    inst["hypervisor"] = "xen".into();
    let e = serde_json::from_value::<maguey_model::Instance>(inst).unwrap_err();
    assert!(e.to_string().contains("unknown hypervisor 'xen'"), "{e}");
}

#[test]
fn every_command_but_init_needs_an_initialised_cluster() {
    let base = base();
    // Every command of a valid history, and more, is refused on an empty state.
    let mut commands = base_commands();
    commands.remove(0);
    commands.extend([
        Command::UpdateCluster {
            cluster: base.cluster.clone(),
        },
        Command::RemoveInstance {
            uuid: instance(1, MASTER_UUID).uuid,
        },
        Command::RemoveJoinToken {
            node_name: "node3.example.com".into(),
        },
    ]);
    for c in commands {
        let mut s = ConfigData::default();
        let err = apply(&mut s, ts(1), &c).unwrap_err();
        assert!(matches!(err, ConfigError::NotInitialised), "{c:?}: {err}");
        assert_eq!(err.to_string(), "cluster is not initialised");
        assert_eq!(s, ConfigData::default());
    }
    let mut s = base.clone();
    let err = apply(&mut s, ts(99), &init()).unwrap_err();
    assert_eq!(err.to_string(), "cluster is already initialised");
    assert_eq!(s, base);
}

/// Every refused command leaves the whole state, and so serial_no, unchanged.
#[test]
fn refused_commands_change_nothing() {
    let base = base();
    let inst1 = base.instance_by_name("inst1.example.com").unwrap().clone();
    let inst2 = base.instance_by_name("inst2.example.com").unwrap().clone();
    let master = base.master_node().unwrap().clone();
    let new_node = |f: &dyn Fn(&mut maguey_model::Node)| {
        let mut n = node(
            "n0000000-0000-0000-0000-000000000009",
            "node9.example.com",
            "192.0.2.9",
        );
        f(&mut n);
        Command::AddNode { node: n }
    };
    let new_inst = |f: &dyn Fn(&mut maguey_model::Instance)| {
        let mut i = instance(9, MASTER_UUID);
        f(&mut i);
        Command::AddInstance { instance: i }
    };
    let upd_inst = |f: &dyn Fn(&mut maguey_model::Instance)| {
        let mut i = inst1.clone();
        f(&mut i);
        Command::UpdateInstance { instance: i }
    };
    let upd_cluster = |f: &dyn Fn(&mut maguey_model::Cluster)| {
        let mut c = base.cluster.clone();
        f(&mut c);
        Command::UpdateCluster { cluster: c }
    };
    let cases: Vec<(Command, &str)> = vec![
        // groups
        (
            Command::AddGroup {
                group: group("g9", "default"),
            },
            "node group name 'default' is already in use",
        ),
        (
            Command::AddGroup {
                group: group("g9", "bad name"),
            },
            "invalid node group name",
        ),
        (
            Command::AddGroup {
                group: group(MASTER_UUID, "group9"),
            },
            "uuid 'n0000000-0000-0000-0000-000000000001' is already in use (by node node1.example.com)",
        ),
        (
            Command::AddGroup {
                group: group("", "group9"),
            },
            "node group has an empty uuid",
        ),
        (
            Command::UpdateGroup {
                group: group("g9", "group9"),
            },
            "unknown node group uuid 'g9'",
        ),
        (
            Command::UpdateGroup {
                group: group(GROUP2, "default"),
            },
            "node group name 'default' is already in use",
        ),
        (
            Command::RemoveGroup {
                uuid: DEFAULT_GROUP_UUID.into(),
            },
            "cannot remove the 'default' node group",
        ),
        (
            Command::RemoveGroup {
                uuid: GROUP2.into(),
            },
            "node group 'group2' still has nodes: node2.example.com",
        ),
        (
            Command::RemoveGroup {
                uuid: GROUP3.into(),
            },
            "node group 'group3' is used by the join token of node 'node3.example.com'",
        ),
        (
            Command::RemoveGroup { uuid: "g9".into() },
            "unknown node group uuid",
        ),
        // nodes
        (
            new_node(&|n| n.name = "node1.example.com".into()),
            "node name 'node1.example.com' is already in use",
        ),
        (
            new_node(&|n| n.name = "a;rm -rf".into()),
            "invalid node name",
        ),
        (
            new_node(&|n| n.primary_ip = "192.0.2.1".into()),
            "IP address 192.0.2.1 is already used by node node1.example.com",
        ),
        (
            new_node(&|n| n.secondary_ip = "192.0.2.2".into()),
            "IP address 192.0.2.2 is already used by node node2.example.com",
        ),
        (
            new_node(&|n| n.primary_ip = "192.0.2.300".into()),
            "invalid IP address '192.0.2.300'",
        ),
        (
            new_node(&|n| n.group = "nope".into()),
            "unknown node group uuid 'nope'",
        ),
        (
            new_node(&|n| n.offline = true),
            "cannot be both offline and a master candidate",
        ),
        (new_node(&|n| n.uuid.clear()), "node has an empty uuid"),
        (
            new_node(&|n| n.uuid = inst1.uuid.clone()),
            "is already in use (by instance inst1.example.com)",
        ),
        (
            Command::UpdateNode {
                node: node("n9", "node9.example.com", "192.0.2.9"),
            },
            "unknown node uuid 'n9'",
        ),
        (
            Command::UpdateNode {
                node: maguey_model::Node {
                    offline: true,
                    master_candidate: false,
                    ..master.clone()
                },
            },
            "the master node 'node1.example.com' cannot be set offline or drained",
        ),
        (
            Command::UpdateNode {
                node: maguey_model::Node {
                    name: "node2.example.com".into(),
                    ..master.clone()
                },
            },
            "node name 'node2.example.com' is already in use",
        ),
        (
            Command::RemoveNode {
                uuid: MASTER_UUID.into(),
            },
            "cannot remove the master node",
        ),
        (
            Command::RemoveNode {
                uuid: NODE2.into(),
            },
            "node 'node2.example.com' still hosts instances: inst2.example.com",
        ),
        (
            Command::RemoveNode { uuid: "n9".into() },
            "unknown node uuid 'n9'",
        ),
        // instances
        (
            new_inst(&|i| i.name = "inst1.example.com".into()),
            "instance name 'inst1.example.com' is already in use",
        ),
        (
            new_inst(&|i| i.name = "inst 9".into()),
            "invalid instance name",
        ),
        (
            new_inst(&|i| i.nics[0].mac = mac(1)),
            "MAC aa:00:00:00:00:01 is already used by instance inst1.example.com",
        ),
        (
            new_inst(&|i| i.nics[0].mac = "AA:00:00:00:00:99".into()),
            "invalid MAC 'AA:00:00:00:00:99'",
        ),
        (
            new_inst(&|i| i.nics[0].mac = "aa:00:00:00:99".into()),
            "invalid MAC",
        ),
        (
            new_inst(&|i| {
                let mut second: Nic = i.nics[0].clone();
                second.uuid = "m9-second".into();
                i.nics.push(second);
            }),
            "MAC aa:00:00:00:00:09 is already used by instance inst9.example.com",
        ),
        (
            new_inst(&|i| i.primary_node = "n9".into()),
            "unknown node uuid 'n9'",
        ),
        (
            new_inst(&|i| {
                i.primary_node = NODE4.into();
                i.disks[0].nodes = vec![NODE4.into()];
            }),
            "node 'node4.example.com' is offline",
        ),
        (
            new_inst(&|i| i.disks[0].nodes.push("n9".into())),
            "unknown node uuid 'n9'",
        ),
        (
            new_inst(&|i| i.disks[0].uuid = inst1.disks[0].uuid.clone()),
            "(by a disk of instance inst1.example.com)",
        ),
        (
            new_inst(&|i| i.nics[0].uuid = inst2.nics[0].uuid.clone()),
            "(by a NIC of instance inst2.example.com)",
        ),
        (
            new_inst(&|i| i.nics[0].uuid = NODE2.into()),
            "(by node node2.example.com)",
        ),
        (
            new_inst(&|i| i.disks[0].uuid = i.nics[0].uuid.clone()),
            "(by instance inst9.example.com)",
        ),
        (
            new_inst(&|i| i.uuid = inst1.disks[0].uuid.clone()),
            "(by a disk of instance inst1.example.com)",
        ),
        (
            new_inst(&|i| i.uuid = inst2.nics[0].uuid.clone()),
            "(by a NIC of instance inst2.example.com)",
        ),
        (
            new_inst(&|i| i.uuid = inst1.uuid.clone()),
            "(by instance inst1.example.com)",
        ),
        (new_inst(&|i| i.nics[0].uuid.clear()), "NIC has an empty uuid"),
        (
            new_inst(&|i| i.disk_template = maguey_model::DiskTemplate::Diskless),
            "instance 'inst9.example.com' is diskless but has 1 disk(s)",
        ),
        (
            Command::UpdateInstance {
                instance: instance(9, MASTER_UUID),
            },
            "unknown instance uuid",
        ),
        (
            upd_inst(&|i| i.name = "inst2.example.com".into()),
            "instance name 'inst2.example.com' is already in use",
        ),
        (
            upd_inst(&|i| i.nics[0].mac = mac(2)),
            "MAC aa:00:00:00:00:02 is already used by instance inst2.example.com",
        ),
        (
            upd_inst(&|i| i.disks[0].nodes = vec!["n9".into()]),
            "unknown node uuid 'n9'",
        ),
        (
            Command::SetInstanceAdminState {
                uuid: "i9".into(),
                admin_state: AdminState::Down,
            },
            "unknown instance uuid 'i9'",
        ),
        (
            Command::RemoveInstance { uuid: "i9".into() },
            "unknown instance uuid 'i9'",
        ),
        // join tokens
        (
            Command::AddJoinToken {
                token: token("node2.example.com", "192.0.2.99"),
            },
            "node name 'node2.example.com' is already in use",
        ),
        (
            Command::AddJoinToken {
                token: token("node9.example.com", "192.0.2.2"),
            },
            "IP address 192.0.2.2 is already used by node node2.example.com",
        ),
        (
            Command::AddJoinToken {
                token: maguey_model::JoinToken {
                    group: "g9".into(),
                    ..token("node9.example.com", "192.0.2.9")
                },
            },
            "unknown node group uuid 'g9'",
        ),
        (
            Command::RemoveJoinToken {
                node_name: "node9.example.com".into(),
            },
            "no join token for node 'node9.example.com'",
        ),
        // cluster
        (
            upd_cluster(&|c| c.uuid = "other".into()),
            "cluster uuid mismatch",
        ),
        (
            upd_cluster(&|c| c.master_node = "n9".into()),
            "unknown node uuid 'n9'",
        ),
        (
            upd_cluster(&|c| c.master_node = NODE4.into()),
            "node 'node4.example.com' is offline or drained and cannot be the master",
        ),
        (
            upd_cluster(&|c| c.mac_prefix = "aa:00".into()),
            "invalid MAC prefix 'aa:00'",
        ),
        (
            upd_cluster(&|c| c.cluster_name = "-bad".into()),
            "invalid cluster name",
        ),
    ];
    for (command, expected) in cases {
        let mut s = base.clone();
        let err = apply(&mut s, ts(100), &command)
            .expect_err(&format!("{} should be refused", command.name()));
        assert!(err.is_validation(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(expected),
            "{}: got '{msg}', expected '{expected}'",
            command.name()
        );
        assert_eq!(s, base, "{} changed the state", command.name());
        assert_eq!(s.serial_no, base.serial_no);
        assert!(maguey_config::validate(&base, &command).is_err());
    }
}

#[test]
fn updates_keep_ctime_and_bump_serials() {
    let mut s = base();
    let serial = s.serial_no;
    let mut n2 = s.nodes[NODE2].clone();
    n2.drained = true;
    n2.master_candidate = false;
    n2.serial_no = 42; // ignored: the store owns serials and times
    n2.ctime = 0.0;
    apply(&mut s, ts(200), &Command::UpdateNode { node: n2 }).unwrap();
    let n2 = &s.nodes[NODE2];
    assert!(n2.drained);
    assert_eq!((n2.serial_no, n2.ctime, n2.mtime), (2, ts(4), ts(200)));
    assert_eq!((s.serial_no, s.mtime), (serial + 1, ts(200)));

    let mut c = s.cluster.clone();
    c.candidate_pool_size = 3;
    apply(&mut s, ts(201), &Command::UpdateCluster { cluster: c }).unwrap();
    assert_eq!(s.cluster.candidate_pool_size, 3);
    assert_eq!(
        (s.cluster.serial_no, s.cluster.ctime, s.cluster.mtime),
        (2, ts(1), ts(201))
    );

    let mut g = s.nodegroups[GROUP2].clone();
    g.name = "renamed".into();
    apply(&mut s, ts(202), &Command::UpdateGroup { group: g }).unwrap();
    let g = &s.nodegroups[GROUP2];
    assert_eq!(
        (g.name.as_str(), g.serial_no, g.ctime, g.mtime),
        ("renamed", 2, ts(2), ts(202))
    );
    assert_eq!(s.serial_no, serial + 3);
}

#[test]
fn instance_updates_stamp_changed_and_new_disks_only() {
    let mut s = base();
    let uuid = instance(1, MASTER_UUID).uuid;
    let mut i = s.instances[&uuid].clone();
    assert_eq!((i.serial_no, i.ctime, i.mtime), (1, ts(6), ts(6)));
    assert_eq!((i.disks[0].serial_no, i.disks[0].ctime), (1, ts(6)));
    let mut d2 = file_disk("d-new", MASTER_UUID);
    d2.iv_name = "disk/1".into();
    i.disks.push(d2);
    apply(&mut s, ts(300), &Command::UpdateInstance { instance: i }).unwrap();
    let i = s.instances[&uuid].clone();
    assert_eq!((i.serial_no, i.ctime, i.mtime), (2, ts(6), ts(300)));
    assert_eq!(
        (i.disks[0].serial_no, i.disks[0].ctime, i.disks[0].mtime),
        (1, ts(6), ts(6)),
        "unchanged disk keeps its stamps"
    );
    assert_eq!(
        (i.disks[1].serial_no, i.disks[1].ctime, i.disks[1].mtime),
        (1, ts(300), ts(300))
    );
    let mut grown = i.clone();
    grown.disks[0].size *= 2;
    apply(
        &mut s,
        ts(301),
        &Command::UpdateInstance { instance: grown },
    )
    .unwrap();
    let d0 = &s.instances[&uuid].disks[0];
    assert_eq!(
        (d0.size, d0.serial_no, d0.ctime, d0.mtime),
        (2048, 2, ts(6), ts(301))
    );

    apply(
        &mut s,
        ts(302),
        &Command::SetInstanceAdminState {
            uuid: uuid.clone(),
            admin_state: AdminState::Offline,
        },
    )
    .unwrap();
    let i = &s.instances[&uuid];
    assert_eq!(
        (i.admin_state, i.serial_no, i.mtime),
        (AdminState::Offline, 4, ts(302))
    );
    verify(&s).unwrap();
}

#[test]
fn add_node_consumes_its_join_token_and_removals_work() {
    let mut s = base();
    assert!(s.join_tokens.contains_key("node3.example.com"));
    let mut n3 = node("n3", "node3.example.com", "192.0.2.3");
    n3.group = GROUP3.into();
    apply(&mut s, ts(400), &Command::AddNode { node: n3 }).unwrap();
    assert!(s.join_tokens.is_empty());
    assert_eq!(s.nodes["n3"].serial_no, 1);
    assert_eq!(s.nodes["n3"].ctime, ts(400));

    // Tokens can be re-issued (replaced) and removed.
    apply(
        &mut s,
        ts(401),
        &Command::AddJoinToken {
            token: token("node5.example.com", "192.0.2.5"),
        },
    )
    .unwrap();
    let mut again = token("node5.example.com", "192.0.2.5");
    again.expires = ts(2_000_000);
    apply(&mut s, ts(402), &Command::AddJoinToken { token: again }).unwrap();
    assert_eq!(s.join_tokens["node5.example.com"].expires, ts(2_000_000));
    apply(
        &mut s,
        ts(403),
        &Command::RemoveJoinToken {
            node_name: "node5.example.com".into(),
        },
    )
    .unwrap();
    assert!(s.join_tokens.is_empty());

    // Node2 can go once its DRBD instance is gone; then its group can go.
    let inst2 = s
        .instance_by_name("inst2.example.com")
        .unwrap()
        .uuid
        .clone();
    apply(&mut s, ts(404), &Command::RemoveInstance { uuid: inst2 }).unwrap();
    apply(&mut s, ts(405), &Command::RemoveNode { uuid: NODE2.into() }).unwrap();
    apply(
        &mut s,
        ts(406),
        &Command::RemoveGroup {
            uuid: GROUP2.into(),
        },
    )
    .unwrap();
    assert!(!s.nodes.contains_key(NODE2));
    assert!(!s.nodegroups.contains_key(GROUP2));
    // Its MAC and name are free again.
    apply(&mut s, ts(407), &add_instance(2, MASTER_UUID)).unwrap();
    assert_eq!(s.serial_no, 8 + 8);
    assert_eq!(s.mtime, ts(407));
    verify(&s).unwrap();
}

#[test]
fn offline_primary_is_fine_for_updates_but_not_for_adds() {
    let mut s = base();
    let mut i = s.instance_by_name("inst1.example.com").unwrap().clone();
    i.primary_node = NODE4.into();
    i.disks[0].nodes = vec![NODE4.into()];
    apply(&mut s, ts(500), &Command::UpdateInstance { instance: i }).unwrap();
    assert_eq!(s.instances_on_node(NODE4).count(), 1);
}

#[test]
fn same_history_gives_the_same_state() {
    let a = base();
    let b = base();
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn commands_and_entries_round_trip_through_json_exactly() {
    let entry = Entry {
        index: 7,
        ts: ts(7),
        command: add_instance(1, MASTER_UUID),
    };
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["command"]["command"], "add_instance");
    assert_eq!(json["command"]["instance"]["name"], "inst1.example.com");
    let back: Entry = serde_json::from_value(json).unwrap();
    assert_eq!(back, entry);
    assert_eq!(back.ts.to_bits(), entry.ts.to_bits());
    for c in base_commands() {
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c);
        assert!(
            text.contains(&format!("\"command\":\"{}\"", c.name())),
            "{text}"
        );
    }
    // Awkward floats survive bit-exactly (needs serde_json's float_roundtrip).
    for bits in [
        0x41d9_5a1f_3c7e_1d3bu64,
        0x41d9_5a1f_3c7e_1d3c,
        0x3fb9_9999_9999_999a,
    ] {
        let x = f64::from_bits(bits);
        let y: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(y.to_bits(), bits);
    }
}

type Breakage = Box<dyn Fn(&mut ConfigData)>;

#[test]
fn verify_accepts_valid_histories_and_catches_broken_configs() {
    let mut s = ConfigData::default();
    verify(&s).unwrap();
    for (i, c) in base_commands().iter().enumerate() {
        apply(&mut s, ts(i as u64), c).unwrap();
        verify(&s).unwrap();
    }
    let broken: Vec<(Breakage, &str)> = vec![
        (
            Box::new(|s| {
                s.nodes.remove(MASTER_UUID);
            }),
            "unknown node uuid",
        ),
        (
            Box::new(|s| {
                let i = s
                    .instance_by_name("inst2.example.com")
                    .unwrap()
                    .uuid
                    .clone();
                s.instances.get_mut(&i).unwrap().nics[0].mac = mac(1);
            }),
            "MAC aa:00:00:00:00:01 is already used",
        ),
        (
            Box::new(|s| {
                let g = s.nodegroups.remove(GROUP3).unwrap();
                s.nodegroups.insert("other".into(), g);
            }),
            "node group stored under key 'other'",
        ),
        (
            Box::new(|s| {
                let d = s.instance_by_name("inst2.example.com").unwrap().disks[0]
                    .uuid
                    .clone();
                let mut g = s.nodegroups.remove(GROUP3).unwrap();
                g.uuid = d.clone();
                s.nodegroups.insert(d, g);
            }),
            "is already in use",
        ),
        (
            Box::new(|s| {
                s.nodes.get_mut(NODE2).unwrap().primary_ip = "192.0.2.1".into();
            }),
            "IP address 192.0.2.1 is already used",
        ),
        (
            Box::new(|s| s.version = 99),
            "unsupported config version 99",
        ),
        (
            Box::new(|s| s.cluster.uuid.clear()),
            "the config has objects but no cluster uuid",
        ),
    ];
    for (f, expected) in broken {
        let mut b = s.clone();
        f(&mut b);
        let err = verify(&b).expect_err(expected);
        assert!(
            err.to_string().contains(expected),
            "got '{err}', expected '{expected}'"
        );
    }
}

/// DRBD disks: each port of Ganeti's pool and each (node, minor) belongs to one disk of the
/// whole cluster; ports outside 11000-14999, one node at both ends and empty secrets are
/// refused.
#[test]
fn drbd_ports_and_minors_are_unique_across_the_cluster() {
    let state = base();
    let drbd3 = |port: u16, minor_a: u32, minor_b: u32, node_b: &str| {
        let mut i = instance(3, MASTER_UUID);
        i.disk_template = maguey_model::DiskTemplate::Drbd;
        i.disks[0].dev_type = maguey_model::DevType::Drbd;
        i.disks[0].nodes = vec![MASTER_UUID.into(), node_b.into()];
        i.disks[0].logical_id = LogicalId::Drbd {
            node_a: MASTER_UUID.into(),
            node_b: node_b.into(),
            port,
            minor_a,
            minor_b,
            secret: "0123456789abcdef0123".into(),
        };
        Command::AddInstance { instance: i }
    };
    let refused = |cmd: Command, what: &str| {
        let mut s = state.clone();
        match apply(&mut s, ts(50), &cmd) {
            Err(ConfigError::Invalid(msg)) => assert!(msg.contains(what), "{msg}"),
            other => panic!("expected a refusal about {what}, got {other:?}"),
        }
        assert_eq!(s, state, "a refused command changes nothing");
    };
    // inst2 holds port 11000 and minor 0 on the master and on node2.
    refused(drbd3(11000, 1, 1, NODE2), "port 11000 is already used");
    refused(drbd3(11001, 0, 1, NODE2), "minor 0 of node");
    refused(drbd3(11001, 1, 0, NODE2), "minor 0 of node");
    refused(drbd3(10999, 1, 1, NODE2), "outside 11000-14999");
    refused(drbd3(11001, 1, 2, MASTER_UUID), "same node");
    // Free numbers: accepted; minor 0 on node4 is free (minors are per node).
    let mut s = state.clone();
    apply(&mut s, ts(50), &drbd3(11001, 1, 1, NODE2)).expect("free port and minors");
    let mut s = state.clone();
    apply(&mut s, ts(50), &drbd3(14999, 1, 0, NODE4)).expect("minor 0 of another node");
}
