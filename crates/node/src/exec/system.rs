//! [`SystemRunner`]: commands run for real.

use super::{BoxFuture, Cmd, CmdOutput, CommandRunner, ExecError, Session};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Default bound of one command (LVM waits on locks; a hung `drbdsetup` or `ip` must not hang
/// the node daemon's request forever).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The process-wide real runner (default time limit), for code that has no runner handed in.
pub fn system() -> Arc<dyn CommandRunner> {
    static SYSTEM: OnceLock<Arc<dyn CommandRunner>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| Arc::new(SystemRunner::default()))
        .clone()
}

/// Runs commands for real (stdin closed, outputs captured or logged, the process group killed
/// after the time limit).
#[derive(Debug, Clone)]
pub struct SystemRunner {
    /// Time limit of commands that set none.
    pub timeout: Duration,
}

impl Default for SystemRunner {
    fn default() -> Self {
        SystemRunner {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` until `deadline` (`Ok(None)`: time is up). Event-driven: a pidfd of
/// the child is polled, so the exit is seen at once (a fixed 10 ms poll used to add its
/// granularity to every command, e.g. the three `ip` calls of each tap); a short backoff
/// poll where pidfds are missing (Linux < 5.3).
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let pidfd = pidfd(child.id());
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let left = deadline - now;
        match &pidfd {
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
                // SAFETY: poll(2) on one descriptor owned here; an interruption or a
                // timeout just goes round the loop.
                unsafe { libc::poll(&mut p, 1, ms) };
            }
            None => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// A pidfd of `pid` (a child not yet waited for, so the pid cannot be reused meanwhile).
fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open(2) returns a new descriptor, or -1; no memory is involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL to the process group `pid` leads (a child started with `process_group(0)`).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        if pid > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

fn spawn_error(cmd: &Cmd, e: impl std::fmt::Display) -> ExecError {
    ExecError::Spawn {
        cmd: cmd.to_string(),
        reason: e.to_string(),
    }
}

/// Where standard output and error go: pipes, or both into the command's log file.
fn outputs(cmd: &Cmd) -> Result<(Stdio, Stdio), ExecError> {
    match &cmd.log {
        None => Ok((Stdio::piped(), Stdio::piped())),
        Some(path) => {
            let log = std::fs::File::create(path)
                .map_err(|e| spawn_error(cmd, format!("cannot create {}: {e}", path.display())))?;
            let log2 = log
                .try_clone()
                .map_err(|e| spawn_error(cmd, format!("cannot open {}: {e}", path.display())))?;
            Ok((log.into(), log2.into()))
        }
    }
}

fn finish(status: Option<ExitStatus>, stdout: &[u8], stderr: &[u8], limit: Duration) -> CmdOutput {
    let stdout = String::from_utf8_lossy(stdout).into_owned();
    let mut stderr = String::from_utf8_lossy(stderr).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n(timed out after {limit:?})"));
    }
    CmdOutput {
        code: status.and_then(|s| s.code()),
        signal: match status {
            Some(s) => s.signal(),
            None => Some(libc::SIGKILL),
        },
        timed_out: status.is_none(),
        stdout,
        stderr,
    }
}

impl SystemRunner {
    fn limit(&self, cmd: &Cmd) -> Duration {
        cmd.timeout.unwrap_or(self.timeout)
    }

    fn std_command(&self, cmd: &Cmd) -> Result<Command, ExecError> {
        let mut command = Command::new(&cmd.program);
        if cmd.env_clear {
            command.env_clear();
        }
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        let (out, err) = outputs(cmd)?;
        // Its own process group: a timeout kills whatever it started too (a grandchild that
        // kept the output pipes open would otherwise block the reads).
        command
            .process_group(0)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Ok(command)
    }

    async fn run_tokio(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
        use tokio::io::AsyncReadExt;
        let limit = self.limit(cmd);
        let mut command = tokio::process::Command::from(self.std_command(cmd)?);
        // A request given up (the master went away) takes its command down with it.
        command.kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| spawn_error(cmd, e))?;
        let pid = child.id();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let out = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(mut p) = out {
                let _ = p.read_to_end(&mut buf).await;
            }
            buf
        });
        let err = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(mut p) = err {
                let _ = p.read_to_end(&mut buf).await;
            }
            buf
        });
        // Killed with its group when this future is dropped mid-way.
        let guard = GroupGuard(pid);
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                return Err(spawn_error(cmd, format!("waiting failed: {e}")));
            }
            Err(_) => {
                kill_group(pid);
                let _ = child.kill().await;
                None
            }
        };
        std::mem::forget(guard);
        let stdout = out.await.unwrap_or_default();
        let stderr = err.await.unwrap_or_default();
        Ok(finish(status, &stdout, &stderr, limit))
    }
}

/// Kills a command's process group unless forgotten (the async caller went away).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

impl CommandRunner for SystemRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
        let limit = self.limit(cmd);
        let mut child = self
            .std_command(cmd)?
            .spawn()
            .map_err(|e| spawn_error(cmd, e))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let deadline = Instant::now() + limit;
        let status = match wait_until(&mut child, deadline) {
            Ok(Some(status)) => Some(status),
            Ok(None) => {
                kill_group(Some(child.id()));
                let _ = child.kill();
                let _ = child.wait();
                None
            }
            Err(e) => {
                kill_group(Some(child.id()));
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_error(cmd, format!("waiting failed: {e}")));
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        Ok(finish(status, &stdout, &stderr, limit))
    }

    fn run_async<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<CmdOutput, ExecError>> {
        Box::pin(self.run_tokio(cmd))
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn spawn_session(&self, cmd: &Cmd) -> Result<Session, ExecError> {
        let mut command = Command::new(&cmd.program);
        if cmd.env_clear {
            command.env_clear();
        }
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        let (out, err) = match &cmd.log {
            Some(_) => outputs(cmd)?,
            None => (Stdio::null(), Stdio::null()),
        };
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // The descriptors handed over lose their close-on-exec flag in the child only; the
        // identity changes last (groups, gid, then uid: nothing can be changed back).
        let keep = cmd.keep_fds.clone();
        let identity = cmd.identity.clone();
        // SAFETY: setsid(2), fcntl(2), setgroups(2), setgid(2) and setuid(2) are
        // async-signal-safe; they run in the child between fork and exec, on data moved into
        // the closure before the fork, and allocate nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for &fd in &keep {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(id) = &identity {
                    if libc::setgroups(id.groups.len(), id.groups.as_ptr()) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if let Some((uid, gid)) = id.ids {
                        if libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                Ok(())
            });
        }
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| spawn_error(cmd, e))?;
        let pid = child.id().unwrap_or(0);
        let (tx, exited) = tokio::sync::oneshot::channel();
        // The reaper: no zombie is left behind while the daemon runs (after a restart the
        // process is init's child).
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => finish(Some(s), &[], &[], Duration::ZERO).status_text(),
                Err(e) => format!("waiting failed: {e}"),
            };
            let _ = tx.send(status);
        });
        Ok(Session { pid, exited })
    }
}
