//! `/etc/maguey/magueyd.toml`: the daemon's settings in a file (docs/install.md lists every
//! key). A flag given on the command line (or its environment variable) wins over the file;
//! the file wins over the built-in defaults. An unknown key or a bad value stops the daemon
//! with the file's name, the line and the key.

use crate::Args;
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use maguey_node::ports::{PortRange, PortRanges};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where the packaged daemon reads its settings.
pub const DEFAULT_PATH: &str = "/etc/maguey/magueyd.toml";

/// Whether each QEMU runs in its own systemd scope under `maguey.slice`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuScopes {
    /// When magueyd itself runs as a systemd service (the packaged node).
    #[default]
    Auto,
    Always,
    Never,
}

/// The keys of magueyd.toml (all optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    /// ip:port the node RPC listens on when joining (later kept in the state directory).
    pub listen: Option<SocketAddr>,
    /// A tracing filter: `info`, `debug`, `maguey_ops=debug,info`, ... (`MAGUEY_LOG` wins).
    pub log_level: Option<String>,
    pub max_running_jobs: Option<usize>,
    pub rapi_port: Option<u16>,
    pub rapi_bind: Option<IpAddr>,
    pub rapi_users: Option<PathBuf>,
    pub rapi_anonymous_reads: Option<bool>,
    pub rapi_cert: Option<PathBuf>,
    pub rapi_key: Option<PathBuf>,
    pub metrics_anonymous: Option<bool>,
    pub watcher_interval: Option<u64>,
    pub watcher_job_age: Option<u64>,
    pub hooks_dir: Option<PathBuf>,
    /// `FIRST-LAST`: ports a migration target's QEMU listens on (default: ephemeral).
    pub migration_ports: Option<String>,
    /// `FIRST-LAST`: ports of the NBD exports of a local-disk live migration.
    pub nbd_ports: Option<String>,
    pub qemu_scopes: Option<QemuScopes>,
    /// A witness of a replicated cluster: no hypervisor or storage (docs/replication.md).
    pub witness: Option<bool>,
}

/// What the file adds to the flags: settings that have no flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub log_level: Option<String>,
    pub ports: PortRanges,
    pub qemu_scopes: QemuScopes,
}

impl FileConfig {
    /// Parses the text of a magueyd.toml (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let cfg: FileConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", origin.display(), e.to_string().trim_end()))?;
        for (key, value) in [
            ("migration_ports", &cfg.migration_ports),
            ("nbd_ports", &cfg.nbd_ports),
        ] {
            if let Some(v) = value {
                v.parse::<PortRange>()
                    .map_err(|e| anyhow::anyhow!("{}: {key}: {e}", origin.display()))?;
            }
        }
        if let Some(l) = &cfg.log_level {
            tracing_subscriber::EnvFilter::try_new(l)
                .map_err(|e| anyhow::anyhow!("{}: log_level '{l}': {e}", origin.display()))?;
        }
        Ok(cfg)
    }

    /// Reads `path`; a missing file is an empty config only when `required` is false.
    pub fn load(path: &Path, required: bool) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn ports(&self) -> PortRanges {
        let range = |v: &Option<String>| v.as_deref().and_then(|s| s.parse().ok());
        PortRanges {
            migration: range(&self.migration_ports),
            nbd: range(&self.nbd_ports),
        }
    }

    /// Fills in `args` from the file where no flag (nor environment variable) gave a value.
    pub fn apply(&self, args: &mut Args, m: &ArgMatches) -> Extra {
        let unset = |id: &str| {
            !matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
            )
        };
        macro_rules! fill {
            ($($key:ident),*) => {$(
                if let Some(v) = &self.$key {
                    if unset(stringify!($key)) {
                        args.$key = v.clone().into();
                    }
                }
            )*};
        }
        fill!(
            state_dir,
            listen,
            max_running_jobs,
            rapi_port,
            rapi_bind,
            rapi_users,
            rapi_anonymous_reads,
            rapi_cert,
            rapi_key,
            metrics_anonymous,
            watcher_interval,
            watcher_job_age,
            hooks_dir,
            witness
        );
        Extra {
            log_level: self.log_level.clone(),
            ports: self.ports(),
            qemu_scopes: self.qemu_scopes.unwrap_or_default(),
        }
    }
}

/// Parses the command line, then the config file (`--config`, `$MAGUEY_CONFIG`, or
/// [`DEFAULT_PATH`] when it exists), flags winning.
pub fn args_with_file<I, T>(argv: I) -> Result<(Args, Extra)>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let m = Args::command().try_get_matches_from(argv)?;
    let mut args = Args::from_arg_matches(&m)?;
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let file = FileConfig::load(&path, required)?;
    let extra = file.apply(&mut args, &m);
    Ok((args, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, flags: &[&str]) -> Result<(Args, Extra)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("magueyd.toml");
        std::fs::write(&path, text)?;
        let mut argv = vec!["magueyd", "--config", path.to_str().unwrap_or_default()];
        argv.extend_from_slice(flags);
        args_with_file(argv)
    }

    #[test]
    fn the_file_fills_in_what_no_flag_gave() {
        let (args, extra) = with_file(
            "state_dir = \"/srv/maguey\"\nrapi_port = 5999\nwatcher_interval = 60\n\
             migration_ports = \"40000-40099\"\nnbd_ports = \"40100-40199\"\n\
             log_level = \"debug\"\nqemu_scopes = \"never\"\nrapi_anonymous_reads = true\n",
            &[],
        )
        .unwrap();
        assert_eq!(args.state_dir, PathBuf::from("/srv/maguey"));
        assert_eq!(args.rapi_port, 5999);
        assert_eq!(args.watcher_interval, 60);
        assert!(args.rapi_anonymous_reads);
        assert_eq!(
            extra.ports.migration,
            Some(PortRange {
                first: 40000,
                last: 40099
            })
        );
        assert_eq!(extra.ports.nbd.map(|r| r.first), Some(40100));
        assert_eq!(extra.log_level.as_deref(), Some("debug"));
        assert_eq!(extra.qemu_scopes, QemuScopes::Never);
    }

    #[test]
    fn flags_win_over_the_file() {
        let (args, _) = with_file(
            "state_dir = \"/srv/maguey\"\nrapi_port = 5999\nmax_running_jobs = 3\n",
            &["--state-dir", "/tmp/x", "--rapi-port", "6000"],
        )
        .unwrap();
        assert_eq!(args.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(args.rapi_port, 6000);
        // Not given as a flag: the file's value.
        assert_eq!(args.max_running_jobs, 3);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_line() {
        let e = with_file("rapi_port = 5080\nlisten_adress = \"10.0.0.1:1811\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("magueyd.toml"), "{e}");
        assert!(e.contains("listen_adress"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, key) in [
            ("migration_ports = \"9-3\"\n", "migration_ports"),
            ("nbd_ports = \"x\"\n", "nbd_ports"),
            ("rapi_port = 70000\n", "rapi_port"),
            ("listen = \"nowhere\"\n", "listen"),
            ("qemu_scopes = \"sometimes\"\n", "qemu_scopes"),
        ] {
            let e = with_file(text, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn a_missing_default_file_is_no_error_but_a_missing_named_one_is() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("nope.toml");
        assert_eq!(
            FileConfig::load(&missing, false).unwrap(),
            FileConfig::default()
        );
        let e = FileConfig::load(&missing, true).unwrap_err();
        assert!(format!("{e:#}").contains("nope.toml"));
    }

    #[test]
    fn the_packaged_default_file_parses() {
        let text = include_str!("../../../packaging/magueyd.toml");
        FileConfig::parse(text, Path::new("packaging/magueyd.toml")).unwrap();
    }
}
