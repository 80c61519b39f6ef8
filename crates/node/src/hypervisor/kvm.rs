//! Ganeti's `kvm` hypervisor: one daemonized QEMU process per instance, driven over QMP.
//!
//! Runtime files live in `state_dir/run/kvm/`: `NAME.runtime.json` (argv, memory, vcpus,
//! start time, pid), `NAME.pid` (QEMU's `-pidfile`), `NAME.qmp` (QMP socket), `NAME.serial`
//! (serial console socket) and `NAME.console.log` (everything the serial console printed).
//! QEMU runs with `-daemonize` in its own session, so it outlives magueyd; a restarted magueyd
//! finds its instances again from these files (the pid must still be a QEMU using this
//! instance's QMP socket) and talks to them over QMP. No state is kept in memory.

use super::{BoxFuture, HvResult, Hypervisor, NodeMemory, RebootKind};
use crate::network::{self, TapSpec};
use crate::qmp::{MigrationParameters, Qmp};
use crate::storage::{self, StorageContext};
use maguey_rpc::{InstanceRunInfo, InstanceRuntime, MigrationStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest time QEMU may take to daemonize.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Soft reboot: the longest the guest may take to power off (whatever `shutdown_timeout` was
/// asked) before it is stopped hard. The master's node RPCs time out after 60 s, so a reboot
/// (power-off, then a fresh boot) must answer well before.
const REBOOT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(45);
/// Soft stop: the longest wait for the guest's ACPI power-off, whatever timeout was asked
/// (Ganeti's default is 120 s), so the answer arrives within the master's 60 s RPC timeout.
const MAX_SOFT_STOP: Duration = Duration::from_secs(50);
const MIB: u64 = 1024 * 1024;

/// What is stored per started instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    pub name: String,
    #[serde(default)]
    pub uuid: String,
    pub memory: u64,
    pub vcpus: u32,
    /// Unix time of the start.
    pub started: f64,
    pub pid: u32,
    /// The QEMU command line, program first.
    pub argv: Vec<String>,
    /// `kvm` or `tcg`, as resolved at start.
    pub accel: String,
}

/// The runtime file paths of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    pub runtime: PathBuf,
    pub pid: PathBuf,
    pub qmp: PathBuf,
    pub serial: PathBuf,
    pub console_log: PathBuf,
}

impl Paths {
    pub fn new(run_dir: &Path, name: &str) -> Self {
        let f = |ext: &str| run_dir.join(format!("{name}.{ext}"));
        Paths {
            runtime: f("runtime.json"),
            pid: f("pid"),
            qmp: f("qmp"),
            serial: f("serial"),
            console_log: f("console.log"),
        }
    }
}

pub struct KvmHypervisor {
    run_dir: PathBuf,
    state_dir: PathBuf,
    node_name: String,
    /// Serialises starts, stops and reboots.
    lock: tokio::sync::Mutex<()>,
}

fn hv_str<'a>(hv: &'a BTreeMap<String, Value>, key: &str, default: &'a str) -> &'a str {
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

/// Whether KVM can really run a guest here: creates a VM with one vCPU whose reset vector
/// holds a short loop then `hlt`, runs it, and expects a HLT exit at native speed. Cached for
/// the process's life.
pub fn kvm_can_run() -> bool {
    static CACHE: OnceLock<bool> = OnceLock::new();
    *CACHE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(probe_kvm());
        });
        rx.recv_timeout(Duration::from_secs(3)).unwrap_or(false)
    })
}

fn probe_kvm() -> bool {
    const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
    const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
    const KVM_RUN: libc::c_ulong = 0xAE80;
    const KVM_EXIT_HLT: u32 = 5;
    #[repr(C)]
    struct Region {
        slot: u32,
        flags: u32,
        guest_phys_addr: u64,
        memory_size: u64,
        userspace_addr: u64,
    }
    // SAFETY: plain ioctls on descriptors we open and close here; the guest memory and the
    // kvm_run area are mappings we create and unmap; the kernel only reads the `Region`.
    unsafe {
        let kvm = libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if kvm < 0 {
            return false;
        }
        let mut ok = false;
        let vm = libc::ioctl(kvm, KVM_CREATE_VM, 0);
        if vm >= 0 {
            let mem = libc::mmap(
                std::ptr::null_mut(),
                0x1000,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if mem != libc::MAP_FAILED {
                // At the reset vector (0xfffffff0): `mov ecx, 1000000; l: dec ecx; jnz l;
                // hlt`. A KVM that really runs guests does this in about a millisecond; one
                // that emulates every instruction (seen on some nested hosts) takes seconds.
                let code: [u8; 11] = [
                    0x66, 0xb9, 0x40, 0x42, 0x0f, 0x00, 0x66, 0x49, 0x75, 0xfc, 0xf4,
                ];
                std::ptr::copy_nonoverlapping(code.as_ptr(), (mem as *mut u8).add(0xff0), 11);
                let region = Region {
                    slot: 0,
                    flags: 0,
                    guest_phys_addr: 0xffff_f000,
                    memory_size: 0x1000,
                    userspace_addr: mem as u64,
                };
                let vcpu = if libc::ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) == 0 {
                    libc::ioctl(vm, KVM_CREATE_VCPU, 0)
                } else {
                    -1
                };
                let size = libc::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
                if vcpu >= 0 && size > 0 {
                    let run = libc::mmap(
                        std::ptr::null_mut(),
                        size as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        vcpu,
                        0,
                    );
                    if run != libc::MAP_FAILED {
                        let t = Instant::now();
                        if libc::ioctl(vcpu, KVM_RUN, 0) == 0 {
                            let reason = *((run as *const u8).add(8) as *const u32);
                            ok = reason == KVM_EXIT_HLT && t.elapsed() < Duration::from_millis(250);
                            tracing::info!("KVM probe: exit {reason} after {:?}", t.elapsed());
                        }
                        libc::munmap(run, size as usize);
                    }
                }
                if vcpu >= 0 {
                    libc::close(vcpu);
                }
                libc::munmap(mem, 0x1000);
            }
            libc::close(vm);
        }
        libc::close(kvm);
        ok
    }
}

/// Resolves the `accel` hvparam: `auto` is `kvm` when KVM can run a guest here, else `tcg`.
pub fn resolve_accel(accel: &str) -> HvResult<String> {
    match accel {
        "kvm" | "tcg" => Ok(accel.to_string()),
        "auto" | "" => Ok(if kvm_can_run() { "kvm" } else { "tcg" }.to_string()),
        other => Err(format!("invalid accel '{other}' (kvm, tcg or auto)")),
    }
}

/// Builds QEMU's command line (program first) from the instance's filled hvparams.
/// `disks` are the host paths of the instance's disks, in order.
/// `nets` are the instance's NICs with their taps ([`network::plan`]), in order.
pub fn build_argv(
    inst: &InstanceRuntime,
    paths: &Paths,
    disks: &[PathBuf],
    nets: &[TapSpec],
    accel: &str,
) -> HvResult<Vec<String>> {
    let hv = &inst.hvparams;
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    let kvm_path = hv_str(hv, "kvm_path", "/usr/bin/kvm");
    push(&[kvm_path, "-name", &qopt(&inst.name)]);
    if uuid::Uuid::parse_str(&inst.uuid).is_ok() {
        push(&["-uuid", &inst.uuid]);
    }
    push(&[
        "-m",
        &inst.memory.to_string(),
        "-smp",
        &inst.vcpus.max(1).to_string(),
        "-pidfile",
        &paths.pid.to_string_lossy(),
        "-daemonize",
        "-nodefaults",
        "-no-user-config",
    ]);
    let mut machine = match hv_str(hv, "machine_version", "") {
        "" => "pc".to_string(),
        m => qopt(m),
    };
    if !hv_bool(hv, "acpi", true) {
        machine.push_str(",acpi=off");
    }
    push(&["-machine", &machine, "-accel", accel]);
    match hv_str(hv, "cpu_type", "") {
        "" => {}
        c => push(&["-cpu", c]),
    }
    push(&[
        "-qmp",
        &format!(
            "unix:{},server=on,wait=off",
            qopt(&paths.qmp.to_string_lossy())
        ),
    ]);
    let serial = hv_bool(hv, "serial_console", true);
    if serial {
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
    match hv_str(hv, "vnc_bind_address", "") {
        "" => push(&["-display", "none"]),
        addr => push(&["-vga", "std", "-vnc", &format!("{addr}:0,to=1000")]),
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
        push(&["-kernel", kernel]);
        match hv_str(hv, "initrd_path", "") {
            "" => {}
            i => push(&["-initrd", i]),
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
        let ro = disk.mode == "ro";
        // LVs and DRBD devices are block devices: QEMU's `file` driver refuses them.
        let driver = match disk.dev_type.as_str() {
            "plain" | "drbd" => "host_device",
            _ => "file",
        };
        push(&[
            "-blockdev",
            &format!(
                "driver={driver},node-name=disk{i}-file,filename={},aio={aio},cache.direct={},read-only={}",
                qopt(&path.to_string_lossy()),
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
                return Err(format!(
                    "disk_type '{other}' is not supported by Maguey's kvm hypervisor yet"
                ))
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
    // vhost-net only when asked for and the node has it.
    let vhost = hv_bool(hv, "vhost_net", false) && network::vhost_available();
    for net in nets {
        push(&[
            "-netdev",
            &network::netdev_arg(net, vhost),
            "-device",
            &network::device_arg(net, &nic_model),
        ]);
    }
    cdrom_args(hv, &mut a)?;
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
fn cdrom_args(hv: &BTreeMap<String, Value>, a: &mut Vec<String>) -> HvResult<()> {
    let path = hv_str(hv, "cdrom_image_path", "");
    if path.is_empty() {
        return Ok(());
    }
    if !Path::new(path).is_absolute() {
        return Err(format!(
            "cdrom_image_path '{path}' must be an absolute path on the node"
        ));
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
            return Err(format!(
                "cdrom_disk_type '{other}' is not supported by Maguey's kvm hypervisor (ide, scsi or paravirtual)"
            ))
        }
    };
    push(&[
        "-blockdev",
        &format!(
            "driver=file,node-name=cdrom0-file,filename={},read-only=on",
            qopt(path)
        ),
        "-blockdev",
        "driver=raw,node-name=cdrom0,file=cdrom0-file,read-only=on",
        "-device",
        dev,
    ]);
    Ok(())
}

/// Resident memory of a process, in MiB (0 when unknown).
fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096 / MIB)
        .unwrap_or(0)
}

/// Whether `pid` is a live process (not a zombie) whose command line mentions `needle`.
fn pid_alive(pid: u32, needle: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(needle))
        .unwrap_or(false)
}

/// Kills every QEMU started by the kvm hypervisor of the node with state directory
/// `state_dir` and removes their runtime files and taps (the lab's `down`). Returns how many
/// ran.
pub fn kill_all(state_dir: &Path) -> usize {
    let run_dir = state_dir.join("run").join("kvm");
    let Ok(entries) = std::fs::read_dir(&run_dir) else {
        return 0;
    };
    let mut killed = 0;
    for e in entries.flatten() {
        let Some(name) = e
            .file_name()
            .to_str()
            .and_then(|f| f.strip_suffix(".runtime.json"))
            .map(String::from)
        else {
            continue;
        };
        let paths = Paths::new(&run_dir, &name);
        let Ok(mut rf) = std::fs::read(&paths.runtime)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<RunFile>(&b).map_err(|e| e.to_string()))
        else {
            continue;
        };
        if rf.pid == 0 {
            rf.pid = std::fs::read_to_string(&paths.pid)
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0);
        }
        let needle = paths.qmp.to_string_lossy().into_owned();
        if pid_alive(rf.pid, &needle) {
            // SAFETY: kill(2) on the pid of this instance's QEMU (checked just above).
            unsafe { libc::kill(rf.pid as i32, libc::SIGKILL) };
            killed += 1;
            let deadline = Instant::now() + Duration::from_secs(5);
            while pid_alive(rf.pid, &needle) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        network::remove_taps_of_argv(&name, &rf.argv);
        for f in [&paths.runtime, &paths.pid, &paths.qmp, &paths.serial] {
            let _ = std::fs::remove_file(f);
        }
    }
    killed
}

impl KvmHypervisor {
    /// Keeps its runtime files in `state_dir/run/kvm` (created if missing).
    pub fn new(state_dir: &Path, node_name: &str) -> HvResult<Self> {
        let state_dir = if state_dir.is_absolute() {
            state_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(state_dir)
        };
        let run_dir = state_dir.join("run").join("kvm");
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        Ok(KvmHypervisor {
            run_dir,
            state_dir,
            node_name: node_name.to_string(),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn paths(&self, name: &str) -> HvResult<Paths> {
        maguey_model::names::validate_hostname(name)
            .map_err(|e| format!("invalid instance name: {e}"))?;
        let p = Paths::new(&self.run_dir, name);
        // sun_path holds 108 bytes.
        if p.serial.as_os_str().len() > 100 || p.qmp.as_os_str().len() > 100 {
            return Err(format!(
                "the runtime directory {} is too deep for unix sockets",
                self.run_dir.display()
            ));
        }
        Ok(p)
    }

    /// The runtime file; a pid of 0 (QEMU was being launched) is taken from the pidfile.
    fn read(&self, name: &str) -> HvResult<Option<RunFile>> {
        let paths = self.paths(name)?;
        let path = paths.runtime;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<RunFile>(&bytes)
                .map(|mut rf| {
                    if rf.pid == 0 {
                        rf.pid = std::fs::read_to_string(&paths.pid)
                            .ok()
                            .and_then(|p| p.trim().parse().ok())
                            .unwrap_or(0);
                    }
                    Some(rf)
                })
                .map_err(|e| format!("corrupt runtime file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The runtime file of `name` when its QEMU is alive.
    fn running(&self, name: &str) -> HvResult<Option<RunFile>> {
        let Some(rf) = self.read(name)? else {
            return Ok(None);
        };
        let qmp = self.paths(name)?.qmp;
        Ok(pid_alive(rf.pid, &qmp.to_string_lossy()).then_some(rf))
    }

    fn all_names(&self) -> HvResult<Vec<String>> {
        let entries = std::fs::read_dir(&self.run_dir)
            .map_err(|e| format!("cannot read {}: {e}", self.run_dir.display()))?;
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".runtime.json")
                    .map(String::from)
            })
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Removes the taps and runtime files of a stopped instance (the console log stays).
    fn cleanup(&self, name: &str) -> HvResult<()> {
        let p = self.paths(name)?;
        network::remove_taps(&self.node_name, name)?;
        for f in [&p.runtime, &p.pid, &p.qmp, &p.serial] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", f.display())),
            }
        }
        Ok(())
    }

    /// Cleans up after instances whose QEMU exited by itself (guest power-off, crash, kill):
    /// removes their taps and runtime files. Skipped while a start, stop or migration step
    /// holds the lock (a starting instance has a runtime file before its QEMU runs).
    fn reap(&self, names: &[String]) {
        let Ok(_guard) = self.lock.try_lock() else {
            return;
        };
        for n in names {
            if matches!(self.read(n), Ok(Some(_))) && matches!(self.running(n), Ok(None)) {
                tracing::info!("instance {n}: QEMU exited; removing its taps and runtime files");
                if let Err(e) = self.cleanup(n) {
                    tracing::warn!("instance {n}: {e}");
                }
            }
        }
    }

    async fn qmp(&self, name: &str) -> HvResult<Qmp<tokio::net::UnixStream>> {
        Qmp::connect(&self.paths(name)?.qmp).await
    }

    async fn wait_gone(&self, rf: &RunFile, qmp_path: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !pid_alive(rf.pid, qmp_path) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the guest powered off: QEMU exited, or (with `-no-shutdown`) stays in state
    /// `shutdown`.
    async fn wait_off(&self, rf: &RunFile, qmp_path: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !pid_alive(rf.pid, qmp_path) {
                return true;
            }
            if let Ok(mut q) = self.qmp(&rf.name).await {
                if q.query_status().await.is_ok_and(|s| s.status == "shutdown") {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Powers the instance off: ACPI power button first (when `timeout` > 0), then QMP
    /// `quit`, then SIGKILL.
    async fn stop_locked(&self, name: &str, timeout: Duration) -> HvResult<()> {
        let Some(rf) = self.read(name)? else {
            return Ok(());
        };
        let qmp_path = self.paths(name)?.qmp.to_string_lossy().into_owned();
        if pid_alive(rf.pid, &qmp_path) && !timeout.is_zero() {
            let mut off = false;
            if let Ok(mut q) = self.qmp(name).await {
                // A guest that already powered itself off (`user_shutdown`) needs no ACPI.
                off = q.query_status().await.is_ok_and(|s| s.status == "shutdown");
                if !off {
                    let _ = q.system_powerdown().await;
                }
            }
            if !off && !self.wait_off(&rf, &qmp_path, timeout).await {
                tracing::info!(
                    "instance {name} did not power off in {timeout:?}; stopping it hard"
                );
            }
        }
        if pid_alive(rf.pid, &qmp_path) {
            if let Ok(mut q) = self.qmp(name).await {
                let _ = q.quit().await;
            }
            if !self.wait_gone(&rf, &qmp_path, Duration::from_secs(5)).await {
                // SAFETY: kill(2) on the pid of this instance's QEMU (checked just above).
                unsafe { libc::kill(rf.pid as i32, libc::SIGKILL) };
                if !self
                    .wait_gone(&rf, &qmp_path, Duration::from_secs(10))
                    .await
                {
                    return Err(format!(
                        "QEMU of instance {name} (pid {}) does not stop",
                        rf.pid
                    ));
                }
            }
        }
        self.cleanup(name)
    }

    async fn start_locked(&self, inst: &InstanceRuntime) -> HvResult<()> {
        self.launch(inst, None, false).await
    }

    /// Starts QEMU for `inst`; with `incoming` (a migration URI) it waits for the state of a
    /// migrating instance instead of booting.
    /// `paused` (`-S`): stays paused after an incoming migration until finalized.
    async fn launch(
        &self,
        inst: &InstanceRuntime,
        incoming: Option<&str>,
        paused: bool,
    ) -> HvResult<()> {
        let name = &inst.name;
        if self.running(name)?.is_some() {
            return Err(format!("instance {name} is already running"));
        }
        self.cleanup(name)?;
        let paths = self.paths(name)?;
        let ctx =
            StorageContext::for_node(&self.state_dir, &inst.file_storage_dir, &self.node_name);
        let mut disks = Vec::new();
        for d in &inst.disks {
            let imp = storage::for_disk(d)?;
            if imp.find(&ctx, d)?.is_none() {
                return Err(format!(
                    "disk {} of instance {name} is missing on node {}",
                    d.iv_name, self.node_name
                ));
            }
            disks.push(imp.device_path(&ctx, d)?);
        }
        let accel = resolve_accel(hv_str(&inst.hvparams, "accel", "auto"))?;
        let nets = network::plan(&self.node_name, name, &inst.nics)?;
        let mut argv = build_argv(inst, &paths, &disks, &nets, &accel)?;
        if let Some(uri) = incoming {
            argv.extend(["-incoming".to_string(), uri.to_string()]);
        }
        if paused {
            argv.push("-S".to_string());
        }
        let kernel = hv_str(&inst.hvparams, "kernel_path", "");
        if !kernel.is_empty() && !Path::new(kernel).is_file() {
            return Err(format!(
                "kernel_path {kernel} does not exist on node {}",
                self.node_name
            ));
        }
        let cdrom = hv_str(&inst.hvparams, "cdrom_image_path", "");
        if !cdrom.is_empty() && !Path::new(cdrom).is_file() {
            return Err(format!(
                "cdrom_image_path {cdrom} of instance {name} does not exist on node {}",
                self.node_name
            ));
        }
        tracing::info!("starting instance {name}: {}", argv.join(" "));
        // Written before QEMU starts (pid 0: "see the pidfile"), so a magueyd killed right
        // after the launch still finds the instance when it comes back.
        let mut rf = RunFile {
            name: name.clone(),
            uuid: inst.uuid.clone(),
            memory: inst.memory,
            vcpus: inst.vcpus,
            started: maguey_model::now(),
            pid: 0,
            argv: argv.clone(),
            accel,
        };
        let data = serde_json::to_vec_pretty(&rf).map_err(|e| e.to_string())?;
        crate::write_atomic(&paths.runtime, &data)?;
        // The taps exist before QEMU opens them; a failed start removes them (`cleanup`).
        network::create_taps(&self.node_name, name, &nets)?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .current_dir(&self.run_dir);
        let out = tokio::time::timeout(LAUNCH_TIMEOUT, cmd.output())
            .await
            .map_err(|_| format!("QEMU did not daemonize within {LAUNCH_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
        if !out.status.success() {
            let _ = self.cleanup(name);
            return Err(format!(
                "QEMU failed to start instance {name} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let pid: u32 = std::fs::read_to_string(&paths.pid)
            .map_err(|e| format!("QEMU wrote no pidfile {}: {e}", paths.pid.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("bad pidfile {}: {e}", paths.pid.display()))?;
        rf.pid = pid;
        let data = serde_json::to_vec_pretty(&rf).map_err(|e| e.to_string())?;
        crate::write_atomic(&paths.runtime, &data)?;
        // The machine must answer QMP and run (or wait for its migrating state).
        let st = self.qmp(name).await?.query_status().await?;
        let expected = if incoming.is_some() {
            st.status == "inmigrate"
        } else {
            st.running
        };
        if !expected {
            return Err(format!("instance {name} started but is {}", st.status));
        }
        Ok(())
    }

    async fn run_info(&self, rf: &RunFile) -> InstanceRunInfo {
        let mut state = "running".to_string();
        let mut memory = rf.memory;
        let mut vnc_port = None;
        if let Ok(mut q) = self.qmp(&rf.name).await {
            if rf.argv.iter().any(|a| a == "-vnc") {
                if let Ok(v) = q.execute::<Value, ()>("query-vnc", None).await {
                    vnc_port = v["service"].as_str().and_then(|s| s.parse().ok());
                }
            }
            if let Ok(st) = q.query_status().await {
                state = st.status;
            }
            if let Ok(b) = q.query_balloon().await {
                memory = b.actual / MIB;
            }
        }
        InstanceRunInfo {
            state,
            memory,
            vcpus: rf.vcpus,
            pid: Some(rf.pid),
            uptime: (maguey_model::now() - rf.started).max(0.0),
            vnc_port,
        }
    }

    /// The last `max_bytes` of what the instance's serial console printed (also after it
    /// stopped, until it starts again).
    pub fn console_log(&self, name: &str, max_bytes: u64) -> HvResult<String> {
        use std::io::{Read, Seek, SeekFrom};
        let p = self.paths(name)?.console_log;
        let mut f = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "instance {name} has no console log on {}",
                    self.node_name
                ))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > max_bytes {
            f.seek(SeekFrom::Start(len - max_bytes))
                .map_err(|e| e.to_string())?;
        }
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// The RAM phase of a migration; waits until QEMU reports it completed.
    async fn migrate_ram(
        &self,
        rf: &RunFile,
        target: &str,
        port: u16,
        bandwidth: u64,
        downtime: u64,
    ) -> HvResult<MigrationStatus> {
        let name = rf.name.as_str();
        {
            let mut q = self.qmp(name).await?;
            q.migrate_set_parameters(&MigrationParameters {
                max_bandwidth: Some(bandwidth.max(1) * MIB),
                downtime_limit: Some(downtime),
            })
            .await?;
            q.migrate(&format!("tcp:{target}:{port}")).await?;
        }
        // Generous: four times what the RAM needs at the bandwidth limit, at least 10 min.
        let secs = (rf.memory / bandwidth.max(1)).saturating_mul(4).max(600);
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A fresh connection per poll keeps QMP free for info queries meanwhile.
            let m = self.qmp(name).await?.query_migrate().await?;
            let status = m.status.clone().unwrap_or_default();
            match status.as_str() {
                "completed" => {
                    let ram = m.ram.unwrap_or_default();
                    return Ok(MigrationStatus {
                        status,
                        total_time: m.total_time.unwrap_or(0),
                        downtime: m.downtime.unwrap_or(0),
                        transferred: ram.transferred,
                        ..Default::default()
                    });
                }
                "failed" | "cancelled" => {
                    return Err(format!(
                        "migration of instance {name} {status}: {}",
                        m.error_desc.unwrap_or_default()
                    ))
                }
                _ if Instant::now() > deadline => {
                    let _ = self.qmp(name).await?.migrate_cancel().await;
                    return Err(format!(
                        "migration of instance {name} did not finish in {secs} s"
                    ));
                }
                _ => {}
            }
        }
    }

    /// Mirrors every disk into the target's NBD export of the same name (write-blocking, so
    /// the copies stay in sync once ready); returns (bytes, milliseconds) once all are ready.
    async fn mirror_disks(
        &self,
        name: &str,
        target: &str,
        nbd_port: u16,
        disks: usize,
    ) -> HvResult<(u64, u64)> {
        let t = Instant::now();
        let mut q = self.qmp(name).await?;
        for i in 0..disks {
            // A failed earlier attempt may have left its NBD client node behind.
            let _ = q
                .call(
                    "blockdev-del",
                    serde_json::json!({"node-name": format!("mirror{i}")}),
                )
                .await;
            q.call(
                "blockdev-add",
                serde_json::json!({"driver": "nbd", "node-name": format!("mirror{i}"),
                    "server": {"type": "inet", "host": target, "port": nbd_port.to_string()},
                    "export": format!("disk{i}")}),
            )
            .await?;
            q.call(
                "blockdev-mirror",
                serde_json::json!({"job-id": format!("mirror{i}"), "device": format!("disk{i}"),
                    "target": format!("mirror{i}"), "sync": "full",
                    "copy-mode": "write-blocking"}),
            )
            .await?;
        }
        drop(q);
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let jobs = self.qmp(name).await?.query_block_jobs().await?;
            let mirrors: Vec<_> = jobs
                .iter()
                .filter(|j| j.device.starts_with("mirror"))
                .collect();
            if mirrors.len() < disks {
                return Err(format!(
                    "a disk mirror of instance {name} stopped before it was in sync"
                ));
            }
            if mirrors.iter().all(|j| j.ready) {
                let bytes = mirrors.iter().map(|j| j.len).sum();
                return Ok((bytes, t.elapsed().as_millis() as u64));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the disk mirrors of instance {name} never got in sync"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Cancels this instance's disk mirror jobs and waits until they are gone.
    async fn cancel_mirrors(&self, name: &str) {
        let Ok(mut q) = self.qmp(name).await else {
            return;
        };
        let Ok(jobs) = q.query_block_jobs().await else {
            return;
        };
        for j in jobs.iter().filter(|j| j.device.starts_with("mirror")) {
            let _ = q
                .call("block-job-cancel", serde_json::json!({"device": j.device}))
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match q.query_block_jobs().await {
                Ok(jobs) if jobs.iter().any(|j| j.device.starts_with("mirror")) => {}
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The serial console socket of a running instance.
    pub fn serial_socket(&self, name: &str) -> HvResult<PathBuf> {
        if self.running(name)?.is_none() {
            return Err(format!(
                "instance {name} is not running on node {}",
                self.node_name
            ));
        }
        Ok(self.paths(name)?.serial)
    }
}

impl Hypervisor for KvmHypervisor {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn start<'a>(&'a self, inst: &'a InstanceRuntime) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if self.running(&inst.name)?.is_some() {
                // A guest that powered itself off (`user_shutdown`) starts in a fresh QEMU.
                let off = match self.qmp(&inst.name).await {
                    Ok(mut q) => q.query_status().await.is_ok_and(|s| s.status == "shutdown"),
                    Err(_) => false,
                };
                if !off {
                    return Err(format!("instance {} is already running", inst.name));
                }
                self.stop_locked(&inst.name, Duration::ZERO).await?;
            }
            let r = self.start_locked(inst).await;
            if r.is_err() {
                // Leave nothing half-started behind.
                let _ = self.stop_locked(&inst.name, Duration::ZERO).await;
            }
            r
        })
    }

    fn stop<'a>(&'a self, name: &'a str, timeout: Duration) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if timeout > MAX_SOFT_STOP {
                tracing::info!(
                    "instance {name}: waiting {MAX_SOFT_STOP:?} (not {timeout:?}) for the guest to power off, within the master's RPC timeout"
                );
            }
            self.stop_locked(name, timeout.min(MAX_SOFT_STOP)).await
        })
    }

    fn reboot<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        kind: RebootKind,
        shutdown_timeout: Duration,
    ) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if self.running(&inst.name)?.is_none() {
                return Err(format!("instance {} is not running", inst.name));
            }
            match kind {
                // The machine's reset line: same QEMU process, the guest boots again.
                RebootKind::Hard => {
                    self.qmp(&inst.name).await?.system_reset().await?;
                    if let Some(mut rf) = self.read(&inst.name)? {
                        rf.started = maguey_model::now();
                        let data = serde_json::to_vec_pretty(&rf).map_err(|e| e.to_string())?;
                        crate::write_atomic(&self.paths(&inst.name)?.runtime, &data)?;
                    }
                    Ok(())
                }
                // Ganeti's way: a clean ACPI power-off, then a fresh QEMU.
                RebootKind::Soft => {
                    self.stop_locked(&inst.name, shutdown_timeout.min(REBOOT_SHUTDOWN_TIMEOUT))
                        .await?;
                    self.start_locked(inst).await
                }
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, HvResult<Vec<String>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut dead = Vec::new();
            for n in self.all_names()? {
                match self.running(&n) {
                    Ok(Some(_)) => out.push(n),
                    Ok(None) => dead.push(n),
                    Err(_) => {}
                }
            }
            self.reap(&dead);
            Ok(out)
        })
    }

    fn info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, HvResult<Option<InstanceRunInfo>>> {
        Box::pin(async move {
            match self.running(name)? {
                Some(rf) => Ok(Some(self.run_info(&rf).await)),
                None => {
                    self.reap(&[name.to_string()]);
                    Ok(None)
                }
            }
        })
    }

    fn balloon<'a>(&'a self, name: &'a str, memory: u64) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let rf = self
                .running(name)?
                .ok_or_else(|| format!("instance {name} is not running"))?;
            if memory > rf.memory {
                return Err(format!(
                    "cannot balloon instance {name} to {memory} MiB: it started with {} MiB",
                    rf.memory
                ));
            }
            self.qmp(name).await?.balloon(memory * MIB).await
        })
    }

    /// QMP `block_resize` of the disk's format node (`disk<N>`): the guest's virtio-blk sees
    /// the new capacity at once. The block device under it must have grown already.
    fn resize_disk<'a>(
        &'a self,
        name: &'a str,
        index: usize,
        size_mib: u64,
    ) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            self.running(name)?
                .ok_or_else(|| format!("instance {name} is not running"))?;
            let bytes = size_mib
                .checked_mul(MIB)
                .ok_or_else(|| format!("disk size {size_mib} MiB is too large"))?;
            self.qmp(name)
                .await?
                .call(
                    "block_resize",
                    serde_json::json!({"node-name": format!("disk{index}"), "size": bytes}),
                )
                .await
                .map_err(|e| format!("instance {name}: block_resize of disk {index}: {e}"))
        })
    }

    fn serial_socket(&self, name: &str) -> HvResult<PathBuf> {
        KvmHypervisor::serial_socket(self, name)
    }

    fn console_log<'a>(&'a self, name: &'a str, max_bytes: u64) -> BoxFuture<'a, HvResult<String>> {
        Box::pin(async move { KvmHypervisor::console_log(self, name, max_bytes) })
    }

    fn accept_instance<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        address: &'a str,
        port: u16,
        nbd_port: Option<u16>,
    ) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if self.running(&inst.name)?.is_some() {
                return Err(format!(
                    "instance {} is already running on node {}",
                    inst.name, self.node_name
                ));
            }
            let uri = format!("tcp:{address}:{port}");
            let r = async {
                self.launch(inst, Some(&uri), nbd_port.is_some()).await?;
                if let Some(nbd) = nbd_port {
                    let mut q = self.qmp(&inst.name).await?;
                    q.call(
                        "nbd-server-start",
                        serde_json::json!({"addr": {"type": "inet",
                            "data": {"host": address, "port": nbd.to_string()}}}),
                    )
                    .await?;
                    for i in 0..inst.disks.len() {
                        q.call(
                            "block-export-add",
                            serde_json::json!({"type": "nbd", "id": format!("export-disk{i}"),
                                "node-name": format!("disk{i}"), "name": format!("disk{i}"),
                                "writable": true}),
                        )
                        .await?;
                    }
                }
                Ok::<(), String>(())
            }
            .await;
            if r.is_err() {
                let _ = self.stop_locked(&inst.name, Duration::ZERO).await;
            }
            r
        })
    }

    fn migrate<'a>(
        &'a self,
        name: &'a str,
        target: &'a str,
        port: u16,
        bandwidth: u64,
        downtime: u64,
        nbd_port: Option<u16>,
    ) -> BoxFuture<'a, HvResult<MigrationStatus>> {
        Box::pin(async move {
            let rf = self
                .running(name)?
                .ok_or_else(|| format!("instance {name} is not running"))?;
            let disks = rf
                .argv
                .iter()
                .filter(|a| a.starts_with("driver=raw,node-name=disk"))
                .count();
            let mut disk_stats = (0, 0);
            if let Some(nbd) = nbd_port {
                match self.mirror_disks(name, target, nbd, disks).await {
                    Ok(s) => disk_stats = s,
                    Err(e) => {
                        self.cancel_mirrors(name).await;
                        return Err(e);
                    }
                }
            }
            let r = self
                .migrate_ram(&rf, target, port, bandwidth, downtime)
                .await;
            if nbd_port.is_some() {
                // Ready mirrors cancelled once the source is paused leave the targets in
                // sync; on failure they are simply dropped.
                self.cancel_mirrors(name).await;
            }
            let mut st = r?;
            (st.disk_transferred, st.disk_time) = disk_stats;
            Ok(st)
        })
    }

    fn finalize_migration_dst<'a>(
        &'a self,
        inst: &'a InstanceRuntime,
        success: bool,
    ) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if !success {
                return self.stop_locked(&inst.name, Duration::ZERO).await;
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let st = self.qmp(&inst.name).await?.query_status().await?;
                if st.running {
                    return Ok(());
                }
                if st.status == "paused" || st.status == "postmigrate" {
                    let mut q = self.qmp(&inst.name).await?;
                    // Local-disk migration: the disks were exported for the mirror.
                    let _ = q.run("nbd-server-stop").await;
                    q.cont().await?;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "instance {} is {} after the migration",
                        inst.name, st.status
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn finalize_migration_src<'a>(
        &'a self,
        name: &'a str,
        success: bool,
    ) -> BoxFuture<'a, HvResult<()>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if success {
                return self.stop_locked(name, Duration::ZERO).await;
            }
            if self.running(name)?.is_some() {
                let mut q = self.qmp(name).await?;
                let _ = q.migrate_cancel().await;
                if !q.query_status().await?.running {
                    q.cont().await?;
                }
            }
            Ok(())
        })
    }

    fn node_memory(&self) -> BoxFuture<'_, HvResult<NodeMemory>> {
        Box::pin(async move {
            let (total, available) = super::host_meminfo()?;
            // A guest touches its RAM lazily: what running instances may still claim (their
            // memory minus what their QEMU already holds) is not free for new ones.
            let mut reserved = 0u64;
            let mut held = 0u64;
            for name in self.all_names()? {
                if let Ok(Some(rf)) = self.running(&name) {
                    let rss = rss_mib(rf.pid);
                    held += rss.min(rf.memory);
                    reserved += rf.memory.saturating_sub(rss);
                }
            }
            Ok(NodeMemory {
                total,
                free: available.saturating_sub(reserved),
                dom0: (total - available).saturating_sub(held),
            })
        })
    }
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

    #[test]
    fn argv_from_hvparams() {
        let paths = Paths::new(Path::new("/r"), "vm1");
        let a = build_argv(&runtime(), &paths, &[], &[], "tcg").unwrap();
        let s = a.join(" ");
        assert_eq!(a[0], "/usr/bin/kvm");
        assert!(s.contains("-name vm1 -uuid 0b6f6b8c"), "{s}");
        assert!(
            s.contains("-m 128 -smp 1 -pidfile /r/vm1.pid -daemonize"),
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
        r.disks = vec![maguey_model::Disk {
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
        }];
        let paths = Paths::new(Path::new("/r"), "vm1");
        let a = build_argv(&r, &paths, &[PathBuf::from("/d/a,b")], &[], "kvm").unwrap();
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
        let a = build_argv(&r, &paths, &[PathBuf::from("/dev/drbd3")], &[], "kvm").unwrap();
        let s = a.join(" ");
        assert!(
            s.contains("-blockdev driver=host_device,node-name=disk0-file,filename=/dev/drbd3"),
            "{s}"
        );
        r.disks[0].dev_type = maguey_model::DevType::File;
        r.hvparams.insert("disk_type".into(), "pflash".into());
        assert!(build_argv(&r, &paths, &[PathBuf::from("/d")], &[], "kvm").is_err());
    }

    #[test]
    fn argv_with_taps_and_cdrom() {
        let mut r = runtime();
        r.nics = vec![
            maguey_rpc::NicRuntime {
                mac: "aa:00:00:00:00:01".into(),
                ip: None,
                mode: "bridged".into(),
                link: "br0".into(),
            },
            maguey_rpc::NicRuntime {
                mac: "aa:00:00:00:00:02".into(),
                ip: Some("192.0.2.9".into()),
                mode: "routed".into(),
                link: "".into(),
            },
        ];
        r.hvparams.insert("nic_type".into(), "e1000".into());
        r.hvparams
            .insert("cdrom_image_path".into(), "/srv/seed,1.iso".into());
        let nets = network::plan("node1", "vm1", &r.nics).unwrap();
        let paths = Paths::new(Path::new("/r"), "vm1");
        let a = build_argv(&r, &paths, &[], &nets, "tcg").unwrap();
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
        let v = build_argv(&r, &paths, &[], &nets, "tcg").unwrap().join(" ");
        assert_eq!(v.contains("vhost=on"), network::vhost_available(), "{v}");
        assert_eq!(network::taps_in_argv(&a), vec![t0, t1]);
        assert!(
            s.contains("-blockdev driver=file,node-name=cdrom0-file,filename=/srv/seed,,1.iso,read-only=on -blockdev driver=raw,node-name=cdrom0,file=cdrom0-file,read-only=on -device ide-cd,drive=cdrom0,id=cdrom0-dev"),
            "{s}"
        );
        r.hvparams.insert("cdrom_disk_type".into(), "scsi".into());
        let s = build_argv(&r, &paths, &[], &nets, "tcg").unwrap().join(" ");
        assert!(s.contains("-device virtio-scsi-pci,id=cdrom-scsi"), "{s}");
        assert!(s.contains("scsi-cd,bus=cdrom-scsi.0,drive=cdrom0"), "{s}");
        r.hvparams.insert("cdrom_disk_type".into(), "floppy".into());
        assert!(build_argv(&r, &paths, &[], &nets, "tcg").is_err());
        r.hvparams.insert("cdrom_disk_type".into(), "".into());
        r.hvparams
            .insert("cdrom_image_path".into(), "seed.iso".into());
        let e = build_argv(&r, &paths, &[], &nets, "tcg").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn runtime_file_written_before_launch_takes_the_pidfile() {
        let t = tempfile::tempdir().unwrap();
        let hv = KvmHypervisor::new(t.path(), "node1").unwrap();
        let p = hv.paths("vm1").unwrap();
        let rf = RunFile {
            name: "vm1".into(),
            uuid: String::new(),
            memory: 128,
            vcpus: 1,
            started: 0.0,
            pid: 0,
            argv: vec![],
            accel: "tcg".into(),
        };
        std::fs::write(&p.runtime, serde_json::to_vec(&rf).unwrap()).unwrap();
        assert_eq!(hv.read("vm1").unwrap().unwrap().pid, 0);
        std::fs::write(&p.pid, "4242\n").unwrap();
        assert_eq!(hv.read("vm1").unwrap().unwrap().pid, 4242);
        // Not a QEMU of ours: not running.
        assert!(hv.running("vm1").unwrap().is_none());
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
