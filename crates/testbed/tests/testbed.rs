//! Boots two real node VMs and checks the agent, LVM, DRBD 8.4 replication and failover,
//! link cuts, nested KVM, the packed `magueyd`, a power cycle, and a clean teardown.
//! One test on purpose: each boot costs ~15-20 s of a 2-core machine.

use maguey_testbed::{netns_exists, pid_alive, Testbed, TestbedConfig, VG_NAME};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `target/debug/magueyd`, built if missing (it belongs to another package, so `cargo test -p
/// maguey-testbed` does not build it).
fn magueyd() -> PathBuf {
    if let Some(p) = maguey_testbed::find_magueyd() {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = std::process::Command::new(cargo)
        .args(["build", "-p", "maguey-cli", "--bin", "magueyd"])
        .status()
        .expect("running cargo build");
    assert!(st.success(), "building magueyd failed");
    maguey_testbed::find_magueyd().expect("magueyd after building it")
}

/// Polls `/proc/drbd` on `node` until `pred(connection state)` holds; returns the state.
fn wait_cs(tb: &Testbed, node: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tb
            .run_ok(node, "sed -n 's/.* cs:\\([A-Za-z]*\\) .*/\\1/p' /proc/drbd")
            .expect("reading /proc/drbd");
        let cs = out.trim().to_string();
        if pred(&cs) {
            return cs;
        }
        assert!(
            Instant::now() < deadline,
            "node {node}: DRBD never got {what} (last state {cs:?})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn two_nodes_lvm_drbd_failover_link_cut_nested_kvm_and_teardown() {
    let magueyd = magueyd();
    let tmp = tempfile::Builder::new()
        .prefix("mtb")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut cfg = TestbedConfig::new(2, tmp.path());
    cfg.magueyd = Some(magueyd);
    let t0 = Instant::now();
    let mut tb = Testbed::up(cfg).expect("testbed up");
    let t = tb.timings().clone();
    eprintln!(
        "timing: up {:.1}s (image build {:.1}s, prepare {:.1}s, boot 2 nodes {:.1}s, per node {:?})",
        t0.elapsed().as_secs_f64(),
        t.image_build_seconds,
        t.prepare_seconds,
        t.boot_seconds,
        t.node_boot_seconds
    );
    // The default name is unique per process and testbed: mtb-PID-N.
    let netns = tb.netns().to_string();
    assert!(
        netns.starts_with(&format!("mtb-{}-", std::process::id())),
        "{netns}"
    );
    assert!(netns_exists(&netns));

    // The agent: exact output and exit codes, timeouts, the second port.
    assert_eq!(tb.run(0, "exit 7").expect("run"), (7, String::new()));
    assert_eq!(
        tb.run(1, "echo out; echo err >&2; printf 'no newline'; exit 0")
            .expect("run"),
        (0, "out\nerr\nno newline".to_string())
    );
    let o = tb
        .exec(
            0,
            "echo begin; sleep 30; echo never",
            Duration::from_secs(1),
        )
        .expect("exec");
    assert!(o.timed_out, "{o:?}");
    assert_eq!(o.out, "begin\n");
    let o = tb
        .diag(1, "hostname; cat /etc/hostname", Duration::from_secs(10))
        .expect("diag");
    assert_eq!((o.code, o.out.as_str()), (0, "node1\nnode1\n"));
    assert_eq!(tb.node_ip(1).to_string(), "10.77.0.2");

    // Nested KVM: kvm_amd loaded on the TCG-emulated SVM.
    let (code, out) = tb
        .run(0, "test -c /dev/kvm && grep -c '^kvm_amd ' /proc/modules")
        .expect("kvm check");
    assert_eq!((code, out.trim()), (0, "1"), "no /dev/kvm in the node");

    // QEMU in the node starts a KVM machine with its firmware (SeaBIOS, the virtio-net ROM).
    tb.run_ok(
        0,
        "echo quit | qemu-system-x86_64 -accel kvm -cpu host -M pc -m 64 -nodefaults \
         -display none -S -monitor stdio -netdev user,id=n -device virtio-net-pci,netdev=n \
         >/dev/null",
    )
    .expect("nested QEMU with KVM starts");

    // The packed magueyd and its libraries.
    let out = tb
        .run_ok(0, "magueyd --version")
        .expect("magueyd runs in the node");
    assert!(out.starts_with("magueyd "), "{out}");

    // Nodes reach each other, and the host side of the namespace reaches them.
    tb.run_ok(1, "ping -c 1 -W 5 node0 >/dev/null")
        .expect("node1 pings node0");
    tb.run_ok(0, "(nc -l -p 5555 < /etc/hostname > /dev/null 2>&1 &)")
        .expect("listener on node0");
    let addr = std::net::SocketAddr::from((tb.node_ip(0), 5555));
    let got = tb
        .in_netns(move || -> std::io::Result<String> {
            use std::io::Read;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut c = loop {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        })
        .expect("in_netns")
        .expect("TCP from the namespace to node0");
    assert_eq!(got, "node0\n");
    let st = tb
        .netns_command("ip")
        .args(["-br", "link", "show", "br0"])
        .output()
        .expect("ip netns exec");
    assert!(String::from_utf8_lossy(&st.stdout).contains("UP"));

    // Files pushed over the network.
    let blob: Vec<u8> = (0u32..4 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let src = tmp.path().join("blob");
    std::fs::write(&src, &blob).expect("blob");
    let t = Instant::now();
    tb.put_file(1, &src, "/root/in dir/blob").expect("put_file");
    eprintln!("timing: put_file 4 MiB {:.1}s", t.elapsed().as_secs_f64());
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&blob))
    };
    let got = tb
        .run_ok(1, "sha256sum '/root/in dir/blob' | cut -d' ' -f1")
        .expect("sha256sum");
    assert_eq!(got.trim(), want);

    // LVM.
    let t = Instant::now();
    tb.setup_vg().expect("setup_vg");
    let lv = "lvcreate -q -L 64M -n data xenvg && lvcreate -q -L 128M -n meta xenvg && \
              lvs --noheadings -o lv_name xenvg";
    for (i, (code, out)) in tb.run_all(lv).expect("lvcreate").into_iter().enumerate() {
        assert_eq!(code, 0, "node {i}: {out}");
        assert!(out.contains("data") && out.contains("meta"), "{out}");
    }
    for i in 0..2 {
        let out = tb.run_ok(i, "vgs --noheadings -o vg_name").expect("vgs");
        assert_eq!(out.trim(), VG_NAME);
    }
    eprintln!(
        "timing: vgcreate + 2 lvcreate on both nodes {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // DRBD 8.4 between the nodes, driven with drbdsetup directly.
    let t = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let tb = &tb;
        let hs: Vec<_> = (0..2)
            .map(|i| {
                s.spawn(move || {
                    let (me, peer) = (tb.node_ip(i), tb.node_ip(1 - i));
                    tb.run(
                        i,
                        &format!(
                            "set -e\n\
                             drbdmeta --force /dev/drbd0 v08 /dev/xenvg/meta 0 create-md\n\
                             drbdsetup new-resource r0\n\
                             drbdsetup new-minor r0 0 0\n\
                             drbdsetup attach 0 /dev/xenvg/data /dev/xenvg/meta 0 \
                             --on-io-error=detach --c-plan-ahead=0 --resync-rate=1000M\n\
                             drbdsetup connect r0 ipv4:{me}:7788 ipv4:{peer}:7788 --protocol=C \
                             --allow-two-primaries=yes --ping-int=1 --connect-int=1\n"
                        ),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (i, r) in results.into_iter().enumerate() {
        let (code, out) = r.expect("drbd setup");
        assert_eq!(code, 0, "node {i}: {out}");
    }
    wait_cs(&tb, 0, "Connected", |cs| cs == "Connected");
    eprintln!(
        "timing: DRBD create-md + attach + connect {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let sum0 = tb
        .run_ok(
            0,
            "set -e\n\
             drbdsetup new-current-uuid 0 --clear-bitmap\n\
             i=0; until grep -q 'ds:UpToDate/UpToDate' /proc/drbd; do \
               i=$((i+1)); [ $i -lt 100 ] || exit 1; usleep 100000; done\n\
             drbdsetup primary 0\n\
             dd if=/dev/urandom of=/tmp/blob bs=1M count=16 2>/dev/null\n\
             dd if=/tmp/blob of=/dev/drbd0 bs=1M oflag=direct 2>/dev/null\n\
             md5sum < /tmp/blob | cut -d' ' -f1\n\
             drbdsetup secondary 0\n",
        )
        .expect("write on node0");
    let sum1 = tb
        .run_ok(
            1,
            "set -e\n\
             drbdsetup primary 0\n\
             dd if=/dev/drbd0 bs=1M count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1\n",
        )
        .expect("read on node1");
    assert_eq!(sum0.trim().len(), 32, "{sum0}");
    assert_eq!(
        sum0, sum1,
        "the data read on node1 differs from what node0 wrote"
    );
    eprintln!(
        "timing: write 16 MiB on node0 + failover + read back on node1 {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // A cut link breaks the connection; restoring it reconnects.
    let t = Instant::now();
    tb.cut_link(0).expect("cut_link");
    let cs = wait_cs(&tb, 0, "disconnected", |cs| {
        cs == "WFConnection" || cs == "StandAlone"
    });
    eprintln!(
        "timing: link cut → {cs} in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    tb.restore_link(0).expect("restore_link");
    wait_cs(&tb, 0, "Connected again", |cs| cs == "Connected");
    eprintln!(
        "timing: link restored → Connected in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Power cycle node1: the disk (and the VG on it) survives.
    let old_pid = tb.pid(1).expect("pid");
    let secs = tb.reboot_node(1).expect("reboot node1");
    eprintln!("timing: reboot node1 {secs:.1}s");
    assert!(!pid_alive(old_pid));
    let out = tb
        .run_ok(
            1,
            "vgs --noheadings -o vg_name; lvs --noheadings -o lv_name xenvg",
        )
        .expect("vgs after reboot");
    assert!(out.contains(VG_NAME) && out.contains("data"), "{out}");

    // Teardown: no QEMU left, no namespace.
    let console = tb.console_log(0).map(|p| p.to_path_buf()).expect("console");
    let pids: Vec<i32> = (0..tb.nodes()).filter_map(|i| tb.pid(i)).collect();
    assert_eq!(pids.len(), 2);
    tb.down().expect("down");
    for p in pids {
        assert!(!pid_alive(p), "QEMU {p} survived the teardown");
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "QEMU {p} was not reaped"
        );
    }
    assert!(
        !netns_exists(&netns),
        "the netns {netns} survived the teardown"
    );
    let log = std::fs::read_to_string(&console).expect("console log kept");
    assert!(log.contains("MAGUEY-NODE-READY node0"), "{log}");
    assert!(log.contains("drbd0"), "DRBD messages reach the console log");
    eprintln!("timing: whole test {:.1}s", t0.elapsed().as_secs_f64());
}
