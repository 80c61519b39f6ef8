//! Handing the daemon to systemd: on a packaged node (systemd runs, `magueyd.service` is
//! installed, the state directory is the packaged one), `cluster init` and a join enable and
//! start the unit instead of forking magueyd, so that systemd restarts it and starts it at
//! boot. Elsewhere (the lab, tests, a state directory of one's own) nothing changes.
//! `MAGUEY_SYSTEMD=0` or `=1` forces the choice.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The daemon's unit, and the one that powers the guests down at host shutdown.
pub const UNITS: [&str; 2] = ["magueyd.service", "maguey-guests.service"];
/// The state directory the packaged unit runs magueyd on.
pub const PACKAGED_STATE_DIR: &str = "/var/lib/maguey";

const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Whether `dir`'s daemon is systemd's to run.
pub fn manages(dir: &Path) -> bool {
    decide(
        std::env::var("MAGUEY_SYSTEMD").ok().as_deref(),
        Path::new("/run/systemd/system").is_dir(),
        UNIT_DIRS
            .iter()
            .any(|d| Path::new(d).join(UNITS[0]).is_file()),
        dir,
    )
}

fn decide(force: Option<&str>, booted: bool, installed: bool, dir: &Path) -> bool {
    match force {
        Some("0") | Some("no") | Some("never") => false,
        Some("1") | Some("yes") | Some("always") => true,
        _ => {
            let packaged = std::fs::canonicalize(dir)
                .map(|d| d == Path::new(PACKAGED_STATE_DIR))
                .unwrap_or(false);
            booted && installed && packaged
        }
    }
}

/// `systemctl enable --now` of [`UNITS`].
pub fn enable_and_start() -> Result<()> {
    let out = Command::new("systemctl")
        .args(["enable", "--now"])
        .args(UNITS)
        .output()
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl enable --now {} failed: {}",
            UNITS.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_packaged_node_under_systemd_hands_over_unless_forced() {
        let t = tempfile::tempdir().unwrap();
        // A lab or test directory: never, even with systemd and the unit installed.
        assert!(!decide(None, true, true, t.path()));
        assert!(!decide(None, false, false, t.path()));
        assert!(decide(Some("1"), false, false, t.path()));
        assert!(!decide(Some("0"), true, true, t.path()));
    }
}
