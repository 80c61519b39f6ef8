//! How storage code touches the node: external commands (argv only, never a shell) and reads
//! of kernel status files (`/proc/drbd`, `/sys/module/...`).
//!
//! [`SystemRunner`] does it for real; [`ScriptedRunner`] replays recorded outputs and records
//! every command, so tests assert the exact argv of each operation without LVM or DRBD.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One external command: program, arguments and extra environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the daemon's environment.
    pub env: Vec<(String, String)>,
}

impl Cmd {
    /// `program` with `args`, run with `LC_ALL=C` so outputs parse the same everywhere.
    pub fn new<S: AsRef<str>>(program: &str, args: &[S]) -> Self {
        Cmd {
            program: program.to_string(),
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            env: vec![("LC_ALL".into(), "C".into())],
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

    /// Program and arguments, as one vector (what tests compare).
    pub fn argv(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.args.len() + 1);
        v.push(self.program.clone());
        v.extend(self.args.iter().cloned());
        v
    }
}

impl fmt::Display for Cmd {
    /// The argv joined by spaces (for messages only: nothing ever runs it through a shell).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdOutput {
    /// The exit code; `None` when a signal (or the timeout) ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// Exit code 0 with this standard output.
    pub fn ok(stdout: &str) -> Self {
        CmdOutput {
            code: Some(0),
            stdout: stdout.to_string(),
            stderr: String::new(),
        }
    }

    /// A failure with this exit code and standard error.
    pub fn fail(code: i32, stderr: &str) -> Self {
        CmdOutput {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.to_string(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Errors of storage operations that run commands or parse their outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The program could not be started at all (missing binary, ...).
    #[error("cannot run `{cmd}`: {reason}")]
    Spawn { cmd: String, reason: String },
    /// The command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A command's output or a status file could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    /// The request itself is wrong (bad logical id, missing address, ...).
    #[error("{0}")]
    Invalid(String),
}

impl StorageError {
    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        StorageError::Parse {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Standard error of a failed command (empty for other errors).
    pub fn stderr(&self) -> &str {
        match self {
            StorageError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

impl From<StorageError> for String {
    fn from(e: StorageError) -> String {
        e.to_string()
    }
}

/// Runs commands and reads files for storage code. Implementations must be usable from
/// several threads (node requests run in parallel).
pub trait CommandRunner: Send + Sync + fmt::Debug {
    /// Runs `cmd` to completion. `Err` only when it could not be started; a non-zero exit is
    /// an `Ok` output (see [`run_checked`]).
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, StorageError>;
    /// Reads a (small) text file, e.g. `/proc/drbd`.
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
}

/// Runs `cmd` and returns its standard output; a non-zero exit is an error that names the
/// command and carries its standard error.
pub fn run_checked(runner: &dyn CommandRunner, cmd: &Cmd) -> Result<String, StorageError> {
    let out = runner.run(cmd)?;
    if out.success() {
        return Ok(out.stdout);
    }
    Err(failed(cmd, &out))
}

/// The error for a command that ran and failed.
pub fn failed(cmd: &Cmd, out: &CmdOutput) -> StorageError {
    let status = match out.code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal or timed out".to_string(),
    };
    let mut stderr = out.stderr.trim().to_string();
    if stderr.is_empty() {
        stderr = out.stdout.trim().to_string();
    }
    if stderr.is_empty() {
        stderr = "no output".to_string();
    }
    StorageError::Failed {
        cmd: cmd.to_string(),
        status,
        stderr,
    }
}

/// Reads a file through the runner; `Ok(None)` when it does not exist.
pub fn read_optional(
    runner: &dyn CommandRunner,
    path: &Path,
) -> Result<Option<String>, StorageError> {
    match runner.read_file(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Default bound of one command (LVM waits on locks; a hung `drbdsetup` must not hang the
/// node daemon's request forever).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs commands for real with `std::process::Command` (stdin closed, outputs captured, killed
/// after a timeout).
#[derive(Debug, Clone)]
pub struct SystemRunner {
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

/// SIGKILL to the child's process group (the group id is the child's pid).
fn kill_group(child: &std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        if pid > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl CommandRunner for SystemRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, StorageError> {
        let mut command = Command::new(&cmd.program);
        // Its own process group: a timeout kills whatever it started too (a grandchild that
        // kept the output pipes open would otherwise block the reads below).
        command
            .process_group(0)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| StorageError::Spawn {
            cmd: cmd.to_string(),
            reason: e.to_string(),
        })?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(&child);
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    kill_group(&child);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(StorageError::Spawn {
                        cmd: cmd.to_string(),
                        reason: format!("waiting failed: {e}"),
                    });
                }
            }
        };
        let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
        let mut stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        if status.is_none() {
            stderr.push_str(&format!("\n(timed out after {:?})", self.timeout));
        }
        Ok(CmdOutput {
            code: status.and_then(|s| s.code()),
            stdout,
            stderr,
        })
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Replays recorded outputs: an ordered script of expected commands and their outputs, plus
/// file contents. Every command run is recorded (in order) for assertions. A command that
/// differs from the next expected one is answered with an error output (exit 127) naming both,
/// so a wrong argv fails the operation instead of panicking.
#[derive(Debug, Default)]
pub struct ScriptedRunner {
    state: Mutex<ScriptState>,
}

#[derive(Debug, Default)]
struct ScriptState {
    expected: VecDeque<(Vec<String>, CmdOutput)>,
    calls: Vec<Cmd>,
    mismatches: Vec<String>,
    /// Each read takes the first content; the last one stays (a file that keeps its state).
    files: BTreeMap<PathBuf, VecDeque<String>>,
}

impl ScriptedRunner {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScriptState> {
        // A poisoned lock only means another test thread panicked: the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expects `argv` next and answers `output`.
    pub fn expect<S: AsRef<str>>(&self, argv: &[S], output: CmdOutput) -> &Self {
        let argv = argv.iter().map(|a| a.as_ref().to_string()).collect();
        self.lock().expected.push_back((argv, output));
        self
    }

    /// Expects `argv` next and answers success with `stdout`.
    pub fn expect_ok<S: AsRef<str>>(&self, argv: &[S], stdout: &str) -> &Self {
        self.expect(argv, CmdOutput::ok(stdout))
    }

    /// Adds a content for `path` (successive reads see successive contents; the last stays).
    pub fn file(&self, path: impl Into<PathBuf>, content: &str) -> &Self {
        self.lock()
            .files
            .entry(path.into())
            .or_default()
            .push_back(content.to_string());
        self
    }

    /// Every command run so far.
    pub fn calls(&self) -> Vec<Cmd> {
        self.lock().calls.clone()
    }

    /// The argv of every command run so far.
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.lock().calls.iter().map(Cmd::argv).collect()
    }

    /// `Ok` when every expected command ran and none was unexpected.
    pub fn finish(&self) -> Result<(), String> {
        let st = self.lock();
        let mut problems = st.mismatches.clone();
        for (argv, _) in &st.expected {
            problems.push(format!("expected but not run: {}", argv.join(" ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

impl CommandRunner for ScriptedRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, StorageError> {
        let mut st = self.lock();
        st.calls.push(cmd.clone());
        let argv = cmd.argv();
        match st.expected.front() {
            Some((want, _)) if *want == argv => {
                let (_, out) = st.expected.pop_front().unwrap_or_default();
                Ok(out)
            }
            Some((want, _)) => {
                let msg = format!(
                    "unexpected command: {}\n      expected: {}",
                    argv.join(" "),
                    want.join(" ")
                );
                st.mismatches.push(msg.clone());
                Ok(CmdOutput::fail(127, &msg))
            }
            None => {
                let msg = format!("unexpected command (script empty): {}", argv.join(" "));
                st.mismatches.push(msg.clone());
                Ok(CmdOutput::fail(127, &msg))
            }
        }
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        let mut st = self.lock();
        match st.files.get_mut(path) {
            Some(q) if q.len() > 1 => Ok(q.pop_front().unwrap_or_default()),
            Some(q) => q
                .front()
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} not scripted", path.display()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(e, StorageError::Spawn { .. }), "{e}");
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
}
