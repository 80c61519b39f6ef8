//! OP_CLUSTER_VERIFY: compares the configuration with what every node reports.
//!
//! Error codes follow Ganeti's (ENODERPC, ENODEVERSION, EINSTANCEDOWN, EINSTANCEMISSINGDISK,
//! ENODEORPHANINSTANCE, ...). Every finding is written to the job log; the result is
//! `{"ok": bool, "errors": [...], "warnings": [...]}`.

use crate::util::node_addr;
use crate::{Env, LockRequest, LogicalUnit};
use futures::future::join_all;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, LogicalId, Node, PROTOCOL_VERSION};
use maguey_rpc::{DrbdDiskStatus, DrbdNodeCheck, InstanceRunInfo, NodeRequest, VersionInfo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub struct ClusterVerify {
    skip: Vec<String>,
}

#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, env: &Env<'_>, code: &str, msg: String) {
        let line = format!("{code}: {msg}");
        env.log(format!("ERROR: {line}"));
        self.errors.push(line);
    }
    fn warn(&mut self, env: &Env<'_>, code: &str, msg: String) {
        let line = format!("{code}: {msg}");
        env.log(format!("WARNING: {line}"));
        self.warnings.push(line);
    }
}

/// What one node reported.
struct NodeReport {
    running: BTreeMap<String, InstanceRunInfo>,
    files: BTreeSet<String>,
    /// `vg/lv` of every LV, when the node holds `plain`/`drbd` disks or the cluster enables
    /// them (`None`: not asked or LVM unavailable).
    lvs: Option<BTreeSet<String>>,
    /// The loaded DRBD module's version, when asked.
    drbd_version: Option<String>,
}

/// `vg/lv` of every LV a disk (or its children) expects on `node_uuid`.
fn expected_lvs(disk: &maguey_model::Disk, node_uuid: &str, out: &mut Vec<String>) {
    match &disk.logical_id {
        LogicalId::Plain { vg, lv } if disk.nodes.iter().any(|n| n == node_uuid) => {
            out.push(format!("{vg}/{lv}"))
        }
        LogicalId::Drbd { node_a, node_b, .. } if node_a == node_uuid || node_b == node_uuid => {
            for c in &disk.children {
                if let LogicalId::Plain { vg, lv } = &c.logical_id {
                    out.push(format!("{vg}/{lv}"));
                }
            }
        }
        _ => {}
    }
}

/// Does a `reserved_lvs` entry cover `vg/lv`? Entries are exact names or prefixes ending
/// in `.*` (the common shapes of Ganeti's regular expressions).
fn reserved(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix(".*") {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// A StandAlone DRBD end: not connected and not trying to; after the nodes were apart and
/// both changed data this is a split brain, which only the admin can resolve.
fn drbd_standalone_message(inst: &str, iv_name: &str, node: &Node, s: &DrbdDiskStatus) -> String {
    format!(
        "instance {inst}: DRBD {iv_name} is StandAlone on node {} ({}/{} {}/{}): not \
         connected to its peer, a split brain if both sides changed data while apart; \
         'maguey instance activate-disks {inst}' reconnects it, 'maguey instance \
         activate-disks --resolve-split-brain {inst}' keeps the primary node's data and \
         discards the other side's changes",
        node.name, s.role, s.peer_role, s.disk, s.peer_disk
    )
}

async fn probe(
    env: &Env<'_>,
    cfg: &ConfigData,
    node: &Node,
    rep: &mut Report,
) -> Option<NodeReport> {
    let addr = node_addr(cfg, node);
    let rpc = &env.master.rpc;
    let version = match rpc.call::<VersionInfo>(&addr, &NodeRequest::Version).await {
        Ok(v) => v,
        Err(e) => {
            rep.error(
                env,
                "ENODERPC",
                format!("node {}: cannot reach the node daemon: {e}", node.name),
            );
            return None;
        }
    };
    if !maguey_rpc::version::compatible(version.protocol) {
        rep.error(
            env,
            "ENODEVERSION",
            format!(
                "node {}: protocol {} is too far from the master's {}",
                node.name, version.protocol, PROTOCOL_VERSION
            ),
        );
    } else if version.protocol != PROTOCOL_VERSION {
        rep.warn(
            env,
            "ENODEVERSION",
            format!(
                "node {}: protocol {}, the master's {} (upgrade in progress?)",
                node.name, version.protocol, PROTOCOL_VERSION
            ),
        );
    }
    if version.node_name != node.name {
        rep.error(
            env,
            "ENODESETUP",
            format!(
                "node {}: its daemon calls itself '{}'",
                node.name, version.node_name
            ),
        );
    }
    let mut running = BTreeMap::new();
    for hv in &cfg.cluster.enabled_hypervisors {
        match rpc
            .call::<BTreeMap<String, InstanceRunInfo>>(
                &addr,
                &NodeRequest::AllInstancesInfo {
                    hypervisor: hv.to_string(),
                },
            )
            .await
        {
            Ok(m) => running.extend(m),
            Err(e) => rep.error(
                env,
                "ENODEHV",
                format!("node {}: hypervisor {hv}: {e}", node.name),
            ),
        }
    }
    let files = match rpc
        .call::<Vec<String>>(
            &addr,
            &NodeRequest::FileStorageList {
                file_storage_dir: cfg.cluster.file_storage_dir.clone(),
            },
        )
        .await
    {
        Ok(f) => f.into_iter().collect(),
        Err(e) => {
            rep.error(
                env,
                "ENODEFILESTORAGEPATH",
                format!("node {}: cannot list file storage: {e}", node.name),
            );
            BTreeSet::new()
        }
    };
    let holds_lvs = cfg
        .instances_on_node(&node.uuid)
        .any(|i| i.disk_template.uses_lvm());
    let lvm_enabled = cfg
        .cluster
        .enabled_disk_templates
        .iter()
        .any(|t| t.uses_lvm());
    let lvs = if holds_lvs || lvm_enabled {
        match rpc
            .call::<Vec<String>>(&addr, &NodeRequest::NodeVolumes)
            .await
        {
            Ok(l) => Some(l.into_iter().collect()),
            Err(e) if holds_lvs => {
                rep.error(
                    env,
                    "ENODELVM",
                    format!("node {}: cannot list logical volumes: {e}", node.name),
                );
                None
            }
            Err(e) => {
                rep.warn(env, "ENODELVM", format!("node {}: no LVM ({e})", node.name));
                None
            }
        }
    } else {
        None
    };
    let drbd_enabled = cfg
        .cluster
        .enabled_disk_templates
        .iter()
        .any(|t| t.is_internally_mirrored());
    let holds_drbd = cfg
        .instances_on_node(&node.uuid)
        .any(|i| i.disk_template.is_internally_mirrored());
    let mut drbd_version = None;
    if holds_drbd || (drbd_enabled && lvs.is_some()) {
        match rpc
            .call::<DrbdNodeCheck>(
                &addr,
                &NodeRequest::DrbdNodeCheck {
                    usermode_helper: String::new(),
                },
            )
            .await
        {
            Ok(c) => {
                if let Some(e) = c.helper_error {
                    rep.error(env, "ENODEDRBDHELPER", format!("node {}: {e}", node.name));
                }
                if c.version.is_none() && holds_drbd {
                    rep.error(
                        env,
                        "ENODEDRBD",
                        format!("node {}: the drbd module is not loaded", node.name),
                    );
                }
                drbd_version = c.version;
            }
            Err(e) => rep.error(
                env,
                "ENODEDRBD",
                format!("node {}: cannot check DRBD: {e}", node.name),
            ),
        }
    }
    Some(NodeReport {
        running,
        files,
        lvs,
        drbd_version,
    })
}

impl LogicalUnit for ClusterVerify {
    type Op = maguey_model::OpClusterVerify;
    type Checked = ();

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpClusterVerify { skip_checks } = op;
        Ok(ClusterVerify {
            skip: skip_checks.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::whole_cluster_read()
    }

    fn check_prereq(&mut self, _cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let mut rep = Report::default();
        env.log(format!(
            "verifying {} nodes and {} instances",
            cfg.nodes.len(),
            cfg.instances.len()
        ));

        // Rooms: a DRBD pair inside one room dies with the room.
        for w in crate::rooms::same_room_pairs(&cfg, None) {
            rep.warn(env, "EINSTANCESAMEROOM", w);
        }
        for w in crate::rooms::control_plane_warnings(&cfg) {
            rep.warn(env, "ECLUSTERROOMS", w);
        }

        // Config-level consistency.
        if cfg.master_node().is_none() {
            rep.error(
                env,
                "ECLUSTERCFG",
                "the master node is not in the configuration".into(),
            );
        }
        for inst in cfg.instances.values() {
            if let Some(node) = cfg.nodes.get(&inst.primary_node) {
                if node.offline && inst.admin_state == AdminState::Up {
                    rep.warn(
                        env,
                        "EINSTANCEBADNODE",
                        format!(
                            "instance {}: its primary node {} is offline",
                            inst.name, node.name
                        ),
                    );
                }
            } else {
                rep.error(
                    env,
                    "ECLUSTERDANGLINGINST",
                    format!("instance {} has an unknown primary node", inst.name),
                );
            }
        }

        // Node probes, in parallel.
        let online: Vec<&Node> = cfg.nodes.values().filter(|n| !n.offline).collect();
        let mut reports: BTreeMap<String, Option<NodeReport>> = BTreeMap::new();
        {
            let mut sub = Vec::new();
            let futs = online.iter().map(|n| {
                let cfg = cfg.clone();
                async move {
                    let mut r = Report::default();
                    let out = probe(env, &cfg, n, &mut r).await;
                    (n.uuid.clone(), out, r)
                }
            });
            for (uuid, out, r) in join_all(futs).await {
                sub.push(r);
                reports.insert(uuid, out);
            }
            for r in sub {
                rep.errors.extend(r.errors);
                rep.warnings.extend(r.warnings);
            }
        }

        // DRBD versions must agree within a node group (Ganeti's ENODEDRBDVERSION).
        let mut by_group: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for (uuid, nr) in &reports {
            let (Some(nr), Some(n)) = (nr, cfg.nodes.get(uuid)) else {
                continue;
            };
            if let Some(v) = &nr.drbd_version {
                by_group
                    .entry(n.group.as_str())
                    .or_default()
                    .entry(v.as_str())
                    .or_default()
                    .push(n.name.as_str());
            }
        }
        for (g, versions) in &by_group {
            if versions.len() > 1 {
                let list: Vec<String> = versions
                    .iter()
                    .map(|(v, nodes)| format!("{v} on {}", nodes.join(", ")))
                    .collect();
                let group = cfg.nodegroups.get(*g).map(|x| x.name.as_str()).unwrap_or(g);
                rep.error(
                    env,
                    "ENODEDRBDVERSION",
                    format!(
                        "group {group}: different DRBD versions: {}",
                        list.join("; ")
                    ),
                );
            }
        }

        // Instances against what their nodes run and hold.
        for inst in cfg.instances.values() {
            let Some(node) = cfg.nodes.get(&inst.primary_node) else {
                continue;
            };
            let Some(Some(nr)) = reports.get(&node.uuid) else {
                continue;
            };
            let running = nr.running.contains_key(&inst.name);
            match (inst.admin_state, running) {
                (AdminState::Up, false) => rep.error(
                    env,
                    "EINSTANCEDOWN",
                    format!(
                        "instance {} is not running on node {} but its admin state is up",
                        inst.name, node.name
                    ),
                ),
                (AdminState::Down | AdminState::Offline, true) => rep.error(
                    env,
                    "EINSTANCEUP",
                    format!(
                        "instance {} is running on node {} but its admin state is {}",
                        inst.name,
                        node.name,
                        inst.admin_state.as_str()
                    ),
                ),
                _ => {}
            }
            if let Some(p) = &inst.pending_move {
                let name = |u: &str| cfg.nodes.get(u).map_or(u.to_string(), |n| n.name.clone());
                rep.warn(
                    env,
                    "EINSTANCEPENDINGMOVE",
                    format!(
                        "instance {}: a move to a new DRBD pair on {}/{} is under way or was \
                         stopped in the middle (a master restart); its disks are there: \
                         'instance change-group' or 'group evacuate' again removes them first \
                         and moves the instance",
                        inst.name,
                        name(&p.primary),
                        name(&p.secondary)
                    ),
                );
            }
            if self.skip.iter().any(|s| s == "disks") {
                continue;
            }
            // LVs of plain and drbd disks, on every node of the instance.
            for n in std::iter::once(inst.primary_node.as_str()).chain(inst.secondary_nodes()) {
                let (Some(Some(r)), Some(nn)) = (reports.get(n), cfg.nodes.get(n)) else {
                    continue;
                };
                let Some(lvs) = &r.lvs else { continue };
                let mut want = Vec::new();
                for d in &inst.disks {
                    expected_lvs(d, n, &mut want);
                }
                for lv in want.iter().filter(|lv| !lvs.contains(*lv)) {
                    rep.error(
                        env,
                        "EINSTANCEMISSINGDISK",
                        format!(
                            "instance {}: logical volume {lv} is missing on node {}",
                            inst.name, nn.name
                        ),
                    );
                }
            }
            if inst.disk_template.is_internally_mirrored() {
                let disks: Vec<maguey_model::Disk> = inst.disks.clone();
                match env
                    .master
                    .rpc
                    .call::<Vec<Option<DrbdDiskStatus>>>(
                        &node_addr(&cfg, node),
                        &NodeRequest::DrbdStatus { disks },
                    )
                    .await
                {
                    Ok(sts) => {
                        for (d, st) in inst.disks.iter().zip(sts) {
                            match st {
                                None if inst.admin_state == AdminState::Up => rep.error(
                                    env,
                                    "EINSTANCEFAULTYDISK",
                                    format!(
                                        "instance {}: DRBD {} is not active on node {}",
                                        inst.name, d.iv_name, node.name
                                    ),
                                ),
                                Some(s) if s.connection == "StandAlone" => rep.error(
                                    env,
                                    "EINSTANCEFAULTYDISK",
                                    drbd_standalone_message(&inst.name, &d.iv_name, node, &s),
                                ),
                                Some(s) if s.degraded => rep.error(
                                    env,
                                    "EINSTANCEFAULTYDISK",
                                    format!(
                                        "instance {}: DRBD {} is degraded on node {}: {} \
                                         {}/{} {}/{}",
                                        inst.name,
                                        d.iv_name,
                                        node.name,
                                        s.connection,
                                        s.disk,
                                        s.peer_disk,
                                        s.role,
                                        s.peer_role
                                    ),
                                ),
                                _ => {}
                            }
                        }
                    }
                    Err(e) => rep.error(
                        env,
                        "EINSTANCEFAULTYDISK",
                        format!(
                            "instance {}: cannot read the DRBD status on node {}: {e}",
                            inst.name, node.name
                        ),
                    ),
                }
            }
            if inst.disk_template.is_internally_mirrored() {
                // The secondary ends: not active (a node reboot), or StandAlone (split brain).
                for sn in inst.secondary_nodes() {
                    let (Some(Some(_)), Some(snode)) = (reports.get(sn), cfg.nodes.get(sn)) else {
                        continue;
                    };
                    let sts = env
                        .master
                        .rpc
                        .call::<Vec<Option<DrbdDiskStatus>>>(
                            &node_addr(&cfg, snode),
                            &NodeRequest::DrbdStatus {
                                disks: inst.disks.clone(),
                            },
                        )
                        .await;
                    match sts {
                        Ok(sts) => {
                            for (d, st) in inst.disks.iter().zip(sts) {
                                match st {
                                    None if inst.admin_state == AdminState::Up => rep.error(
                                        env,
                                        "EINSTANCEFAULTYDISK",
                                        format!(
                                            "instance {}: DRBD {} is not active on its \
                                             secondary node {}; 'maguey cluster verify-disks' \
                                             activates it",
                                            inst.name, d.iv_name, snode.name
                                        ),
                                    ),
                                    Some(s) if s.connection == "StandAlone" => rep.error(
                                        env,
                                        "EINSTANCEFAULTYDISK",
                                        drbd_standalone_message(&inst.name, &d.iv_name, snode, &s),
                                    ),
                                    _ => {}
                                }
                            }
                        }
                        Err(e) => rep.error(
                            env,
                            "EINSTANCEFAULTYDISK",
                            format!(
                                "instance {}: cannot read the DRBD status on node {}: {e}",
                                inst.name, snode.name
                            ),
                        ),
                    }
                }
            }
            for disk in &inst.disks {
                if let LogicalId::File { path, .. } = &disk.logical_id {
                    if !nr.files.contains(path) {
                        rep.error(
                            env,
                            "EINSTANCEMISSINGDISK",
                            format!(
                                "instance {}: {} ({path}) is missing on node {}",
                                inst.name, disk.iv_name, node.name
                            ),
                        );
                    }
                }
            }
        }
        // What nodes have that the config does not know.
        for (uuid, nr) in &reports {
            let Some(nr) = nr else { continue };
            let Some(node) = cfg.nodes.get(uuid) else {
                continue;
            };
            for name in nr.running.keys() {
                match cfg.instance_by_name(name) {
                    None => rep.error(
                        env,
                        "ENODEORPHANINSTANCE",
                        format!(
                            "node {}: instance {name} runs but is not in the configuration",
                            node.name
                        ),
                    ),
                    Some(i) if &i.primary_node != uuid => rep.error(
                        env,
                        "EINSTANCEWRONGNODE",
                        format!(
                            "instance {name} runs on node {}, which is not its primary node",
                            node.name
                        ),
                    ),
                    _ => {}
                }
            }
            let known: BTreeSet<&str> = cfg
                .instances
                .values()
                .flat_map(|i| i.disks.iter())
                .filter(|d| d.nodes.contains(uuid))
                .filter_map(|d| match &d.logical_id {
                    LogicalId::File { path, .. } => Some(path.as_str()),
                    _ => None,
                })
                .collect();
            if let Some(lvs) = &nr.lvs {
                let mut want = Vec::new();
                for i in cfg.instances.values() {
                    // A pending move's LVs are named by EINSTANCEPENDINGMOVE, not as orphans.
                    for d in i
                        .disks
                        .iter()
                        .chain(i.pending_move.iter().flat_map(|p| &p.disks))
                    {
                        expected_lvs(d, uuid, &mut want);
                    }
                }
                let vg_prefix = format!("{}/", cfg.cluster.vg_name);
                for lv in lvs {
                    if lv.starts_with(&vg_prefix)
                        && !want.contains(lv)
                        && !reserved(&cfg.cluster.reserved_lvs, lv)
                    {
                        rep.error(
                            env,
                            "ENODEORPHANLV",
                            format!(
                                "node {}: logical volume {lv} belongs to no instance",
                                node.name
                            ),
                        );
                    }
                }
            }
            for f in &nr.files {
                if !known.contains(f.as_str()) {
                    rep.error(
                        env,
                        "ENODEORPHANFILE",
                        format!("node {}: disk file {f} belongs to no instance", node.name),
                    );
                }
            }
        }
        for (code, msg) in crate::ipolicy::verify_findings(&cfg) {
            rep.warn(env, code, msg);
        }
        let ok = rep.errors.is_empty();
        env.log(if ok {
            "cluster verify: no problems found".to_string()
        } else {
            format!("cluster verify: {} errors", rep.errors.len())
        });
        Ok(json!({"ok": ok, "errors": rep.errors, "warnings": rep.warnings}))
    }
}
