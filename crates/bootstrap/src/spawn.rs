//! Starting `magueyd` on a state directory, detached from the caller.

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Finds the magueyd binary: `$MAGUEY_MAGUEYD`, next to the running executable, or on PATH.
pub fn magueyd_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MAGUEY_MAGUEYD") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            for cand in [dir.join("magueyd"), dir.join("../magueyd")] {
                if cand.is_file() {
                    return cand;
                }
            }
        }
    }
    PathBuf::from("magueyd")
}

/// Starts `magueyd --state-dir DIR ARGS...` in its own session, logging to DIR/magueyd.log.
pub fn spawn_daemon(dir: &Path, args: &[String]) -> Result<u32> {
    spawn_daemon_in(None, dir, args)
}

/// [`spawn_daemon`] inside a network namespace (`ip netns exec NS magueyd ...`, which execs
/// magueyd: the pid stays the daemon's).
pub fn spawn_daemon_in(netns: Option<&str>, dir: &Path, args: &[String]) -> Result<u32> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("magueyd.log"))
        .with_context(|| format!("opening {}/magueyd.log", dir.display()))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(magueyd_path());
            c
        }
        None => Command::new(magueyd_path()),
    };
    cmd.arg("--state-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the daemon gets its own session so that it
    // outlives the CLI and the terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", magueyd_path().display()))?;
    Ok(child.id())
}
