//! Hook scripts (Ganeti's `hooks_runner`): every executable file of
//! `HOOKS_DIR/<hpath>-<pre|post>.d/` whose name is made of letters, digits, `_` and `-`, in
//! name order, with the environment the master built (and `PATH`), no arguments, a time
//! limit, through the node's command runner.

use crate::error::{NodeError, NodeResult};
use crate::exec::Cmd;
use crate::NodeRuntime;
use maguey_rpc::{HookPhase, HookResult, HookStatus};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// How long one hook script may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// At most this much of a script's output is kept.
const MAX_OUTPUT: usize = 16 * 1024;
/// The `PATH` of hook scripts.
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Ganeti's rule for the file names of hooks (others are skipped).
fn valid_script_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_hpath(hpath: &str) -> bool {
    !hpath.is_empty()
        && hpath
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[output truncated]");
    }
    s
}

/// Runs the scripts of one hooks directory; a missing directory runs nothing.
pub async fn run(
    rt: &NodeRuntime,
    hpath: &str,
    phase: HookPhase,
    env: &BTreeMap<String, String>,
) -> NodeResult<Vec<HookResult>> {
    if !valid_hpath(hpath) {
        return Err(NodeError::bad_request(format!(
            "invalid hooks path '{hpath}'"
        )));
    }
    let dir = rt.hooks_dir().join(format!("{hpath}-{}.d", phase.as_str()));
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io(format!("cannot read {}: {e}", dir.display()))),
    };
    names.sort();
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.push(("PATH".into(), HOOK_PATH.into()));
    let ctx = rt.storage_ctx("");
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if !valid_script_name(&name) || !is_executable(&path) {
            out.push(HookResult {
                script: name,
                status: HookStatus::Skip,
                output: String::new(),
            });
            continue;
        }
        let cmd = Cmd::program(&path, &[])
            .clean_env(env.clone())
            .current_dir(Path::new("/"))
            .timeout(HOOK_TIMEOUT);
        let (status, output) = match ctx.runner().run_async(&cmd).await {
            Err(e) => (HookStatus::Fail, format!("cannot run: {}", e.reason())),
            Ok(o) => {
                let mut text = o.stdout.clone();
                text.push_str(&o.stderr);
                let text = text.trim_end().to_string();
                if o.timed_out {
                    (
                        HookStatus::Fail,
                        format!("{text}\n[timed out after {} s]", HOOK_TIMEOUT.as_secs()),
                    )
                } else if o.success() {
                    (HookStatus::Success, text)
                } else {
                    let how = match o.code {
                        Some(c) => format!("exit status {c}"),
                        None => format!("signal {}", o.signal.unwrap_or_default()),
                    };
                    let sep = if text.is_empty() { "" } else { "\n" };
                    (HookStatus::Fail, format!("{text}{sep}[{how}]"))
                }
            }
        };
        out.push(HookResult {
            script: name,
            status,
            output: cap(output),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_script_name("10-dns_update"));
        assert!(!valid_script_name("dns.sh"));
        assert!(!valid_script_name("backup~"));
        assert!(valid_hpath("instance-add"));
        assert!(!valid_hpath("../etc"));
    }
}
