//! Parsing of DRBD 8.4's `/proc/drbd`:
//!
//! ```text
//! version: 8.4.11 (api:1/proto:86-101)
//! srcversion: 211FB288A383ED945B83420
//!  0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
//!     ns:123904 nr:0 dw:0 dr:124840 al:8 bm:0 lo:0 pe:2 ua:0 ap:0 ep:1 wo:f oos:400384
//!         [===>................] sync'ed: 23.7% (400384/524288)K
//!         finish: 0:00:12 speed: 32,256 (30,976) K/sec
//!  1: cs:Unconfigured
//! ```

use super::status::{ConnectionState, DiskState, DrbdStatus, ReplicationState, Role};
use crate::storage::runner::StorageError;
use std::collections::BTreeMap;

const WHAT: &str = "/proc/drbd";

/// The configured devices by minor (`cs:Unconfigured` minors are left out).
pub fn parse(text: &str) -> Result<BTreeMap<u32, DrbdStatus>, StorageError> {
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.trim_start().starts_with("version:") => {}
        other => {
            return Err(StorageError::parse(
                WHAT,
                format!(
                    "first line is not a version line: {:?}",
                    other.unwrap_or("")
                ),
            ))
        }
    }
    let mut out = BTreeMap::new();
    let mut current: Option<DrbdStatus> = None;
    for line in lines {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some((minor, rest)) = device_line(t) {
            if let Some(done) = current.take() {
                out.insert(done.minor, done);
            }
            current = parse_device(minor, rest)?;
            continue;
        }
        let Some(dev) = current.as_mut() else {
            // srcversion:, GIT-hash:, build lines before the first device.
            continue;
        };
        if t.starts_with("ns:") {
            dev.out_of_sync_kib = t
                .split_whitespace()
                .find_map(|w| w.strip_prefix("oos:"))
                .and_then(|v| v.parse().ok());
        } else if t.starts_with('[') {
            dev.sync_percent = Some(sync_percent(t)?);
        } else if let Some(rest) = t.strip_prefix("finish:") {
            dev.sync_eta_secs = rest.split_whitespace().next().and_then(parse_hms);
        }
        // resync:/act_log: statistics (proc_details) and anything newer are ignored.
    }
    if let Some(done) = current.take() {
        out.insert(done.minor, done);
    }
    Ok(out)
}

/// ` 0: cs:...` → (0, "cs:...").
fn device_line(t: &str) -> Option<(u32, &str)> {
    let (num, rest) = t.split_once(':')?;
    let minor = num.trim().parse().ok()?;
    Some((minor, rest.trim()))
}

fn pair<'a>(minor: u32, field: &str, v: &'a str) -> Result<(&'a str, &'a str), StorageError> {
    v.split_once('/')
        .ok_or_else(|| StorageError::parse(WHAT, format!("minor {minor}: bad {field} '{v}'")))
}

fn parse_device(minor: u32, rest: &str) -> Result<Option<DrbdStatus>, StorageError> {
    let mut cs = None;
    let mut ro = None;
    let mut ds = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("cs:") {
            cs = Some(v);
        } else if let Some(v) = word
            .strip_prefix("ro:")
            .or_else(|| word.strip_prefix("st:"))
        {
            ro = Some(pair(minor, "ro", v)?);
        } else if let Some(v) = word
            .strip_prefix("ds:")
            .or_else(|| word.strip_prefix("ld:"))
        {
            ds = Some(pair(minor, "ds", v)?);
        }
    }
    let cs = cs.ok_or_else(|| StorageError::parse(WHAT, format!("minor {minor}: no cs:")))?;
    if cs == "Unconfigured" {
        return Ok(None);
    }
    let (role, peer_role) =
        ro.ok_or_else(|| StorageError::parse(WHAT, format!("minor {minor}: no ro:")))?;
    let (disk, peer_disk) =
        ds.ok_or_else(|| StorageError::parse(WHAT, format!("minor {minor}: no ds:")))?;
    let connection = match ConnectionState::parse(cs) {
        // Every replication state of 8.4's cs: means a live connection.
        ConnectionState::Other(_) => ConnectionState::Connected,
        c => c,
    };
    let replication = if connection == ConnectionState::Connected {
        ReplicationState::parse(cs)
    } else {
        ReplicationState::Off
    };
    Ok(Some(DrbdStatus {
        minor,
        role: Role::parse(role),
        peer_role: Role::parse(peer_role),
        connection,
        replication,
        disk: DiskState::parse(disk),
        peer_disk: DiskState::parse(peer_disk),
        sync_percent: None,
        sync_eta_secs: None,
        out_of_sync_kib: None,
    }))
}

/// `[===>....] sync'ed: 23.7% (400384/524288)K` → 23.7 (also `verified:`).
fn sync_percent(t: &str) -> Result<f64, StorageError> {
    let after = t
        .split_once("sync'ed:")
        .or_else(|| t.split_once("verified:"))
        .map(|(_, a)| a.trim_start())
        .ok_or_else(|| StorageError::parse(WHAT, format!("bad progress line '{t}'")))?;
    let num = after
        .split('%')
        .next()
        .filter(|_| after.contains('%'))
        .ok_or_else(|| StorageError::parse(WHAT, format!("bad progress line '{t}'")))?;
    match num.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(StorageError::parse(
            WHAT,
            format!("bad sync percentage in '{t}'"),
        )),
    }
}

/// `0:00:12` → 12.
fn parse_hms(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let sec: u64 = parts[2].parse().ok()?;
    h.checked_mul(3600)?.checked_add(m * 60)?.checked_add(sec)
}

/// Minors shown as `cs:Unconfigured`: they exist (a resource and minor were created) but are
/// unattached, StandAlone and Secondary. `drbdsetup down` still has something to remove.
pub fn unconfigured_minors(text: &str) -> Vec<u32> {
    text.lines()
        .skip(1)
        .filter_map(|l| device_line(l.trim()))
        .filter(|(_, rest)| rest.split_whitespace().next() == Some("cs:Unconfigured"))
        .map(|(minor, _)| minor)
        .collect()
}

/// The minors configured on this node (Ganeti's `drbd_list_minors`/`list-drbd`).
pub fn minors(text: &str) -> Result<Vec<u32>, StorageError> {
    Ok(parse(text)?.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::drbd::status::LocalDiskStatus;
    use crate::storage::test_support::data;

    #[test]
    fn connected() {
        let all = parse(&data("drbd84/proc_drbd_connected")).expect("parses");
        let s = &all[&0];
        assert_eq!(s.role, Role::Primary);
        assert_eq!(s.peer_role, Role::Secondary);
        assert_eq!(s.connection, ConnectionState::Connected);
        assert_eq!(s.replication, ReplicationState::Established);
        assert_eq!(
            (&s.disk, &s.peer_disk),
            (&DiskState::UpToDate, &DiskState::UpToDate)
        );
        assert!(s.is_in_sync() && !s.is_degraded());
        assert_eq!(s.sync_percent, None);
        assert_eq!(s.out_of_sync_kib, Some(0));
    }

    #[test]
    fn syncing_source_target_and_paused() {
        let all = parse(&data("drbd84/proc_drbd_syncing")).expect("parses");
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), vec![0, 3, 4]);
        let src = &all[&0];
        assert_eq!(src.replication, ReplicationState::SyncSource);
        assert_eq!(src.sync_percent, Some(23.7));
        assert_eq!(src.sync_eta_secs, Some(12));
        assert_eq!(src.out_of_sync_kib, Some(400384));
        assert!(src.is_degraded() && src.is_syncing() && src.is_connected());
        let tgt = &all[&3];
        assert_eq!(tgt.replication, ReplicationState::SyncTarget);
        assert_eq!(tgt.disk, DiskState::Inconsistent);
        assert_eq!(tgt.local_disk_status(), LocalDiskStatus::Sync);
        assert_eq!(tgt.sync_percent, Some(23.9));
        let paused = &all[&4];
        assert_eq!(paused.replication, ReplicationState::PausedSyncSource);
        assert_eq!(paused.sync_percent, Some(0.1));
        assert_eq!(paused.sync_eta_secs, Some(2 * 3600 + 19 * 60 + 43));
    }

    #[test]
    fn standalone_is_a_split_brain_hint() {
        let all = parse(&data("drbd84/proc_drbd_standalone")).expect("parses");
        let s = &all[&0];
        assert!(s.is_standalone());
        assert_eq!(s.replication, ReplicationState::Off);
        assert_eq!(s.peer_role, Role::Unknown);
        assert_eq!(s.peer_disk, DiskState::DUnknown);
        assert!(s.is_split_brain_hint());
    }

    #[test]
    fn mixed_minors_with_unconfigured_and_gaps() {
        let text = data("drbd84/proc_drbd_mixed");
        let all = parse(&text).expect("parses");
        assert_eq!(minors(&text).expect("parses"), vec![0, 2, 7]);
        assert_eq!(unconfigured_minors(&text), vec![1]);
        assert!(unconfigured_minors(&data("drbd84/proc_drbd_syncing")).is_empty());
        assert_eq!(all[&0].connection, ConnectionState::Connecting);
        assert!(!all[&0].is_split_brain_hint());
        assert_eq!(all[&2].disk, DiskState::Diskless);
        assert_eq!(all[&2].local_disk_status(), LocalDiskStatus::Faulty);
        assert_eq!(all[&7].disk, DiskState::Outdated);
        assert!(!all[&7].is_split_brain_hint());
        assert!(parse(&data("drbd84/proc_drbd_empty"))
            .expect("parses")
            .is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "hello",
            "version: 8.4.11\n 0: ro:Primary/Secondary",
            "version: 8.4.11\n 0: cs:Connected ro:Primary ds:UpToDate/UpToDate",
            "version: 8.4.11\n 0: cs:Connected ro:Primary/Secondary",
            "version: 8.4.11\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent\n [==> sync'ed: lots%",
            "version: 8.4.11\n 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent\n [==> sync'ed: 250.0% (1/2)K",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
