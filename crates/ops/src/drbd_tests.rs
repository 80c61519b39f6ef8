//! Unit tests of [`super`] (DRBD allocation, layout, conversions).

use super::*;
use maguey_model::Instance;

fn drbd_instance(node_a: &str, node_b: &str, port: u16, ma: u32, mb: u32) -> Instance {
    let mut d = Disk {
        uuid: new_uuid(),
        name: None,
        dev_type: DevType::Drbd,
        size: 64,
        mode: DiskMode::ReadWrite,
        logical_id: LogicalId::File {
            driver: String::new(),
            path: String::new(),
        },
        children: vec![],
        nodes: vec![],
        iv_name: "disk/0".into(),
        serial_no: 1,
        ctime: 0.0,
        mtime: 0.0,
    };
    make_drbd(
        &mut d,
        0,
        "xenvg",
        node_a,
        node_b,
        DrbdAlloc {
            port,
            minor_p: ma,
            minor_s: mb,
        },
        0.0,
    );
    Instance {
        uuid: new_uuid(),
        name: format!("i{port}"),
        primary_node: node_a.into(),
        disk_template: DiskTemplate::Drbd,
        disks: vec![d],
        ..Default::default()
    }
}

#[test]
fn allocation_skips_used_and_reserved_ports_and_minors() {
    let mut cfg = ConfigData::default();
    let i = drbd_instance("nA", "nB", DRBD_PORT_FIRST, 0, 0);
    cfg.instances.insert(i.uuid.clone(), i);
    // Unique node names so parallel tests' reservations never meet.
    let (a, b) = (new_uuid(), new_uuid());
    let mut cfg2 = cfg.clone();
    let j = drbd_instance(&a, &b, DRBD_PORT_FIRST + 1, 0, 1);
    cfg2.instances.insert(j.uuid.clone(), j);
    let (first, res1) = allocate(&cfg2, &a, &b, 2).expect("allocates");
    assert_eq!(first.len(), 2);
    for x in &first {
        assert!(x.port >= DRBD_PORT_FIRST + 2, "{x:?}");
    }
    assert_ne!(first[0].port, first[1].port);
    assert_eq!((first[0].minor_p, first[1].minor_p), (1, 2));
    assert_eq!((first[0].minor_s, first[1].minor_s), (0, 2));
    // A second job while the first holds its reservation gets other numbers.
    let (second, res2) = allocate(&cfg2, &a, &b, 1).expect("allocates");
    assert!(first.iter().all(|f| f.port != second[0].port));
    assert_eq!(second[0].minor_p, 3);
    drop(res1);
    drop(res2);
    // Released: the lowest free numbers again.
    let (third, _res) = allocate(&cfg2, &a, &b, 1).expect("allocates");
    assert_eq!(third[0].minor_p, 1);
    assert_eq!(third[0].minor_s, 0);
}

#[test]
fn drbd_disk_layout_follows_ganeti() {
    let i = drbd_instance("nA", "nB", 11005, 2, 7);
    let d = &i.disks[0];
    let LogicalId::Drbd {
        port,
        minor_a,
        minor_b,
        secret,
        ..
    } = &d.logical_id
    else {
        panic!("not drbd: {:?}", d.logical_id);
    };
    assert_eq!((*port, *minor_a, *minor_b), (11005, 2, 7));
    assert_eq!(secret.len(), DRBD_SECRET_LEN);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(d.nodes, vec!["nA".to_string(), "nB".to_string()]);
    assert_eq!(d.children.len(), 2);
    assert_eq!(
        d.children[0].logical_id,
        LogicalId::Plain {
            vg: "xenvg".into(),
            lv: format!("{}.disk0_data", d.uuid)
        }
    );
    assert_eq!(d.children[1].size, DRBD_META_SIZE_MIB);
    assert_eq!(storage_type(DiskTemplate::Drbd), "lvm-vg");
    assert_eq!(
        storage_needed(DiskTemplate::Drbd, [64u64, 100].into_iter()),
        420
    );
    assert_eq!(
        storage_needed(DiskTemplate::Plain, [64u64, 100].into_iter()),
        164
    );
}

#[test]
fn conversion_keeps_the_plain_lv_as_drbd_data() {
    let old = Disk {
        uuid: new_uuid(),
        name: None,
        dev_type: DevType::Plain,
        size: 64,
        mode: DiskMode::ReadWrite,
        logical_id: plain_logical_id("xenvg", "u1", 0),
        children: vec![],
        nodes: vec!["nA".into()],
        iv_name: "disk/0".into(),
        serial_no: 3,
        ctime: 1.0,
        mtime: 1.0,
    };
    let a = DrbdAlloc {
        port: 11001,
        minor_p: 0,
        minor_s: 4,
    };
    let d = drbd_from_plain(&old, 0, "nA", "nB", a, 2.0).expect("converts");
    assert_eq!(d.uuid, old.uuid);
    assert_eq!(d.dev_type, DevType::Drbd);
    assert_eq!(d.nodes, vec!["nA".to_string(), "nB".to_string()]);
    assert_eq!(d.children[0].logical_id, old.logical_id);
    assert_eq!(
        d.children[1].logical_id,
        LogicalId::Plain {
            vg: "xenvg".into(),
            lv: format!("{}.disk0_meta", old.uuid)
        }
    );
    assert!(matches!(
        d.logical_id,
        LogicalId::Drbd {
            port: 11001,
            minor_b: 4,
            ..
        }
    ));
    // And back: the data LV is the plain disk on the primary.
    let p = plain_from_drbd(&d, "nA", 3.0).expect("converts back");
    assert_eq!(p.logical_id, old.logical_id);
    assert_eq!(p.dev_type, DevType::Plain);
    assert_eq!(p.nodes, vec!["nA".to_string()]);
    assert!(p.children.is_empty());
    // A non-plain disk is refused.
    assert!(drbd_from_plain(&d, 0, "nA", "nB", a, 2.0).is_err());
}

#[test]
fn a_node_that_does_not_know_the_procedure_is_told_from_a_failure() {
    use maguey_rpc::version::unknown_request;
    let p = "drbd_promote_connected";
    let what = format!("procedure '{p}'");
    // As the master's RPC error shows a node's refusal, same and newer protocols.
    for peer in [
        maguey_model::PROTOCOL_VERSION,
        maguey_model::PROTOCOL_VERSION + 1,
    ] {
        let msg = format!("{p} on node n2: {}", unknown_request(&what, peer));
        assert!(unknown_procedure(&msg, p), "{msg}");
    }
    // A failure of the procedure itself, or another unknown procedure, is not.
    assert!(!unknown_procedure(
        "drbd_promote_connected on node n2: promoting disk/0: disk disk/0: DRBD minor 0 is \
         StandAlone: the peer did not connect",
        p
    ));
    let other = unknown_request("procedure 'drbd_other'", maguey_model::PROTOCOL_VERSION);
    assert!(!unknown_procedure(&other, p));
}
