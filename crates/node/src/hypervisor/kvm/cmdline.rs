//! QEMU's command line, built from an instance's filled hvparams.

use super::probe::kvm_can_run;
use super::process::Paths;
use super::user::FdArgs;
use crate::error::{NodeError, NodeResult};
use crate::network::{self, TapSpec};
use maguey_rpc::InstanceRuntime;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) fn hv_str<'a>(hv: &'a BTreeMap<String, Value>, key: &str, default: &'a str) -> &'a str {
    hv.get(key).and_then(Value::as_str).unwrap_or(default)
}

fn hv_bool(hv: &BTreeMap<String, Value>, key: &str, default: bool) -> bool {
    match hv.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "yes" | "1" | "on"),
        _ => default,
    }
}

fn hv_u64(hv: &BTreeMap<String, Value>, key: &str, default: u64) -> u64 {
    match hv.get(key) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(default),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(default),
        _ => default,
    }
}

/// Escapes a value for QEMU's `key=value,...` option syntax (commas are doubled).
fn qopt(s: &str) -> String {
    s.replace(',', ",,")
}

/// QEMU's seccomp sandbox, on for every QEMU, whoever it runs as: obsolete system calls,
/// privilege changes (set*id), new processes (fork, exec) and resource control (scheduler,
/// affinity) refused. QEMU installs the filter early in its start, so it runs without
/// `-daemonize` (whose fork `spawn=deny` forbids; magueyd starts it in a session of its own
/// instead). A QEMU of `security_model=user` is started as its user (no `-run-with`, whose
/// set*id calls come after the filter), so privilege changes stay refused there too.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The user QEMU runs as (`security_model=user`, `security_domain=NAME`, as Ganeti's).
pub(super) fn run_as(hv: &BTreeMap<String, Value>) -> NodeResult<Option<&str>> {
    match hv_str(hv, "security_model", "none") {
        "" | "none" => Ok(None),
        "user" => {
            let user = hv_str(hv, "security_domain", "");
            let valid = !user.is_empty()
                && user.len() <= 32
                && !user.starts_with('-')
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(NodeError::bad_request(format!(
                    "security_model 'user' needs security_domain set to a user name (got '{user}')"
                )));
            }
            Ok(Some(user))
        }
        other => Err(NodeError::unsupported(format!(
            "security_model '{other}' is not supported by Maguey's kvm hypervisor (none or user)"
        ))),
    }
}

/// The fd sets of a QEMU run as its user: the marker naming the QMP socket, `/dev/kvm`, the
/// console log, the CD-ROM, then one per disk.
const FDSET_MARKER: usize = 0;
const FDSET_KVM: usize = 1;
const FDSET_CONSOLE_LOG: usize = 2;
const FDSET_CDROM: usize = 3;
const FDSET_DISKS: usize = 10;

/// vhost-net only when asked for and the node has it.
pub(super) fn vhost_wanted(hv: &BTreeMap<String, Value>) -> bool {
    hv_bool(hv, "vhost_net", false) && network::vhost_available()
}

/// Resolves the `accel` hvparam: `auto` is `kvm` when KVM can run a guest here, else `tcg`.
pub fn resolve_accel(accel: &str) -> NodeResult<String> {
    match accel {
        "kvm" | "tcg" => Ok(accel.to_string()),
        "auto" | "" => Ok(if kvm_can_run() { "kvm" } else { "tcg" }.to_string()),
        other => Err(NodeError::bad_request(format!(
            "invalid accel '{other}' (kvm, tcg or auto)"
        ))),
    }
}

/// Builds QEMU's command line (program first) from the instance's filled hvparams.
/// `disks` are the host paths of the instance's disks, in order.
/// `nets` are the instance's NICs with their taps ([`network::plan`]), in order.
/// `fds`: the descriptors opened for a QEMU that runs as its user ([`super::user`]), named
/// in its command line instead of paths; `None` for a QEMU that runs as root.
pub fn build_argv(
    inst: &InstanceRuntime,
    paths: &Paths,
    disks: &[PathBuf],
    nets: &[TapSpec],
    accel: &str,
    fds: Option<&FdArgs>,
) -> NodeResult<Vec<String>> {
    let hv = &inst.hvparams;
    if run_as(hv)?.is_some() != fds.is_some() {
        return Err(NodeError::internal(
            "a QEMU runs as its user exactly when it gets its descriptors".to_string(),
        ));
    }
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    let kvm_path = hv_str(hv, "kvm_path", "/usr/bin/kvm");
    push(&[kvm_path, "-name", &qopt(&inst.name)]);
    if uuid::Uuid::parse_str(&inst.uuid).is_ok() {
        push(&["-uuid", &inst.uuid]);
    }
    push(&["-m", &inst.memory.to_string()]);
    push(&["-smp", &inst.vcpus.max(1).to_string()]);
    match fds {
        // The daemon writes the pidfile itself (the user cannot write in its directory); the
        // QMP socket's path stays in the command line as an fd set's description.
        Some(f) => push(&[
            "-add-fd",
            &format!(
                "fd={},set={FDSET_MARKER},opaque={}",
                f.marker,
                qopt(&paths.qmp.to_string_lossy())
            ),
        ]),
        None => push(&["-pidfile", &paths.pid.to_string_lossy()]),
    }
    push(&["-nodefaults", "-no-user-config"]);
    let mut machine = match hv_str(hv, "machine_version", "") {
        "" => "pc".to_string(),
        m => qopt(m),
    };
    if !hv_bool(hv, "acpi", true) {
        machine.push_str(",acpi=off");
    }
    push(&["-machine", &machine]);
    match fds.and_then(|f| f.kvm).filter(|_| accel == "kvm") {
        Some(kvm) => push(&[
            "-add-fd",
            &format!("fd={kvm},set={FDSET_KVM}"),
            "-accel",
            &format!("kvm,device=/dev/fdset/{FDSET_KVM}"),
        ]),
        None => push(&["-accel", accel]),
    }
    match hv_str(hv, "cpu_type", "") {
        "" => {}
        c => push(&["-cpu", c]),
    }
    match fds {
        Some(f) => push(&[
            "-chardev",
            &format!("socket,id=qmp0,fd={},server=on,wait=off", f.qmp),
            "-mon",
            "chardev=qmp0,mode=control",
        ]),
        None => push(&[
            "-qmp",
            &format!(
                "unix:{},server=on,wait=off",
                qopt(&paths.qmp.to_string_lossy())
            ),
        ]),
    }
    let serial = hv_bool(hv, "serial_console", true);
    if let (true, Some(f)) = (serial, fds) {
        push(&[
            "-add-fd",
            &format!("fd={},set={FDSET_CONSOLE_LOG}", f.console_log),
            "-chardev",
            &format!(
                "socket,id=serial0,fd={},server=on,wait=off,logfile=/dev/fdset/{FDSET_CONSOLE_LOG},logappend=on",
                f.serial
            ),
            "-serial",
            "chardev:serial0",
        ]);
    } else if serial {
        push(&[
            "-chardev",
            &format!(
                "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
                qopt(&paths.serial.to_string_lossy()),
                qopt(&paths.console_log.to_string_lossy())
            ),
            "-serial",
            "chardev:serial0",
        ]);
    }
    push(&["-sandbox", SANDBOX]);
    match hv_str(hv, "vnc_bind_address", "") {
        "" => push(&["-display", "none"]),
        addr => {
            // Always a password: from `vnc_password_file` (read by QEMU at start), or none
            // set at all, which refuses every client.
            let mut vnc = format!("{}:0,to=1000", qopt(addr));
            match hv_str(hv, "vnc_password_file", "") {
                "" => vnc.push_str(",password=on"),
                file => {
                    if !Path::new(file).is_absolute() {
                        return Err(NodeError::bad_request(format!(
                            "vnc_password_file '{file}' must be an absolute path on the node"
                        )));
                    }
                    push(&["-object", &format!("secret,id=vncpw0,file={}", qopt(file))]);
                    vnc.push_str(",password-secret=vncpw0");
                }
            }
            push(&["-vga", "std", "-vnc", &vnc]);
        }
    }
    let kernel = hv_str(hv, "kernel_path", "");
    if !kernel.is_empty() {
        let mut append = format!(
            "root={} {}",
            hv_str(hv, "root_path", "/dev/vda1"),
            hv_str(hv, "kernel_args", "ro")
        );
        if serial {
            append.push_str(&format!(
                " console=ttyS0,{}",
                hv_u64(hv, "serial_speed", 38400)
            ));
        }
        let by_fd = |fd: Option<i32>, path: &str| match fd {
            Some(fd) => format!("/dev/fd/{fd}"),
            None => path.to_string(),
        };
        push(&["-kernel", &by_fd(fds.and_then(|f| f.kernel), kernel)]);
        match hv_str(hv, "initrd_path", "") {
            "" => {}
            i => push(&["-initrd", &by_fd(fds.and_then(|f| f.initrd), i)]),
        }
        push(&["-append", append.trim()]);
    } else {
        let order = match hv_str(hv, "boot_order", "disk") {
            "cdrom" => "d",
            "floppy" => "a",
            "network" => "n",
            _ => "c",
        };
        push(&["-boot", order]);
    }
    let cache = hv_str(hv, "disk_cache", "default");
    let aio = hv_str(hv, "disk_aio", "threads");
    // Native AIO needs O_DIRECT, as in Ganeti.
    let direct = cache == "none" || aio == "native";
    let disk_type = hv_str(hv, "disk_type", "paravirtual");
    for (i, (path, disk)) in disks.iter().zip(&inst.disks).enumerate() {
        let ro = disk.mode == maguey_model::DiskMode::ReadOnly;
        // LVs and DRBD devices are block devices: QEMU's `file` driver refuses them.
        let driver = if disk.dev_type.is_block_device() {
            "host_device"
        } else {
            "file"
        };
        let filename = match fds.and_then(|f| f.disks.get(i)) {
            Some(fd) => {
                let set = FDSET_DISKS + i;
                // The path stays in the command line as the fd set's description.
                push(&[
                    "-add-fd",
                    &format!("fd={fd},set={set},opaque={}", qopt(&path.to_string_lossy())),
                ]);
                format!("/dev/fdset/{set}")
            }
            None => qopt(&path.to_string_lossy()),
        };
        push(&[
            "-blockdev",
            &format!(
                "driver={driver},node-name=disk{i}-file,filename={filename},aio={aio},cache.direct={},read-only={}",
                if direct { "on" } else { "off" },
                if ro { "on" } else { "off" },
            ),
            "-blockdev",
            &format!(
                "driver=raw,node-name=disk{i},file=disk{i}-file,read-only={}",
                if ro { "on" } else { "off" }
            ),
        ]);
        let wc = if cache == "writethrough" {
            ",write-cache=off"
        } else {
            ""
        };
        let dev = match disk_type {
            "paravirtual" => format!("virtio-blk-pci,drive=disk{i},id=disk{i}-dev{wc}"),
            "ide" => format!("ide-hd,drive=disk{i},id=disk{i}-dev{wc}"),
            other => {
                return Err(NodeError::unsupported(format!(
                    "disk_type '{other}' is not supported by Maguey's kvm hypervisor yet"
                )))
            }
        };
        push(&["-device", &dev]);
    }
    let nic_model = match hv_str(hv, "nic_type", "paravirtual") {
        "paravirtual" => "virtio-net-pci".to_string(),
        "ne2k_pci" => "ne2k_pci".to_string(),
        "ne2k_isa" => "ne2k_isa".to_string(),
        other => other.to_string(),
    };
    let vhost = vhost_wanted(hv);
    for (i, net) in nets.iter().enumerate() {
        let netdev = match fds.and_then(|f| f.taps.get(i)) {
            Some((tap, vhostfd)) => {
                let mut s = format!("tap,id=net{},fd={tap}", net.index);
                if let Some(v) = vhostfd {
                    s.push_str(&format!(",vhost=on,vhostfd={v}"));
                }
                s
            }
            None => network::netdev_arg(net, vhost),
        };
        push(&[
            "-netdev",
            &netdev,
            "-device",
            &network::device_arg(net, &nic_model),
        ]);
    }
    cdrom_args(hv, fds.and_then(|f| f.cdrom), &mut a)?;
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-device", "virtio-balloon-pci,id=balloon0"]);
    if hv_str(hv, "reboot_behavior", "reboot") == "exit" {
        push(&["-no-reboot"]);
    }
    // A guest that powers itself off leaves QEMU alive in state `shutdown` (Ganeti's
    // USER_down) instead of exiting.
    if hv_bool(hv, "user_shutdown", false) {
        push(&["-no-shutdown"]);
    }
    if hv_bool(hv, "use_localtime", false) {
        push(&["-rtc", "base=localtime"]);
    }
    for extra in hv_str(hv, "kvm_extra", "").split_whitespace() {
        push(&[extra]);
    }
    Ok(a)
}

/// Ganeti's `cdrom_image_path`: a local image attached read-only as a CD-ROM
/// (`cdrom_disk_type`: `ide`, the default, `scsi` or `paravirtual`).
fn cdrom_args(
    hv: &BTreeMap<String, Value>,
    fd: Option<i32>,
    a: &mut Vec<String>,
) -> NodeResult<()> {
    let path = hv_str(hv, "cdrom_image_path", "");
    if path.is_empty() {
        return Ok(());
    }
    if !Path::new(path).is_absolute() {
        return Err(NodeError::bad_request(format!(
            "cdrom_image_path '{path}' must be an absolute path on the node"
        )));
    }
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    let dev = match hv_str(hv, "cdrom_disk_type", "") {
        "" | "ide" => "ide-cd,drive=cdrom0,id=cdrom0-dev",
        "paravirtual" => "virtio-blk-pci,drive=cdrom0,id=cdrom0-dev",
        "scsi" => {
            push(&["-device", "virtio-scsi-pci,id=cdrom-scsi"]);
            "scsi-cd,bus=cdrom-scsi.0,drive=cdrom0,id=cdrom0-dev"
        }
        other => {
            return Err(NodeError::unsupported(format!(
                "cdrom_disk_type '{other}' is not supported by Maguey's kvm hypervisor (ide, scsi or paravirtual)"
            )))
        }
    };
    let filename = match fd {
        Some(fd) => {
            push(&[
                "-add-fd",
                &format!("fd={fd},set={FDSET_CDROM},opaque={}", qopt(path)),
            ]);
            format!("/dev/fdset/{FDSET_CDROM}")
        }
        None => qopt(path),
    };
    push(&[
        "-blockdev",
        &format!("driver=file,node-name=cdrom0-file,filename={filename},read-only=on"),
        "-blockdev",
        "driver=raw,node-name=cdrom0,file=cdrom0-file,read-only=on",
        "-device",
        dev,
    ]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use maguey_model::params::{Hypervisor as Hv, ParamKind};

    fn runtime() -> InstanceRuntime {
        let mut hv = ParamKind::Hv(Hv::Kvm).defaults();
        hv.insert("kernel_path".into(), "/k/vmlinuz".into());
        hv.insert("initrd_path".into(), "/k/initrd".into());
        hv.insert(
            "kvm_extra".into(),
            "-global kvm-pit.lost_tick_policy=delay".into(),
        );
        InstanceRuntime {
            name: "vm1".into(),
            uuid: "0b6f6b8c-5a43-4a3e-9d2c-1a2b3c4d5e6f".into(),
            hypervisor: "kvm".into(),
            memory: 128,
            vcpus: 1,
            hvparams: hv,
            disks: vec![],
            nics: vec![],
            file_storage_dir: String::new(),
        }
    }

    fn disk0() -> maguey_model::Disk {
        maguey_model::Disk {
            uuid: "d0".into(),
            name: None,
            dev_type: maguey_model::DevType::File,
            size: 64,
            mode: maguey_model::DiskMode::ReadWrite,
            logical_id: maguey_model::LogicalId::File {
                driver: "loop".into(),
                path: "d".into(),
            },
            children: vec![],
            nodes: vec![],
            iv_name: "disk/0".into(),
            serial_no: 1,
            ctime: 0.0,
            mtime: 0.0,
        }
    }

    #[test]
    fn argv_from_hvparams() {
        let paths = Paths::new(Path::new("/r"), "vm1");
        let a = build_argv(&runtime(), &paths, &[], &[], "tcg", None).unwrap();
        let s = a.join(" ");
        assert_eq!(a[0], "/usr/bin/kvm");
        assert!(s.contains("-name vm1 -uuid 0b6f6b8c"), "{s}");
        assert!(
            s.contains("-m 128 -smp 1 -pidfile /r/vm1.pid -nodefaults"),
            "{s}"
        );
        assert!(s.contains("-machine pc -accel tcg"), "{s}");
        assert!(s.contains("-qmp unix:/r/vm1.qmp,server=on,wait=off"), "{s}");
        assert!(s.contains("logfile=/r/vm1.console.log"), "{s}");
        assert!(s.contains("-kernel /k/vmlinuz -initrd /k/initrd"), "{s}");
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(a[i + 1], "root=/dev/vda1 ro console=ttyS0,38400");
        assert!(s.ends_with("-global kvm-pit.lost_tick_policy=delay"), "{s}");
        assert!(!s.contains("-boot"));
    }

    #[test]
    fn argv_without_kernel_boots_disk_and_escapes() {
        let mut r = runtime();
        r.hvparams.insert("kernel_path".into(), "".into());
        r.hvparams.insert("serial_console".into(), false.into());
        r.hvparams.insert("disk_cache".into(), "none".into());
        r.disks = vec![disk0()];
        let paths = Paths::new(Path::new("/r"), "vm1");
        let a = build_argv(&r, &paths, &[PathBuf::from("/d/a,b")], &[], "kvm", None).unwrap();
        let s = a.join(" ");
        assert!(s.contains("-boot c"), "{s}");
        assert!(!s.contains("console=ttyS0"));
        assert!(
            s.contains("filename=/d/a,,b,aio=threads,cache.direct=on"),
            "{s}"
        );
        assert!(s.contains("virtio-blk-pci,drive=disk0"), "{s}");
        assert!(
            s.contains("-blockdev driver=file,node-name=disk0-file"),
            "{s}"
        );
        // LVs and DRBD devices are block devices (`host_device`).
        r.disks[0].dev_type = maguey_model::DevType::Drbd;
        let a = build_argv(&r, &paths, &[PathBuf::from("/dev/drbd3")], &[], "kvm", None).unwrap();
        let s = a.join(" ");
        assert!(
            s.contains("-blockdev driver=host_device,node-name=disk0-file,filename=/dev/drbd3"),
            "{s}"
        );
        r.disks[0].dev_type = maguey_model::DevType::File;
        r.hvparams.insert("disk_type".into(), "pflash".into());
        assert!(build_argv(&r, &paths, &[PathBuf::from("/d")], &[], "kvm", None).is_err());
    }

    #[test]
    fn argv_with_taps_and_cdrom() {
        let mut r = runtime();
        r.nics = vec![
            maguey_rpc::NicRuntime {
                mac: "aa:00:00:00:00:01".into(),
                ip: None,
                mode: maguey_model::NicMode::Bridged,
                link: "br0".into(),
                network: None,
            },
            maguey_rpc::NicRuntime {
                mac: "aa:00:00:00:00:02".into(),
                ip: Some("192.0.2.9".into()),
                mode: maguey_model::NicMode::Routed,
                link: "".into(),
                network: None,
            },
        ];
        r.hvparams.insert("nic_type".into(), "e1000".into());
        r.hvparams
            .insert("cdrom_image_path".into(), "/srv/seed,1.iso".into());
        let nets = network::plan("node1", "vm1", &r.nics).unwrap();
        let paths = Paths::new(Path::new("/r"), "vm1");
        let a = build_argv(&r, &paths, &[], &nets, "tcg", None).unwrap();
        let s = a.join(" ");
        let t0 = network::tap_name("node1", "vm1", 0);
        let t1 = network::tap_name("node1", "vm1", 1);
        assert!(
            s.contains(&format!(
                "-netdev tap,id=net0,ifname={t0},script=no,downscript=no -device e1000,id=nic0,netdev=net0,mac=aa:00:00:00:00:01"
            )),
            "{s}"
        );
        assert!(s.contains(&format!("ifname={t1},script=no,downscript=no -device e1000,id=nic1,netdev=net1,mac=aa:00:00:00:00:02")), "{s}");
        // vhost only when asked for (and present on the node).
        assert!(!s.contains("vhost=on"), "{s}");
        r.hvparams.insert("vhost_net".into(), true.into());
        let v = build_argv(&r, &paths, &[], &nets, "tcg", None)
            .unwrap()
            .join(" ");
        assert_eq!(v.contains("vhost=on"), network::vhost_available(), "{v}");
        assert_eq!(network::taps_in_argv(&a), vec![t0, t1]);
        assert!(
            s.contains("-blockdev driver=file,node-name=cdrom0-file,filename=/srv/seed,,1.iso,read-only=on -blockdev driver=raw,node-name=cdrom0,file=cdrom0-file,read-only=on -device ide-cd,drive=cdrom0,id=cdrom0-dev"),
            "{s}"
        );
        r.hvparams.insert("cdrom_disk_type".into(), "scsi".into());
        let s = build_argv(&r, &paths, &[], &nets, "tcg", None)
            .unwrap()
            .join(" ");
        assert!(s.contains("-device virtio-scsi-pci,id=cdrom-scsi"), "{s}");
        assert!(s.contains("scsi-cd,bus=cdrom-scsi.0,drive=cdrom0"), "{s}");
        r.hvparams.insert("cdrom_disk_type".into(), "floppy".into());
        assert!(build_argv(&r, &paths, &[], &nets, "tcg", None).is_err());
        r.hvparams.insert("cdrom_disk_type".into(), "".into());
        r.hvparams
            .insert("cdrom_image_path".into(), "seed.iso".into());
        let e = build_argv(&r, &paths, &[], &nets, "tcg", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn sandboxed_as_the_configured_user_with_a_vnc_password() {
        let paths = Paths::new(Path::new("/r"), "vm1");
        let mut r = runtime();
        let s = build_argv(&r, &paths, &[], &[], "tcg", None)
            .unwrap()
            .join(" ");
        assert!(
            s.contains(
                "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
            ),
            "{s}"
        );
        assert!(!s.contains("-run-with") && !s.contains("-daemonize"), "{s}");
        assert!(s.contains("-display none") && !s.contains("-vnc"), "{s}");
        r.hvparams.insert("security_model".into(), "user".into());
        let e = build_argv(&r, &paths, &[], &[], "tcg", None).unwrap_err();
        assert!(e.to_string().contains("security_domain"), "{e}");
        r.hvparams
            .insert("security_domain".into(), "nobody,x=1".into());
        assert!(build_argv(&r, &paths, &[], &[], "tcg", None).is_err());
        r.hvparams
            .insert("security_domain".into(), "maguey-qemu".into());
        // As its user: only with its descriptors, named instead of paths, whole sandbox.
        assert!(build_argv(&r, &paths, &[], &[], "tcg", None).is_err());
        let fds = FdArgs {
            qmp: 5,
            serial: 6,
            console_log: 7,
            marker: 8,
            kvm: Some(9),
            disks: vec![11],
            cdrom: None,
            kernel: Some(14),
            initrd: Some(15),
            taps: vec![(12, Some(13))],
        };
        let mut with_disk = r.clone();
        with_disk.disks = vec![disk0()];
        let nets = network::plan(
            "n",
            "vm1",
            &[maguey_rpc::NicRuntime {
                mac: "aa:00:00:00:00:01".into(),
                ip: None,
                mode: "bridged".parse().unwrap(),
                link: "br0".into(),
                network: None,
            }],
        )
        .unwrap();
        let a = build_argv(
            &with_disk,
            &paths,
            &[PathBuf::from("/d/disk0")],
            &nets,
            "kvm",
            Some(&fds),
        )
        .unwrap();
        let s = a.join(" ");
        for want in [
            "-add-fd fd=8,set=0,opaque=/r/vm1.qmp",
            "-add-fd fd=9,set=1 -accel kvm,device=/dev/fdset/1",
            "-chardev socket,id=qmp0,fd=5,server=on,wait=off -mon chardev=qmp0,mode=control",
            "-add-fd fd=7,set=2 -chardev socket,id=serial0,fd=6,server=on,wait=off,logfile=/dev/fdset/2,logappend=on",
            "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-add-fd fd=11,set=10,opaque=/d/disk0 -blockdev driver=file,node-name=disk0-file,filename=/dev/fdset/10,",
            "-netdev tap,id=net0,fd=12,vhost=on,vhostfd=13",
            "-kernel /dev/fd/14 -initrd /dev/fd/15",
        ] {
            assert!(s.contains(want), "{want} not in {s}");
        }
        for never in [
            "-run-with",
            "-pidfile",
            "filename=/d/",
            "unix:",
            "ifname=",
            "/k/",
        ] {
            assert!(!s.contains(never), "{never} in {s}");
        }
        // Under tcg no /dev/kvm is handed over.
        let t = build_argv(&r, &paths, &[], &[], "tcg", Some(&fds)).unwrap();
        assert!(t.join(" ").contains("-accel tcg") && !t.join(" ").contains("device="));
        r.hvparams.insert("security_model".into(), "pool".into());
        assert!(build_argv(&r, &paths, &[], &[], "tcg", None).is_err());
        r.hvparams.insert("security_model".into(), "none".into());
        // VNC: never without a password.
        r.hvparams
            .insert("vnc_bind_address".into(), "127.0.0.1".into());
        let s = build_argv(&r, &paths, &[], &[], "tcg", None)
            .unwrap()
            .join(" ");
        assert!(s.contains("-vnc 127.0.0.1:0,to=1000,password=on"), "{s}");
        r.hvparams
            .insert("vnc_password_file".into(), "/etc/maguey/vnc,pw".into());
        let s = build_argv(&r, &paths, &[], &[], "tcg", None)
            .unwrap()
            .join(" ");
        assert!(
            s.contains("-object secret,id=vncpw0,file=/etc/maguey/vnc,,pw"),
            "{s}"
        );
        assert!(
            s.contains("-vnc 127.0.0.1:0,to=1000,password-secret=vncpw0"),
            "{s}"
        );
        r.hvparams.insert("vnc_password_file".into(), "pw".into());
        assert!(build_argv(&r, &paths, &[], &[], "tcg", None).is_err());
    }

    #[test]
    fn accel_values() {
        assert_eq!(resolve_accel("tcg").unwrap(), "tcg");
        assert_eq!(resolve_accel("kvm").unwrap(), "kvm");
        assert!(resolve_accel("xen").is_err());
        let auto = resolve_accel("auto").unwrap();
        assert!(auto == "kvm" || auto == "tcg");
    }
}
