//! Node VMs that are real Debian systems (the deploy testbed of docs/install.md): a minbase
//! debootstrap root with systemd, udev, the Debian cloud kernel and every package magueyd's
//! `.deb` depends on, built by `debian-root.sh` and cached in `CACHE/debian-KEY/` (KEY
//! hashes that script, the suite and [`FORMAT`]: the image is rebuilt only when its recipe
//! changes). Each node boots a copy-on-write qcow2 overlay of the cached `root.img`; files
//! for the nodes (the `.deb`s, a guest image) go on a read-only payload disk (ext4 labelled
//! `mgpayload`, mounted at [`PAYLOAD_DIR`]).

use crate::image::DirLock;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The build script of the root disk (its text is part of the cache key).
pub const ROOT_SCRIPT: &str = include_str!("debian-root.sh");
/// Bumped whenever the way the image is used changes (part of the cache key).
const FORMAT: u32 = 1;
/// The Debian release of the nodes.
pub const DEFAULT_SUITE: &str = "trixie";
/// Where a node mounts its payload disk.
pub const PAYLOAD_DIR: &str = "/mnt/payload";
/// The kernel command line that boots the cached root (the rest is the testbed's).
pub const ROOT_CMDLINE: &str = "root=LABEL=mgroot rw net.ifnames=0 systemd.show_status=0";

/// A built Debian node image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebianImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The ext4 root (`LABEL=mgroot`), never written: nodes boot overlays of it.
    pub root: PathBuf,
    pub suite: String,
    pub key: String,
    /// `name=version` of every package installed.
    pub packages: Vec<String>,
    /// Seconds the build took; 0 when it came from the cache.
    #[serde(default)]
    pub build_seconds: f64,
}

/// The Debian mirror for the build: `$MAGUEY_DEBIAN_MIRROR`, else deb.debian.org.
pub fn mirror() -> String {
    std::env::var("MAGUEY_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_string())
}

/// The Debian node image of `suite` in `cache`, built (debootstrap, a few minutes) if missing
/// or if its recipe changed. Older Debian images are removed.
pub fn ensure_debian(cache: &Path, suite: &str) -> Result<DebianImage> {
    let t0 = Instant::now();
    // Its own lock: the initramfs image (same cache) stays usable during a long build.
    let trees = cache.join("debootstrap");
    let _lock = DirLock::take(&trees)?;
    let mut h = Sha256::new();
    h.update(format!("format {FORMAT}\nsuite {suite}\n"));
    h.update(ROOT_SCRIPT);
    let key = hex::encode(&h.finalize()[..8]);
    let dir = cache.join(format!("debian-{key}"));
    let stamp = dir.join("image.json");
    if let Ok(s) = std::fs::read(&stamp) {
        if let Ok(mut img) = serde_json::from_slice::<DebianImage>(&s) {
            if img.kernel.is_file() && img.initrd.is_file() && img.root.is_file() {
                img.build_seconds = 0.0;
                return Ok(img);
            }
        }
    }
    for tool in ["debootstrap", "mkfs.ext4", "qemu-img"] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            bail!("building the Debian node image needs {tool} (.ci/run installs it)");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let script = cache.join(format!("debian-root-{key}.sh"));
    std::fs::write(&script, ROOT_SCRIPT)?;
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(suite)
        .arg(mirror())
        .arg(&trees)
        .output()
        .context("running debian-root.sh")?;
    let _ = std::fs::remove_file(&script);
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!(
            "building the Debian node image failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let packages = std::fs::read_to_string(dir.join("packages.txt"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    let img = DebianImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        root: dir.join("root.img"),
        suite: suite.to_string(),
        key: key.clone(),
        packages,
        build_seconds: t0.elapsed().as_secs_f64(),
    };
    std::fs::write(&stamp, serde_json::to_vec_pretty(&img)?)?;
    // The cache keeps one Debian image.
    for e in std::fs::read_dir(cache)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("debian-") && e.path() != dir && e.path().is_dir() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(img)
}

/// A copy-on-write overlay of `base` at `out` (qcow2, the base stays untouched).
pub fn overlay(base: &Path, out: &Path) -> Result<()> {
    let _ = std::fs::remove_file(out);
    let o = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(out)
        .output()
        .context("running qemu-img")?;
    if !o.status.success() {
        bail!(
            "qemu-img create {} failed: {}",
            out.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// An ext4 image labelled `mgpayload` at `out` holding `files` (source, path under the
/// payload root), made with `mkfs.ext4 -d` (no loop mount).
pub fn payload(files: &[crate::ExtraFile], out: &Path) -> Result<()> {
    let stage = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage)?;
    let mut bytes = 0u64;
    for f in files {
        let rel = f.dest.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            bail!("bad payload path {}", f.dest);
        }
        let to = stage.join(rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)?;
        }
        bytes += std::fs::copy(&f.src, &to)
            .with_context(|| format!("copying {} to the payload", f.src.display()))?;
    }
    let mib = bytes / (1 << 20) + 64;
    let o = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "mgpayload", "-d"])
        .arg(&stage)
        .arg(out)
        .arg(format!("{mib}M"))
        .output()
        .context("running mkfs.ext4")?;
    let _ = std::fs::remove_dir_all(&stage);
    if !o.status.success() {
        bail!(
            "mkfs.ext4 of the payload failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_installs_what_magueyd_depends_on() {
        for p in [
            "systemd-sysv",
            "qemu-system-x86",
            "qemu-utils",
            "lvm2",
            "drbd-utils",
            "iproute2",
            "passwd",
            "linux-image-cloud-amd64",
        ] {
            assert!(ROOT_SCRIPT.contains(p), "{p}");
        }
        assert!(ROOT_SCRIPT.contains("LABEL=mgroot") && ROOT_CMDLINE.contains("LABEL=mgroot"));
    }
}
