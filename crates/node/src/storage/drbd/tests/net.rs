//! Connecting, reconnecting and disconnecting a device to its peer, in both dialects.

use super::*;

#[test]
fn attach_net_84_fresh_primary() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
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
    r.expect_ok(&["drbdsetup", "primary", "0"], "");
    drbd_attach_net(&ctx, &drbd_disk(1024), NetRole::Primary).expect("attached");
    r.finish().expect("exact commands");
}

/// DRBD 9's network set-up of volume 0 towards `peer`: new-peer with the net options,
/// new-path between `path` (local, remote), the resync controller off, connect.
fn expect_connect9(r: &ScriptedRunner, res: &str, peer: &str, dual: bool, path: [&str; 2]) {
    r.expect_ok(
        &with(argv(&["drbdsetup", "new-peer", res, peer]), net_opts(dual)),
        "",
    );
    r.expect_ok(&["drbdsetup", "new-path", res, peer, path[0], path[1]], "");
    let opts = ["--c-plan-ahead=0", "--resync-rate=61440"];
    r.expect_ok(
        &with(
            argv(&["drbdsetup", "peer-device-options", res, peer, "0"]),
            argv(&opts),
        ),
        "",
    );
    r.expect_ok(&["drbdsetup", "connect", res, peer], "");
}

#[test]
fn attach_net_9_fresh_dual_primary() {
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_empty.json");
    expect_activate(&r);
    r.expect_ok(&["drbdsetup", "new-resource", "resource0", "0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect_ok(&attach9(), "");
    expect_connect9(&r, "resource0", "1", true, [LOCAL, REMOTE]);
    r.expect_ok(&["drbdsetup", "primary", "resource0"], "");
    drbd_attach_net(&ctx, &drbd_disk(1024), NetRole::DualPrimary).expect("attached");
    r.finish().expect("exact commands");
}

#[test]
fn attach_net_on_the_other_node_uses_its_minor_node_id_and_addresses() {
    let (ctx, r) = ctx9();
    let ctx = ctx.with_node(NODE_B);
    expect_status9(&r, "drbd9/status_empty.json");
    let data = data_dev();
    let meta = meta_dev();
    expect_activate(&r);
    r.expect_ok(&["drbdsetup", "new-resource", "resource3", "1"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource3", "3", "0"], "");
    r.expect_ok(
        &[
            "drbdsetup",
            "attach",
            "3",
            &data,
            &meta,
            "flexible",
            "--on-io-error=detach",
            "--size=1024m",
        ],
        "",
    );
    expect_connect9(&r, "resource3", "0", false, [REMOTE, LOCAL]);
    drbd_attach_net(&ctx, &drbd_disk(1024), NetRole::Secondary).expect("attached");
    r.finish().expect("exact commands");
    assert_eq!(
        DrbdStorage
            .device_path(&ctx, &drbd_disk(1024))
            .expect("path"),
        PathBuf::from("/dev/drbd3")
    );
}

#[test]
fn attach_net_is_idempotent_when_connected() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    drbd_attach_net(&ctx, &drbd_disk(1024), NetRole::Secondary).expect("nothing to do");
    assert!(r.calls().is_empty());
    // Dual primary on a live connection: net-options, then promote.
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
    r.expect_ok(&["drbdsetup", "primary", "0"], "");
    drbd_attach_net(&ctx, &drbd_disk(1024), NetRole::DualPrimary).expect("dual");
    r.finish().expect("exact commands");
}

#[test]
fn attach_net_reattaches_a_diskless_device() {
    // Minor 2 of the mixed file is Diskless and connected.
    let (ctx, r) = ctx84("drbd84/proc_drbd_mixed");
    let mut disk = drbd_disk(1024);
    if let LogicalId::Drbd { minor_a, .. } = &mut disk.logical_id {
        *minor_a = 2;
    }
    let data = data_dev();
    let meta = meta_dev();
    expect_activate(&r);
    r.expect_ok(
        &[
            "drbdsetup",
            "attach",
            "2",
            &data,
            &meta,
            "0",
            "--on-io-error=detach",
            "--c-plan-ahead=0",
            "--resync-rate=61440",
            "--size=1024m",
        ],
        "",
    );
    drbd_attach_net(&ctx, &disk, NetRole::Secondary).expect("attached");
    r.finish().expect("exact commands");
}

#[test]
fn reconnect_after_disconnect_in_both_dialects() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_standalone");
    r.expect_ok(
        &with(
            argv(&["drbdsetup", "connect", "resource0", LOCAL, REMOTE]),
            net_opts(true),
        ),
        "",
    );
    drbd_reconnect(&ctx, &drbd_disk(1024), true).expect("reconnected");
    r.finish().expect("exact commands");

    // DRBD 9 keeps the StandAlone peer: set its options, connect it.
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_standalone.json");
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
    r.expect_ok(&["drbdsetup", "connect", "resource0", "1"], "");
    drbd_reconnect(&ctx, &drbd_disk(1024), false).expect("reconnected");
    r.finish().expect("exact commands");

    // Connecting already: nothing to do; not configured: an error.
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_connecting.json");
    drbd_reconnect(&ctx, &drbd_disk(1024), false).expect("connecting");
    expect_status9(&r, "drbd9/status_empty.json");
    let e = drbd_reconnect(&ctx, &drbd_disk(1024), false).expect_err("not configured");
    assert!(e.to_string().contains("not configured"), "{e}");
    r.finish().expect("exact commands");
}

#[test]
fn disconnect_in_both_dialects() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    r.expect_ok(&["drbdsetup", "disconnect", LOCAL, REMOTE], "");
    drbd_disconnect(&ctx, &drbd_disk(1024)).expect("disconnected");
    r.finish().expect("exact commands");

    let (ctx, r) = ctx84("drbd84/proc_drbd_standalone");
    drbd_disconnect(&ctx, &drbd_disk(1024)).expect("already standalone");
    assert!(r.calls().is_empty());

    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_connected.json");
    r.expect_ok(&["drbdsetup", "disconnect", "resource0", "1"], "");
    drbd_disconnect(&ctx, &drbd_disk(1024)).expect("disconnected");
    r.finish().expect("exact commands");
}
