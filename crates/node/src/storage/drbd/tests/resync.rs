//! Reconnecting with discarded data and replacing the LVs under a device.

use super::*;

#[test]
fn reconnect_discarding_my_data_in_both_dialects() {
    let discard = |mut v: Vec<String>| {
        v.push("--discard-my-data".into());
        v
    };
    // 8.4, StandAlone after a split brain: demote, connect again discarding this side.
    let (ctx, r) = ctx84("drbd84/proc_drbd_standalone");
    r.expect_ok(&["drbdsetup", "secondary", "0"], "");
    r.expect_ok(
        &discard(with(
            argv(&["drbdsetup", "connect", "resource0", LOCAL, REMOTE]),
            net_opts(false),
        )),
        "",
    );
    drbd_reconnect_discard_my_data(&ctx, &drbd_disk(1024)).expect("reconnected");
    r.finish().expect("exact commands");

    // 8.4, not configured (the node rebooted): assemble first.
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect_ok(&attach84(), "");
    r.expect_ok(&["drbdsetup", "secondary", "0"], "");
    r.expect_ok(
        &discard(with(
            argv(&["drbdsetup", "connect", "resource0", LOCAL, REMOTE]),
            net_opts(false),
        )),
        "",
    );
    drbd_reconnect_discard_my_data(&ctx, &drbd_disk(1024)).expect("assembled, reconnected");
    r.finish().expect("exact commands");

    // 8.4, connected: nothing to resolve.
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    drbd_reconnect_discard_my_data(&ctx, &drbd_disk(1024)).expect("connected");
    assert!(r.calls().is_empty());

    // 9, the peer defined and StandAlone: `connect RES PEER --discard-my-data`.
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_standalone.json");
    r.expect_ok(&["drbdsetup", "secondary", "resource0"], "");
    r.expect_ok(
        &[
            "drbdsetup",
            "connect",
            "resource0",
            "1",
            "--discard-my-data",
        ],
        "",
    );
    drbd_reconnect_discard_my_data(&ctx, &drbd_disk(1024)).expect("reconnected");
    r.finish().expect("exact commands");

    // 9, still trying to connect: disconnect first.
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_connecting.json");
    r.expect_ok(&["drbdsetup", "disconnect", "resource0", "1"], "");
    r.expect_ok(&["drbdsetup", "secondary", "resource0"], "");
    r.expect_ok(
        &[
            "drbdsetup",
            "connect",
            "resource0",
            "1",
            "--discard-my-data",
        ],
        "",
    );
    drbd_reconnect_discard_my_data(&ctx, &drbd_disk(1024)).expect("reconnected");
    r.finish().expect("exact commands");

    // The 9 argv of a peer not defined yet: the whole definition, the flag on `connect`.
    let disk = drbd_disk(1024);
    let dev = drbd_device(&ctx, &disk).expect("device");
    let net = drbd_net(&ctx, &dev).expect("net");
    let cmds: Vec<Vec<String>> = cmd::connect_discard_my_data(Dialect::V9, &dev, &net, false)
        .into_iter()
        .map(|c| std::iter::once(c.program).chain(c.args).collect())
        .collect();
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    assert_eq!(
        cmds[0],
        with(
            argv(&["drbdsetup", "new-peer", "resource0", "1"]),
            net_opts(false)
        )
    );
    assert_eq!(
        cmds[3],
        argv(&[
            "drbdsetup",
            "connect",
            "resource0",
            "1",
            "--discard-my-data"
        ])
    );
    let c84: Vec<Vec<String>> = cmd::connect_discard_my_data(Dialect::V84, &dev, &net, true)
        .into_iter()
        .map(|c| std::iter::once(c.program).chain(c.args).collect())
        .collect();
    assert_eq!(
        c84,
        vec![discard(with(
            argv(&["drbdsetup", "connect", "resource0", LOCAL, REMOTE]),
            net_opts(false)
        ))]
    );
}

/// `lvs` JSON listing one LV of 1024 MiB.
fn lvs_json(lv: &str) -> String {
    format!(
        r#"{{"report":[{{"lv":[{{"lv_name":"{lv}","vg_name":"xenvg","lv_size":"1024.00","lv_attr":"-wi-ao----","lv_tags":"originstname+db1.example.com"}}]}}]}}"#
    )
}

#[test]
fn replace_backing_84_swaps_new_lvs_under_the_device() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    let disk = drbd_disk(1024);
    let d = format!("{DISK_UUID}.disk0_data");
    let m = format!("{DISK_UUID}.disk0_meta");
    // 1. New LVs under temporary names, fresh metadata through an unused minor.
    r.expect_ok(&lvcreate(&format!("{d}_new-77"), "1024m"), "");
    r.expect_ok(&lvcreate(&format!("{m}_new-77"), "128m"), "");
    r.expect_ok(
        &[
            "drbdmeta",
            "--force",
            "/dev/drbd255",
            "v08",
            &format!("/dev/xenvg/{m}_new-77"),
            "0",
            "create-md",
        ],
        "",
    );
    // 2. The old backing off the (connected, UpToDate) device.
    r.expect_ok(&["drbdsetup", "detach", "0"], "");
    // 3. Old LVs aside, new ones in their place.
    r.expect_ok(&lvs(&data_lv()), &lvs_json(&d));
    r.expect_ok(&["lvrename", "xenvg", &d, &format!("{d}_replaced-77")], "");
    r.expect_ok(&lvs(&meta_lv()), &lvs_json(&m));
    r.expect_ok(&["lvrename", "xenvg", &m, &format!("{m}_replaced-77")], "");
    r.expect_ok(&["lvrename", "xenvg", &format!("{d}_new-77"), &d], "");
    r.expect_ok(&["lvrename", "xenvg", &format!("{m}_new-77"), &m], "");
    // 4. Attached again (the scripted /proc/drbd still says attached: nothing more; the
    //    Diskless case is `attach_net_reattaches_a_diskless_device`).
    let aside = drbd_replace_backing(&ctx, &disk, "77").expect("replaced");
    assert_eq!(
        aside,
        vec![
            format!("xenvg/{d}_replaced-77"),
            format!("xenvg/{m}_replaced-77")
        ]
    );
    r.finish().expect("exact commands");
}

#[test]
fn replace_backing_puts_the_old_lvs_back_when_the_swap_fails() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_connected");
    let disk = drbd_disk(1024);
    let missing = CmdOutput::fail(5, &data("lvm/lvs_missing.stderr"));
    let d = format!("{DISK_UUID}.disk0_data");
    let m = format!("{DISK_UUID}.disk0_meta");
    r.expect_ok(&lvcreate(&format!("{d}_new-9"), "1024m"), "");
    r.expect_ok(&lvcreate(&format!("{m}_new-9"), "128m"), "");
    r.expect_ok(
        &[
            "drbdmeta",
            "--force",
            "/dev/drbd255",
            "v08",
            &format!("/dev/xenvg/{m}_new-9"),
            "0",
            "create-md",
        ],
        "",
    );
    r.expect_ok(&["drbdsetup", "detach", "0"], "");
    r.expect_ok(&lvs(&data_lv()), &lvs_json(&d));
    r.expect_ok(&["lvrename", "xenvg", &d, &format!("{d}_replaced-9")], "");
    r.expect(&lvs(&meta_lv()), CmdOutput::fail(5, "lvs: device busy"));
    // Undo: the data LV back under its name, the new LVs gone.
    r.expect(&lvs(&data_lv()), missing);
    r.expect_ok(&["lvrename", "xenvg", &format!("{d}_replaced-9"), &d], "");
    r.expect_ok(&["lvremove", "-f", &format!("xenvg/{d}_new-9")], "");
    r.expect_ok(&["lvremove", "-f", &format!("xenvg/{m}_new-9")], "");
    let err = drbd_replace_backing(&ctx, &disk, "9").expect_err("fails");
    assert!(err.to_string().contains("device busy"), "{err}");
    r.finish().expect("exact commands");
}
