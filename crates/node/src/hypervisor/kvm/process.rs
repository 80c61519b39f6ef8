//! QEMU processes and their runtime files: launch, stop, find again after a restart.

use super::cmdline::{build_argv, hv_str, resolve_accel, run_as, vhost_wanted};
use super::user::{self, QemuUser};
use super::{KvmHypervisor, LAUNCH_TIMEOUT, MIB};
use crate::error::{NodeError, NodeResult};
use crate::exec::{Cmd, Session};
use crate::network;
use crate::qmp::{Qmp, StatusInfo};
use crate::storage::{self, StorageContext};
use maguey_rpc::{InstanceRunInfo, InstanceRuntime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// The instance's taps (a QEMU run as its user gets them as descriptors: its command
    /// line does not name them).
    #[serde(default)]
    pub taps: Vec<String>,
}

/// The runtime file paths of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    pub runtime: PathBuf,
    pub pid: PathBuf,
    pub qmp: PathBuf,
    pub serial: PathBuf,
    pub console_log: PathBuf,
    /// QEMU's standard output and error (its errors at start).
    pub qemu_log: PathBuf,
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
            qemu_log: f("qemu.log"),
        }
    }
}

/// Resident memory of a process, in MiB (0 when unknown).
pub(super) fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096 / MIB)
        .unwrap_or(0)
}

/// SIGKILL to the session (process group) a QEMU leads.
fn kill_session(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) on the process group of a QEMU this node just started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` is a live process (not a zombie) whose command line mentions `needle`.
pub(super) fn pid_alive(pid: u32, needle: &str) -> bool {
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
        network::remove_listed_taps(&name, &rf.taps);
        for f in [&paths.runtime, &paths.pid, &paths.qmp, &paths.serial] {
            let _ = std::fs::remove_file(f);
        }
    }
    killed
}

impl KvmHypervisor {
    pub(super) fn read(&self, name: &str) -> NodeResult<Option<RunFile>> {
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
                .map_err(|e| {
                    NodeError::io(format!("corrupt runtime file {}: {e}", path.display()))
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// The runtime file of `name` when its QEMU is alive.
    pub(super) fn running(&self, name: &str) -> NodeResult<Option<RunFile>> {
        let Some(rf) = self.read(name)? else {
            return Ok(None);
        };
        let qmp = self.paths(name)?.qmp;
        Ok(pid_alive(rf.pid, &qmp.to_string_lossy()).then_some(rf))
    }

    pub(super) fn all_names(&self) -> NodeResult<Vec<String>> {
        let entries = std::fs::read_dir(&self.run_dir)
            .map_err(|e| NodeError::io(format!("cannot read {}: {e}", self.run_dir.display())))?;
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
    pub(super) fn cleanup(&self, name: &str) -> NodeResult<()> {
        let p = self.paths(name)?;
        network::remove_taps(&self.node_name, name)?;
        for f in [&p.runtime, &p.pid, &p.qmp, &p.serial] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(NodeError::io(format!("cannot remove {}: {e}", f.display()))),
            }
        }
        Ok(())
    }

    /// Cleans up after instances whose QEMU exited by itself (guest power-off, crash, kill):
    /// removes their taps and runtime files. Skipped while a start, stop or migration step
    /// holds the lock (a starting instance has a runtime file before its QEMU runs).
    pub(super) fn reap(&self, names: &[String]) {
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

    pub(super) async fn wait_gone(&self, rf: &RunFile, qmp_path: &str, timeout: Duration) -> bool {
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
    pub(super) async fn wait_off(&self, rf: &RunFile, qmp_path: &str, timeout: Duration) -> bool {
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
    pub(super) async fn stop_locked(&self, name: &str, timeout: Duration) -> NodeResult<()> {
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
                    return Err(NodeError::timeout(format!(
                        "QEMU of instance {name} (pid {}) does not stop",
                        rf.pid
                    )));
                }
            }
        }
        self.cleanup(name)
    }

    pub(super) async fn start_locked(&self, inst: &InstanceRuntime) -> NodeResult<()> {
        self.launch(inst, None, false).await
    }

    /// Starts QEMU for `inst`; with `incoming` (a migration URI) it waits for the state of a
    /// migrating instance instead of booting.
    /// `paused` (`-S`): stays paused after an incoming migration until finalized.
    pub(super) async fn launch(
        &self,
        inst: &InstanceRuntime,
        incoming: Option<&str>,
        paused: bool,
    ) -> NodeResult<()> {
        let name = &inst.name;
        if self.running(name)?.is_some() {
            return Err(NodeError::conflict(format!(
                "instance {name} is already running"
            )));
        }
        self.cleanup(name)?;
        let paths = self.paths(name)?;
        let ctx =
            StorageContext::for_node(&self.state_dir, &inst.file_storage_dir, &self.node_name);
        let mut disks = Vec::new();
        for d in &inst.disks {
            let imp = storage::for_disk(d)?;
            if imp.find(&ctx, d)?.is_none() {
                return Err(NodeError::not_found(format!(
                    "disk {} of instance {name} is missing on node {}",
                    d.iv_name, self.node_name
                )));
            }
            disks.push(imp.device_path(&ctx, d)?);
        }
        let accel = resolve_accel(hv_str(&inst.hvparams, "accel", "auto"))?;
        let nets = network::plan(&self.node_name, name, &inst.nics)?;
        // Host paths and the QEMU binary: the node's own policy (docs/security.md).
        crate::hostpaths::check_kvm_path(
            &self.state_dir,
            hv_str(&inst.hvparams, "kvm_path", "/usr/bin/kvm"),
        )?;
        let storage_dir = ctx.checked_file_storage_path().ok();
        for param in ["kernel_path", "initrd_path", "cdrom_image_path"] {
            let path = hv_str(&inst.hvparams, param, "");
            if !path.is_empty() {
                crate::hostpaths::check_host_path(
                    &self.state_dir,
                    storage_dir.as_deref(),
                    param,
                    path,
                )?;
            }
        }
        let kernel = hv_str(&inst.hvparams, "kernel_path", "");
        if !kernel.is_empty() && !Path::new(kernel).is_file() {
            return Err(NodeError::not_found(format!(
                "kernel_path {kernel} does not exist on node {}",
                self.node_name
            )));
        }
        let cdrom = hv_str(&inst.hvparams, "cdrom_image_path", "");
        if !cdrom.is_empty() && !Path::new(cdrom).is_file() {
            return Err(NodeError::not_found(format!(
                "cdrom_image_path {cdrom} of instance {name} does not exist on node {}",
                self.node_name
            )));
        }
        let qemu_user = match run_as(&inst.hvparams)? {
            Some(u) => Some(QemuUser::lookup(u)?),
            None => None,
        };
        // The taps exist before QEMU opens them (or is handed them); a failed start removes
        // them (`cleanup`).
        network::create_taps(&self.node_name, name, &nets)?;
        let prepared = self.prepare(inst, &paths, &disks, &nets, &accel, qemu_user.as_ref());
        let (argv, opened) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let _ = self.cleanup(name);
                return Err(e);
            }
        };
        let mut argv = argv;
        if let Some(uri) = incoming {
            argv.extend(["-incoming".to_string(), uri.to_string()]);
        }
        if paused {
            argv.push("-S".to_string());
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
            taps: nets.iter().map(|n| n.tap.clone()).collect(),
        };
        let data =
            serde_json::to_vec_pretty(&rf).map_err(|e| NodeError::internal(e.to_string()))?;
        crate::write_atomic(&paths.runtime, &data)?;
        // QEMU runs in a session of its own (it outlives magueyd, no signal to magueyd's
        // group reaches it), not daemonized: its sandbox's `spawn=deny` forbids the fork of
        // `-daemonize`. It is ready once it answers QMP (its main loop runs only after the
        // machine is built); its own words, if it exits first, are in its log.
        let scopes = self
            .systemd_scopes
            .load(std::sync::atomic::Ordering::Relaxed);
        let launcher = if scopes {
            let ids = qemu_user.as_ref().map(|u| (u.uid, u.gid));
            super::scope::wrap(name, &argv, ids)
        } else {
            argv.clone()
        };
        let mut cmd = Cmd::program(Path::new(&launcher[0]), &launcher[1..])
            .current_dir(&self.run_dir)
            .log_to(&paths.qemu_log);
        if let (Some(u), Some(o)) = (&qemu_user, &opened) {
            cmd = cmd.identity(u.identity(scopes)).keep_fds(o.numbers());
        }
        let spawned = self.runner.spawn_session(&cmd);
        // QEMU holds its copies now; ours close (a QEMU that dies leaves no listener behind).
        drop(opened);
        let session = spawned
            .map_err(|e| NodeError::io(format!("cannot run {}: {}", launcher[0], e.reason())))?;
        if qemu_user.is_some() {
            // QEMU cannot write in the runtime directory: the pid it runs under (systemd-run
            // executes it in its own process) goes to its pidfile from here.
            crate::write_atomic(&paths.pid, format!("{}\n", session.pid).as_bytes())?;
        }
        let st = match self.wait_ready(name, &paths, session).await {
            Ok(st) => st,
            Err(e) => {
                let _ = self.cleanup(name);
                return Err(e);
            }
        };
        // The pidfile names QEMU itself (written before QMP answers).
        let pid: u32 = std::fs::read_to_string(&paths.pid)
            .map_err(|e| {
                NodeError::not_found(format!(
                    "QEMU wrote no pidfile {}: {e}",
                    paths.pid.display()
                ))
            })?
            .trim()
            .parse()
            .map_err(|e| {
                NodeError::bad_request(format!("bad pidfile {}: {e}", paths.pid.display()))
            })?;
        rf.pid = pid;
        let data =
            serde_json::to_vec_pretty(&rf).map_err(|e| NodeError::internal(e.to_string()))?;
        crate::write_atomic(&paths.runtime, &data)?;
        // The machine must run (or wait for its migrating state).
        let expected = if incoming.is_some() {
            st.status == "inmigrate"
        } else {
            st.running
        };
        if !expected {
            return Err(NodeError::command_failed(format!(
                "instance {name} started but is {}",
                st.status
            )));
        }
        Ok(())
    }

    /// QEMU's command line and, for a QEMU run as its user, the descriptors it gets.
    fn prepare(
        &self,
        inst: &InstanceRuntime,
        paths: &Paths,
        disks: &[PathBuf],
        nets: &[network::TapSpec],
        accel: &str,
        qemu_user: Option<&QemuUser>,
    ) -> NodeResult<(Vec<String>, Option<user::Opened>)> {
        if qemu_user.is_none() {
            return Ok((build_argv(inst, paths, disks, nets, accel, None)?, None));
        }
        let hv = &inst.hvparams;
        let cache = hv_str(hv, "disk_cache", "default");
        let direct = cache == "none" || hv_str(hv, "disk_aio", "threads") == "native";
        let cdrom = hv_str(hv, "cdrom_image_path", "");
        let wanted = user::Wanted {
            qmp: &paths.qmp,
            serial: &paths.serial,
            console_log: &paths.console_log,
            kvm: accel == "kvm",
            disks: disks
                .iter()
                .zip(&inst.disks)
                .map(|(p, d)| {
                    (
                        p.as_path(),
                        d.mode != maguey_model::DiskMode::ReadOnly,
                        direct,
                    )
                })
                .collect(),
            cdrom: (!cdrom.is_empty()).then(|| Path::new(cdrom)),
            kernel: Some(hv_str(hv, "kernel_path", ""))
                .filter(|k| !k.is_empty())
                .map(Path::new),
            initrd: Some(hv_str(hv, "initrd_path", ""))
                .filter(|k| !k.is_empty() && !hv_str(hv, "kernel_path", "").is_empty())
                .map(Path::new),
            taps: nets.iter().map(|n| n.tap.as_str()).collect(),
            vhost: vhost_wanted(hv),
        };
        let opened = user::open_all(&wanted)?;
        let argv = build_argv(inst, paths, disks, nets, accel, Some(&opened.args))?;
        Ok((argv, Some(opened)))
    }

    /// Waits until a QEMU just started answers QMP, and returns its status; QEMU's exit
    /// ends the wait at once. Only the socket's appearance (early in QEMU's start) is
    /// polled, with a short backoff (2 ms doubling up to 20 ms); the greeting itself is
    /// awaited on the connection (QEMU sends it once its main loop runs, the machine
    /// built). Within [`LAUNCH_TIMEOUT`]; a QEMU not ready by then is killed.
    async fn wait_ready(
        &self,
        name: &str,
        paths: &Paths,
        mut session: Session,
    ) -> NodeResult<StatusInfo> {
        let deadline = tokio::time::Instant::now() + LAUNCH_TIMEOUT;
        // A socket handed to QEMU listens before QEMU runs: connecting succeeds at once and
        // the greeting comes when QEMU accepts, so the whole attempt races QEMU's exit and
        // the deadline.
        let ready = async {
            let mut pause = Duration::from_millis(2);
            loop {
                if paths.qmp.exists() {
                    if let Ok(mut q) = Qmp::connect(&paths.qmp).await {
                        if let Ok(st) = q.query_status().await {
                            return st;
                        }
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        };
        tokio::select! {
            st = ready => Ok(st),
            status = &mut session.exited => {
                let status = status.unwrap_or_else(|_| "exited".to_string());
                let log = std::fs::read_to_string(&paths.qemu_log).unwrap_or_default();
                Err(NodeError::command_failed(format!(
                    "QEMU failed to start instance {name} ({status}): {}",
                    log.trim()
                )))
            }
            _ = tokio::time::sleep_until(deadline) => {
                kill_session(session.pid);
                Err(NodeError::timeout(format!(
                    "QEMU of instance {name} did not answer QMP within {LAUNCH_TIMEOUT:?}"
                )))
            }
        }
    }

    pub(super) async fn run_info(&self, rf: &RunFile) -> InstanceRunInfo {
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
            accel: Some(rf.accel.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            taps: vec![],
        };
        std::fs::write(&p.runtime, serde_json::to_vec(&rf).unwrap()).unwrap();
        assert_eq!(hv.read("vm1").unwrap().unwrap().pid, 0);
        std::fs::write(&p.pid, "4242\n").unwrap();
        assert_eq!(hv.read("vm1").unwrap().unwrap().pid, 4242);
        // Not a QEMU of ours: not running.
        assert!(hv.running("vm1").unwrap().is_none());
    }
}
