//! The first promotion of new disks once connected (`drbd_promote_connected`), both dialects.

use super::*;
use std::time::Duration;

/// 8.4's `/proc/drbd` with minor 0 waiting for its peer.
const WF_CONNECTION_84: &str = "version: 8.4.11 (api:1/proto:86-101)\n\
srcversion: 211FB288A383ED945B83420 \n \
0: cs:WFConnection ro:Secondary/Unknown ds:Inconsistent/DUnknown C r----s\n    \
ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:1048576\n";

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn waits_for_the_connection_then_forces_the_first_primary_84() {
    let (ctx, r) = node_a_ctx();
    // The version read, two status reads still connecting, then connected (the last one
    // repeats).
    r.file(version::PROC_DRBD, WF_CONNECTION_84);
    r.file(version::PROC_DRBD, WF_CONNECTION_84);
    r.file(version::PROC_DRBD, WF_CONNECTION_84);
    r.file(version::PROC_DRBD, &data("drbd84/proc_drbd_connected"));
    r.expect_ok(&["drbdsetup", "primary", "0", "--force"], "");
    drbd_promote_connected(&ctx, &[drbd_disk(1024)], MINUTE).expect("promoted");
    r.finish().expect("exact commands");
}

#[test]
fn waits_for_the_connection_then_forces_the_first_primary_9() {
    let (ctx, r) = ctx9();
    expect_status9(&r, "drbd9/status_connecting.json");
    expect_status9(&r, "drbd9/status_connected.json");
    r.expect_ok(&["drbdsetup", "primary", "resource0", "--force"], "");
    drbd_promote_connected(&ctx, &[drbd_disk(1024)], MINUTE).expect("promoted");
    r.finish().expect("exact commands");
}

#[test]
fn a_standalone_or_missing_device_fails_at_once_and_promotes_nothing() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_standalone");
    let e = drbd_promote_connected(&ctx, &[drbd_disk(1024)], MINUTE).expect_err("standalone");
    assert!(e.to_string().contains("StandAlone"), "{e}");
    r.finish().expect("no command run");

    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    let e = drbd_promote_connected(&ctx, &[drbd_disk(1024)], MINUTE).expect_err("missing");
    assert!(e.to_string().contains("not configured"), "{e}");
    r.finish().expect("no command run");
}

#[test]
fn a_peer_that_never_connects_times_out_without_a_promotion() {
    let (ctx, r) = node_a_ctx();
    r.file(version::PROC_DRBD, WF_CONNECTION_84);
    let e = drbd_promote_connected(&ctx, &[drbd_disk(1024)], Duration::ZERO)
        .expect_err("never connects");
    let msg = e.to_string();
    assert!(msg.contains("did not connect"), "{msg}");
    assert!(msg.contains("Connecting"), "{msg}");
    r.finish().expect("no command run");
}
