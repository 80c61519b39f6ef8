//! Shell completions and man pages generated from the clap definitions: `bash -n` accepts the
//! bash script, `man -l` renders every page, and no help text promises a feature "later".

mod common;
use common::maguey_bin;
use std::process::Command;

fn maguey(args: &[&str]) -> std::process::Output {
    Command::new(maguey_bin())
        .args(args)
        .output()
        .expect("running maguey")
}

#[test]
fn completions_for_bash_zsh_fish() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = maguey(&["completions", shell]);
        assert!(
            o.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("rapi-user") && text.contains("getmaster"),
            "{shell}"
        );
        if shell == "bash" {
            let f = dir.path().join("maguey.bash");
            std::fs::write(&f, &o.stdout).unwrap();
            let n = Command::new("bash").arg("-n").arg(&f).output().unwrap();
            assert!(n.status.success(), "{}", String::from_utf8_lossy(&n.stderr));
        }
    }
    let o = maguey(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tcsh"));
}

#[test]
fn man_pages_render_with_man_l() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let o = maguey(&["man", &out.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut pages: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "maguey.1",
        "maguey-cluster-modify.1",
        "maguey-rapi-user-add.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    for p in &pages {
        let r = Command::new("man")
            .arg("-l")
            .arg(p)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man -l (package man-db)");
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success() && !text.trim().is_empty(),
            "{}",
            p.display()
        );
        assert!(!text.contains(" later"), "{}: {text}", p.display());
    }
    let modify = std::fs::read_to_string(out.join("maguey-cluster-modify.1")).unwrap();
    assert!(modify.contains("hypervisor\\-parameters"), "{modify}");
    // A directory that cannot be made.
    let o = maguey(&["man", "/proc/maguey-no/man1"]);
    assert_eq!(o.status.code(), Some(1));
}
