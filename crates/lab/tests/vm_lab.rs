//! `maguey lab up --vm-nodes 2`: a cluster of two node VMs (QEMU TCG, real LVM) formed by the
//! CLI, used from the host's CLI (a fake instance, a nested-KVM instance), a node power-cycled
//! back into the cluster, and everything taken down without leftovers. One lab boot on
//! purpose (~1.5 min of a 2-core machine).

use maguey_test_infra::vmlab::{build_maguey, VmLab};
use maguey_test_infra::wait_until;
use maguey_testbed::{netns_exists, pid_alive};
use std::time::{Duration, Instant};

fn qemu_pids_under(dir: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| pid_alive(p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("qemu-system") && c.contains(dir)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn vm_lab_cluster_instances_nested_kvm_power_cycle_and_down() {
    let maguey = build_maguey();
    let t0 = Instant::now();
    let mut lab = VmLab::up_cli(&maguey, 2);
    let t = lab.state.timings.clone();
    eprintln!(
        "timing: lab up --vm-nodes 2 {:.1}s (image build {:.1}s, boot {:.1}s, xenvg {:.1}s, cluster ready {:.1}s)",
        t0.elapsed().as_secs_f64(),
        t.image_build_seconds,
        t.boot_seconds,
        t.vg_seconds,
        t.cluster_seconds
    );
    let dir = lab.dir.path().display().to_string();
    let (netns, veth) = (lab.state.netns.clone(), lab.state.veth.clone());
    assert!(netns_exists(&netns));
    assert_eq!(qemu_pids_under(&dir).len(), 2);

    // `lab env` points the CLI at the VMs' master.
    let env = lab.maguey(&["lab", "env", "--dir", &dir]).ok().stdout;
    assert!(
        env.contains(&format!("export MAGUEY_DIR={}", lab.client_dir().display())),
        "{env}"
    );
    assert!(
        env.contains(&format!("MAGUEY_RAPI_URL=https://{}:", lab.node_ip(1))),
        "{env}"
    );

    let nodes = lab
        .maguey(&[
            "node",
            "list",
            "-o",
            "name,pip,sip,offline",
            "--output",
            "json",
        ])
        .ok()
        .json();
    let nodes = nodes.as_array().expect("a list of nodes").clone();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for (k, n) in nodes.iter().enumerate() {
        assert_eq!(n["name"], format!("node{}", k + 1));
        assert_eq!(n["pip"], lab.node_ip(k + 1));
        assert_eq!(n["sip"], lab.node_ip(k + 1));
        assert_eq!(n["offline"], false, "{nodes:?}");
    }
    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(
        v.code,
        0,
        "verify:\n{}\n{}\n{}",
        v.stdout,
        v.stderr,
        lab.logs()
    );

    // A fake-hypervisor instance with a file disk, on node2, and its removal.
    let t1 = Instant::now();
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=16M",
        "-o",
        "noop",
        "-H",
        "fake",
        "-n",
        "node2",
        "--no-nics",
        "inst1",
    ]);
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, lab.logs());
    let add_s = t1.elapsed().as_secs_f64();
    let list = lab
        .maguey(&[
            "instance",
            "list",
            "-o",
            "name,pnode,status",
            "--output",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(list[0]["pnode"], "node2", "{list}");
    assert_eq!(list[0]["status"], "running", "{list}");
    // Its disk image is in node2's file storage, not node1's.
    let files = lab.run_ok(2, "find /var/lib/maguey/file-storage -type f");
    assert!(files.contains("inst1"), "{files}");
    let none = lab.run_ok(
        1,
        "find /var/lib/maguey/file-storage -type f 2>/dev/null; true",
    );
    assert!(!none.contains("inst1"), "{none}");
    let t2 = Instant::now();
    lab.maguey(&["instance", "remove", "-f", "inst1"]).ok();
    let rm_s = t2.elapsed().as_secs_f64();
    let files = lab.run_ok(2, "find /var/lib/maguey/file-storage -type f");
    assert!(!files.contains("inst1"), "{files}");
    eprintln!("timing: instance add {add_s:.1}s, remove {rm_s:.1}s");

    // Nested KVM through Maguey: the tiny guest on node1 runs with -accel kvm and ticks.
    let t4 = Instant::now();
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=64M",
        "-o",
        "lab-tiny",
        "-H",
        "kvm",
        "-n",
        "node1",
        "k1",
    ]);
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, lab.logs());
    let ps = lab.run_ok(1, "ps -o args | grep '[q]emu-system-x86_64 -name k1'");
    assert!(ps.contains("-accel kvm"), "{ps}");
    let ticks = || {
        lab.run(
            1,
            "grep -c MAGUEY-TICK /var/lib/maguey/run/kvm/k1.console.log",
        )
        .1
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(90), || ticks() >= 2),
        "the nested guest never ticked"
    );
    eprintln!(
        "timing: kvm instance add to its second tick {:.1}s",
        t4.elapsed().as_secs_f64()
    );
    // It runs as the node's unprivileged maguey-qemu (uid 990, testbed init.sh), with the
    // whole seccomp sandbox.
    let status = lab.run_ok(1, "cat /proc/$(cat /var/lib/maguey/run/kvm/k1.pid)/status");
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "990 990 990 990", "{status}");
    assert_eq!(field("Gid:"), "990 990 990 990", "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    lab.maguey(&["instance", "remove", "-f", "k1"]).ok();

    // Power cycle of node2: its magueyd comes back with its state (on /dev/vdb), and xenvg
    // (on /dev/vda) is still there.
    let t5 = Instant::now();
    let boot = lab.reboot(2);
    let back = wait_until(Duration::from_secs(90), || {
        let r = lab.maguey(&["node", "list", "-o", "name,mfree", "--output", "json"]);
        r.code == 0 && r.json()[1]["mfree"].is_number()
    });
    assert!(back, "node2 did not come back\n{}", lab.logs());
    eprintln!(
        "timing: power cycle of node2: boot {boot:.1}s, back in the cluster {:.1}s",
        t5.elapsed().as_secs_f64()
    );
    let v = lab.maguey(&["cluster", "verify"]);
    assert_eq!(
        v.code,
        0,
        "verify:\n{}\n{}\n{}",
        v.stdout,
        v.stderr,
        lab.logs()
    );

    // Real LVM: xenvg on each node's disk.
    for n in 1..=2 {
        let vgs = lab.run_ok(n, "vgs --noheadings -o vg_name,pv_count");
        assert!(vgs.contains("xenvg"), "node{n}: {vgs}");
    }

    // `lab down` from another process: no QEMU, no namespace, no veth, no lab files.
    let t3 = Instant::now();
    let d = lab.maguey(&["lab", "down", "--dir", &dir]).ok();
    assert!(d.stdout.contains('2'), "{}", d.stdout);
    eprintln!("timing: lab down {:.1}s", t3.elapsed().as_secs_f64());
    assert!(qemu_pids_under(&dir).is_empty());
    assert!(!netns_exists(&netns));
    assert!(!std::path::Path::new("/sys/class/net").join(&veth).exists());
    assert!(!lab.dir.path().join("lab.json").exists());
    assert!(lab.maguey(&["lab", "env", "--dir", &dir]).code != 0);
    drop(lab);
}
