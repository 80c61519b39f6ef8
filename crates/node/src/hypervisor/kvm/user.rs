//! QEMU started as an unprivileged user (`security_model=user`, docs/security.md), as
//! libvirt does: the child gets the user's uid, gid and supplementary groups before exec, so
//! QEMU never holds root and its sandbox refuses privilege changes too. Everything QEMU
//! would open by path is opened here by the root daemon and handed over as a descriptor:
//! the QMP and serial sockets (listening), the console log, the disks and the CD-ROM
//! (`-add-fd` fd sets, `/dev/fdset/N`), the taps (and their vhost-net devices) and
//! `/dev/kvm` (`-accel kvm,device=/dev/fdset/N`, QEMU 9.0 or later). QEMU keeps them for its
//! whole life, so a migration target, a daemon restart and a re-adoption need nothing more,
//! and no directory of the node (its state directory is 0700) has to be reachable by the user.

use crate::error::{NodeError, NodeResult};
use crate::exec::Identity;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A user QEMU runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from the group database, its primary group included).
    pub groups: Vec<u32>,
}

impl QemuUser {
    /// Looks `name` up in the user database; root is refused (that is `security_model=none`).
    pub fn lookup(name: &str) -> NodeResult<Self> {
        let cname = CString::new(name)
            .map_err(|_| NodeError::bad_request(format!("invalid user name '{name}'")))?;
        let mut buf = vec![0u8; 16384];
        // SAFETY: an all-zero passwd is a valid value to be overwritten by getpwnam_r.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r writes into `pw` and `buf` (sizes given) and sets `found`.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(NodeError::not_found(format!(
                "security_domain '{name}': no such user on this node (create it, e.g. with the maguey package, or set security_model=none)"
            )));
        }
        let (uid, gid) = (pw.pw_uid, pw.pw_gid);
        if uid == 0 {
            return Err(NodeError::bad_request(format!(
                "security_domain '{name}' is root: use security_model=none"
            )));
        }
        let mut groups = vec![0 as libc::gid_t; 64];
        let mut n = groups.len() as libc::c_int;
        // SAFETY: getgrouplist fills at most `n` entries of `groups` and updates `n`.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc < 0 {
            groups.resize(usize::try_from(n).unwrap_or(0).max(1), 0);
            // SAFETY: as above, with room for the `n` groups just reported.
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        }
        groups.truncate(usize::try_from(n).unwrap_or(0));
        groups.retain(|g| *g != 0);
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        Ok(QemuUser {
            name: name.to_string(),
            uid,
            gid,
            groups,
        })
    }

    /// The identity of a QEMU spawned directly (`ids` set) or through a wrapper that changes
    /// the ids itself (`systemd-run --uid --gid`; only the groups change before its exec).
    pub fn identity(&self, wrapper_switches: bool) -> Identity {
        Identity {
            ids: (!wrapper_switches).then_some((self.uid, self.gid)),
            groups: self.groups.clone(),
        }
    }
}

/// The descriptors one QEMU gets, by role (their numbers go into its command line).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FdArgs {
    /// Listening QMP socket.
    pub qmp: i32,
    /// Listening serial console socket.
    pub serial: i32,
    /// The console log, open for appending.
    pub console_log: i32,
    /// `/dev/null`, in the fd set whose `opaque` names the QMP socket's path: so QEMU's
    /// command line still names its instance's QMP socket (how a restarted daemon tells its
    /// QEMU from a process that reused the pid).
    pub marker: i32,
    /// `/dev/kvm` (when the accelerator is kvm).
    pub kvm: Option<i32>,
    /// One per disk, in order.
    pub disks: Vec<i32>,
    /// The CD-ROM image.
    pub cdrom: Option<i32>,
    /// The kernel and initrd (QEMU reads them through `/dev/fd/N`: its loaders take no fd
    /// set; the files themselves must be readable by the user, their directories need not).
    pub kernel: Option<i32>,
    pub initrd: Option<i32>,
    /// One tap per NIC, in order, with its vhost-net device when vhost is on.
    pub taps: Vec<(i32, Option<i32>)>,
}

/// The descriptors opened for one QEMU: closed here once QEMU got its copies.
#[derive(Default)]
pub struct Opened {
    held: Vec<OwnedFd>,
    pub args: FdArgs,
}

impl Opened {
    fn keep(&mut self, fd: OwnedFd) -> i32 {
        let n = fd.as_raw_fd();
        self.held.push(fd);
        n
    }

    /// Every descriptor number, for the spawn.
    pub fn numbers(&self) -> Vec<i32> {
        self.held.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

fn io_err(what: &Path) -> impl Fn(std::io::Error) -> NodeError + '_ {
    move |e| NodeError::io(format!("cannot open {} for QEMU: {e}", what.display()))
}

fn open_file(path: &Path, write: bool, direct: bool) -> NodeResult<OwnedFd> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(write);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    Ok(o.open(path).map_err(io_err(path))?.into())
}

/// A listening unix socket at `path` (a leftover file replaced).
fn listen(path: &Path) -> NodeResult<OwnedFd> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(io_err(path))?;
    Ok(l.into())
}

/// Attaches to the persistent tap `name` (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, as QEMU
/// itself opens it).
fn open_tap(name: &str) -> NodeResult<OwnedFd> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_VNET_HDR: libc::c_short = 0x4000;
    let tun = open_file(Path::new("/dev/net/tun"), true, false)?;
    // SAFETY: an all-zero ifreq is valid; the name (validated, < IFNAMSIZ) and flags are set.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= ifr.ifr_name.len() {
        return Err(NodeError::bad_request(format!(
            "tap name '{name}' is too long"
        )));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    // SAFETY: TUNSETIFF reads the ifreq given, on a descriptor of /dev/net/tun owned here.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &ifr) };
    if rc < 0 {
        return Err(NodeError::io(format!(
            "cannot attach to tap {name} for QEMU: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(tun)
}

/// What to open for one QEMU.
pub struct Wanted<'a> {
    pub qmp: &'a Path,
    pub serial: &'a Path,
    pub console_log: &'a Path,
    pub kvm: bool,
    /// (path, read-write, O_DIRECT) of each disk.
    pub disks: Vec<(&'a Path, bool, bool)>,
    pub cdrom: Option<&'a Path>,
    pub kernel: Option<&'a Path>,
    pub initrd: Option<&'a Path>,
    pub taps: Vec<&'a str>,
    pub vhost: bool,
}

/// Opens everything of `w` (nothing is left open on an error).
pub fn open_all(w: &Wanted) -> NodeResult<Opened> {
    let mut o = Opened::default();
    let fd = listen(w.qmp)?;
    o.args.qmp = o.keep(fd);
    let fd = listen(w.serial)?;
    o.args.serial = o.keep(fd);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(w.console_log)
        .map_err(io_err(w.console_log))?;
    o.args.console_log = o.keep(log.into());
    let fd = open_file(Path::new("/dev/null"), false, false)?;
    o.args.marker = o.keep(fd);
    if w.kvm {
        let fd = open_file(Path::new("/dev/kvm"), true, false)?;
        o.args.kvm = Some(o.keep(fd));
    }
    for (path, rw, direct) in &w.disks {
        let fd = open_file(path, *rw, *direct)?;
        let n = o.keep(fd);
        o.args.disks.push(n);
    }
    if let Some(c) = w.cdrom {
        let fd = open_file(c, false, false)?;
        o.args.cdrom = Some(o.keep(fd));
    }
    if let Some(k) = w.kernel {
        let fd = open_file(k, false, false)?;
        o.args.kernel = Some(o.keep(fd));
    }
    if let Some(i) = w.initrd {
        let fd = open_file(i, false, false)?;
        o.args.initrd = Some(o.keep(fd));
    }
    for tap in &w.taps {
        let fd = open_tap(tap)?;
        let t = o.keep(fd);
        let v = if w.vhost {
            let fd = open_file(Path::new("/dev/vhost-net"), true, false)?;
            Some(o.keep(fd))
        } else {
            None
        };
        o.args.taps.push((t, v));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_users_and_refuses_root_and_strangers() {
        let nobody = QemuUser::lookup("nobody").unwrap();
        assert_eq!(nobody.uid, 65534);
        assert!(nobody.groups.contains(&nobody.gid));
        assert!(!nobody.groups.contains(&0));
        let id = nobody.identity(false);
        assert_eq!(id.ids, Some((65534, nobody.gid)));
        assert_eq!(nobody.identity(true).ids, None);
        let e = QemuUser::lookup("root").unwrap_err();
        assert!(e.to_string().contains("security_model=none"), "{e}");
        let e = QemuUser::lookup("no-such-user-here").unwrap_err();
        assert!(e.to_string().contains("no such user"), "{e}");
    }

    #[test]
    fn opens_sockets_log_and_disks() {
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("d0");
        std::fs::write(&disk, vec![0u8; 4096]).unwrap();
        let qmp = t.path().join("q");
        let serial = t.path().join("s");
        let log = t.path().join("c.log");
        let w = Wanted {
            qmp: &qmp,
            serial: &serial,
            console_log: &log,
            kvm: false,
            disks: vec![(&disk, true, false)],
            cdrom: None,
            kernel: None,
            initrd: None,
            taps: vec![],
            vhost: false,
        };
        let o = open_all(&w).unwrap();
        assert_eq!(o.numbers().len(), 5);
        assert_eq!(o.args.disks.len(), 1);
        assert!(qmp.exists() && serial.exists() && log.exists());
        // The QMP socket listens: a client connects.
        std::os::unix::net::UnixStream::connect(&qmp).unwrap();
        let missing = t.path().join("none");
        let w = Wanted {
            disks: vec![(&missing, true, false)],
            ..w
        };
        let e = open_all(&w).err().unwrap();
        assert!(e.to_string().contains("cannot open"), "{e}");
    }
}
