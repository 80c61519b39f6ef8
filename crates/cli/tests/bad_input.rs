//! Bad input gets a clear message, a non-zero exit and no config change.

mod common;
use common::*;

fn refused(lab: &TestLab, args: &[&str], needle: &str) {
    let before = lab.serial();
    let r = lab.maguey(args);
    assert_ne!(r.code, 0, "{args:?} succeeded:\n{}", r.stdout);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(needle),
        "{args:?}: expected '{needle}' in:\n{all}"
    );
    assert_eq!(lab.serial(), before, "{args:?} changed the config");
}

#[test]
fn bad_input_changes_nothing() {
    let lab = lab(2);
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=32M",
        "-o",
        "noop",
        "-n",
        "node1",
        "web1",
    ])
    .ok();
    let add = |name: &'static str| -> Vec<&'static str> {
        vec![
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=32M",
            "-o",
            "noop",
            "-n",
            "node1",
            name,
        ]
    };
    // Invalid names: usage errors (exit 2) before anything is sent.
    for bad in [
        "a;rm -rf /",
        "$(reboot)",
        "x y",
        "trailing-",
        "",
        "a..b",
        &"n".repeat(300),
    ] {
        let before = lab.serial();
        let mut args = add("placeholder");
        *args.last_mut().unwrap() = bad;
        let r = lab.maguey(&args);
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
        assert!(r.stderr.contains("invalid instance name"), "{}", r.stderr);
        assert_eq!(lab.serial(), before);
    }
    let r = lab.maguey(&["node", "add", "bad|name", "--address", "127.9.9.9"]);
    assert_eq!(r.code, 2);
    // Duplicates, unknown nodes, impossible memory, bad parameters.
    refused(&lab, &add("web1"), "already in use");
    refused(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=32M",
            "-o",
            "noop",
            "-n",
            "nosuchnode",
            "web2",
        ],
        "nosuchnode",
    );
    refused(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=32M",
            "-o",
            "noop",
            "-n",
            "node1",
            "-B",
            "maxmem=64G",
            "big",
        ],
        "memory",
    );
    // Ganeti's `-B memory=SIZE` sets maxmem and minmem; a misspelt key is refused.
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=32M",
        "-o",
        "noop",
        "-n",
        "node1",
        "-B",
        "memory=96M",
        "mem1",
    ])
    .ok();
    let m = instances(&lab, "name,be/maxmem,be/minmem");
    let m = m.iter().find(|i| i["name"] == "mem1").unwrap();
    assert_eq!(
        (m["be/maxmem"].clone(), m["be/minmem"].clone()),
        (96.into(), 96.into())
    );
    lab.maguey(&["instance", "remove", "-f", "mem1"]).ok();
    refused(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=32M",
            "-o",
            "noop",
            "-n",
            "node1",
            "-B",
            "memroy=1",
            "typo",
        ],
        "unknown beparams key",
    );
    refused(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "plain",
            "--disk",
            "0:size=32M",
            "-o",
            "noop",
            "-n",
            "node1",
            "lvm1",
        ],
        "not enabled on this cluster",
    );
    refused(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=32M",
            "-o",
            "nosuchos",
            "-n",
            "node1",
            "noos",
        ],
        "nosuchos",
    );
    refused(
        &lab,
        &["instance", "modify", "-B", "maxmem=64G", "web1"],
        "memory",
    );
    refused(&lab, &["instance", "start", "ghost"], "ghost");
    // Removal asks for confirmation; without a terminal it needs -f.
    refused(&lab, &["instance", "remove", "web1"], "add -f");
    cluster_modify(&lab);
    refused(
        &lab,
        &["node", "add", "node2", "--address", "127.9.9.9"],
        "already",
    );
    // A node that hosts instances cannot be removed; the master neither.
    refused(&lab, &["node", "remove", "node1"], "master");
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        "node2",
        "d1",
    ])
    .ok();
    refused(
        &lab,
        &["node", "remove", "node2"],
        "still hosts instances: d1",
    );
    // An offline node as target.
    lab.maguey(&["node", "modify", "--offline", "yes", "--force", "node2"])
        .ok();
    refused(
        &lab,
        &[
            "instance",
            "add",
            "-t",
            "diskless",
            "--no-install",
            "-n",
            "node2",
            "d2",
        ],
        "offline",
    );
    // A failed OS install leaves no half-created instance and no disk file.
    let mut files = Vec::new();
    find_files(&lab.node_dir(1).join("file-storage"), &mut files);
    assert_eq!(files.len(), 1, "{files:?}");
}

/// `cluster modify`: bad keys and values are refused with the serial unchanged; good ones
/// change the settings `cluster info` shows, in one config change. Also getmaster, version
/// and the `--output json` of every info command.
fn cluster_modify(lab: &TestLab) {
    let m = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["cluster", "modify"];
        v.extend_from_slice(extra);
        v
    };
    for (args, needle) in [
        (m(&["-H", "kvm:bogus=1"]), "unknown hvparams key 'bogus'"),
        (m(&["-H", "kvm:acpi=perhaps"]), "expected a boolean"),
        (m(&["-H", "xen:acpi=1"]), "unknown hypervisor 'xen'"),
        (m(&["-B", "vcpus=many"]), "invalid value"),
        (m(&["-N", "mode=sideways"]), "invalid value"),
        (m(&["--node-parameters", "nope=1"]), "unknown ndparams key"),
        (
            m(&["--enabled-disk-templates", "floppy"]),
            "unknown disk template",
        ),
        (
            m(&["--enabled-disk-templates", "diskless"]),
            "instances use it: web1",
        ),
        (m(&["--enabled-hypervisors", "kvm"]), "instances use it"),
        (m(&["--mac-prefix", "zz:00:00"]), "invalid MAC prefix"),
        (m(&["--vg-name", "a/b"]), "invalid volume group name"),
        (
            m(&["--file-storage-dir", "other"]),
            "while instances have disks there",
        ),
        (m(&["--drbd-usermode-helper", "relative"]), "absolute path"),
        (m(&["-C", "0"]), "at least 1"),
        (m(&[]), "no parameters to change"),
    ] {
        refused(lab, &args, needle);
    }
    let before = lab.serial();
    lab.maguey(&[
        "cluster",
        "modify",
        "-B",
        "vcpus=2",
        "-H",
        "fake:migration_mode=non-live",
        "-H",
        "kvm:cpu_type=qemu64",
        "-C",
        "3",
        "--drbd-usermode-helper",
        "/usr/lib/drbd/helper",
        "--mac-prefix",
        "aa:11:22",
        "--vg-name",
        "vg9",
        "--enabled-hypervisors",
        "fake,kvm",
    ])
    .ok();
    assert_eq!(lab.serial(), before + 1);
    let info = lab
        .maguey(&["cluster", "info", "--output", "json"])
        .ok()
        .json();
    assert_eq!(info["Default backend parameters"]["vcpus"], 2, "{info}");
    assert_eq!(
        info["Hypervisor parameters"]["fake"]["migration_mode"],
        "non-live"
    );
    assert_eq!(info["Hypervisor parameters"]["kvm"]["cpu_type"], "qemu64");
    assert_eq!(info["Candidate pool size"], 3);
    assert_eq!(info["DRBD usermode helper"], "/usr/lib/drbd/helper");
    assert_eq!(info["MAC prefix"], "aa:11:22");
    assert_eq!(info["Volume group"], "vg9");
    assert_eq!(
        info["Enabled hypervisors"],
        serde_json::json!(["fake", "kvm"])
    );
    // The same again changes nothing.
    let r = lab.maguey(&["cluster", "modify", "-C", "3"]).ok();
    assert!(r.stdout.contains("nothing changed"), "{}", r.stdout);
    assert_eq!(lab.serial(), before + 1);

    assert_eq!(
        lab.maguey(&["cluster", "getmaster"]).ok().stdout.trim(),
        "node1"
    );
    let v = lab.maguey(&["cluster", "version"]).ok().stdout;
    assert!(v.contains("Software version: "), "{v}");
    assert!(v.contains("Configuration format: "), "{v}");
    let i = lab
        .maguey(&["instance", "info", "--output", "json", "web1"])
        .ok()
        .json();
    assert_eq!(i[0]["name"], "web1", "{i}");
    assert_eq!(
        i[0]["disk.status"],
        serde_json::json!(["disk/0: file (not replicated)"])
    );
    // As text, a line per disk (and node) under `disk.status:`.
    let t = lab.maguey(&["instance", "info", "web1"]).ok().stdout;
    assert!(
        t.contains("disk.status:\n    disk/0: file (not replicated)\n"),
        "{t}"
    );
    let n = lab
        .maguey(&["node", "info", "--output", "json", "node1"])
        .ok()
        .json();
    assert_eq!(n[0]["name"], "node1", "{n}");
    let j = lab
        .maguey(&["job", "info", "--output", "json", "1"])
        .ok()
        .json();
    assert_eq!(j[0]["id"], 1, "{j}");
    refused(
        lab,
        &["instance", "info", "--output", "yaml", "web1"],
        "yaml",
    );

    // Tags of the cluster, a node and an instance.
    for (noun, name) in [
        ("cluster", None),
        ("node", Some("node1")),
        ("instance", Some("web1")),
    ] {
        let args = |verb: &'static str, tags: &[&'static str]| -> Vec<&'static str> {
            let mut v = vec![noun, verb];
            v.extend(name);
            v.extend_from_slice(tags);
            v
        };
        lab.maguey(&args("add-tags", &["site:lab", "web"])).ok();
        let list = lab.maguey(&args("list-tags", &[])).ok().stdout;
        assert_eq!(
            list.lines().collect::<Vec<_>>(),
            ["site:lab", "web"],
            "{noun}"
        );
        refused(lab, &args("add-tags", &["bad tag!"]), "invalid characters");
        refused(lab, &args("remove-tags", &["absent"]), "absent");
        refused(lab, &args("add-tags", &[]), "no tags given");
        lab.maguey(&args("remove-tags", &["web"])).ok();
        let list = lab.maguey(&args("list-tags", &[])).ok().stdout;
        assert_eq!(list.trim(), "site:lab", "{noun}");
    }
    refused(lab, &["instance", "list-tags", "ghost"], "ghost");

    // OS definitions, as the nodes report them.
    let l = lab.maguey(&["os", "list"]).ok().stdout;
    assert!(l.lines().any(|x| x == "noop"), "{l}");
    let i = lab.maguey(&["os", "info", "noop"]).ok().stdout;
    assert!(i.contains("noop:") && i.contains("valid: true"), "{i}");
    refused(lab, &["os", "info", "ghost-os"], "ghost-os");
    let d = lab.maguey(&["os", "diagnose"]).ok().stdout;
    assert!(d.contains("OS: noop [global status: valid]"), "{d}");

    // start/stop by selection: --tags, --node, --primary, --all (several need --force-multiple).
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "diskless",
        "--no-install",
        "-n",
        "node2",
        "sel2",
    ])
    .ok();
    let st = |name: &str| status(lab, name);
    lab.maguey(&["instance", "stop", "--tags", "site:lab"]).ok();
    assert_eq!(
        (st("web1"), st("sel2")),
        ("ADMIN_down".into(), "running".into())
    );
    lab.maguey(&["instance", "start", "--node", "node1"]).ok();
    assert_eq!(st("web1"), "running");
    refused(lab, &["instance", "stop", "--all"], "--force-multiple");
    assert_eq!(
        (st("web1"), st("sel2")),
        ("running".into(), "running".into())
    );
    lab.maguey(&["instance", "stop", "--all", "--force-multiple"])
        .ok();
    assert_eq!(
        (st("web1"), st("sel2")),
        ("ADMIN_down".into(), "ADMIN_down".into())
    );
    lab.maguey(&["instance", "start", "--primary", "node2"])
        .ok();
    assert_eq!(
        (st("web1"), st("sel2")),
        ("ADMIN_down".into(), "running".into())
    );
    refused(
        lab,
        &["instance", "start", "--all", "web1"],
        "--all takes no names",
    );
    refused(
        lab,
        &["instance", "start", "--node", "ghost"],
        "node 'ghost'",
    );
    refused(
        lab,
        &["instance", "start", "--all", "--tags", "x"],
        "cannot be used with",
    );
    lab.maguey(&["instance", "start", "web1"]).ok();
    lab.maguey(&["instance", "remove", "-f", "sel2"]).ok();

    // The drain flag: new jobs refused until undrained.
    let r = lab.maguey(&["cluster", "queue", "drain"]).ok();
    assert!(r.stdout.contains("The drain flag is set"), "{}", r.stdout);
    refused(lab, &["cluster", "modify", "-C", "4"], "queue is drained");
    let q = lab
        .maguey(&["cluster", "queue", "info", "--output", "json"])
        .ok()
        .json();
    assert_eq!(q["drained"], true, "{q}");
    assert!(q["jobs"]["success"].as_u64().unwrap_or(0) > 0, "{q}");
    let r = lab.maguey(&["cluster", "queue", "undrain"]).ok();
    assert!(r.stdout.contains("The drain flag is unset"), "{}", r.stdout);
    lab.maguey(&["cluster", "modify", "-C", "4"]).ok();
    let r = lab.maguey(&["cluster", "queue", "info"]).ok();
    assert!(r.stdout.contains("The drain flag is unset"), "{}", r.stdout);
}

#[test]
fn exit_codes() {
    let lab = lab(1);
    // Usage error.
    let r = lab.maguey(&["instance", "add", "--bogus-flag"]);
    assert_eq!(r.code, 2);
    // A job that fails: exit 1.
    let r = lab.maguey(&["debug", "delay", "0", "--fail"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("failed"), "{}", r.stderr);
    // Master unreachable: exit 3.
    let d = lab.dir.path().display().to_string();
    lab.maguey(&["lab", "down", "--dir", &d]).ok();
    let r = lab.maguey(&["instance", "list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    // No cluster identity at all: exit 3 too.
    let empty = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(maguey_bin())
        .args(["node", "list"])
        .env("MAGUEY_DIR", empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn a_failing_os_create_script_leaves_nothing_behind() {
    let lab = lab(1);
    let d = lab.node_dir(1).join("os/failing");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ganeti_api_version"), "20\n").unwrap();
    for s in ["create", "import", "export", "rename", "verify"] {
        let body = if s == "create" {
            "#!/bin/sh\necho \"debootstrap: cannot reach the mirror for $INSTANCE_NAME\" >&2\nexit 7\n"
        } else {
            "#!/bin/sh\nexit 0\n"
        };
        let p = d.join(s);
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let serial = lab.serial();
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=16M",
        "-o",
        "failing",
        "-n",
        "node1",
        "f1",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    // The script's own output is in the job log and the error.
    assert!(
        r.stderr.contains("cannot reach the mirror for f1") && r.stderr.contains("exit status 7"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("undoing"), "{}", r.stdout);
    assert_eq!(lab.serial(), serial);
    assert!(instances(&lab, "name").is_empty());
    let mut left = Vec::new();
    find_files(&lab.node_dir(1).join("file-storage"), &mut left);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_os_verify_refusal_creates_nothing() {
    let lab = lab(1);
    let d = lab.node_dir(1).join("os/picky");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ganeti_api_version"), "20\n15\n").unwrap();
    std::fs::write(d.join("parameters.list"), "flavor the flavour\n").unwrap();
    for s in ["create", "import", "export", "rename", "verify"] {
        let body = if s == "verify" {
            "#!/bin/sh\n[ \"$1\" = parameters ] || exit 2\n\
             [ \"$OSP_FLAVOR\" = vanilla ] && exit 0\n\
             echo \"unknown flavor '$OSP_FLAVOR'\" >&2\nexit 1\n"
        } else {
            "#!/bin/sh\nexit 0\n"
        };
        let p = d.join(s);
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let serial = lab.serial();
    let add = |flavor: &str, name: &str| {
        lab.maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=16M",
            "-o",
            "picky",
            "-O",
            &format!("flavor={flavor}"),
            "-n",
            "node1",
            name,
        ])
    };
    let r = add("chocolate", "p1");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("unknown flavor 'chocolate'"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.serial(), serial);
    let mut left = Vec::new();
    find_files(&lab.node_dir(1).join("file-storage"), &mut left);
    assert!(left.is_empty(), "{left:?}");
    add("vanilla", "p2").ok();
}
