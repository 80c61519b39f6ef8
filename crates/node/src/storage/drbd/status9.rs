//! Parsing of DRBD 9's `drbdsetup status --json`: a list of resources, each with `role`,
//! `devices` (`minor`, `disk-state`) and `connections` (`connection-state`, `peer-role`,
//! `peer_devices` with `replication-state`, `peer-disk-state`, `out-of-sync`,
//! `percent-in-sync`).

use super::status::{ConnectionState, DiskState, DrbdStatus, ReplicationState, Role};
use crate::storage::runner::StorageError;
use serde_json::Value;
use std::collections::BTreeMap;

const WHAT: &str = "drbdsetup status --json";

fn err(detail: impl Into<String>) -> StorageError {
    StorageError::parse(WHAT, detail)
}

fn str_field<'a>(v: &'a Value, key: &str, ctx: &str) -> Result<&'a str, StorageError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{ctx}: no string \"{key}\"")))
}

fn u64_field(v: &Value, key: &str, ctx: &str) -> Result<u64, StorageError> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| err(format!("{ctx}: no number \"{key}\"")))
}

fn list<'a>(v: &'a Value, key: &str, ctx: &str) -> Result<&'a [Value], StorageError> {
    match v.get(key) {
        Some(Value::Array(a)) => Ok(a),
        None => Ok(&[]),
        Some(_) => Err(err(format!("{ctx}: \"{key}\" is not a list"))),
    }
}

/// Every device of every resource, by minor. Resources here have one peer (Maguey's disks
/// are two-node); with several, the first connection is reported.
pub fn parse(text: &str) -> Result<BTreeMap<u32, DrbdStatus>, StorageError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let resources = doc
        .as_array()
        .ok_or_else(|| err("top level is not a list"))?;
    let mut out = BTreeMap::new();
    for res in resources {
        let name = str_field(res, "name", "resource")?;
        let role = Role::parse(str_field(res, "role", name)?);
        let connections = list(res, "connections", name)?;
        let conn = connections.first();
        for dev in list(res, "devices", name)? {
            let minor = u64_field(dev, "minor", name)?;
            let minor = u32::try_from(minor).map_err(|_| err(format!("{name}: bad minor")))?;
            let volume = u64_field(dev, "volume", name)?;
            let disk = DiskState::parse(str_field(dev, "disk-state", name)?);
            let mut st = DrbdStatus {
                minor,
                role: role.clone(),
                peer_role: Role::Unknown,
                connection: ConnectionState::StandAlone,
                replication: ReplicationState::Off,
                disk,
                peer_disk: DiskState::DUnknown,
                sync_percent: None,
                sync_eta_secs: None,
                out_of_sync_kib: None,
            };
            if let Some(c) = conn {
                st.connection = ConnectionState::parse(str_field(c, "connection-state", name)?);
                st.peer_role = Role::parse(str_field(c, "peer-role", name)?);
                let peer_dev = list(c, "peer_devices", name)?
                    .iter()
                    .find(|p| p.get("volume").and_then(Value::as_u64) == Some(volume));
                if let Some(p) = peer_dev {
                    st.replication =
                        ReplicationState::parse(str_field(p, "replication-state", name)?);
                    st.peer_disk = DiskState::parse(str_field(p, "peer-disk-state", name)?);
                    st.out_of_sync_kib = p.get("out-of-sync").and_then(Value::as_u64);
                    if st.replication.is_resync() {
                        let pct = p
                            .get("percent-in-sync")
                            .and_then(Value::as_f64)
                            .ok_or_else(|| err(format!("{name}: no \"percent-in-sync\"")))?;
                        if !(0.0..=100.0).contains(&pct) {
                            return Err(err(format!("{name}: percent-in-sync {pct}")));
                        }
                        st.sync_percent = Some(pct);
                    }
                }
            }
            out.insert(minor, st);
        }
    }
    Ok(out)
}

/// Names of the resources in the status (orphan checks).
pub fn resource_names(text: &str) -> Result<Vec<String>, StorageError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    doc.as_array()
        .ok_or_else(|| err("top level is not a list"))?
        .iter()
        .map(|r| str_field(r, "name", "resource").map(str::to_string))
        .collect()
}

/// Whether `resource` exists and has a peer connection defined (after `new-peer`).
pub fn peer_defined(text: &str, resource: &str) -> Result<bool, StorageError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let resources = doc
        .as_array()
        .ok_or_else(|| err("top level is not a list"))?;
    for r in resources {
        if str_field(r, "name", "resource")? == resource {
            return Ok(!list(r, "connections", resource)?.is_empty());
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::drbd::status::{split_brain_between, LocalDiskStatus};
    use crate::storage::test_support::data;

    #[test]
    fn connected_two_resources() {
        let text = data("drbd9/status_connected.json");
        let all = parse(&text).expect("parses");
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), vec![0, 5]);
        let s = &all[&0];
        assert_eq!((&s.role, &s.peer_role), (&Role::Primary, &Role::Secondary));
        assert_eq!(s.connection, ConnectionState::Connected);
        assert_eq!(s.replication, ReplicationState::Established);
        assert!(s.is_in_sync());
        assert_eq!(s.sync_percent, None);
        assert_eq!(all[&5].role, Role::Secondary);
        assert_eq!(
            resource_names(&text).expect("parses"),
            vec!["resource0", "resource5"]
        );
        assert!(peer_defined(&text, "resource0").expect("parses"));
        assert!(!peer_defined(&text, "resource9").expect("parses"));
    }

    #[test]
    fn syncing_both_sides() {
        let s = &parse(&data("drbd9/status_syncing.json")).expect("parses")[&0];
        assert_eq!(s.replication, ReplicationState::SyncSource);
        assert_eq!(s.peer_disk, DiskState::Inconsistent);
        assert_eq!(s.sync_percent, Some(23.63));
        assert_eq!(s.out_of_sync_kib, Some(400384));
        assert!(s.is_degraded() && s.is_syncing());
        let t = &parse(&data("drbd9/status_synctarget.json")).expect("parses")[&3];
        assert_eq!(t.replication, ReplicationState::SyncTarget);
        assert_eq!(t.local_disk_status(), LocalDiskStatus::Sync);
        assert_eq!(t.peer_role, Role::Primary);
        assert_eq!(t.sync_percent, Some(23.83));
    }

    #[test]
    fn standalone_connecting_and_unconnected() {
        let s = &parse(&data("drbd9/status_standalone.json")).expect("parses")[&0];
        assert!(s.is_standalone() && s.is_split_brain_hint());
        assert_eq!(s.peer_disk, DiskState::DUnknown);
        assert_eq!(s.sync_percent, None);
        let text = data("drbd9/status_connecting.json");
        let all = parse(&text).expect("parses");
        assert_eq!(all[&0].connection, ConnectionState::Connecting);
        assert!(!all[&0].is_split_brain_hint());
        // No connection at all: StandAlone, diskless.
        assert!(all[&2].is_standalone());
        assert_eq!(all[&2].local_disk_status(), LocalDiskStatus::Faulty);
        assert!(!peer_defined(&text, "resource2").expect("parses"));
        assert!(parse(&data("drbd9/status_empty.json"))
            .expect("parses")
            .is_empty());
    }

    #[test]
    fn split_brain_seen_from_both_ends() {
        let a = &parse(&data("drbd9/status_standalone.json")).expect("parses")[&0];
        let b = &parse(&data("drbd9/status_splitbrain_b.json")).expect("parses")[&3];
        assert!(a.is_primary() && b.is_primary());
        assert!(a.is_split_brain_hint() && b.is_split_brain_hint());
        assert!(split_brain_between(a, b));
        let connecting = &parse(&data("drbd9/status_connecting.json")).expect("parses")[&0];
        assert!(!split_brain_between(a, connecting));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{}",
            "[1]",
            r#"[{"name": "r"}]"#,
            r#"[{"name": "r", "role": "Primary", "devices": [{"minor": -1}]}]"#,
            r#"[{"name": "r", "role": "Primary", "devices": [{"minor": 99999999999, "volume": 0, "disk-state": "UpToDate"}]}]"#,
            r#"[{"name": "r", "role": "Primary", "devices": {}}]"#,
            r#"[{"name": "r", "role": "Primary", "devices": [{"minor": 1, "volume": 0, "disk-state": "UpToDate"}],
                "connections": [{"connection-state": "Connected", "peer-role": "Secondary",
                "peer_devices": [{"volume": 0, "replication-state": "SyncSource", "peer-disk-state": "Inconsistent"}]}]}]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
