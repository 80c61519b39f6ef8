//! The lab's tiny guest: Debian's cloud kernel and a busybox initramfs, built from Debian
//! packages only (`apt-get download` + `dpkg -x`, no committed binaries) and cached.
//!
//! The guest's `/init` prints [`READY_MARKER`] on the serial console, mounts its first disk
//! (formatting it with ext2 the first time), counts its boots on that disk, then prints
//! [`TICK_MARKER`]` N` every second (also written to the disk as `ticks`), so a live migration
//! can be seen not to reset it. An ACPI power button press powers it off cleanly.
//! With `maguey.writer` on its kernel command line, the disk is not mounted: the guest writes
//! numbered records to it (`MAGUEY-REC N` in sector N, each fsync'd) and prints
//! `MAGUEY-ACK N` once record N is on the disk, so a test can check every acknowledged write
//! after a migration or failover. Whenever the disk's size changes it prints
//! `MAGUEY-DISK-SECTORS N`.
//!
//! [`write_lab_tiny_os`] writes the `lab-tiny` OS definition the lab registers on every node.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Printed once per boot: `MAGUEY-GUEST-READY boot=N disk=yes|no`.
pub const READY_MARKER: &str = "MAGUEY-GUEST-READY";
/// Printed every second: `MAGUEY-TICK N`.
pub const TICK_MARKER: &str = "MAGUEY-TICK";
/// Bumped whenever the initramfs layout or `/init` changes (forces a rebuild of the cache).
const FORMAT: u32 = 4;
/// Debian's cloud kernel metapackage (its dependency names the versioned image package).
const KERNEL_META: &str = "linux-image-cloud-amd64";
const BUSYBOX: &str = "busybox-static";
/// Kernel modules the guest loads (their dependencies come along through `modules.dep`).
const MODULES: &[&str] = &[
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_balloon.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/acpi/button.ko",
    "drivers/input/evdev.ko",
];

const INIT: &str = r#"#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /mnt /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_blk virtio_balloon button evdev; do modprobe $m 2>/dev/null; done
disk=no
# `maguey.writer` on the kernel command line: the disk is not mounted; records go raw to it.
writer=no
grep -q 'maguey[.]writer' /proc/cmdline && writer=yes
i=0
while [ $i -lt 50 ] && [ ! -b /dev/vda ]; do usleep 100000; i=$((i+1)); done
if [ $writer = no ] && [ -b /dev/vda ]; then
  if ! mount -t ext4 /dev/vda /mnt 2>/dev/null; then
    mke2fs -q /dev/vda >/dev/null 2>&1 && mount -t ext4 /dev/vda /mnt
  fi
  grep -q ' /mnt ' /proc/mounts && disk=yes
fi
boot=1
if [ $disk = yes ]; then
  boot=$(( $(cat /mnt/boots 2>/dev/null || echo 0) + 1 ))
  echo $boot > /mnt/boots
  sync
fi
# evdev registers the power button asynchronously: wait for it, or ACPI shutdown is lost.
i=0
while [ $i -lt 50 ] && ! grep -qs "Power Button" /sys/class/input/event*/device/name; do
  usleep 100000; i=$((i+1))
done
pb=
for e in /sys/class/input/event*; do
  [ -z "$pb" ] && grep -q "Power Button" $e/device/name 2>/dev/null && pb=/dev/input/${e##*/}
done
if [ -n "$pb" ]; then
  i=0
  while [ $i -lt 50 ] && [ ! -c $pb ]; do usleep 100000; i=$((i+1)); done
  # Opened before the ready marker: a press right after it is not lost.
  exec 3<$pb
  (
    dd bs=24 count=1 <&3 >/dev/null 2>&1
    echo "MAGUEY-GUEST-POWEROFF"
    sync
    umount /mnt 2>/dev/null
    poweroff -f
  ) &
fi
echo "MAGUEY-GUEST-READY boot=$boot disk=$disk"
ticks() {
  n=0
  last=
  while true; do
    n=$((n+1))
    echo "MAGUEY-TICK $n"
    [ $disk = yes ] && echo $n > /mnt/ticks
    # The disk's size as the guest sees it, whenever it changes (grow-disk).
    sz=$(cat /sys/block/vda/size 2>/dev/null)
    if [ -n "$sz" ] && [ "$sz" != "$last" ]; then echo "MAGUEY-DISK-SECTORS $sz"; last=$sz; fi
    sleep 1
  done
}
if [ $writer = no ] || [ ! -b /dev/vda ]; then
  ticks
fi
ticks &
# Writer mode: record N (`MAGUEY-REC %08d`, zero-padded to 512 bytes) goes to sector N of
# /dev/vda with fsync; `MAGUEY-ACK N` is printed only once the fsync returned.
n=0
max=$(( $(cat /sys/block/vda/size) - 1 ))
while [ $n -lt $max ]; do
  n=$((n+1))
  printf 'MAGUEY-REC %08d\n' $n > /tmp/rec
  if dd if=/tmp/rec of=/dev/vda bs=512 seek=$n count=1 conv=sync,notrunc,fsync 2>/dev/null; then
    echo "MAGUEY-ACK $n"
  else
    echo "MAGUEY-WRITE-FAILED $n"
    n=$((n-1))
    sleep 1
  fi
done
echo "MAGUEY-WRITER-DONE $n"
while true; do sleep 60; done
"#;

/// A built guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kernel_version: String,
    #[serde(default)]
    format: u32,
}

impl Guest {
    /// A bare QEMU (no Maguey) that boots this guest daemonized on TCG with 128 MiB and one
    /// raw virtio disk `img`, its serial console in `log`, QMP on `qmp`, waiting for an
    /// incoming migration on `incoming` if given: the baseline the migration figures and
    /// benchmarks measure Maguey against.
    pub fn bare_qemu(&self, img: &Path, qmp: &Path, log: &Path, incoming: Option<u16>) -> Command {
        let mut c = Command::new(qemu_path());
        c.args(["-daemonize", "-nodefaults", "-display", "none"])
            .args(["-machine", "pc", "-accel", "tcg", "-m", "128"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", "ro quiet console=ttyS0"])
            .arg("-chardev")
            .arg(format!("file,id=s0,path={}", log.display()))
            .args(["-serial", "chardev:s0"])
            .arg("-blockdev")
            .arg(format!(
                "driver=file,node-name=f0,filename={}",
                img.display()
            ))
            .args(["-blockdev", "driver=raw,node-name=d0,file=f0"])
            .args(["-device", "virtio-blk-pci,drive=d0"])
            .args(["-device", "virtio-balloon-pci,id=balloon0"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
        if let Some(p) = incoming {
            c.args(["-incoming", &format!("tcp:127.0.0.1:{p}")]);
        }
        c
    }
}

/// Where the guest is cached: `$MAGUEY_GUEST_DIR`, else `$XDG_CACHE_HOME/maguey/guest`, else
/// `~/.cache/maguey/guest`, else `/tmp/maguey-guest`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MAGUEY_GUEST_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("maguey/guest");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/maguey/guest");
    }
    PathBuf::from("/tmp/maguey-guest")
}

/// The guest in the default cache directory, built if missing.
pub fn ensure() -> Result<Guest> {
    ensure_in(&cache_dir())
}

/// The guest cached in `dir`, built there if missing or stale. Concurrent callers (parallel
/// tests) wait for each other through a lock file.
pub fn ensure_in(dir: &Path) -> Result<Guest> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("cannot lock {}", dir.display());
    }
    let stamp = dir.join("guest.json");
    if let Ok(s) = std::fs::read(&stamp) {
        if let Ok(g) = serde_json::from_slice::<Guest>(&s) {
            if g.format == FORMAT && g.kernel.is_file() && g.initrd.is_file() {
                return Ok(g);
            }
        }
    }
    let g = build(dir)?;
    std::fs::write(&stamp, serde_json::to_vec_pretty(&g)?)?;
    Ok(g)
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned kernel image package the cloud metapackage depends on.
fn kernel_package() -> Result<String> {
    let out = run(Command::new("apt-cache").args(["depends", KERNEL_META]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
        .map(String::from)
        .with_context(|| format!("no kernel image among the dependencies of {KERNEL_META}"))
}

fn build(dir: &Path) -> Result<Guest> {
    let work = dir.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let kpkg = kernel_package()?;
    // apt-get download writes into the current directory.
    run(Command::new("apt-get")
        .args(["download", "-q", &kpkg, BUSYBOX])
        .current_dir(&work))?;
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    let find = |prefix: &str| {
        debs.iter()
            .find(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(prefix))
            })
            .cloned()
            .with_context(|| format!("apt-get download gave no {prefix} package"))
    };
    let (kdeb, bdeb) = (find(&format!("{kpkg}_"))?, find(&format!("{BUSYBOX}_"))?);
    let (kx, bx) = (work.join("kernel"), work.join("busybox"));
    run(Command::new("dpkg").arg("-x").arg(&kdeb).arg(&kx))?;
    run(Command::new("dpkg").arg("-x").arg(&bdeb).arg(&bx))?;
    let kver = std::fs::read_dir(kx.join("lib/modules"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .next()
        .context("the kernel package has no modules")?;
    let busybox = bx.join("bin/busybox");

    // The initramfs tree.
    let root = work.join("root");
    for d in [
        "bin", "dev", "proc", "sys", "mnt", "tmp", "sbin", "usr/bin", "usr/sbin",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(&busybox, root.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", root.join("bin/sh"))?;
    std::fs::write(root.join("init"), INIT)?;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let mod_src = kx.join("lib/modules").join(&kver).join("kernel");
    let mod_dst = root.join("lib/modules").join(&kver).join("kernel");
    for m in MODULES {
        let (src, dst) = (mod_src.join(m), mod_dst.join(m));
        if !src.is_file() {
            continue; // built in, or absent from this kernel
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&src, &dst)?;
    }
    // The kernel package ships no modules.dep: busybox computes it for the subset we took.
    run(Command::new(&busybox)
        .args(["depmod", "-b"])
        .arg(&root)
        .arg(&kver))?;

    let initrd = dir.join("initrd.img");
    let tmp = dir.join("initrd.img.tmp");
    std::fs::write(&tmp, cpio_newc(&root)?)?;
    std::fs::rename(&tmp, &initrd)?;
    let kernel = dir.join("vmlinuz");
    std::fs::copy(kx.join("boot").join(format!("vmlinuz-{kver}")), &kernel)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Guest {
        kernel,
        initrd,
        kernel_version: kver,
        format: FORMAT,
    })
}

/// An uncompressed `newc` cpio archive of the tree under `root` (the kernel accepts it as an
/// initramfs as it is), written by the testbed's cpio writer.
pub fn cpio_newc(root: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    maguey_testbed::cpio::write_tree(root, &[], &mut out)?;
    Ok(out)
}

/// Writes the `lab-tiny` OS definition into `os_dir` (a node's OS search directory). Its
/// create script has nothing to install: the guest formats its disk at first boot. The lab
/// points the cluster's `kvm` hvparams at the guest's kernel and initramfs.
pub fn write_lab_tiny_os(os_dir: &Path) -> std::io::Result<PathBuf> {
    let d = os_dir.join("lab-tiny");
    std::fs::create_dir_all(&d)?;
    for script in ["create", "import", "export", "rename", "verify"] {
        let body = match script {
            "create" => {
                "#!/bin/sh\n# lab-tiny: the guest (kernel + busybox initramfs) formats its disk at first boot.\necho \"lab-tiny: $INSTANCE_NAME has $DISK_COUNT disk(s)\"\nexit 0\n"
            }
            _ => "#!/bin/sh\nexit 0\n",
        };
        let p = d.join(script);
        std::fs::write(&p, body)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(d.join("ganeti_api_version"), "20\n")?;
    std::fs::write(d.join("variants.list"), "")?;
    std::fs::write(d.join("parameters.list"), "")?;
    Ok(d)
}

/// The QEMU binary the lab uses: `$MAGUEY_QEMU`, else `qemu-system-x86_64` or `kvm` on PATH,
/// else Ganeti's default `/usr/bin/kvm`.
pub fn qemu_path() -> String {
    if let Ok(p) = std::env::var("MAGUEY_QEMU") {
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["qemu-system-x86_64", "kvm"] {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join(name);
            if cand.is_file() {
                return cand.to_string_lossy().into_owned();
            }
        }
    }
    "/usr/bin/kvm".into()
}

/// The cluster-level `kvm` hvparams that boot the tiny guest.
pub fn kvm_hvparams(g: &Guest) -> maguey_model::Params {
    let s = |v: &str| serde_json::Value::from(v);
    maguey_model::Params::from([
        ("kvm_path".to_string(), s(&qemu_path())),
        ("kernel_path".to_string(), s(&g.kernel.to_string_lossy())),
        ("initrd_path".to_string(), s(&g.initrd.to_string_lossy())),
        ("kernel_args".to_string(), s("ro quiet")),
        ("root_path".to_string(), s("/dev/vda")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_layout() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("bin")).unwrap();
        std::fs::write(t.path().join("bin/x"), b"hello").unwrap();
        std::os::unix::fs::symlink("x", t.path().join("bin/y")).unwrap();
        let c = cpio_newc(t.path()).unwrap();
        assert!(c.starts_with(b"070701"));
        assert_eq!(c.len() % 4, 0);
        let s = String::from_utf8_lossy(&c);
        assert!(s.contains("bin/x\0"));
        assert!(s.contains("hello"));
        assert!(s.contains("TRAILER!!!"));
    }
}
