//! Every DRBD operation's exact commands, in both dialects, against recorded outputs.

use super::*;
use crate::storage::runner::{CmdOutput, ScriptedRunner};
use crate::storage::test_support::{argv, data, drbd_disk, node_a_ctx, DISK_UUID, NODE_A, NODE_B};
use std::sync::Arc;

const SECRET_OPT: &str = "--shared-secret=c0ffee1234567890abcd";
const LOCAL: &str = "ipv4:10.77.0.11:11000";
const REMOTE: &str = "ipv4:10.77.0.12:11000";

fn data_lv() -> String {
    format!("xenvg/{DISK_UUID}.disk0_data")
}
fn meta_lv() -> String {
    format!("xenvg/{DISK_UUID}.disk0_meta")
}
fn data_dev() -> String {
    format!("/dev/{}", data_lv())
}
fn meta_dev() -> String {
    format!("/dev/{}", meta_lv())
}

/// A context on NODE_A whose module is 8.4 with this `/proc/drbd`.
fn ctx84(proc_file: &str) -> (StorageContext, Arc<ScriptedRunner>) {
    let (ctx, r) = node_a_ctx();
    r.file(version::PROC_DRBD, &data(proc_file));
    (ctx, r)
}

/// A context on NODE_A whose module is 9.2.
fn ctx9() -> (StorageContext, Arc<ScriptedRunner>) {
    let (ctx, r) = node_a_ctx();
    r.file(version::PROC_DRBD, &data("drbd9/proc_drbd"));
    (ctx, r)
}

fn expect_status9(r: &ScriptedRunner, file: &str) {
    r.expect_ok(&["drbdsetup", "status", "--json"], &data(file));
}

fn lvs(target: &str) -> Vec<String> {
    argv(&[
        "lvs",
        "--reportformat",
        "json",
        "--units",
        "m",
        "--nosuffix",
        "-o",
        "lv_name,vg_name,lv_size,lv_attr,lv_tags",
        target,
    ])
}

fn lvcreate(lv: &str, size: &str) -> Vec<String> {
    argv(&[
        "lvcreate",
        "--yes",
        "-Wy",
        "-L",
        size,
        "-n",
        lv,
        "--addtag",
        "originstname+db1.example.com",
        "xenvg",
    ])
}

/// A new disk's LVs: `lvcreate` each, nothing read before.
fn expect_new_lvs(r: &ScriptedRunner) {
    r.expect_ok(&lvcreate(&format!("{DISK_UUID}.disk0_data"), "1024m"), "");
    r.expect_ok(&lvcreate(&format!("{DISK_UUID}.disk0_meta"), "128m"), "");
}

/// `drbdmeta create-md` of minor 0's fresh v08 metadata.
fn create_md84() -> Vec<String> {
    argv(&[
        "drbdmeta",
        "--force",
        "/dev/drbd0",
        "v08",
        &meta_dev(),
        "0",
        "create-md",
    ])
}

fn expect_activate(r: &ScriptedRunner) {
    r.expect_ok(&["lvchange", "-ay", &data_lv()], "");
    r.expect_ok(&["lvchange", "-ay", &meta_lv()], "");
}

fn net_opts(dual: bool) -> Vec<String> {
    let mut v = argv(&[
        "--protocol=C",
        "--after-sb-0pri=discard-zero-changes",
        "--after-sb-1pri=consensus",
        "--after-sb-2pri=disconnect",
    ]);
    if dual {
        v.push("--allow-two-primaries=yes".into());
    }
    v.push("--cram-hmac-alg=md5".into());
    v.push(SECRET_OPT.into());
    v
}

fn with(mut a: Vec<String>, b: Vec<String>) -> Vec<String> {
    a.extend(b);
    a
}

fn attach84() -> Vec<String> {
    argv(&[
        "drbdsetup",
        "attach",
        "0",
        &data_dev(),
        &meta_dev(),
        "0",
        "--on-io-error=detach",
        "--c-plan-ahead=0",
        "--resync-rate=61440",
        "--size=1024m",
    ])
}

fn attach9() -> Vec<String> {
    argv(&[
        "drbdsetup",
        "attach",
        "0",
        &data_dev(),
        &meta_dev(),
        "flexible",
        "--on-io-error=detach",
        "--size=1024m",
    ])
}

#[test]
fn create_84_makes_lvs_and_v08_metadata() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_new_lvs(&r);
    r.expect_ok(
        &create_md84(),
        "Writing meta data...\nNew drbd meta data block successfully created.\n",
    );
    drbd_create(&ctx, &drbd_disk(1024)).expect("created");
    r.finish().expect("exact commands");
}

#[test]
fn create_9_makes_lvs_and_v09_metadata_for_one_peer() {
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_empty.json");
    expect_new_lvs(&r);
    r.expect_ok(
        &argv(&[
            "drbdmeta",
            "--force",
            "/dev/drbd0",
            "v09",
            &meta_dev(),
            "flex-external",
            "create-md",
            "1",
        ]),
        "",
    );
    drbd_create(&ctx, &drbd_disk(1024)).expect("created");
    r.finish().expect("exact commands");
}

#[test]
fn create_refuses_a_minor_in_use_and_keeps_existing_metadata() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    let e = drbd_create(&ctx, &drbd_disk(1024)).expect_err("minor 0 in use");
    assert!(e.to_string().contains("minor 0 is already in use"), "{e}");
    assert!(r.calls().is_empty());

    // Both LVs exist (a retried create): no lvcreate, no create-md.
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    let existing = |name: &str, size: &str| {
        format!(
            r#"{{"report":[{{"lv":[{{"lv_name":"{DISK_UUID}.disk0_{name}","vg_name":"xenvg","lv_size":"{size}","lv_attr":"-wi-a-----","lv_tags":""}}]}}]}}"#
        )
    };
    let refused = |name: &str| {
        CmdOutput::fail(
            5,
            &data("lvm/lvcreate_exists.stderr").replace(
                "3f2b8c1e-5d4a-4c61-9a0e-2b7f6d1c9e44.disk0",
                &format!("{DISK_UUID}.disk0_{name}"),
            ),
        )
    };
    r.expect(
        &lvcreate(&format!("{DISK_UUID}.disk0_data"), "1024m"),
        refused("data"),
    );
    r.expect_ok(&lvs(&data_lv()), &existing("data", "1024.00"));
    r.expect(
        &lvcreate(&format!("{DISK_UUID}.disk0_meta"), "128m"),
        refused("meta"),
    );
    r.expect_ok(&lvs(&meta_lv()), &existing("meta", "128.00"));
    drbd_create(&ctx, &drbd_disk(1024)).expect("idempotent");
    r.finish().expect("exact commands");
}

#[test]
fn roles_dual_primary_resize_and_initial_sync_in_both_dialects() {
    let disk = drbd_disk(1024);
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    r.expect_ok(&["drbdsetup", "primary", "0", "--force"], "");
    r.expect_ok(&["drbdsetup", "secondary", "0"], "");
    r.expect_ok(
        &[
            "drbdsetup",
            "net-options",
            LOCAL,
            REMOTE,
            "--allow-two-primaries=yes",
        ],
        "",
    );
    r.expect_ok(
        &[
            "drbdsetup",
            "net-options",
            LOCAL,
            REMOTE,
            "--allow-two-primaries=no",
        ],
        "",
    );
    r.expect_ok(&["drbdsetup", "resize", "0", "--size=2048m"], "");
    r.expect_ok(
        &["drbdsetup", "new-current-uuid", "0", "--clear-bitmap"],
        "",
    );
    drbd_set_primary(&ctx, &disk, true).expect("primary");
    drbd_set_secondary(&ctx, &disk).expect("secondary");
    drbd_enable_dual_primary(&ctx, &disk).expect("dual");
    drbd_disable_dual_primary(&ctx, &disk).expect("single");
    drbd_resize(&ctx, &disk, 2048).expect("resized");
    drbd_skip_initial_sync(&ctx, &disk).expect("skipped");
    assert!(drbd_resize(&ctx, &disk, 0).is_err());
    r.finish().expect("exact commands");

    let (ctx, r) = ctx9();
    r.expect_ok(&["drbdsetup", "primary", "resource0"], "");
    r.expect_ok(&["drbdsetup", "secondary", "resource0"], "");
    r.expect_ok(
        &[
            "drbdsetup",
            "net-options",
            "resource0",
            "1",
            "--allow-two-primaries=yes",
        ],
        "",
    );
    r.expect_ok(
        &[
            "drbdsetup",
            "net-options",
            "resource0",
            "1",
            "--allow-two-primaries=no",
        ],
        "",
    );
    r.expect_ok(&["drbdsetup", "resize", "0", "--size=2048m"], "");
    r.expect_ok(&["lvextend", "-L", "+1024m", &data_lv()], "");
    drbd_set_primary(&ctx, &disk, false).expect("primary");
    drbd_set_secondary(&ctx, &disk).expect("secondary");
    drbd_enable_dual_primary(&ctx, &disk).expect("dual");
    drbd_disable_dual_primary(&ctx, &disk).expect("single");
    drbd_resize(&ctx, &disk, 2048).expect("resized");
    drbd_grow_backing(&ctx, &disk, 1024).expect("grown");
    r.finish().expect("exact commands");
}

#[test]
fn disabling_dual_primary_without_a_connection_is_a_no_op_on_84() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_standalone");
    drbd_disable_dual_primary(&ctx, &drbd_disk(1024)).expect("nothing to do");
    assert!(r.calls().is_empty());
}

#[test]
fn shutdown_and_remove_in_both_dialects() {
    let disk = drbd_disk(1024);
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    r.expect_ok(&["drbdsetup", "down", "resource0"], "");
    drbd_shutdown(&ctx, &disk).expect("down");
    r.finish().expect("exact commands");

    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    drbd_shutdown(&ctx, &disk).expect("not configured: nothing to do");
    assert!(r.calls().is_empty());

    // Minor 1 of the mixed file exists unattached (`cs:Unconfigured`): still torn down.
    let mut disk1 = drbd_disk(1024);
    if let LogicalId::Drbd { minor_a, .. } = &mut disk1.logical_id {
        *minor_a = 1;
    }
    let (ctx, r) = ctx84("drbd84/proc_drbd_mixed");
    r.expect_ok(&["drbdsetup", "down", "resource1"], "");
    drbd_shutdown(&ctx, &disk1).expect("down");
    assert_eq!(drbd_status(&ctx, &disk1).expect("read"), None);
    r.finish().expect("exact commands");

    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_connected.json");
    r.expect_ok(&["drbdsetup", "down", "resource0"], "");
    r.expect_ok(&["lvremove", "-f", &data_lv()], "");
    r.expect(
        &["lvremove", "-f", &meta_lv()],
        CmdOutput::fail(5, &data("lvm/lvs_missing.stderr")),
    );
    DrbdStorage.remove(&ctx, &disk).expect("removed");
    r.finish().expect("exact commands");
}

#[test]
fn assemble_accepts_an_existing_unattached_resource_and_minor() {
    // /proc/drbd shows such a minor as `Unconfigured`.
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
    r.expect(
        &["drbdsetup", "new-resource", "resource0"],
        CmdOutput::fail(
            10,
            "resource0: Failure: (161) Minor or volume exists already (delete it first)\n",
        ),
    );
    r.expect(
        &["drbdsetup", "new-minor", "resource0", "0", "0"],
        CmdOutput::fail(
            10,
            "minor 0: Failure: (161) Minor or volume exists already (delete it first)\n",
        ),
    );
    r.expect_ok(&attach84(), "");
    drbd_assemble(&ctx, &drbd_disk(1024)).expect("attached");
    r.finish().expect("exact commands");

    // Any other failure of those steps stops the assembly.
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
    r.expect(
        &["drbdsetup", "new-resource", "resource0"],
        CmdOutput::fail(20, "Could not connect to 'drbd' generic netlink family\n"),
    );
    r.expect_ok(&["drbdsetup", "down", "resource0"], "");
    let e = drbd_assemble(&ctx, &drbd_disk(1024)).expect_err("no module");
    assert!(e.to_string().contains("generic netlink"), "{e}");
    r.finish().expect("exact commands");
}

#[test]
fn assemble_applies_the_activity_log_of_metadata_left_unclean_by_a_power_loss() {
    // What drbdsetup 8.4 says after the node lost power with the device up (seen on the
    // testbed: the secondary powered off, then booted again).
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect(
        &attach84(),
        CmdOutput::fail(
            10,
            "0: Failure: (165) Unclean meta-data found.\nYou need to 'drbdadm apply-al res'\n",
        ),
    );
    r.expect_ok(
        &[
            "drbdmeta",
            "--force",
            "/dev/drbd0",
            "v08",
            &meta_dev(),
            "0",
            "apply-al",
        ],
        "",
    );
    r.expect_ok(&attach84(), "");
    drbd_assemble(&ctx, &drbd_disk(1024)).expect("attached after apply-al");
    r.finish().expect("exact commands");
}

#[test]
fn failed_assemble_names_the_command_and_tears_down() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect(
        &attach84(),
        CmdOutput::fail(
            10,
            "0: Failure: (119) No valid meta-data signature found.\n\n\t==> Use 'drbdadm create-md res' to initialize meta-data area. <==\n\nadditional info from kernel:\nno valid meta-data signature found\n",
        ),
    );
    r.expect_ok(&["drbdsetup", "down", "resource0"], "");
    let e = drbd_assemble(&ctx, &drbd_disk(1024)).expect_err("attach fails");
    let msg = e.to_string();
    assert!(msg.contains("`drbdsetup attach 0"), "{msg}");
    assert!(msg.contains("exit code 10"), "{msg}");
    assert!(msg.contains("No valid meta-data signature"), "{msg}");
    r.finish().expect("exact commands");
}

#[test]
fn status_reads_in_both_dialects() {
    let disk = drbd_disk(1024);
    let (ctx, _r) = ctx84("drbd84/proc_drbd_syncing");
    let s = drbd_status(&ctx, &disk).expect("read").expect("configured");
    assert_eq!(s.replication, ReplicationState::SyncSource);
    assert_eq!(s.sync_percent, Some(23.7));
    assert_eq!(s.sync_eta_secs, Some(12));
    assert!(s.is_degraded());
    // What `drbd_status` answers the master (`instance info`'s live disk state).
    let w = rpc_status(&s);
    assert_eq!(
        (w.replication.as_str(), w.sync_percent, w.sync_eta_secs),
        ("SyncSource", Some(23.7), Some(12))
    );
    assert!(!w.in_sync && w.degraded);
    assert_eq!(drbd_minors_in_use(&ctx).expect("read"), vec![0, 3, 4]);
    assert_eq!(
        DrbdStorage.list(&ctx).expect("list"),
        vec!["/dev/drbd0", "/dev/drbd3", "/dev/drbd4"]
    );
    let found = DrbdStorage.find(&ctx, &disk).expect("find").expect("there");
    assert_eq!((found.path.as_str(), found.size), ("/dev/drbd0", 1024));

    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_standalone.json");
    let s = drbd_status(&ctx, &disk).expect("read").expect("configured");
    assert!(s.is_standalone() && s.is_split_brain_hint());
    expect_status9(&r, "drbd9/status_empty.json");
    assert_eq!(DrbdStorage.find(&ctx, &disk).expect("find"), None);
    r.finish().expect("exact commands");
}

#[test]
fn unreadable_or_garbage_status_is_an_error() {
    let disk = drbd_disk(1024);
    let (ctx, r) = node_a_ctx();
    let e = drbd_status(&ctx, &disk).expect_err("module not loaded");
    assert!(e.to_string().contains("not loaded"), "{e}");
    assert!(r.calls().is_empty());

    let (ctx, r) = node_a_ctx();
    r.file(
        version::PROC_DRBD,
        "version: 8.4.11 (api:1/proto:86-101)\n 0: cs:Connected\n",
    );
    assert!(drbd_status(&ctx, &disk).is_err());

    let (ctx, r) = ctx9();
    r.expect_ok(&["drbdsetup", "status", "--json"], "[{\"name\": ");
    let e = drbd_status(&ctx, &disk).expect_err("garbage");
    assert!(
        e.to_string()
            .contains("cannot parse drbdsetup status --json"),
        "{e}"
    );
    r.expect(
        &["drbdsetup", "status", "--json"],
        CmdOutput::fail(20, "Could not connect to 'drbd' generic netlink family\n"),
    );
    let e = drbd_status(&ctx, &disk).expect_err("fails");
    assert!(e.to_string().contains("generic netlink"), "{e}");

    let (ctx, r) = node_a_ctx();
    r.file(version::PROC_DRBD, "version: 8.3.16 (api:88/proto:86-97)\n");
    let e = drbd_status(&ctx, &disk).expect_err("8.3");
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn invalid_disks_and_contexts_are_refused_before_any_command() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    let mut bad = Vec::new();
    let mut d = drbd_disk(1024);
    d.children.pop();
    bad.push((d, "two children"));
    let mut d = drbd_disk(1024);
    d.children[1].size = 64;
    bad.push((d, "meta LV"));
    let mut d = drbd_disk(1024);
    d.children[0].size = 512;
    bad.push((d, "data LV"));
    for secret in ["", "has space", &"x".repeat(65)] {
        let mut d = drbd_disk(1024);
        if let LogicalId::Drbd { secret: s, .. } = &mut d.logical_id {
            *s = secret.to_string();
        }
        bad.push((d, "secret"));
    }
    let mut d = drbd_disk(1024);
    if let LogicalId::Drbd { minor_a, .. } = &mut d.logical_id {
        *minor_a = 256;
    }
    bad.push((d, "minor"));
    let mut d = drbd_disk(1024);
    d.children[0].logical_id = LogicalId::Plain {
        vg: "xenvg".into(),
        lv: "--help".into(),
    };
    bad.push((d, "logical volume"));
    let mut d = drbd_disk(1024);
    d.logical_id = LogicalId::Plain {
        vg: "xenvg".into(),
        lv: "x".into(),
    };
    bad.push((d, "not a DRBD disk"));
    for (disk, why) in bad {
        let e = drbd_create(&ctx, &disk).expect_err(why);
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    let other = ctx
        .clone()
        .with_node("c3333333-0000-4000-8000-000000000003");
    let e = drbd_create(&other, &drbd_disk(1024)).expect_err("not an end");
    assert!(e.to_string().contains("neither end"), "{e}");
    let mut no_ip = ctx.clone();
    no_ip.secondary_ips.remove(NODE_B);
    let e = drbd_attach_net(&no_ip, &drbd_disk(1024), NetRole::Secondary).expect_err("no ip");
    assert!(e.to_string().contains("no secondary IP"), "{e}");
    assert!(r.calls().is_empty());
    assert_eq!(NODE_A, ctx.node_uuid.as_deref().unwrap_or_default());
}

#[test]
fn block_storage_create_brings_the_device_up_connected() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_new_lvs(&r);
    r.expect_ok(&create_md84(), "");
    // The LVs lvcreate just made are active: no lvchange, straight to the device.
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect_ok(&attach84(), "");
    r.expect_ok(
        &with(
            argv(&["drbdsetup", "connect", "resource0", LOCAL, REMOTE]),
            net_opts(false),
        ),
        "",
    );
    let disk = drbd_disk(1024);
    let imp = crate::storage::for_disk(&disk).expect("drbd is supported");
    assert_eq!(imp.dev_type(), maguey_model::DevType::Drbd);
    let info = imp.create(&ctx, &disk).expect("created");
    assert_eq!((info.path.as_str(), info.size), ("/dev/drbd0", 1024));
    r.finish().expect("exact commands");
}

#[test]
fn create_up_without_peer_address_and_teardown_on_a_failed_attach() {
    // No secondary IP known: the device comes up on its new LVs, unconnected.
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_new_lvs(&r);
    let md = create_md84();
    r.expect_ok(&md, "");
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect_ok(&attach84(), "");
    drbd_create_up(&ctx, &drbd_disk(1024), None).expect("up, not connected");
    r.finish().expect("exact commands");

    // The attach fails: the half-made resource is taken down, the error names the attach,
    // and no connect is tried.
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_new_lvs(&r);
    r.expect_ok(&md, "");
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect(
        &attach84(),
        CmdOutput::fail(10, "0: Failure: (114) Lower device is already claimed.\n"),
    );
    r.expect_ok(&["drbdsetup", "down", "resource0"], "");
    let dev = drbd_device(&ctx, &drbd_disk(1024)).expect("device");
    let net = drbd_net(&ctx, &dev).expect("both IPs known");
    let e = drbd_create_up(&ctx, &drbd_disk(1024), Some(&net)).expect_err("attach fails");
    assert!(e.to_string().contains("already claimed"), "{e}");
    r.finish().expect("exact commands");

    // A minor in use: refused before any command.
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    let e = drbd_create_up(&ctx, &drbd_disk(1024), Some(&net)).expect_err("in use");
    assert!(e.to_string().contains("minor 0 is already in use"), "{e}");
    assert!(r.calls().is_empty());
}

#[test]
fn ipv6_addresses_use_brackets() {
    assert_eq!(
        cmd::address("fd00::1".parse().expect("ip"), 11000),
        "ipv6:[fd00::1]:11000"
    );
    let (ctx, _r) = ctx84("drbd84/proc_drbd_empty");
    let ctx = ctx.with_secondary_ip(NODE_B, "fd00::2".parse().expect("ip"));
    let dev = drbd_device(&ctx, &drbd_disk(1024)).expect("device");
    let e = drbd_net(&ctx, &dev).expect_err("mixed families");
    assert!(e.to_string().contains("address families"), "{e}");
}

#[test]
fn sync_progress_for_wait_sync() {
    let mut disk3 = drbd_disk(1024);
    if let LogicalId::Drbd { minor_a, .. } = &mut disk3.logical_id {
        *minor_a = 3;
    }
    let (ctx, _r) = ctx84("drbd84/proc_drbd_syncing");
    let p = drbd_sync_progress(&ctx, &[drbd_disk(1024), disk3.clone()]).expect("read");
    assert!(!p.all_done);
    assert_eq!(p.min_percent, 23.7);
    assert_eq!(p.max_eta_secs, Some(12));

    let (ctx, _r) = ctx84("drbd84/proc_drbd_connected");
    let p = drbd_sync_progress(&ctx, &[drbd_disk(1024)]).expect("read");
    assert_eq!(
        (p.all_done, p.min_percent, p.max_eta_secs),
        (true, 100.0, None)
    );
    let e = drbd_sync_progress(&ctx, &[disk3]).expect_err("minor 3 missing");
    assert!(e.to_string().contains("not configured"), "{e}");

    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_standalone.json");
    let e = drbd_sync_progress(&ctx, &[drbd_disk(1024)]).expect_err("standalone");
    assert!(e.to_string().contains("disk/0"), "{e}");
    assert!(e.to_string().contains("StandAlone"), "{e}");
    expect_status9(&r, "drbd9/status_syncing.json");
    let p = drbd_sync_progress(&ctx, &[drbd_disk(1024)]).expect("read");
    assert_eq!((p.all_done, p.min_percent), (false, 23.63));
    r.finish().expect("exact commands");
}

#[test]
fn detach_in_both_dialects() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    r.expect_ok(&["drbdsetup", "detach", "0"], "");
    drbd_detach(&ctx, &drbd_disk(1024)).expect("detached");
    r.finish().expect("exact commands");

    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_connected.json");
    r.expect_ok(&["drbdsetup", "detach", "0"], "");
    drbd_detach(&ctx, &drbd_disk(1024)).expect("detached");
    expect_status9(&r, "drbd9/status_empty.json");
    drbd_detach(&ctx, &drbd_disk(1024)).expect("not configured: nothing to do");
    r.finish().expect("exact commands");
}

#[test]
fn version_and_helper_through_the_context() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    let v = drbd_version(&ctx).expect("loaded");
    assert_eq!(
        (v.to_string(), v.dialect().expect("8.4")),
        ("8.4.11".into(), Dialect::V84)
    );
    r.file(helper::USERMODE_HELPER_PARAM, "/bin/true\n");
    drbd_check_helper(&ctx, "").expect("/bin/true");
    assert!(drbd_check_helper(&ctx, "/sbin/drbdadm").is_err());
    assert!(r.calls().is_empty());
}

mod net;
mod promote;
mod resync;
mod secrets;
