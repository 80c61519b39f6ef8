//! Debian's `ganeti-os-noop` package (API versions 5 and 10, in /usr/share/ganeti/os, one
//! of Ganeti's search paths) installs an instance unchanged.

mod common;
use common::*;
use std::path::Path;

#[test]
fn debian_ganeti_os_noop_installs_an_instance() {
    let debian = Path::new("/usr/share/ganeti/os/noop");
    assert!(
        debian.join("create").exists(),
        "Debian's ganeti-os-noop is not installed (.ci/run installs it)"
    );
    let lab = lab(2);
    // The lab registers its own `noop` first in the search path: take it away so that the
    // node finds Debian's.
    for i in 1..=2 {
        std::fs::remove_dir_all(lab.node_dir(i).join("os/noop")).unwrap();
    }
    let r = lab
        .maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=16M",
            "-o",
            "noop",
            "-n",
            "node2",
            "deb1",
        ])
        .ok();
    assert!(
        r.stdout.contains("running the OS create scripts of 'noop'"),
        "{}",
        r.stdout
    );
    let st = instances(&lab, "name,status,os");
    assert_eq!(st[0]["status"], "running", "{st:?}");
    assert_eq!(st[0]["os"], "noop");
    // Reinstall and rename run its scripts too.
    lab.maguey(&["instance", "stop", "deb1"]).ok();
    lab.maguey(&["instance", "reinstall", "-f", "deb1"]).ok();
    lab.maguey(&["instance", "rename", "deb1", "deb2"]).ok();
    lab.maguey(&["instance", "remove", "-f", "deb2"]).ok();
}
