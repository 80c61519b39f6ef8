//! The loaded DRBD module's version and the command dialect it needs.

use crate::storage::runner::{read_optional, CommandRunner, StorageError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Where the kernel module reports its state (8.4: everything; 9: only the version line).
pub const PROC_DRBD: &str = "/proc/drbd";
/// The module's version (both 8.4 and 9).
pub const SYS_VERSION: &str = "/sys/module/drbd/version";

/// `8.4.11` (and from `/proc/drbd`, `api:1/proto:86-101`). Cluster verify compares them
/// across a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrbdVersion {
    pub major: u32,
    pub minor: u32,
    pub point: u32,
    /// The `-N` or `rcN` suffix some builds carry, if any.
    pub extra: String,
    pub api: Option<u32>,
    pub proto: Option<(u32, u32)>,
}

impl fmt::Display for DrbdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}{}",
            self.major, self.minor, self.point, self.extra
        )
    }
}

/// How `drbdsetup`/`drbdmeta` are spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dialect {
    /// DRBD 8.4: resources with one minor, connections named by their addresses, status in
    /// `/proc/drbd`.
    V84,
    /// DRBD 9: peers with node ids and paths, per-resource roles, `drbdsetup status --json`.
    V9,
}

impl DrbdVersion {
    /// The dialect for this module; 8.3 and older (and unknown majors) are refused.
    pub fn dialect(&self) -> Result<Dialect, StorageError> {
        match (self.major, self.minor) {
            (8, m) if m >= 4 => Ok(Dialect::V84),
            (9, _) => Ok(Dialect::V9),
            _ => Err(StorageError::Invalid(format!(
                "DRBD {self} is not supported (need 8.4 or 9)"
            ))),
        }
    }
}

/// Parses `8.4.11`, `9.2.12`, `9.1.0-rc.1`, `8.4.11-1`.
pub fn parse_version_number(s: &str) -> Result<DrbdVersion, StorageError> {
    let what = "DRBD version";
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (nums, extra) = s.split_at(end);
    let parts: Vec<&str> = nums.trim_end_matches('.').split('.').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(StorageError::parse(what, format!("'{s}'")));
    }
    let num = |p: &str| {
        p.parse::<u32>()
            .map_err(|_| StorageError::parse(what, format!("'{s}'")))
    };
    Ok(DrbdVersion {
        major: num(parts[0])?,
        minor: num(parts[1])?,
        point: match parts.get(2) {
            Some(p) => num(p)?,
            None => 0,
        },
        extra: extra.to_string(),
        api: None,
        proto: None,
    })
}

/// Parses the first line of `/proc/drbd`: `version: 8.4.11 (api:1/proto:86-101)`.
pub fn parse_proc_version(text: &str) -> Result<DrbdVersion, StorageError> {
    let what = "/proc/drbd version line";
    let line = text.lines().next().unwrap_or("").trim();
    let rest = line
        .strip_prefix("version:")
        .ok_or_else(|| StorageError::parse(what, format!("'{line}'")))?
        .trim();
    let (number, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut v = parse_version_number(number)?;
    // (api:1/proto:86-101) or (api:2/proto:86-122)
    let inner = tail.trim().trim_start_matches('(').trim_end_matches(')');
    for item in inner.split('/') {
        if let Some(api) = item.strip_prefix("api:") {
            v.api = api.parse().ok();
        } else if let Some(proto) = item.strip_prefix("proto:") {
            if let Some((a, b)) = proto.split_once('-') {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    v.proto = Some((a, b));
                }
            }
        }
    }
    Ok(v)
}

/// The loaded module's version: `/proc/drbd`'s first line, else `/sys/module/drbd/version`.
pub fn detect(runner: &dyn CommandRunner) -> Result<DrbdVersion, StorageError> {
    if let Some(text) = read_optional(runner, Path::new(PROC_DRBD))? {
        if !text.trim().is_empty() {
            return parse_proc_version(&text);
        }
    }
    match read_optional(runner, Path::new(SYS_VERSION))? {
        Some(text) => parse_version_number(&text),
        None => Err(StorageError::Invalid(
            "the drbd kernel module is not loaded (no /proc/drbd)".into(),
        )),
    }
}

/// The dialect of the loaded module.
pub fn detect_dialect(runner: &dyn CommandRunner) -> Result<Dialect, StorageError> {
    detect(runner)?.dialect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::runner::ScriptedRunner;
    use crate::storage::test_support::data;

    #[test]
    fn parses_84_and_9_version_lines() {
        let v = parse_proc_version(&data("drbd84/proc_drbd_connected")).expect("parses");
        assert_eq!((v.major, v.minor, v.point), (8, 4, 11));
        assert_eq!(v.api, Some(1));
        assert_eq!(v.proto, Some((86, 101)));
        assert_eq!(v.dialect().expect("supported"), Dialect::V84);
        let v = parse_proc_version(&data("drbd9/proc_drbd")).expect("parses");
        assert_eq!(v.to_string(), "9.2.12");
        assert_eq!(v.proto, Some((86, 122)));
        assert_eq!(v.dialect().expect("supported"), Dialect::V9);
    }

    #[test]
    fn sysfs_fallback_and_refusals() {
        let r = ScriptedRunner::new();
        r.file(SYS_VERSION, "9.1.23\n");
        assert_eq!(detect_dialect(&r).expect("9"), Dialect::V9);
        let r = ScriptedRunner::new();
        let e = detect(&r).expect_err("not loaded");
        assert!(e.to_string().contains("not loaded"), "{e}");
        let v = parse_version_number("8.3.16").expect("parses");
        assert!(v.dialect().is_err());
        assert!(parse_version_number("10.0.0")
            .expect("parses")
            .dialect()
            .is_err());
        assert_eq!(
            parse_version_number("8.4.11-1").expect("parses").extra,
            "-1"
        );
        for bad in ["", "x", "8", "8.x.1", "1.2.3.4", "99999999999.1"] {
            assert!(parse_version_number(bad).is_err(), "{bad}");
        }
        assert!(parse_proc_version("drbd: hello").is_err());
    }
}
