//! Ganeti OS definitions (`ganeti-os-interface(7)`, API versions 10, 15 and 20).
//!
//! An OS definition is a directory `<search dir>/<name>/` with the executables `create`,
//! `import`, `export`, `rename` (and `verify` from API 15), a `ganeti_api_version` file (one
//! version per line) and optionally `variants.list` and `parameters.list`. The first directory
//! of the search path holding a name wins.
//!
//! Built-in providers need no directory: `image` ([`crate::image`]) writes a disk image onto
//! disk 0 ([`builtin_providers`], [`diagnose_with_builtins`]).

use crate::error::{NodeError, NodeResult};
use crate::exec::Cmd;
use crate::storage::{self, StorageContext};
use maguey_rpc::{OsInfo, OsInstall};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// API versions this node understands, newest first.
pub const SUPPORTED_API_VERSIONS: &[u32] = &[20, 15, 10];
/// Default time an OS `create` script may take.
pub const DEFAULT_OS_TIMEOUT: Duration = Duration::from_secs(3600);
/// The `PATH` given to OS scripts (their environment is otherwise clean).
pub const OS_SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const OUTPUT_LIMIT: u64 = 1024 * 1024;
const ERROR_TAIL_LINES: usize = 30;

/// A valid OS definition found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct OsDefinition {
    pub name: String,
    pub path: PathBuf,
    /// Supported API versions of the definition, as listed (newest first).
    pub api_versions: Vec<u32>,
    pub variants: Vec<String>,
    /// `(name, description)` from `parameters.list`.
    pub parameters: Vec<(String, String)>,
}

impl OsDefinition {
    /// The newest API version both sides support.
    pub fn api_version(&self) -> u32 {
        self.api_versions
            .iter()
            .copied()
            .filter(|v| SUPPORTED_API_VERSIONS.contains(v))
            .max()
            .unwrap_or(10)
    }
}

/// Splits `name+variant`.
pub fn split_os_name(os: &str) -> (&str, Option<&str>) {
    match os.split_once('+') {
        Some((name, variant)) => (name, Some(variant)),
        None => (os, None),
    }
}

/// OS names are single path components made of letters, digits, `.`, `_` and `-`.
pub fn validate_os_name(name: &str) -> NodeResult<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NodeError::bad_request(format!("invalid OS name '{name}'")))
    }
}

fn read_list(path: &Path) -> NodeResult<Option<Vec<String>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeError::io(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn check_script(dir: &Path, script: &str) -> NodeResult<()> {
    let path = dir.join(script);
    let meta = std::fs::metadata(&path)
        .map_err(|_| NodeError::not_found(format!("script '{script}' is missing")))?;
    if !meta.is_file() {
        return Err(NodeError::bad_request(format!(
            "script '{script}' is not a regular file"
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(NodeError::not_found(format!(
            "script '{script}' is not executable"
        )));
    }
    Ok(())
}

/// Loads and validates the OS definition in `dir` (named `name`).
pub fn load_os(name: &str, dir: &Path) -> NodeResult<OsDefinition> {
    let api_file = dir.join("ganeti_api_version");
    let api_lines = read_list(&api_file)?
        .ok_or_else(|| NodeError::not_found("'ganeti_api_version' file is missing"))?;
    let mut api_versions = Vec::new();
    for line in &api_lines {
        let v: u32 = line.parse().map_err(|_| {
            NodeError::bad_request(format!(
                "invalid API version '{line}' in ganeti_api_version"
            ))
        })?;
        api_versions.push(v);
    }
    if !api_versions
        .iter()
        .any(|v| SUPPORTED_API_VERSIONS.contains(v))
    {
        return Err(NodeError::unsupported(format!(
            "API version mismatch: the OS supports {api_versions:?}, this node {SUPPORTED_API_VERSIONS:?}"
        )));
    }
    let mut def = OsDefinition {
        name: name.to_string(),
        path: dir.to_path_buf(),
        api_versions,
        variants: Vec::new(),
        parameters: Vec::new(),
    };
    let mut scripts = vec!["create", "export", "import", "rename"];
    if def.api_version() >= 15 {
        scripts.push("verify");
    }
    for s in scripts {
        check_script(dir, s)?;
    }
    if def.api_version() >= 15 {
        def.variants = read_list(&dir.join("variants.list"))?.unwrap_or_default();
    }
    if def.api_version() >= 20 {
        def.parameters = read_list(&dir.join("parameters.list"))?
            .unwrap_or_default()
            .into_iter()
            .map(|l| match l.split_once(char::is_whitespace) {
                Some((n, d)) => (n.to_string(), d.trim().to_string()),
                None => (l, String::new()),
            })
            .collect();
    }
    Ok(def)
}

/// Every OS directory across the search path (first one wins per name), sorted by name.
pub fn diagnose(search_path: &[PathBuf]) -> Vec<OsInfo> {
    let mut found: BTreeMap<String, OsInfo> = BTreeMap::new();
    for base in search_path {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if found.contains_key(&name) || validate_os_name(&name).is_err() {
                continue;
            }
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let info = match load_os(&name, &path) {
                Ok(def) => OsInfo {
                    name: name.clone(),
                    path: path.display().to_string(),
                    valid: true,
                    status: String::new(),
                    variants: def.variants,
                    parameters: def.parameters,
                    api_versions: def.api_versions,
                },
                Err(why) => OsInfo {
                    name: name.clone(),
                    path: path.display().to_string(),
                    valid: false,
                    status: why.to_string(),
                    variants: Vec::new(),
                    parameters: Vec::new(),
                    api_versions: Vec::new(),
                },
            };
            found.insert(name, info);
        }
    }
    found.into_values().collect()
}

/// The OS providers built into the node ([`crate::image`]'s `image`): valid everywhere, no
/// directory needed.
pub fn builtin_providers() -> Vec<OsInfo> {
    vec![crate::image::os_info()]
}

/// Whether `name` (without variant) is a built-in provider; it takes precedence over an OS
/// definition directory of the same name.
pub fn is_builtin(name: &str) -> bool {
    name == crate::image::IMAGE_OS
}

/// [`diagnose`] plus the built-in providers (replacing directories of the same name), sorted
/// by name: what `os_diagnose` should answer.
pub fn diagnose_with_builtins(search_path: &[PathBuf]) -> Vec<OsInfo> {
    let mut all: BTreeMap<String, OsInfo> = diagnose(search_path)
        .into_iter()
        .map(|o| (o.name.clone(), o))
        .collect();
    for b in builtin_providers() {
        all.insert(b.name.clone(), b);
    }
    all.into_values().collect()
}

/// Finds and validates OS `name` (without variant) on the search path.
pub fn find_os(search_path: &[PathBuf], name: &str, node_name: &str) -> NodeResult<OsDefinition> {
    validate_os_name(name)?;
    for base in search_path {
        let dir = base.join(name);
        if dir.is_dir() {
            return load_os(name, &dir).map_err(|why| {
                NodeError::bad_request(format!("OS '{name}' on node {node_name} is invalid: {why}"))
            });
        }
    }
    let searched: Vec<String> = search_path
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Err(NodeError::not_found(format!(
        "OS '{name}' not found on node {node_name} (searched: {})",
        searched.join(", ")
    )))
}

fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn env_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The environment of an OS script for `install` (Ganeti's OS API environment).
pub fn os_environment(
    def: &OsDefinition,
    install: &OsInstall,
    ctx: &StorageContext,
) -> NodeResult<BTreeMap<String, String>> {
    let (_, variant) = split_os_name(&install.os);
    let api = def.api_version();
    let mut env = BTreeMap::new();
    let mut set = |k: String, v: String| {
        env.insert(k, v);
    };
    set("PATH".into(), OS_SCRIPT_PATH.into());
    set("OS_API_VERSION".into(), api.to_string());
    set("INSTANCE_NAME".into(), install.instance_name.clone());
    set("INSTANCE_OS".into(), install.os.clone());
    set("OS_NAME".into(), def.name.clone());
    if api >= 15 {
        let variant = match variant {
            Some(v) if !def.variants.is_empty() && !def.variants.iter().any(|x| x == v) => {
                return Err(NodeError::bad_request(format!(
                    "OS '{}' has no variant '{v}' (variants: {})",
                    def.name,
                    def.variants.join(", ")
                )))
            }
            Some(v) => v.to_string(),
            None => def.variants.first().cloned().unwrap_or_default(),
        };
        set("OS_VARIANT".into(), variant);
    }
    set("HYPERVISOR".into(), install.hypervisor.clone());
    set("DEBUG_LEVEL".into(), install.debug_level.to_string());
    set("DISK_COUNT".into(), install.disks.len().to_string());
    for (i, disk) in install.disks.iter().enumerate() {
        let path = storage::for_disk(disk)?.device_path(ctx, disk)?;
        set(format!("DISK_{i}_PATH"), path.display().to_string());
        set(format!("DISK_{i}_ACCESS"), disk.mode.to_string());
        set(format!("DISK_{i}_UUID"), disk.uuid.clone());
        set(format!("DISK_{i}_SIZE"), disk.size.to_string());
        if let Some(name) = &disk.name {
            set(format!("DISK_{i}_NAME"), name.clone());
        }
        let backend = if disk.dev_type.is_block_device() {
            "block"
        } else {
            "file:loop"
        };
        set(format!("DISK_{i}_BACKEND_TYPE"), backend.into());
    }
    set("NIC_COUNT".into(), install.nics.len().to_string());
    for (i, nic) in install.nics.iter().enumerate() {
        set(format!("NIC_{i}_MAC"), nic.mac.clone());
        if let Some(ip) = &nic.ip {
            set(format!("NIC_{i}_IP"), ip.clone());
        }
        set(format!("NIC_{i}_MODE"), nic.mode.to_string());
        set(format!("NIC_{i}_LINK"), nic.link.clone());
        if nic.mode == maguey_model::NicMode::Bridged {
            set(format!("NIC_{i}_BRIDGE"), nic.link.clone());
        }
        if let Some(n) = &nic.network {
            let mut net = |k: &str, v: String| set(format!("NIC_{i}_NETWORK_{k}"), v);
            net("NAME", n.name.clone());
            net("UUID", n.uuid.clone());
            net("FAMILY", "4".into());
            net("SUBNET", n.subnet.clone());
            for (k, v) in [
                ("GATEWAY", &n.gateway),
                ("SUBNET6", &n.subnet6),
                ("GATEWAY6", &n.gateway6),
                ("MAC_PREFIX", &n.mac_prefix),
            ] {
                if let Some(v) = v {
                    net(k, v.clone());
                }
            }
            if !n.tags.is_empty() {
                net("TAGS", n.tags.join(" "));
            }
        }
    }
    for (k, v) in &install.osparams {
        set(format!("OSP_{}", env_name(k)), env_value(v));
    }
    Ok(env)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Reads at most the last [`OUTPUT_LIMIT`] bytes of a log file.
fn read_log(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > OUTPUT_LIMIT {
        let _ = f.seek(SeekFrom::Start(len - OUTPUT_LIMIT));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs the OS `create` script for `install` (with `INSTANCE_REINSTALL=1` when `reinstall`)
/// and returns its combined stdout/stderr, also kept in `log_dir`.
pub async fn run_create(
    def: &OsDefinition,
    install: &OsInstall,
    reinstall: bool,
    ctx: &StorageContext,
    log_dir: &Path,
    timeout: Duration,
) -> NodeResult<String> {
    let mut extra = Vec::new();
    if reinstall {
        extra.push(("INSTANCE_REINSTALL".to_string(), "1".to_string()));
    }
    run_script(def, "create", install, &extra, ctx, log_dir, timeout).await
}

/// Runs the definition's `rename` script for an instance renamed from `old_name` to
/// `install.instance_name` (Ganeti's OS API: `OLD_INSTANCE_NAME` in the environment).
pub async fn run_rename(
    def: &OsDefinition,
    install: &OsInstall,
    old_name: &str,
    ctx: &StorageContext,
    log_dir: &Path,
    timeout: Duration,
) -> NodeResult<String> {
    maguey_model::names::validate_hostname(old_name)
        .map_err(|e| NodeError::bad_request(format!("invalid old instance name: {e}")))?;
    let extra = [("OLD_INSTANCE_NAME".to_string(), old_name.to_string())];
    run_script(def, "rename", install, &extra, ctx, log_dir, timeout).await
}

/// Runs the definition's `verify parameters` (OS API 15 and later): the OS checks its
/// `OSP_*` parameters before anything is created. Older definitions have nothing to run.
pub async fn run_verify(
    def: &OsDefinition,
    install: &OsInstall,
    ctx: &StorageContext,
    log_dir: &Path,
    timeout: Duration,
) -> NodeResult<String> {
    if def.api_version() < 15 || !def.path.join("verify").exists() {
        return Ok(String::new());
    }
    run_script(def, "verify", install, &[], ctx, log_dir, timeout).await
}

/// Runs one script of an OS definition with the OS API environment (plus `extra`), its
/// output logged under `log_dir`; a failure or a timeout gives the output's tail.
async fn run_script(
    def: &OsDefinition,
    which: &str,
    install: &OsInstall,
    extra: &[(String, String)],
    ctx: &StorageContext,
    log_dir: &Path,
    timeout: Duration,
) -> NodeResult<String> {
    maguey_model::names::validate_hostname(&install.instance_name)
        .map_err(|e| NodeError::bad_request(format!("invalid instance name: {e}")))?;
    let mut env = os_environment(def, install, ctx)?;
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    std::fs::create_dir_all(log_dir)
        .map_err(|e| NodeError::io(format!("cannot create {}: {e}", log_dir.display())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let kind = if which == "create" { "add" } else { which };
    let log_path = log_dir.join(format!(
        "{kind}-{}-{}-{stamp}.log",
        def.name, install.instance_name
    ));
    // Created here so that a log directory problem reads as before; the runner truncates it.
    std::fs::File::create(&log_path)
        .map_err(|e| NodeError::io(format!("cannot create {}: {e}", log_path.display())))?;
    let script = def.path.join(which);
    let args: Vec<String> = if which == "verify" {
        vec!["parameters".to_string()]
    } else {
        Vec::new()
    };
    let cmd = Cmd::program(&script, &args)
        .clean_env(&env)
        .current_dir(&def.path)
        .log_to(&log_path)
        .timeout(timeout);
    let status =
        ctx.runner().run_async(&cmd).await.map_err(|e| {
            NodeError::io(format!("cannot run {}: {}", script.display(), e.reason()))
        })?;
    if status.timed_out {
        let out = read_log(&log_path);
        return Err(NodeError::timeout(format!(
            "OS {which} script of '{}' for instance {} timed out after {}s; output:\n{}",
            def.name,
            install.instance_name,
            timeout.as_secs(),
            tail(&out, ERROR_TAIL_LINES)
        )));
    }
    let out = read_log(&log_path);
    if status.success() {
        Ok(out)
    } else {
        let how = match status.code {
            Some(code) => format!("exit status {code}"),
            None => format!("signal {}", status.signal.unwrap_or(0)),
        };
        Err(NodeError::command_failed(format!(
            "OS {which} script of '{}' for instance {} failed ({how}); output:\n{}",
            def.name,
            install.instance_name,
            tail(&out, ERROR_TAIL_LINES)
        )))
    }
}

/// Writes the `noop` OS definition (like Debian's ganeti-os-noop: every script exits 0) into
/// the search directory `dir`, i.e. `dir/noop/`. Returns the definition's directory.
pub fn write_noop_os(dir: &Path) -> std::io::Result<PathBuf> {
    let os_dir = dir.join("noop");
    std::fs::create_dir_all(&os_dir)?;
    for script in ["create", "import", "export", "rename", "verify"] {
        let path = os_dir.join(script);
        std::fs::write(
            &path,
            format!("#!/bin/sh\n# noop OS definition ({script}): does nothing.\nexit 0\n"),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(os_dir.join("ganeti_api_version"), "20\n15\n10\n")?;
    std::fs::write(os_dir.join("variants.list"), "")?;
    std::fs::write(os_dir.join("parameters.list"), "")?;
    Ok(os_dir)
}
