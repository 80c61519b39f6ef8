//! [`ScriptedRunner`]: recorded outputs instead of real commands, for tests.

use super::{Cmd, CmdOutput, CommandRunner, ExecError};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    pub fn finish(&self) -> Result<(), ScriptMismatch> {
        let st = self.lock();
        let mut problems = st.mismatches.clone();
        for (argv, _) in &st.expected {
            problems.push(format!("expected but not run: {}", argv.join(" ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ScriptMismatch(problems))
        }
    }
}

impl CommandRunner for ScriptedRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
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

/// Commands a [`ScriptedRunner`] expected and did not see, or saw unexpectedly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ScriptMismatch(pub Vec<String>);
