//! The one way the node runs external programs: LVM and DRBD tools, `ip`, `qemu-img`,
//! `xorriso`/`genisoimage`, OS definition scripts and QEMU itself.
//!
//! A [`Cmd`] is an argv (never a shell) with its environment, working directory, output
//! destination and time limit. A [`CommandRunner`] runs it: [`SystemRunner`] for real (stdin
//! closed, its own process group, the whole group killed when the time is up, or when an
//! async caller gives up), [`ScriptedRunner`] from recorded outputs, recording every command
//! so that tests assert the exact argv of each operation.

mod scripted;
mod system;

pub use scripted::{ScriptMismatch, ScriptedRunner};
pub use system::{system, SystemRunner, DEFAULT_TIMEOUT};

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future (keeps traits object-safe without async-trait).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One external command: program, arguments, environment and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the environment (to an empty one with [`Cmd::env_clear`]).
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the daemon's.
    pub env_clear: bool,
    /// Working directory; `None`: the daemon's.
    pub cwd: Option<PathBuf>,
    /// Standard output and error both go to this file (created) instead of being captured.
    pub log: Option<PathBuf>,
    /// Time limit; `None`: the runner's default.
    pub timeout: Option<Duration>,
    /// The identity the program runs with instead of the daemon's (sessions only, see
    /// [`CommandRunner::spawn_session`]).
    pub identity: Option<Identity>,
    /// Open descriptors (of the caller, kept open until the spawn returns) the program
    /// inherits under the same numbers (sessions only).
    pub keep_fds: Vec<i32>,
}

/// Who a spawned program runs as: its supplementary groups, and, when `ids` is set, its
/// uid and gid (changed between fork and exec, groups first, uid last). Without `ids` only
/// the groups change (a wrapper that changes the ids itself, such as `systemd-run --uid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// (uid, gid).
    pub ids: Option<(u32, u32)>,
    pub groups: Vec<u32>,
}

impl Cmd {
    /// `program` with `args`, run with `LC_ALL=C` so outputs parse the same everywhere.
    pub fn new<S: AsRef<str>>(program: &str, args: &[S]) -> Self {
        Cmd {
            program: program.to_string(),
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            env: vec![("LC_ALL".into(), "C".into())],
            env_clear: false,
            cwd: None,
            log: None,
            timeout: None,
            identity: None,
            keep_fds: Vec::new(),
        }
    }

    /// `program` (a path) with `args`, nothing added to the environment.
    pub fn program(program: &Path, args: &[String]) -> Self {
        Cmd {
            program: program.display().to_string(),
            args: args.to_vec(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            log: None,
            timeout: None,
            identity: None,
            keep_fds: Vec::new(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs with exactly `env` as environment.
    pub fn clean_env<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env_clear = true;
        self.env = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        self
    }

    /// Runs in directory `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Sends standard output and error to the file `path` (created or truncated).
    pub fn log_to(mut self, path: &Path) -> Self {
        self.log = Some(path.to_path_buf());
        self
    }

    /// Runs as `identity` (sessions only).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Hands the open descriptors `fds` to the program (sessions only).
    pub fn keep_fds(mut self, fds: Vec<i32>) -> Self {
        self.keep_fds = fds;
        self
    }

    /// Bounds the command to `timeout` (the runner's default otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The secret values among the arguments (see [`SECRET_OPTIONS`]).
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut prev: Option<&str> = None;
        for a in &self.args {
            if prev.is_some_and(|p| SECRET_OPTIONS.contains(&p)) {
                out.push(a.as_str());
            } else if let Some((opt, v)) = a.split_once('=') {
                if SECRET_OPTIONS.contains(&opt) {
                    out.push(v);
                }
            }
            prev = Some(a);
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// Program and arguments, as one vector (what tests compare).
    pub fn argv(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.args.len() + 1);
        v.push(self.program.clone());
        v.extend(self.args.iter().cloned());
        v
    }
}

/// Options whose value is a secret (DRBD's peer authentication): every display of a command
/// (messages, errors, logs, hence job results) shows [`REDACTED`] instead.
pub const SECRET_OPTIONS: &[&str] = &["--shared-secret", "shared-secret"];
/// What a secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// `arg` as displayed, `prev` the argument before it.
fn shown<'a>(arg: &'a str, prev: Option<&str>) -> std::borrow::Cow<'a, str> {
    if prev.is_some_and(|p| SECRET_OPTIONS.contains(&p)) {
        return REDACTED.into();
    }
    match arg.split_once('=') {
        Some((opt, _)) if SECRET_OPTIONS.contains(&opt) => format!("{opt}={REDACTED}").into(),
        _ => arg.into(),
    }
}

impl fmt::Display for Cmd {
    /// The argv joined by spaces, secrets redacted (for messages only: nothing ever runs it
    /// through a shell).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        let mut prev: Option<&str> = None;
        for a in &self.args {
            write!(f, " {}", shown(a, prev))?;
            prev = Some(a);
        }
        Ok(())
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdOutput {
    /// The exit code; `None` when a signal (or the timeout) ended it.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The time limit was reached and the command's process group killed.
    pub timed_out: bool,
    /// Captured standard output (empty when it went to a log file).
    pub stdout: String,
    /// Captured standard error (empty when it went to a log file).
    pub stderr: String,
}

impl CmdOutput {
    /// Exit code 0 with this standard output.
    pub fn ok(stdout: &str) -> Self {
        CmdOutput {
            code: Some(0),
            stdout: stdout.to_string(),
            ..Default::default()
        }
    }

    /// A failure with this exit code and standard error.
    pub fn fail(code: i32, stderr: &str) -> Self {
        CmdOutput {
            code: Some(code),
            stderr: stderr.to_string(),
            ..Default::default()
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// How the command ended, as `std::process::ExitStatus` shows it (`exit status: 1`,
    /// `signal: 9 (SIGKILL)`).
    pub fn status_text(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit status: {c}"),
            (None, Some(9)) => "signal: 9 (SIGKILL)".to_string(),
            (None, Some(s)) => format!("signal: {s}"),
            (None, None) => "killed".to_string(),
        }
    }
}

/// Errors of running a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started at all (missing binary, ...).
    #[error("cannot run `{cmd}`: {reason}")]
    Spawn { cmd: String, reason: String },
    /// The command ran and failed (or was killed at its time limit).
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

impl ExecError {
    /// Why the command could not run or failed, without naming it.
    pub fn reason(&self) -> &str {
        match self {
            ExecError::Spawn { reason, .. } | ExecError::Read { reason, .. } => reason,
            ExecError::Failed { stderr, .. } => stderr,
        }
    }

    /// Standard error of a failed command (empty for other errors).
    pub fn stderr(&self) -> &str {
        match self {
            ExecError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// Runs commands and reads files. Implementations must be usable from several threads (node
/// requests run in parallel).
pub trait CommandRunner: Send + Sync + fmt::Debug {
    /// Runs `cmd` to completion, blocking. `Err` only when it could not be started; a
    /// non-zero exit is an `Ok` output (see [`run_checked`]).
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError>;

    /// Runs `cmd` to completion from async code. Dropping the future kills the command's
    /// process group. The default runs [`CommandRunner::run`] in place (for runners that
    /// answer at once).
    fn run_async<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<CmdOutput, ExecError>> {
        Box::pin(async move { self.run(cmd) })
    }

    /// Reads a (small) text file, e.g. `/proc/drbd`.
    fn read_file(&self, path: &Path) -> std::io::Result<String>;

    /// Starts `cmd` as a long-lived process in a session of its own (`setsid`: no signal
    /// to the daemon's process group or session reaches it, and it outlives the daemon),
    /// standard output and error into [`Cmd::log`], and returns at once. The runner reaps
    /// it when it exits (while the daemon lives); [`Session::exited`] tells when. QEMU runs
    /// this way, without `-daemonize` (whose fork its sandbox's `spawn=deny` forbids).
    /// The default refuses (for runners that only replay outputs).
    fn spawn_session(&self, cmd: &Cmd) -> Result<Session, ExecError> {
        Err(ExecError::Spawn {
            cmd: cmd.to_string(),
            reason: "this runner does not start long-running processes".to_string(),
        })
    }
}

/// A process started by [`CommandRunner::spawn_session`].
#[derive(Debug)]
pub struct Session {
    pub pid: u32,
    /// Resolves with the exit status (as [`CmdOutput::status_text`] words) once the process
    /// exited; never while it runs. Dropping it leaves the process running.
    pub exited: tokio::sync::oneshot::Receiver<String>,
}

/// Runs `cmd` and returns its standard output; a non-zero exit is an error that names the
/// command and carries its standard error.
pub fn run_checked(runner: &dyn CommandRunner, cmd: &Cmd) -> Result<String, ExecError> {
    let out = runner.run(cmd)?;
    if out.success() {
        return Ok(out.stdout);
    }
    Err(failed(cmd, &out))
}

/// The error for a command that ran and failed.
pub fn failed(cmd: &Cmd, out: &CmdOutput) -> ExecError {
    let status = match out.code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal or timed out".to_string(),
    };
    let mut stderr = out.stderr.trim().to_string();
    if stderr.is_empty() {
        stderr = out.stdout.trim().to_string();
    }
    // A tool that echoes its arguments must not leak a secret either.
    for secret in cmd.secrets() {
        stderr = stderr.replace(secret, REDACTED);
    }
    if stderr.is_empty() {
        stderr = "no output".to_string();
    }
    ExecError::Failed {
        cmd: cmd.to_string(),
        status,
        stderr,
    }
}

/// Reads a file through the runner; `Ok(None)` when it does not exist.
pub fn read_optional(runner: &dyn CommandRunner, path: &Path) -> Result<Option<String>, ExecError> {
    match runner.read_file(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExecError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn system_runner_captures_output_and_exit_code() {
        let r = SystemRunner::default();
        let out = r
            .run(&Cmd::new("sh", &["-c", "echo out; echo err >&2; exit 3"]))
            .expect("sh runs");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let e = run_checked(&r, &Cmd::new("sh", &["-c", "echo boom >&2; exit 5"]))
            .expect_err("exit 5 is an error");
        let msg = e.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("exit code 5"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn system_runner_passes_env_and_reports_missing_programs() {
        let r = SystemRunner::default();
        let cmd = Cmd::new("sh", &["-c", "echo $LVM_SUPPRESS_FD_WARNINGS $LC_ALL"])
            .env("LVM_SUPPRESS_FD_WARNINGS", "1");
        assert_eq!(run_checked(&r, &cmd).expect("runs"), "1 C\n");
        let e = r
            .run(&Cmd::new("/nonexistent/maguey-no-such-program", &["x"]))
            .expect_err("cannot spawn");
        assert!(matches!(e, ExecError::Spawn { .. }), "{e}");
    }

    #[test]
    fn system_runner_kills_commands_after_the_timeout() {
        let r = SystemRunner {
            timeout: Duration::from_millis(200),
        };
        let start = Instant::now();
        let out = r.run(&Cmd::new("sleep", &["5"])).expect("sleep runs");
        assert!(start.elapsed() < Duration::from_secs(4));
        assert_eq!(out.code, None);
        assert!(out.stderr.contains("timed out"), "{}", out.stderr);
        // A background grandchild holding the output pipes is killed with it.
        let start = Instant::now();
        let out = r
            .run(&Cmd::new("sh", &["-c", "sleep 5 & sleep 5"]))
            .expect("sh runs");
        assert!(start.elapsed() < Duration::from_secs(4));
        assert_eq!(out.code, None);
    }

    #[test]
    fn scripted_runner_replays_in_order_and_reports_mismatches() {
        let r = ScriptedRunner::new();
        r.expect_ok(&["lvs", "a"], "one");
        r.expect(&["lvs", "b"], CmdOutput::fail(5, "nope"));
        assert_eq!(run_checked(&r, &Cmd::new("lvs", &["a"])).unwrap(), "one");
        let e = run_checked(&r, &Cmd::new("lvs", &["c"])).unwrap_err();
        assert!(e.to_string().contains("expected: lvs b"), "{e}");
        assert!(r.finish().is_err());
        assert_eq!(r.argvs(), vec![vec!["lvs", "a"], vec!["lvs", "c"]]);
    }

    #[test]
    fn scripted_files_advance_then_stay() {
        let r = ScriptedRunner::new();
        r.file("/proc/drbd", "first").file("/proc/drbd", "second");
        let p = Path::new("/proc/drbd");
        assert_eq!(r.read_file(p).unwrap(), "first");
        assert_eq!(r.read_file(p).unwrap(), "second");
        assert_eq!(r.read_file(p).unwrap(), "second");
        assert_eq!(read_optional(&r, Path::new("/sys/x")).unwrap(), None);
    }

    #[tokio::test]
    async fn async_runs_log_to_a_file_in_a_clean_env_and_cwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let cmd = Cmd::new(
            "/bin/sh",
            &["-c", "echo \"$FOO $LC_ALL\"; pwd; echo err >&2; exit 4"],
        )
        .clean_env([("FOO", "bar")])
        .current_dir(dir.path())
        .log_to(&log);
        let out = SystemRunner::default()
            .run_async(&cmd)
            .await
            .expect("sh runs");
        assert_eq!(out.code, Some(4));
        assert!(!out.timed_out);
        assert_eq!(out.status_text(), "exit status: 4");
        assert!(out.stdout.is_empty(), "{out:?}");
        let text = std::fs::read_to_string(&log).expect("log");
        let cwd = dir.path().canonicalize().expect("canonical");
        assert_eq!(text, format!("bar \n{}\nerr\n", cwd.display()));
    }

    #[tokio::test]
    async fn async_kills_the_process_group_at_the_time_limit() {
        let cmd = Cmd::new("sh", &["-c", "sleep 5 & sleep 5"]).timeout(Duration::from_millis(200));
        let start = Instant::now();
        let out = SystemRunner::default()
            .run_async(&cmd)
            .await
            .expect("sh runs");
        assert!(start.elapsed() < Duration::from_secs(4));
        assert!(out.timed_out);
        assert_eq!(out.code, None);
        assert_eq!(out.signal, Some(libc::SIGKILL));
        let e = SystemRunner::default()
            .run_async(&Cmd::new("/nonexistent/maguey-no-such-program", &["x"]))
            .await
            .expect_err("cannot spawn");
        assert!(matches!(e, ExecError::Spawn { .. }), "{e}");
    }

    #[tokio::test]
    async fn sessions_run_on_their_own_and_report_their_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let cmd = Cmd::new(
            "/bin/sh",
            &[
                "-c",
                "read -r x < /proc/self/stat; echo \"$x\"; echo err >&2; exit 3",
            ],
        )
        .log_to(&log);
        let s = SystemRunner::default()
            .spawn_session(&cmd)
            .expect("sh starts");
        assert!(s.pid > 0);
        let status = tokio::time::timeout(Duration::from_secs(20), s.exited)
            .await
            .expect("it exits")
            .expect("its status");
        assert_eq!(status, "exit status: 3");
        // /proc/self/stat of the shell: pid (comm) state ppid pgrp session ...
        let text = std::fs::read_to_string(&log).expect("log");
        let stat: Vec<&str> = text
            .lines()
            .next()
            .and_then(|l| l.rsplit(')').next())
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let pid = s.pid.to_string();
        assert_eq!(
            (stat.get(2), stat.get(3)),
            (Some(&pid.as_str()), Some(&pid.as_str())),
            "not its own session leader: {text}"
        );
        assert!(text.ends_with("err\n"), "{text}");
        // Reaped: no zombie left.
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_err());
        // Runners that only replay outputs start nothing.
        assert!(ScriptedRunner::new().spawn_session(&cmd).is_err());
    }

    #[tokio::test]
    async fn sessions_take_an_identity_and_the_descriptors_handed_over() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let secret = dir.path().join("held");
        std::fs::write(&secret, "").expect("file");
        let held = std::fs::File::open(&secret).expect("open");
        let fd = held.as_raw_fd();
        // Another descriptor of the daemon, not handed over, stays closed in the child.
        let other = std::fs::File::open(&secret).expect("open");
        let script = format!(
            "id -u; id -g; id -G; readlink /proc/$$/fd/{fd}; readlink /proc/$$/fd/{} || echo closed",
            other.as_raw_fd()
        );
        let cmd = Cmd::new("/bin/sh", &["-c", &script])
            .log_to(&log)
            .identity(Identity {
                ids: Some((65534, 65534)),
                groups: vec![65534],
            })
            .keep_fds(vec![fd]);
        let s = SystemRunner::default()
            .spawn_session(&cmd)
            .expect("sh starts");
        let status = tokio::time::timeout(Duration::from_secs(20), s.exited)
            .await
            .expect("it exits")
            .expect("its status");
        assert_eq!(status, "exit status: 0");
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            text,
            format!("65534\n65534\n65534\n{}\nclosed\n", secret.display())
        );
        // The daemon's own descriptor keeps its close-on-exec flag.
        // SAFETY: fcntl(2) F_GETFD on a descriptor owned by this test.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn blocking_runs_wait_for_the_exit_on_a_pidfd() {
        // Short commands, one after the other: each exit is seen and its code kept.
        let r = SystemRunner::default();
        for _ in 0..5 {
            let out = r.run(&Cmd::new("true", &[] as &[&str])).expect("true runs");
            assert!(out.success());
        }
        let out = r.run(&Cmd::new("sh", &["-c", "exit 7"])).expect("sh runs");
        assert_eq!(out.code, Some(7));
    }

    #[tokio::test]
    async fn scripted_runner_records_async_commands() {
        let r = ScriptedRunner::new();
        r.expect_ok(&["qemu-img", "info"], "{}");
        let out = r
            .run_async(&Cmd::new("qemu-img", &["info"]))
            .await
            .expect("scripted");
        assert_eq!(out.stdout, "{}");
        assert_eq!(r.argvs(), vec![vec!["qemu-img", "info"]]);
        r.finish().expect("all ran");
    }
}
