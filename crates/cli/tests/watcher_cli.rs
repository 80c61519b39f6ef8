//! `maguey cluster watcher pause|continue|info|run` on a lab (fake hypervisor): happy paths
//! and refusals (a bad duration changes nothing).

mod common;
use common::*;

#[test]
fn watcher_commands_and_their_refusals() {
    let l = lab(1);
    let info = |l: &TestLab| l.maguey(&["cluster", "watcher", "info"]).ok().stdout;
    assert!(info(&l).contains("not paused"), "{}", info(&l));
    let serial = l.serial();
    for bad in ["0", "-5", "1.5h", "soon", "3y"] {
        let r = l.maguey(&["cluster", "watcher", "pause", bad]);
        assert_eq!(r.code, 2, "pause {bad}: {}{}", r.stdout, r.stderr);
        // `-5` is refused by the argument parser itself.
        assert!(
            r.stderr.contains("invalid duration") || r.stderr.contains("unexpected argument"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(l.serial(), serial, "a refused pause changed the config");
    let r = l.maguey(&["cluster", "watcher", "frobnicate"]);
    assert_eq!(r.code, 2);

    let r = l.maguey(&["cluster", "watcher", "pause", "2h"]).ok();
    assert!(r.stdout.contains("paused until"), "{}", r.stdout);
    assert!(info(&l).contains("s from now"), "{}", info(&l));
    let r = l.maguey(&["cluster", "watcher", "run"]).ok();
    assert!(r.stdout.contains("paused until"), "{}", r.stdout);
    l.maguey(&["cluster", "watcher", "continue"]).ok();
    assert!(info(&l).contains("not paused"));

    // A healthy cluster: the pass only submits verify-disks, and says so.
    l.maguey(&[
        "instance", "add", "-t", "diskless", "-o", "noop", "-n", "node1", "web1",
    ])
    .ok();
    let r = l.maguey(&["cluster", "watcher", "run"]).ok();
    assert!(
        r.stdout.contains("submitted verify-disks at low priority"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("restart"), "{}", r.stdout);
}
