//! The node image: Debian's cloud kernel and one initramfs holding busybox, dash, lvm2,
//! dmsetup, drbd-utils, iproute2, e2fsprogs (ext4 with a journal), QEMU (+ SeaBIOS and iPXE ROMs), their library closure, the
//! kernel modules a node needs and the node `/init` (with the command agent).
//!
//! Everything comes from Debian packages (`apt-get download` + `dpkg -x`, nothing run from
//! them at build time except busybox's `depmod`). The debs are cached under
//! `CACHE/debs`, the built image under `CACHE/base-KEY/` where KEY hashes the package
//! versions, `/init` and the image layout, so a new package version or a changed init
//! rebuilds it, and nothing else does.
//!
//! Project binaries (`magueyd`) are not in the base image: [`overlay`] packs them (and any
//! library the base lacks) into a second cpio archive that is appended to the base one; the
//! kernel unpacks concatenated archives in order.

use crate::cpio;
use crate::elf;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Bumped whenever the image layout changes (part of the cache key).
const FORMAT: u32 = 2;
/// The node `/init`, with the command agent.
pub const INIT: &str = include_str!("init.sh");
/// LVM without udev, scanning only the virtio disks.
const LVM_CONF: &str = r#"devices {
    filter = [ "a|^/dev/vd.*|", "r|.*|" ]
    global_filter = [ "a|^/dev/vd.*|", "r|.*|" ]
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
    external_device_info_source = "none"
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
}
global {
    event_activation = 0
}
"#;
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n";
/// Debian's cloud kernel metapackage (its dependency names the versioned image package).
const KERNEL_META: &str = "linux-image-cloud-amd64";
/// Root packages (with the kernel image package); their library dependencies come along.
const ROOTS: &[&str] = &[
    "busybox-static",
    "dash",
    "libc6",
    "lvm2",
    "dmsetup",
    "drbd-utils",
    "iproute2",
    "e2fsprogs",
    "qemu-system-x86",
    "qemu-utils",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
];
/// What to take from each package (files or whole directories; `X` also matches `usr/X`).
const COPY: &[(&str, &[&str])] = &[
    ("busybox-static", &["bin/busybox"]),
    ("dash", &["bin/dash", "bin/sh"]),
    ("lvm2", &["sbin"]),
    ("dmsetup", &["sbin/dmsetup"]),
    (
        "drbd-utils",
        &[
            "sbin/drbdsetup",
            "sbin/drbdmeta",
            "sbin/drbdadm",
            "lib/drbd/drbdsetup-84",
            "lib/drbd/drbdadm-84",
        ],
    ),
    ("iproute2", &["bin", "sbin", "etc/iproute2"]),
    (
        "e2fsprogs",
        &[
            "sbin/mke2fs",
            "sbin/mkfs.ext4",
            "sbin/e2fsck",
            "sbin/fsck.ext4",
            "etc/mke2fs.conf",
        ],
    ),
    (
        "qemu-system-x86",
        &["usr/bin/qemu-system-x86_64", "usr/bin/kvm"],
    ),
    ("qemu-utils", &["usr/bin/qemu-img", "usr/bin/qemu-nbd"]),
    (
        "qemu-system-data",
        &[
            "usr/share/qemu/kvmvapic.bin",
            "usr/share/qemu/linuxboot.bin",
            "usr/share/qemu/linuxboot_dma.bin",
            "usr/share/qemu/multiboot.bin",
            "usr/share/qemu/multiboot_dma.bin",
            "usr/share/qemu/pvh.bin",
            "usr/share/qemu/qboot.rom",
        ],
    ),
    ("seabios", &["usr/share/seabios"]),
    (
        "ipxe-qemu",
        &[
            "usr/lib/ipxe/qemu/efi-virtio.rom",
            "usr/lib/ipxe/qemu/pxe-virtio.rom",
            "usr/lib/ipxe/qemu/efi-e1000.rom",
            "usr/lib/ipxe/qemu/pxe-e1000.rom",
        ],
    ),
];
/// Kernel modules the node loads (their dependencies come along through `modules.dep`);
/// names missing from the kernel package are built in.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
    "dm_mod",
    "dm_snapshot",
    "drbd",
    "kvm_amd",
    "tun",
    "bridge",
    "nbd",
    "loop",
    "vhost_net",
];
/// Where libraries go in the image (and where the overlay looks on the host).
const LIBDIR: &str = "lib/x86_64-linux-gnu";
const LIB_SEARCH: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];

/// A built base image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseImage {
    pub kernel: PathBuf,
    /// The base initramfs (uncompressed cpio).
    pub initrd: PathBuf,
    pub kernel_version: String,
    /// The cache key (hash of package versions, `/init` and layout).
    pub key: String,
    /// `name=version` of every package used.
    pub packages: Vec<String>,
    /// File names in `/lib/x86_64-linux-gnu` of the image.
    pub libs: Vec<String>,
    /// Seconds the build took (downloads included); 0 when it came from the cache.
    #[serde(default)]
    pub build_seconds: f64,
    #[serde(default)]
    pub format: u32,
}

/// Where the testbed caches debs and images: `$MAGUEY_TESTBED_CACHE`, else
/// `$XDG_CACHE_HOME/maguey/testbed`, else `~/.cache/maguey/testbed`, else
/// `/tmp/maguey-testbed-cache`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MAGUEY_TESTBED_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("maguey/testbed");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/maguey/testbed");
    }
    PathBuf::from("/tmp/maguey-testbed-cache")
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An exclusive lock on `dir` (concurrent builders wait for each other); released on drop.
pub(crate) struct DirLock(#[allow(dead_code)] std::fs::File);

impl DirLock {
    pub(crate) fn take(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}", dir.display());
        }
        Ok(DirLock(f))
    }
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

/// The root packages and the library packages of their dependency closure.
fn package_set(kernel: &str) -> Result<Vec<String>> {
    let mut cmd = Command::new("apt-cache");
    cmd.args([
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
    ]);
    cmd.args(ROOTS);
    let out = run(&mut cmd)?;
    let mut set: BTreeSet<String> = ROOTS.iter().map(|s| s.to_string()).collect();
    set.insert(kernel.to_string());
    for l in out.lines() {
        if l.starts_with(' ') || l.starts_with('<') || l.is_empty() {
            continue;
        }
        let p = l.trim();
        let lib = p.starts_with("lib")
            && !p.starts_with("libperl")
            && !p.ends_with("-perl")
            && !p.ends_with("-data")
            && !p.ends_with("-common")
            && !p.ends_with("-bin");
        if lib || p == "zlib1g" {
            set.insert(p.to_string());
        }
    }
    Ok(set.into_iter().collect())
}

/// Candidate versions of `pkgs` (packages without a candidate are left out).
fn candidate_versions(pkgs: &[String]) -> Result<BTreeMap<String, String>> {
    let out = run(Command::new("apt-cache").arg("policy").args(pkgs))?;
    let mut cur = None;
    let mut versions = BTreeMap::new();
    for l in out.lines() {
        if !l.starts_with(' ') && l.ends_with(':') {
            cur = Some(l.trim_end_matches(':').to_string());
        } else if let (Some(p), Some(v)) = (&cur, l.trim().strip_prefix("Candidate:")) {
            let v = v.trim();
            if v != "(none)" {
                versions.insert(p.clone(), v.to_string());
            }
        }
    }
    for r in ROOTS {
        if !versions.contains_key(*r) {
            bail!("apt has no candidate for {r} (run apt-get update?)");
        }
    }
    Ok(versions)
}

/// The package resolution, remembered while apt's package lists stay the same (each
/// `apt-cache` call parses them: about 2 s here).
#[derive(Serialize, Deserialize)]
struct Resolved {
    fingerprint: String,
    kernel: String,
    versions: BTreeMap<String, String>,
}

fn apt_fingerprint() -> String {
    let mut h = Sha256::new();
    h.update(format!("format {FORMAT}\n{ROOTS:?}\n"));
    for d in [
        "/var/lib/apt/lists",
        "/etc/apt/sources.list.d",
        "/etc/apt/preferences.d",
    ] {
        let mut entries: Vec<_> = std::fs::read_dir(d)
            .map(|rd| rd.flatten().collect())
            .unwrap_or_default();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if let Ok(m) = e.metadata() {
                h.update(format!(
                    "{} {} {}\n",
                    e.path().display(),
                    m.len(),
                    m.mtime()
                ));
            }
        }
    }
    for f in ["/etc/apt/sources.list", "/etc/apt/preferences"] {
        if let Ok(m) = std::fs::metadata(f) {
            h.update(format!("{f} {} {}\n", m.len(), m.mtime()));
        }
    }
    hex::encode(h.finalize())
}

fn resolve_packages(cache: &Path) -> Result<(String, BTreeMap<String, String>)> {
    let fingerprint = apt_fingerprint();
    let memo = cache.join("resolved.json");
    if let Ok(s) = std::fs::read(&memo) {
        if let Ok(r) = serde_json::from_slice::<Resolved>(&s) {
            if r.fingerprint == fingerprint {
                return Ok((r.kernel, r.versions));
            }
        }
    }
    let kernel = kernel_package()?;
    let pkgs = package_set(&kernel)?;
    let versions = candidate_versions(&pkgs)?;
    let r = Resolved {
        fingerprint,
        kernel,
        versions,
    };
    std::fs::write(&memo, serde_json::to_vec_pretty(&r)?)?;
    Ok((r.kernel, r.versions))
}

fn deb_prefix(name: &str, version: &str) -> String {
    format!("{name}_{}_", version.replace(':', "%3a"))
}

fn find_deb(debs: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let prefix = deb_prefix(name, version);
    std::fs::read_dir(debs).ok()?.flatten().find_map(|e| {
        let f = e.file_name();
        let f = f.to_str()?;
        (f.starts_with(&prefix) && f.ends_with(".deb")).then(|| e.path())
    })
}

/// The base image in `cache` (default [`cache_dir`]), built if missing or stale.
pub fn ensure_base(cache: &Path) -> Result<BaseImage> {
    let t0 = Instant::now();
    let _lock = DirLock::take(cache)?;
    let (kernel, versions) = resolve_packages(cache)?;
    let mut h = Sha256::new();
    h.update(format!("format {FORMAT}\n"));
    h.update(INIT);
    h.update(LVM_CONF);
    for (p, v) in &versions {
        h.update(format!("{p}={v}\n"));
    }
    let key = hex::encode(&h.finalize()[..8]);
    let dir = cache.join(format!("base-{key}"));
    let stamp = dir.join("image.json");
    if let Ok(s) = std::fs::read(&stamp) {
        if let Ok(mut img) = serde_json::from_slice::<BaseImage>(&s) {
            if img.format == FORMAT && img.kernel.is_file() && img.initrd.is_file() {
                img.build_seconds = 0.0;
                return Ok(img);
            }
        }
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let missing: Vec<String> = versions
        .iter()
        .filter(|(p, v)| find_deb(&debs, p, v).is_none())
        .map(|(p, v)| format!("{p}={v}"))
        .collect();
    if !missing.is_empty() {
        run(Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(&missing)
            .current_dir(&debs))?;
    }
    let mut files = BTreeMap::new();
    for (p, v) in &versions {
        let f =
            find_deb(&debs, p, v).with_context(|| format!("apt-get download gave no {p} {v}"))?;
        files.insert(p.clone(), f);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut img = build(&dir, &kernel, &files)?;
    img.key = key;
    img.packages = versions.iter().map(|(p, v)| format!("{p}={v}")).collect();
    img.build_seconds = t0.elapsed().as_secs_f64();
    std::fs::write(&stamp, serde_json::to_vec_pretty(&img)?)?;
    // Older images and debs no other image uses are dropped (the cache stays one image big).
    let keep: BTreeSet<PathBuf> = files.values().cloned().collect();
    for e in std::fs::read_dir(&debs)?.flatten() {
        if !keep.contains(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for e in std::fs::read_dir(cache)?.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with("base-") && e.path() != dir {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(img)
}

/// Follows symlinks inside an extracted package tree (absolute targets are relative to `root`).
fn resolve_in(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..20 {
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(p);
        }
        let t = std::fs::read_link(&p).ok()?;
        p = if t.is_absolute() {
            root.join(t.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(t)
        };
    }
    None
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let meta = std::fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        let t = std::fs::read_link(src)?;
        let _ = std::fs::remove_file(dst);
        std::os::unix::fs::symlink(t, dst)?;
    } else {
        std::fs::copy(src, dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

use std::os::unix::fs::MetadataExt;

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    if std::fs::symlink_metadata(src)?.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    } else {
        copy_file(src, dst)
    }
}

fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let m = std::fs::symlink_metadata(&p)?;
        if m.is_dir() {
            regular_files(&p, out)?;
        } else if m.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Copies the library closure of every ELF file under `root` into `root/lib/x86_64-linux-gnu`,
/// taking libraries from `find` (soname → file). Sonames already in `have` are skipped.
/// Returns the sonames it could not find.
fn copy_libs(
    root: &Path,
    have: &BTreeSet<String>,
    find: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<(BTreeSet<String>, Vec<String>)> {
    let mut files = Vec::new();
    regular_files(root, &mut files)?;
    let mut queue: Vec<PathBuf> = files.into_iter().filter(|f| elf::is_elf(f)).collect();
    let mut copied = BTreeSet::new();
    let mut missing = Vec::new();
    let libdir = root.join(LIBDIR);
    while let Some(f) = queue.pop() {
        if f.extension().is_some_and(|e| e == "ko") {
            continue;
        }
        let needs = elf::needs(&f)?;
        let mut names = needs.needed;
        if let Some(interp) = &needs.interp {
            if let Some(base) = Path::new(interp).file_name().and_then(|b| b.to_str()) {
                names.push(base.to_string());
            }
        }
        for so in names {
            if have.contains(&so) || copied.contains(&so) {
                continue;
            }
            match find(&so) {
                Some(src) => {
                    let dst = libdir.join(&so);
                    if let Some(parent) = dst.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::copy(&src, &dst)
                        .with_context(|| format!("copying {}", src.display()))?;
                    let mode = std::fs::metadata(&src)?.mode() & 0o7777;
                    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o444))?;
                    copied.insert(so);
                    queue.push(dst);
                }
                None => missing.push(so),
            }
        }
    }
    Ok((copied, missing))
}

fn build(dir: &Path, kernel_pkg: &str, debs: &BTreeMap<String, PathBuf>) -> Result<BaseImage> {
    let work = dir.join("work");
    let x = work.join("x");
    std::fs::create_dir_all(&x)?;
    // Extract every package (in parallel: the kernel alone takes a few seconds).
    let jobs: Vec<(PathBuf, PathBuf)> = debs.iter().map(|(p, f)| (f.clone(), x.join(p))).collect();
    let results: Vec<Result<String>> = std::thread::scope(|s| {
        let chunks: Vec<_> = jobs.chunks(jobs.len().div_ceil(4).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || -> Result<String> {
                    for (deb, to) in chunk {
                        run(Command::new("dpkg").arg("-x").arg(deb).arg(to))?;
                    }
                    Ok(String::new())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("extract thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }

    let root = work.join("root");
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "lib64", LIBDIR, "etc/lvm", "dev", "proc", "sys",
        "tmp", "run", "root", "mnt", "var",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for (pkg, paths) in COPY {
        let proot = x.join(pkg);
        for p in *paths {
            let src = [proot.join(p), proot.join("usr").join(p)]
                .into_iter()
                .find(|s| std::fs::symlink_metadata(s).is_ok())
                .with_context(|| format!("package {pkg} has no {p}"))?;
            let rel = src.strip_prefix(&proot)?.to_path_buf();
            copy_tree(&src, &root.join(rel))?;
        }
    }
    // Shell scripts of lvm2 (fsadm, lvmdump) need bash: harmless, left as they are.
    std::fs::write(root.join("init"), INIT)?;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(root.join("etc/lvm/lvm.conf"), LVM_CONF)?;
    std::fs::write(root.join("etc/nsswitch.conf"), NSSWITCH)?;

    // Libraries: an index of every shared object in the extracted packages.
    let mut index: HashMap<String, PathBuf> = HashMap::new();
    for pkg in debs.keys() {
        let proot = x.join(pkg);
        for d in LIB_SEARCH {
            let Ok(rd) = std::fs::read_dir(proot.join(d)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.contains(".so") || index.contains_key(&name) {
                    continue;
                }
                if let Some(real) = resolve_in(&proot, &e.path()) {
                    if real.is_file() {
                        index.insert(name, real);
                    }
                }
            }
        }
    }
    let (libs, missing) = copy_libs(&root, &BTreeSet::new(), &|so| index.get(so).cloned())?;
    if !missing.is_empty() {
        bail!("libraries not found in the downloaded packages: {missing:?}");
    }
    std::os::unix::fs::symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("lib64/ld-linux-x86-64.so.2"),
    )?;

    // Kernel modules: busybox computes modules.dep (the package ships none).
    let kx = x.join(kernel_pkg);
    let kver = std::fs::read_dir(kx.join("lib/modules"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .next()
        .context("the kernel package has no modules")?;
    let busybox = x.join("busybox-static/bin/busybox");
    run(Command::new(&busybox)
        .args(["depmod", "-b"])
        .arg(&kx)
        .arg(&kver))?;
    let mdir = kx.join("lib/modules").join(&kver);
    let dep = std::fs::read_to_string(mdir.join("modules.dep"))?;
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    let modname = |p: &str| -> String {
        let f = p.rsplit('/').next().unwrap_or(p);
        let f = f.split(".ko").next().unwrap_or(f);
        f.replace('-', "_")
    };
    for l in dep.lines() {
        let Some((m, rest)) = l.split_once(':') else {
            continue;
        };
        let ds = rest.split_whitespace().map(String::from).collect();
        deps.insert(modname(m), (m.to_string(), ds));
    }
    let mut want: Vec<String> = MODULES
        .iter()
        .filter(|m| deps.contains_key(**m))
        .map(|m| m.to_string())
        .collect();
    let mut taken = BTreeSet::new();
    while let Some(m) = want.pop() {
        let Some((path, ds)) = deps.get(&m) else {
            continue;
        };
        if !taken.insert(path.clone()) {
            continue;
        }
        want.extend(ds.iter().map(|d| modname(d)));
    }
    let rmdir = root.join("lib/modules").join(&kver);
    for p in &taken {
        copy_file(&mdir.join(p), &rmdir.join(p))?;
    }
    for f in ["modules.builtin", "modules.order"] {
        if mdir.join(f).is_file() {
            copy_file(&mdir.join(f), &rmdir.join(f))?;
        }
    }
    run(Command::new(&busybox)
        .args(["depmod", "-b"])
        .arg(&root)
        .arg(&kver))?;

    // The archive stays uncompressed: decompressing in a TCG guest costs more (about 5 s
    // for zstd, more for gzip) than loading the bigger file.
    let initrd = dir.join("base.cpio");
    {
        let f = std::fs::File::create(&initrd)?;
        let mut w = std::io::BufWriter::new(f);
        cpio::write_tree(
            &root,
            &[cpio::CharDev {
                path: "dev/console",
                major: 5,
                minor: 1,
            }],
            &mut w,
        )?;
        w.flush()?;
    }
    let kernel = dir.join("vmlinuz");
    std::fs::copy(kx.join("boot").join(format!("vmlinuz-{kver}")), &kernel)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(BaseImage {
        kernel,
        initrd,
        kernel_version: kver,
        key: String::new(),
        packages: Vec::new(),
        libs: libs.into_iter().collect(),
        build_seconds: 0.0,
        format: FORMAT,
    })
}

/// A file to add to a node image: `src` on the host, `dest` its absolute path in the node.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    pub src: PathBuf,
    pub dest: String,
}

/// Writes `out`: the base initramfs followed by a second (uncompressed) cpio archive holding
/// `extra` and the host libraries they need that the base lacks.
pub fn write_initrd(base: &BaseImage, extra: &[ExtraFile], out: &Path) -> Result<()> {
    let tmp = out.with_extension("overlay.d");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = (|| -> Result<()> {
        for f in extra {
            let rel = f.dest.trim_start_matches('/');
            if rel.is_empty() {
                bail!("bad destination {:?}", f.dest);
            }
            let dst = tmp.join(rel);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&f.src, &dst).with_context(|| format!("copying {}", f.src.display()))?;
            let mode = std::fs::metadata(&f.src)?.mode() & 0o7777;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
        }
        let have: BTreeSet<String> = base.libs.iter().cloned().collect();
        let host_find = |so: &str| {
            LIB_SEARCH
                .iter()
                .map(|d| Path::new("/").join(d).join(so))
                .find(|p| p.exists())
                .and_then(|p| std::fs::canonicalize(p).ok())
        };
        let (_, missing) = copy_libs(&tmp, &have, &host_find)?;
        if !missing.is_empty() {
            bail!("libraries not found on the host: {missing:?}");
        }
        let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
        let mut base_data = std::fs::File::open(&base.initrd)?;
        let n = std::io::copy(&mut base_data, &mut w)?;
        // The next archive starts on a 4-byte boundary.
        let pad = (4 - n % 4) % 4;
        w.write_all(&[0u8; 3][..usize::try_from(pad)?])?;
        cpio::write_tree(&tmp, &[], &mut w)?;
        w.flush()?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
