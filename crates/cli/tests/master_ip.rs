//! The floating master IP (docs/master-ip.md) on a lab of nodes in network namespaces: set
//! with `cluster modify`, it is up on the master node only and reached from the host's
//! namespace; a device the master lacks is refused with nothing changed; deactivate and
//! activate take it down and up; a master that starts brings it up again.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The addresses on `eth0` in node `i`'s namespace.
fn addrs(lab: &TestLab, i: usize) -> String {
    let l = maguey_lab::Lab::load(lab.dir.path()).unwrap();
    let ns = l.nodes[i - 1].netns.clone().expect("nodes in namespaces");
    let o = Command::new("ip")
        .args(["-n", &ns, "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether a host answers at `ip` from the host's namespace: a TCP connection to a port
/// nobody listens on is refused at once by a live host, and times out or finds no route
/// otherwise.
fn answers(ip: &str) -> bool {
    let addr: SocketAddr = format!("{ip}:9").parse().unwrap();
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

#[test]
fn the_master_ip_follows_the_master() {
    let lab = lab(2);
    assert!(
        lab.has_netns(),
        "this test needs the lab's network namespaces"
    );
    let prefix = lab.node_ip(1).rsplit_once('.').unwrap().0.to_string();
    let vip = format!("{prefix}.200");
    let cidr = format!("{vip}/24");
    assert!(!answers(&vip), "{vip} is taken already");

    // A device the master does not have: refused, nothing changed.
    let serial = lab.serial();
    let r = lab.maguey(&[
        "cluster",
        "modify",
        "--master-ip",
        &vip,
        "--master-netdev",
        "nosuch0",
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("nosuch0"), "{}", r.stderr);
    assert_eq!(lab.serial(), serial);
    assert!(!addrs(&lab, 1).contains(&cidr));
    // Bad values are refused before any job.
    for bad in [
        vec!["--master-ip", "300.1.1.1", "--master-netdev", "eth0"],
        vec![
            "--master-ip",
            &vip,
            "--master-netdev",
            "eth0",
            "--master-netmask",
            "33",
        ],
        vec!["--master-ip", &vip, "--master-netdev", "a/b"],
        vec!["--master-ip", &vip],
        vec!["--master-netdev", "eth0"],
    ] {
        let mut args = vec!["cluster", "modify"];
        args.extend(bad.iter().copied());
        let r = lab.maguey(&args);
        assert_ne!(r.code, 0, "{bad:?}: {}", r.stdout);
    }
    assert_eq!(lab.serial(), serial);

    // Set: up on the master only, reached from the host.
    lab.maguey(&[
        "cluster",
        "modify",
        "--master-ip",
        &vip,
        "--master-netdev",
        "eth0",
        "--master-netmask",
        "24",
    ])
    .ok();
    assert!(addrs(&lab, 1).contains(&cidr), "{}", addrs(&lab, 1));
    assert!(!addrs(&lab, 2).contains(&cidr));
    assert!(answers(&vip));
    let cfg = lab.maguey(&["cluster", "export-config"]).ok().json();
    assert_eq!(cfg["cluster"]["master_ip"]["ip"], vip.as_str());
    assert_eq!(cfg["cluster"]["master_ip"]["netdev"], "eth0");

    // Down and up again.
    lab.maguey(&["cluster", "deactivate-master-ip"]).ok();
    assert!(!addrs(&lab, 1).contains(&cidr));
    assert!(wait_until(Duration::from_secs(30), || !answers(&vip)));
    lab.maguey(&["cluster", "activate-master-ip"]).ok();
    assert!(addrs(&lab, 1).contains(&cidr));
    assert!(answers(&vip));

    // A master that starts (after a power loss took the address away) brings it up.
    let d = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "kill", "--dir", &d, "1"]).ok();
    let l = maguey_lab::Lab::load(lab.dir.path()).unwrap();
    let ns = l.nodes[0].netns.clone().unwrap();
    let st = Command::new("ip")
        .args(["-n", &ns, "addr", "del", &cidr, "dev", "eth0"])
        .status()
        .unwrap();
    assert!(st.success());
    lab.maguey(&["lab", "up", "--dir", &d]).ok();
    assert!(
        wait_until(Duration::from_secs(30), || addrs(&lab, 1).contains(&cidr)),
        "{}",
        addrs(&lab, 1)
    );

    // Removed: down, and the config has none.
    lab.maguey(&["cluster", "modify", "--master-ip", "none"])
        .ok();
    assert!(!addrs(&lab, 1).contains(&cidr));
    let cfg = lab.maguey(&["cluster", "export-config"]).ok().json();
    assert!(cfg["cluster"]["master_ip"].is_null(), "{}", cfg["cluster"]);
    let r = lab.maguey(&["cluster", "activate-master-ip"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no master IP"), "{}", r.stderr);
}

#[test]
fn the_master_ip_moves_with_a_master_failover() {
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated"]);
    assert!(lab.has_netns());
    let t = Duration::from_secs(60);
    let log = |i: usize| std::fs::read_to_string(lab.node_dir(i).join("magueyd.log"));
    assert!(
        wait_until(t, || log(1).is_ok_and(
            |l| l.contains("node2 is a voter") && l.contains("node3 is a voter")
        )),
        "{}",
        lab.logs()
    );
    assert!(wait_until(t, || (2..=3)
        .all(|i| lab.node_dir(i).join("admin.pem").exists())));
    let prefix = lab.node_ip(1).rsplit_once('.').unwrap().0.to_string();
    let vip = format!("{prefix}.201");
    let cidr = format!("{vip}/24");
    lab.maguey_on(
        1,
        &[
            "cluster",
            "modify",
            "--master-ip",
            &vip,
            "--master-netdev",
            "eth0",
            "--master-netmask",
            "24",
        ],
    )
    .ok();
    assert!(addrs(&lab, 1).contains(&cidr));
    // A planned move: the old master drops the address, the new one brings it up.
    let r = lab
        .maguey_on(3, &["cluster", "master-failover", "--to", "node2"])
        .ok();
    assert!(r.stdout.contains("the master is now node2"), "{}", r.stdout);
    assert!(
        wait_until(t, || addrs(&lab, 2).contains(&cidr)
            && !addrs(&lab, 1).contains(&cidr)),
        "node1: {}\nnode2: {}",
        addrs(&lab, 1),
        addrs(&lab, 2)
    );
    assert!(!addrs(&lab, 3).contains(&cidr));
    assert!(answers(&vip));
}
