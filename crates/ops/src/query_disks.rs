//! The `disk.status` query field: each disk's live state as `gnt-instance info` shows it. For
//! DRBD disks, every node of the instance is asked (`drbd_status`: /proc/drbd on 8.4,
//! `drbdsetup status` on 9) for its role, the connection, both disk states and the resync
//! percent and time left; other disks have no replication state to show.

use crate::util::node_addr;
use crate::Master;
use futures::future::join_all;
use maguey_model::{ConfigData, Instance};
use maguey_rpc::{DrbdDiskStatus, NodeRequest};
use std::collections::BTreeMap;

/// What one node answered for an instance's DRBD disks (in disk order), or why it did not.
pub type NodeAnswer = Result<Vec<Option<DrbdDiskStatus>>, String>;

/// Per instance name, per node name (primary first): the nodes' answers.
pub(crate) type LiveDisks = BTreeMap<String, Vec<(String, NodeAnswer)>>;

/// Asks the nodes of the DRBD instances among `insts` for their disks' state, all at once.
pub(crate) async fn live_disks(
    master: &Master,
    cfg: &ConfigData,
    insts: &[&Instance],
) -> LiveDisks {
    let mut calls = Vec::new();
    for i in insts
        .iter()
        .filter(|i| i.disk_template.is_internally_mirrored())
    {
        let nodes = std::iter::once(i.primary_node.as_str()).chain(i.secondary_nodes());
        for uuid in nodes {
            let Some(node) = cfg.nodes.get(uuid) else {
                continue;
            };
            calls.push(async move {
                let answer: NodeAnswer = if node.offline {
                    Err("node offline".to_string())
                } else {
                    master
                        .rpc
                        .call::<Vec<Option<DrbdDiskStatus>>>(
                            &node_addr(cfg, node),
                            &NodeRequest::DrbdStatus {
                                disks: crate::drbd::drbd_disks(i),
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())
                };
                (i.name.clone(), node.name.clone(), answer)
            });
        }
    }
    let mut out = LiveDisks::new();
    for (inst, node, answer) in join_all(calls).await {
        out.entry(inst).or_default().push((node, answer));
    }
    out
}

/// `1h02m`, `3m20s`, `45s`.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// One node's view of one DRBD disk, as Ganeti's `gnt-instance info` words it.
pub fn describe(st: &DrbdDiskStatus) -> String {
    let mut s = format!(
        "minor {}, {} {}, disks {}/{}, roles {}/{}",
        st.minor, st.connection, st.replication, st.disk, st.peer_disk, st.role, st.peer_role
    );
    if let Some(p) = st.sync_percent {
        s.push_str(&format!(", {p:.1}% synced"));
        if let Some(eta) = st.sync_eta_secs {
            s.push_str(&format!(", {} left", duration(eta)));
        }
    } else if st.in_sync {
        s.push_str(", in sync");
    }
    if st.degraded {
        s.push_str(", DEGRADED");
    }
    s
}

/// The `disk.status` value of an instance: one line per disk and node.
pub fn disk_status(inst: &Instance, live: Option<&LiveDisks>) -> Vec<String> {
    let answers = live.and_then(|l| l.get(&inst.name));
    let mut out = Vec::new();
    for (k, d) in inst.disks.iter().enumerate() {
        if !inst.disk_template.is_internally_mirrored() {
            out.push(format!("{}: {} (not replicated)", d.iv_name, d.dev_type));
            continue;
        }
        let Some(answers) = answers else {
            out.push(format!("{}: no live state", d.iv_name));
            continue;
        };
        for (node, answer) in answers {
            let what = match answer {
                Ok(v) => match v.get(k) {
                    Some(Some(st)) => describe(st),
                    Some(None) | None => "not active".to_string(),
                },
                Err(e) => format!("unknown ({e})"),
            };
            out.push(format!("{} on {node}: {what}", d.iv_name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resyncing_disk_shows_percent_and_time_left() {
        let st = DrbdDiskStatus {
            minor: 3,
            connection: "Connected".into(),
            replication: "SyncTarget".into(),
            role: "Secondary".into(),
            peer_role: "Primary".into(),
            disk: "Inconsistent".into(),
            peer_disk: "UpToDate".into(),
            sync_percent: Some(42.3),
            in_sync: false,
            degraded: true,
            sync_eta_secs: Some(200),
        };
        assert_eq!(
            describe(&st),
            "minor 3, Connected SyncTarget, disks Inconsistent/UpToDate, roles Secondary/Primary, \
             42.3% synced, 3m20s left, DEGRADED"
        );
        let ok = DrbdDiskStatus {
            replication: "Established".into(),
            disk: "UpToDate".into(),
            sync_percent: None,
            sync_eta_secs: None,
            in_sync: true,
            degraded: false,
            ..st
        };
        assert!(describe(&ok).ends_with("roles Secondary/Primary, in sync"));
        assert_eq!(duration(3720), "1h02m");
    }
}
