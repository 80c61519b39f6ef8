//! The deploy testbed (issue 17): three node VMs that are real Debian systems (systemd, the
//! Debian cloud kernel, a cached debootstrap root; crates/testbed/src/debian.rs) get the
//! built `.deb` files with `dpkg -i` (their dependencies are already in the image: no network)
//! and follow docs/install.md: every block marked `<!-- deploy: run on=... -->` runs, in page
//! order, on its nodes. Then, with one instance of the lab's tiny guest on node2:
//! - magueyd is active on every node, the guest's QEMU sits in its own scope under
//!   maguey.slice, and `systemctl restart magueyd` or `stop` + `start` keep the same QEMU,
//!   adopted again by the daemon;
//! - a clean shutdown of node2 powers the guest off with ACPI (recorded in
//!   host-shutdown.json); after node2 boots, systemd starts magueyd and the master's watcher
//!   starts the guest again with no command typed.
//!
//! One bring-up on purpose: booting Debian nodes under TCG costs a minute or more each.

use maguey_testbed::install_doc::{blocks, Marker, On};
use maguey_testbed::{sh_quote, ExtraFile, Testbed, TestbedConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// node2 (index 1) runs the instance; node1 (index 0) is the master.
const GUEST_NODE: usize = 1;
const LONG: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the `maguey` and `magueyd` this test runs with (built first).
fn bin_dir() -> PathBuf {
    let maguey = maguey_test_infra::vmlab::build_maguey();
    maguey.parent().expect("target/debug").to_path_buf()
}

/// `scripts/build-debs --fast` from the built binaries: the three packages in `out`.
fn build_debs(bins: &Path, out: &Path) -> Vec<PathBuf> {
    let o = Command::new(repo().join("scripts/build-debs"))
        .arg("--fast")
        .arg("--bin-dir")
        .arg(bins)
        .arg("--out")
        .arg(out)
        .output()
        .expect("running scripts/build-debs");
    assert!(
        o.status.success(),
        "build-debs: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut debs: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("debs dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert_eq!(debs.len(), 3, "{debs:?}");
    debs
}

fn run_ok(tb: &Testbed, i: usize, script: &str) -> String {
    let o = tb
        .exec(i, script, LONG)
        .unwrap_or_else(|e| panic!("node{}: {e:#}", i + 1));
    assert!(
        o.code == 0 && !o.timed_out,
        "node{}: {script:?} exited {} (timed out: {}):\n{}",
        i + 1,
        o.code,
        o.timed_out,
        o.out
    );
    o.out
}

/// Polls `script` on node `i` until it exits 0 (bounded); returns its output.
fn wait_ok(tb: &Testbed, i: usize, script: &str, limit: Duration, what: &str) -> String {
    let t = Instant::now();
    loop {
        let o = tb.exec(i, script, Duration::from_secs(60));
        match o {
            Ok(o) if o.code == 0 && !o.timed_out => return o.out,
            Ok(o) if t.elapsed() > limit => {
                panic!("node{}: {what}: not within {limit:?}: {}", i + 1, o.out)
            }
            Err(e) if t.elapsed() > limit => {
                panic!("node{}: {what}: not within {limit:?}: {e:#}", i + 1)
            }
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

fn env_for(tb: &Testbed, i: usize, token: Option<&str>) -> String {
    let mut e = format!(
        "export NODE_NAME={} NODE_IP={} MASTER_IP={} VG_DISK=/dev/vda\n",
        tb.node_name(i),
        tb.node_ip(i),
        tb.node_ip(0)
    );
    if let Some(t) = token {
        e.push_str(&format!("export TOKEN={}\n", sh_quote(t)));
    }
    e
}

fn qemu_pid(tb: &Testbed) -> u32 {
    run_ok(tb, GUEST_NODE, "cat /var/lib/maguey/run/kvm/vm1.pid")
        .trim()
        .parse()
        .expect("a pid")
}

fn alive(tb: &Testbed, pid: u32) -> bool {
    tb.run(
        GUEST_NODE,
        &format!("test -d /proc/{pid} && ! grep -q '^State:.*Z' /proc/{pid}/status"),
    )
    .map(|(c, _)| c == 0)
    .unwrap_or(false)
}

/// vm1's status on the master (`instance list`), checking that it is on node2.
fn master_status(tb: &Testbed) -> String {
    let out = run_ok(
        tb,
        0,
        "maguey instance list -o name,pnode,status --no-headers",
    );
    let row: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"vm1"))
        .unwrap_or_else(|| panic!("no vm1 in {out}"));
    assert_eq!(row.get(1), Some(&"node2"), "{out}");
    row.get(2).map(|s| s.to_string()).unwrap_or_default()
}

/// Waits (bounded) until the master reports vm1 running.
fn wait_running(tb: &Testbed, what: &str) {
    let t = Instant::now();
    loop {
        let st = master_status(tb);
        if st == "running" {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "{what}: vm1 is {st}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn vm_deploy_debian_nodes_install_md_systemd_scopes_and_host_shutdown() {
    let t_all = Instant::now();
    let bins = bin_dir();
    let work = tempfile::Builder::new()
        .prefix("mgdp-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let debs_dir = work.path().join("debs");
    let debs = build_debs(&bins, &debs_dir);
    let guest = maguey_lab::guest::ensure().expect("the tiny guest");
    let os_dir = work.path().join("os");
    maguey_lab::guest::write_lab_tiny_os(&os_dir).expect("lab-tiny OS");

    let mut cfg = TestbedConfig::new(NODES, work.path().join("tb"));
    cfg.debian = Some(maguey_testbed::debian::DEFAULT_SUITE.to_string());
    cfg.magueyd = None;
    cfg.memory_mib = 1024;
    cfg.first_node_number = 1;
    cfg.boot_timeout = Duration::from_secs(400);
    for d in &debs {
        cfg.extra_files.push(ExtraFile {
            src: d.clone(),
            dest: format!(
                "debs/{}",
                d.file_name().unwrap_or_default().to_string_lossy()
            ),
        });
    }
    cfg.extra_files.push(ExtraFile {
        src: guest.kernel.clone(),
        dest: "guest/vmlinuz".into(),
    });
    cfg.extra_files.push(ExtraFile {
        src: guest.initrd.clone(),
        dest: "guest/initrd.img".into(),
    });
    for e in std::fs::read_dir(os_dir.join("lab-tiny"))
        .expect("os dir")
        .flatten()
    {
        cfg.extra_files.push(ExtraFile {
            src: e.path(),
            dest: format!("os/lab-tiny/{}", e.file_name().to_string_lossy()),
        });
    }
    let mut tb = Testbed::up(cfg).expect("Debian node VMs");
    let t = tb.timings().clone();
    eprintln!(
        "timing: Debian node image {:.1}s (0: cached), boot of {NODES} nodes {:.1}s {:?}",
        t.image_build_seconds, t.boot_seconds, t.node_boot_seconds
    );
    let out = run_ok(
        &tb,
        0,
        "systemctl is-system-running --wait || true; cat /etc/debian_version; uname -r",
    );
    eprintln!("node1: {}", out.replace('\n', " "));

    // The packages, offline: every dependency is in the image already.
    let t_dpkg = Instant::now();
    for (i, (code, out)) in tb
        .run_all(
            "set -e\ncd /mnt/payload/debs\ndpkg -i maguey_*.deb magueyd_*.deb 2>&1\n\
             install -d /srv/guest /etc/maguey/os\ncp /mnt/payload/guest/* /srv/guest/\n\
             cp -a /mnt/payload/os/lab-tiny /etc/maguey/os/\n",
        )
        .expect("dpkg -i")
        .into_iter()
        .enumerate()
    {
        assert_eq!(code, 0, "node{}: dpkg -i: {out}", i + 1);
    }
    eprintln!(
        "timing: dpkg -i on {NODES} nodes {:.1}s",
        t_dpkg.elapsed().as_secs_f64()
    );
    // The master's watcher runs every 15 s here (300 by default), so that the guest comes back
    // soon after its node's boot.
    run_ok(
        &tb,
        0,
        "echo 'watcher_interval = 15' >> /etc/maguey/magueyd.toml",
    );

    // docs/install.md, block by block.
    let doc = std::fs::read_to_string(repo().join("docs/install.md")).expect("install.md");
    let blocks = blocks(&doc).unwrap_or_else(|e| panic!("docs/install.md: {e:?}"));
    let mut tokens: Vec<Option<String>> = vec![None; NODES];
    let mut ran = 0;
    for b in &blocks {
        let Marker::Run(on) = b.marker else {
            eprintln!("install.md line {}: skipped", b.line);
            continue;
        };
        let nodes: Vec<usize> = match on {
            On::All => (0..NODES).collect(),
            On::Master => vec![0],
            On::Nodes => (1..NODES).collect(),
        };
        if on == On::Nodes {
            for &i in &nodes {
                if tokens[i].is_none() {
                    let out = run_ok(
                        &tb,
                        0,
                        &format!(
                            "maguey node add --address {} --token-only {}",
                            tb.node_ip(i),
                            tb.node_name(i)
                        ),
                    );
                    tokens[i] = Some(out.trim().to_string());
                }
            }
        }
        let t_block = Instant::now();
        let script = |i: usize| {
            format!(
                "{}exec bash -euo pipefail -c {}",
                env_for(&tb, i, tokens[i].as_deref()),
                sh_quote(&b.script)
            )
        };
        if on == On::All {
            let results: Vec<(usize, String, maguey_testbed::Output)> = std::thread::scope(|s| {
                let hs: Vec<_> = nodes
                    .iter()
                    .map(|&i| {
                        let sc = script(i);
                        let tb = &tb;
                        s.spawn(move || (i, sc.clone(), tb.exec(i, &sc, LONG).expect("agent")))
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().expect("thread")).collect()
            });
            for (i, _, o) in results {
                assert!(
                    o.code == 0 && !o.timed_out,
                    "install.md line {} on node{}: exit {}:\n{}",
                    b.line,
                    i + 1,
                    o.code,
                    o.out
                );
            }
        } else {
            for &i in &nodes {
                let o = tb.exec(i, &script(i), LONG).expect("agent");
                assert!(
                    o.code == 0 && !o.timed_out,
                    "install.md line {} on node{}: exit {}:\n{}",
                    b.line,
                    i + 1,
                    o.code,
                    o.out
                );
            }
        }
        ran += 1;
        eprintln!(
            "install.md line {} ({on:?}) ran in {:.1}s",
            b.line,
            t_block.elapsed().as_secs_f64()
        );
    }
    assert!(ran >= 6, "only {ran} blocks ran");

    for i in 0..NODES {
        assert_eq!(
            run_ok(&tb, i, "systemctl is-active magueyd").trim(),
            "active"
        );
        assert_eq!(
            run_ok(&tb, i, "systemctl is-enabled magueyd").trim(),
            "enabled"
        );
    }
    let nodes = run_ok(&tb, 0, "maguey node list -o name --no-headers");
    assert_eq!(
        nodes.split_whitespace().collect::<Vec<_>>(),
        ["node1", "node2", "node3"]
    );

    // A first instance: the lab's tiny guest on node2, nested KVM inside the node VM.
    run_ok(
        &tb,
        0,
        "maguey instance add -t plain --disk 0:size=64M -o lab-tiny -n node2 -B memory=128M \
         -H kvm:kvm_path=/usr/bin/qemu-system-x86_64,kernel_path=/srv/guest/vmlinuz,initrd_path=/srv/guest/initrd.img,root_path=/dev/vda,kernel_args='ro quiet' vm1",
    );
    wait_ok(
        &tb,
        GUEST_NODE,
        "grep -q MAGUEY-GUEST-READY /var/lib/maguey/run/kvm/vm1.console.log",
        Duration::from_secs(180),
        "the guest's ready marker",
    );
    eprintln!(
        "timing: dpkg -i to the first guest's ready marker {:.1}s",
        t_dpkg.elapsed().as_secs_f64()
    );
    let pid = qemu_pid(&tb);
    let cg = run_ok(&tb, GUEST_NODE, &format!("cat /proc/{pid}/cgroup"));
    assert_eq!(cg.trim(), "0::/maguey.slice/maguey-vm1.scope", "{cg}");
    // On a packaged host QEMU runs as maguey-qemu (security_model=user, set by cluster init),
    // started as that user: no root id left, seccomp filtering, the whole sandbox.
    let uid = run_ok(&tb, GUEST_NODE, "id -u maguey-qemu");
    let status = run_ok(&tb, GUEST_NODE, &format!("cat /proc/{pid}/status"));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(
        field("Uid:").iter().all(|u| *u == uid.trim()),
        "QEMU's uids: {:?} (maguey-qemu is {})",
        field("Uid:"),
        uid.trim()
    );
    assert!(!field("Groups:").contains(&"0"), "{status}");
    assert_eq!(field("Seccomp:"), ["2"], "{status}");
    let argv = run_ok(
        &tb,
        GUEST_NODE,
        &format!("tr '\\0' ' ' < /proc/{pid}/cmdline"),
    );
    assert!(
        argv.contains("elevateprivileges=deny") && !argv.contains("-run-with"),
        "{argv}"
    );
    wait_running(&tb, "after instance add");

    // The daemon goes and comes back; the VM stays and is adopted again.
    for how in [
        "systemctl restart magueyd",
        "systemctl stop magueyd && sleep 2 && systemctl start magueyd",
    ] {
        run_ok(&tb, GUEST_NODE, how);
        assert_eq!(
            run_ok(&tb, GUEST_NODE, "systemctl is-active magueyd").trim(),
            "active"
        );
        assert!(alive(&tb, pid), "{how}: QEMU {pid} died");
        assert_eq!(qemu_pid(&tb), pid, "{how}");
        wait_running(&tb, how);
        let cg = run_ok(&tb, GUEST_NODE, &format!("cat /proc/{pid}/cgroup"));
        assert_eq!(cg.trim(), "0::/maguey.slice/maguey-vm1.scope", "{how}");
    }

    // Memory of the daemons.
    let rss = |i: usize| -> u64 {
        run_ok(&tb, i, "ps -o rss= -C magueyd | head -n1")
            .trim()
            .parse()
            .unwrap_or(0)
    };
    eprintln!(
        "measure: magueyd RSS master {} KiB, node2 (1 instance) {} KiB, node3 {} KiB",
        rss(0),
        rss(1),
        rss(2)
    );

    // A clean shutdown of node2: ACPI power-down of the guest, recorded.
    let took = tb
        .shutdown_node(GUEST_NODE, "systemctl poweroff", Duration::from_secs(400))
        .expect("clean shutdown of node2");
    eprintln!("timing: clean shutdown of node2 {took:.1}s");
    let boot = tb.power_on(GUEST_NODE).expect("node2 boots again");
    eprintln!("timing: node2 boot {boot:.1}s");
    let rec = run_ok(
        &tb,
        GUEST_NODE,
        "cat /var/lib/maguey/run/kvm/host-shutdown.json",
    );
    let rec: serde_json::Value = serde_json::from_str(&rec).expect("host-shutdown.json");
    assert_eq!(
        rec["instances"],
        serde_json::json!([{"name": "vm1", "clean": true}]),
        "{rec}"
    );
    let journal = run_ok(
        &tb,
        GUEST_NODE,
        "journalctl -b -1 -u maguey-guests --no-pager | tail -n 20",
    );
    assert!(journal.contains("powered off (ACPI)"), "{journal}");

    // systemd starts magueyd; the master's watcher starts the guest: no command typed.
    wait_ok(
        &tb,
        GUEST_NODE,
        "systemctl is-active magueyd",
        Duration::from_secs(120),
        "magueyd after boot",
    );
    let t_back = Instant::now();
    wait_ok(
        &tb,
        GUEST_NODE,
        "grep -q 'MAGUEY-GUEST-READY boot=2' /var/lib/maguey/run/kvm/vm1.console.log",
        Duration::from_secs(300),
        "the watcher starting vm1 again",
    );
    eprintln!(
        "timing: node2 up to vm1 started again by the watcher {:.1}s",
        t_back.elapsed().as_secs_f64()
    );
    let pid2 = qemu_pid(&tb);
    let cg = run_ok(&tb, GUEST_NODE, &format!("cat /proc/{pid2}/cgroup"));
    assert_eq!(cg.trim(), "0::/maguey.slice/maguey-vm1.scope");
    eprintln!(
        "timing: vm_deploy total {:.1}s",
        t_all.elapsed().as_secs_f64()
    );
    tb.down().expect("teardown");
}
