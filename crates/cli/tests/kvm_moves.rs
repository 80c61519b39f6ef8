//! Real VMs moving between nodes through Maguey (QEMU, TCG here): live migration on shared
//! and on local file disks while the guest's tick counter keeps rising without a reset,
//! data on the disk read back afterwards, `node evacuate` of three running instances,
//! `instance move`, and the target killed in the middle of a migration.

mod common;
use common::*;
use maguey_lab::guest::{READY_MARKER, TICK_MARKER};
use maguey_test_infra::kvm;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(120);

/// Tick numbers printed on a node's console log of the instance.
fn ticks(lab: &TestLab, node: usize, name: &str) -> Vec<u64> {
    kvm::console(lab, node, name)
        .lines()
        .filter_map(|l| l.split(TICK_MARKER).nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits until the instance on `node` printed a tick above `above`; returns the last tick.
fn wait_tick(lab: &TestLab, node: usize, name: &str, above: u64) -> u64 {
    let mut last = 0;
    let ok = wait_until(Duration::from_secs(60), || {
        last = ticks(lab, node, name).last().copied().unwrap_or(0);
        last > above
    });
    assert!(
        ok,
        "no tick above {above} on node{node}:\n{}",
        kvm::console(lab, node, name)
    );
    last
}

/// Live-migrates `name` to `to` and checks that the guest went on counting there.
fn migrate_live(lab: &TestLab, name: &str, to: &str) -> f64 {
    let from = node_num(&pnode(lab, name));
    let to_n = node_num(to);
    let before = wait_tick(lab, from, name, 1);
    let old_pid = kvm::qemu_pid(lab, from, name).unwrap();
    let t = Instant::now();
    let r = lab.maguey(&["instance", "migrate", "-n", to, name]).ok();
    let secs = t.elapsed().as_secs_f64();
    assert!(r.stdout.contains("migration done"), "{}", r.stdout);
    assert_eq!(pnode(lab, name), to);
    assert_eq!(status(lab, name), "running");
    assert!(wait_until(Duration::from_secs(60), || !kvm::alive(old_pid)));
    // No reboot on the target: no ready marker there, and the counter goes on from where
    // it was (the target's console starts after the switch, so its first tick is later).
    let after = wait_tick(lab, to_n, name, before);
    assert!(after > before, "{after} <= {before}");
    let first = ticks(lab, to_n, name)[0];
    assert!(
        first > 1,
        "the counter restarted: {}",
        kvm::console(lab, to_n, name)
    );
    assert!(!kvm::console(lab, to_n, name).contains(READY_MARKER));
    secs
}

#[test]
fn kvm_migrate_evacuate_move_and_target_killed() {
    // QEMU runs as the unprivileged user `cluster init` picks (docs/security.md).
    maguey_test_infra::kvm::ensure_qemu_user();
    let lab = TestLab::up_with(maguey_bin(), 3, &["--kvm"]);

    // Shared disks: only the memory moves.
    kvm::add_tiny(&lab, "sharedfile", "node1", "vm1");
    kvm::wait_boot(&lab, 1, "vm1", 1, BOOT);
    let secs = migrate_live(&lab, "vm1", "node2");
    eprintln!("figure: live migration through Maguey (sharedfile, 128 MiB guest): {secs:.2} s");

    // The balloon: the running guest gives memory back.
    lab.maguey(&["instance", "modify", "-m", "100M", "--force", "vm1"])
        .ok();
    assert!(
        wait_until(Duration::from_secs(60), || instances(&lab, "name,oper_ram")
            .iter()
            .any(|i| i["name"] == "vm1" && i["oper_ram"] == 100)),
        "{:?}",
        instances(&lab, "name,oper_ram")
    );

    // Local disks: mirrored to the target, then the memory.
    kvm::add_tiny(&lab, "file", "node1", "vm2");
    kvm::wait_boot(&lab, 1, "vm2", 1, BOOT);
    let secs = migrate_live(&lab, "vm2", "node3");
    eprintln!("figure: live migration through Maguey (file, 64 MiB disk): {secs:.2} s");
    let disks = |n: usize| {
        let mut v = Vec::new();
        find_files(&lab.node_dir(n).join("file-storage/vm2"), &mut v);
        v
    };
    assert!(disks(1).is_empty(), "old disk left on node1");
    assert_eq!(disks(3).len(), 1);
    // The data written before the migration is on the new node's disk: the boot counter
    // kept there says this is the second boot.
    lab.maguey(&["instance", "reboot", "--type", "full", "vm2"])
        .ok();
    kvm::wait_boot(&lab, 3, "vm2", 2, BOOT);

    // The target killed in the middle of a migration: the job fails, the instance keeps
    // running on its node, the config is unchanged.
    lab.maguey(&["instance", "modify", "-H", "migration_bandwidth=1", "vm2"])
        .ok();
    let before = wait_tick(&lab, 3, "vm2", 0);
    let src_pid = kvm::qemu_pid(&lab, 3, "vm2").unwrap();
    let serial = lab.serial();
    let job = lab
        .maguey(&["instance", "migrate", "--submit", "-n", "node1", "vm2"])
        .ok();
    let id = job.stdout.trim().to_string();
    let mut killed = false;
    assert!(wait_until(Duration::from_secs(60), || {
        if let Some(p) = kvm::qemu_pid(&lab, 1, "vm2").filter(|p| kvm::alive(*p)) {
            // SAFETY: kill(2) on the QEMU process this test's lab started.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
            killed = true;
        }
        killed
    }));
    let r = lab.maguey(&["job", "watch", &id]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("keeps running on node3"), "{}", r.stdout);
    assert_eq!(pnode(&lab, "vm2"), "node3");
    assert_eq!(lab.serial(), serial);
    assert!(kvm::alive(src_pid));
    wait_tick(&lab, 3, "vm2", before);
    assert!(
        disks(1).is_empty(),
        "the failed migration left a disk on node1"
    );

    // The source's magueyd killed in the middle of a migration, then restarted: the job
    // fails, and `migrate --cleanup` leaves exactly one running copy that the config names.
    let job = lab
        .maguey(&["instance", "migrate", "--submit", "-n", "node1", "vm2"])
        .ok();
    let id = job.stdout.trim().to_string();
    let started = wait_until(Duration::from_secs(60), || {
        kvm::qemu_pid(&lab, 1, "vm2").is_some_and(kvm::alive)
    });
    assert!(
        started,
        "no target QEMU: {}",
        lab.maguey(&["job", "watch", &id]).stdout
    );
    let d3 = lab.pid(3).unwrap();
    // SAFETY: kill(2) on the lab's own daemon.
    unsafe { libc::kill(d3, libc::SIGKILL) };
    let r = lab.maguey(&["job", "watch", &id]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let dir = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "up", "--dir", &dir]).ok();
    assert!(wait_until(Duration::from_secs(30), || lab
        .maguey(&["instance", "migrate", "--cleanup", "vm2"])
        .code
        == 0));
    let n = node_num(&pnode(&lab, "vm2"));
    let other = if n == 1 { 3 } else { 1 };
    assert!(kvm::qemu_pid(&lab, n, "vm2").is_some_and(kvm::alive));
    assert!(kvm::qemu_pid(&lab, other, "vm2").is_none_or(|p| !kvm::alive(p)));
    assert_eq!(status(&lab, "vm2"), "running");
    let t = ticks(&lab, n, "vm2").last().copied().unwrap_or(0);
    wait_tick(&lab, n, "vm2", t);

    // Starting an instance whose disk is gone: a clear error, nothing else changes.
    lab.maguey(&["instance", "stop", "vm2"]).ok();
    let mut files = Vec::new();
    find_files(&lab.node_dir(n).join("file-storage/vm2"), &mut files);
    let saved = files[0].with_extension("saved");
    std::fs::rename(&files[0], &saved).unwrap();
    let r = lab.maguey(&["instance", "start", "vm2"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("disk"), "{}", r.stderr);
    assert_eq!(status(&lab, "vm2"), "ADMIN_down");
    std::fs::rename(&saved, &files[0]).unwrap();
    lab.maguey(&["instance", "start", "vm2"]).ok();
    lab.maguey(&["instance", "modify", "-H", "migration_bandwidth=32", "vm2"])
        .ok();
    if n != 3 {
        lab.maguey(&["instance", "migrate", "-n", "node3", "vm2"])
            .ok();
    }

    // Node evacuation of three running instances: each leaves as its own job.
    kvm::add_tiny(&lab, "file", "node2", "vm3");
    kvm::add_tiny(&lab, "file", "node2", "vm4");
    kvm::wait_boot(&lab, 2, "vm3", 1, BOOT);
    kvm::wait_boot(&lab, 2, "vm4", 1, BOOT);
    let t = Instant::now();
    let r = lab
        .maguey(&["node", "evacuate", "--primary-only", "node2"])
        .ok();
    eprintln!(
        "figure: node evacuate of 3 instances: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.stdout.matches("succeeded").count(), 3, "{}", r.stdout);
    for name in ["vm1", "vm3", "vm4"] {
        let n = pnode(&lab, name);
        assert_ne!(n, "node2", "{name}");
        assert_eq!(status(&lab, name), "running", "{name}");
        wait_tick(&lab, node_num(&n), name, 1);
        assert!(
            kvm::qemu_pid(&lab, 2, name).is_none_or(|p| !kvm::alive(p)),
            "{name} still on node2"
        );
    }

    // Offline move: stopped, copied, started on the other node with its disk.
    let from = node_num(&pnode(&lab, "vm3"));
    let to = if from == 1 { "node3" } else { "node1" };
    let r = lab.maguey(&["instance", "move", "-n", to, "vm3"]).ok();
    assert!(
        r.stdout.contains("copy of disk disk/0: 100%"),
        "{}",
        r.stdout
    );
    assert_eq!(pnode(&lab, "vm3"), to);
    kvm::wait_boot(&lab, node_num(to), "vm3", 2, BOOT);
    for name in ["vm1", "vm2", "vm3", "vm4"] {
        lab.maguey(&["instance", "remove", "-f", name]).ok();
    }
}
