//! The Debian packages (scripts/build-debs, docs/install.md): built from this build's
//! binaries, their files, modes, dependencies and maintainer scripts (`dpkg-deb -I/-c`), and
//! the scripts' work on a throwaway root (`dpkg --root ... --force-script-chrootless`):
//! install creates the QEMU user and the directories and starts nothing, remove keeps the
//! state, purge removes it. Needs dpkg-deb, strip and objdump (binutils; .ci/run installs it).

mod common;
use common::maguey_bin;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The packages built from this build's binaries, uncompressed (fast).
fn build(out: &Path) -> [PathBuf; 3] {
    let bin_dir = maguey_test_infra::bins::beside(maguey_bin(), "magueyd")
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    run(Command::new(repo().join("scripts/build-debs"))
        .arg("--fast")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out));
    let version = run(Command::new(maguey_bin()).arg("--version"));
    let version = version.split_whitespace().last().expect("a version");
    ["maguey", "magueyd", "maguey-witness"].map(|p| {
        let deb = out.join(format!("{p}_{version}-1_amd64.deb"));
        assert!(deb.is_file(), "{} missing", deb.display());
        deb
    })
}

fn field(info: &str, name: &str) -> String {
    info.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_default()
        .to_string()
}

/// `dpkg-deb -c` lines as (mode, path).
fn contents(deb: &Path) -> Vec<(String, String)> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.to_string(),
                w.last()?.trim_start_matches('.').to_string(),
            ))
        })
        .collect()
}

fn mode_of(files: &[(String, String)], path: &str) -> String {
    files
        .iter()
        .find(|(_, p)| p == path)
        .map(|(m, _)| m.clone())
        .unwrap_or_else(|| panic!("{path} not in the package: {files:?}"))
}

#[test]
fn packages_carry_their_files_dependencies_and_scripts() {
    let t = tempfile::tempdir().unwrap();
    let [cli, daemon, witness] = build(t.path());

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&cli));
    assert!(
        field(&info, "Depends").starts_with("libc6 (>= 2."),
        "{info}"
    );
    assert!(field(&info, "Description").contains("command-line tool"));
    let files = contents(&cli);
    assert_eq!(mode_of(&files, "/usr/bin/maguey"), "-rwxr-xr-x");
    assert_eq!(
        mode_of(&files, "/usr/share/man/man1/maguey.1.gz"),
        "-rw-r--r--"
    );
    assert!(files
        .iter()
        .any(|(_, p)| p.ends_with("maguey-instance-add.1.gz")));
    for c in [
        "/usr/share/bash-completion/completions/maguey",
        "/usr/share/zsh/vendor-completions/_maguey",
        "/usr/share/fish/vendor_completions.d/maguey.fish",
    ] {
        assert_eq!(mode_of(&files, c), "-rw-r--r--");
    }

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&daemon));
    let depends = field(&info, "Depends");
    for dep in [
        "qemu-system-x86",
        "qemu-utils",
        "lvm2",
        "drbd-utils",
        "iproute2",
        "passwd",
    ] {
        assert!(depends.contains(dep), "{dep} missing: {depends}");
    }
    assert_eq!(field(&info, "Conflicts"), "maguey-witness");
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "{script}: {info}");
    }
    let control = t.path().join("control");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&daemon)
        .arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/maguey/magueyd.toml");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    // It starts no daemon: only a running one is restarted on upgrade.
    assert!(!postinst.contains("systemctl start") && !postinst.contains("systemctl enable"));
    let files = contents(&daemon);
    assert_eq!(mode_of(&files, "/usr/sbin/magueyd"), "-rwxr-xr-x");
    for u in ["magueyd.service", "maguey.slice", "maguey-guests.service"] {
        assert_eq!(
            mode_of(&files, &format!("/usr/lib/systemd/system/{u}")),
            "-rw-r--r--"
        );
    }
    assert_eq!(mode_of(&files, "/etc/maguey/magueyd.toml"), "-rw-r--r--");
    for (m, p) in &files {
        assert!(
            ["-rw-r--r--", "-rwxr-xr-x", "drwxr-xr-x"].contains(&m.as_str()),
            "{m} {p}"
        );
    }

    // The witness: the same daemon without the hypervisor and storage dependencies.
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&witness));
    let depends = field(&info, "Depends");
    for dep in ["qemu", "lvm2", "drbd"] {
        assert!(!depends.contains(dep), "{dep} in the witness: {depends}");
    }
    assert_eq!(field(&info, "Conflicts"), "magueyd");
    assert!(contents(&witness)
        .iter()
        .any(|(_, p)| p == "/usr/sbin/magueyd"));

    // The unit: notify readiness, restart on failure, only the daemon killed.
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/magueyd.service")).unwrap();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "KillMode=process",
        "ExecStart=/usr/sbin/magueyd",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }

    maintainer_scripts_on_a_throwaway_root(t.path(), &daemon);
}

/// Installs, removes and purges `deb` on an empty root with its maintainer scripts.
fn maintainer_scripts_on_a_throwaway_root(dir: &Path, deb: &Path) {
    let root = dir.join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/log",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (f, text) in [
        ("var/lib/dpkg/status", ""),
        ("var/lib/dpkg/available", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        ("etc/group", "root:x:0:\nadm:x:4:\nkvm:x:993:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\nadm:*::\nkvm:*::\n"),
    ] {
        std::fs::write(root.join(f), text).unwrap();
    }
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--log=/dev/null",
            ])
            .args(args);
        run(&mut c)
    };
    dpkg(&["-i", &deb.to_string_lossy()]);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    assert_eq!(mode("var/lib/maguey"), 0o700);
    assert_eq!(mode("var/log/maguey"), 0o750);
    assert!(root.join("etc/maguey/magueyd.toml").is_file());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("maguey-qemu:"))
        .unwrap_or_else(|| panic!("no QEMU user: {passwd}"));
    assert!(user.ends_with(":/nonexistent:/usr/sbin/nologin"), "{user}");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l == "kvm:x:993:maguey-qemu"),
        "{group}"
    );
    // Nothing enabled or started: no unit links.
    assert!(!root.join("etc/systemd").exists());

    // A node's state survives removal; purging removes it and the user.
    std::fs::write(root.join("var/lib/maguey/daemon.json"), "{}").unwrap();
    dpkg(&["-r", "magueyd"]);
    assert!(root.join("var/lib/maguey/daemon.json").is_file());
    assert!(root.join("etc/maguey/magueyd.toml").is_file());
    assert!(!root.join("usr/sbin/magueyd").exists());
    dpkg(&["-P", "magueyd"]);
    assert!(!root.join("var/lib/maguey").exists());
    assert!(!root.join("var/log/maguey").exists());
    assert!(!root.join("etc/maguey").exists());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(!passwd.contains("maguey-qemu"), "{passwd}");
}
