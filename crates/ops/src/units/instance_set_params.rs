//! OP_INSTANCE_SET_PARAMS: changes beparams, hvparams, osparams or the offline flag, or
//! converts a stopped instance's disks between `plain` and `drbd` (`disk_template`).
//!
//! Memory changes are checked against the primary node: the new maxmem must fit the node at
//! all, and, for a running instance, the node's free memory (unless `force`). As in Ganeti,
//! a running instance gets the new maxmem at its next start.

use crate::util::{filled_be_dict, hv_kind, instance_by_name, node_by_name, node_by_uuid};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{
    AdminState, BeParams, ConfigData, Disk, DiskTemplate, Hypervisor, Instance, Node, ParamKind,
    Params, DRBD_META_SIZE_MIB,
};
use maguey_rpc::{DrbdRole, InstanceRunInfo, NodeInfo, NodeRequest};
use serde_json::{json, Value};

pub struct InstanceSetParams {
    name: String,
    node_name: String,
    beparams: Params,
    hvparams: Params,
    osparams: Params,
    offline: Option<bool>,
    runtime_mem: Option<u64>,
    force: bool,
    /// A disk template conversion (then nothing else changes).
    conversion: Option<Conversion>,
    ignore_ipolicy: bool,
}

/// What the checks found to do: a conversion, or the instance with its new parameters.
pub enum Change {
    Convert(Conversion),
    Params(Box<Instance>),
}

/// `modify -t plain|drbd [-n NODE]`: the target template, the nodes locked for it (names).
pub struct Conversion {
    template: DiskTemplate,
    /// The new secondary (`drbd`) or the current one (`plain`).
    other_node: String,
    wait_for_sync: bool,
}

/// Merges changes into a partial dictionary; a value `"default"` removes the key (Ganeti).
fn merge(base: &Params, changes: &Params) -> Params {
    let mut out = base.clone();
    for (k, v) in changes {
        if v.as_str() == Some("default") {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn without_defaults(p: &Params) -> Params {
    p.iter()
        .filter(|(_, v)| v.as_str() != Some("default"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl LogicalUnit for InstanceSetParams {
    type Op = maguey_model::OpInstanceSetParams;
    type Checked = Change;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceSetParams {
            instance_name,
            beparams,
            hvparams,
            osparams,
            offline,
            runtime_mem,
            force,
            disk_template,
            remote_node,
            wait_for_sync,
            ignore_ipolicy,
        } = op;
        if let Some(template) = disk_template {
            if !beparams.is_empty()
                || !hvparams.is_empty()
                || !osparams.is_empty()
                || offline.is_some()
                || runtime_mem.is_some()
            {
                return Err(prereq(
                    "a disk template conversion cannot be combined with other changes",
                ));
            }
            let inst = instance_by_name(cfg, instance_name)?;
            let node = node_by_uuid(cfg, &inst.primary_node)?;
            let other_node = conversion_node(cfg, inst, *template, remote_node.as_deref())?;
            return Ok(InstanceSetParams {
                name: inst.name.clone(),
                node_name: node.name.clone(),
                beparams: Params::new(),
                hvparams: Params::new(),
                osparams: Params::new(),
                offline: None,
                runtime_mem: None,
                force: *force,
                conversion: Some(Conversion {
                    template: *template,
                    other_node,
                    wait_for_sync: *wait_for_sync,
                }),
                ignore_ipolicy: *ignore_ipolicy,
            });
        }
        if remote_node.is_some() {
            return Err(prereq(
                "remote_node (-n) is only for a disk template conversion",
            ));
        }
        if beparams.is_empty()
            && hvparams.is_empty()
            && osparams.is_empty()
            && offline.is_none()
            && runtime_mem.is_none()
        {
            return Err(prereq("no changes requested"));
        }
        let inst = instance_by_name(cfg, instance_name)?;
        let node = node_by_uuid(cfg, &inst.primary_node)?;
        Ok(InstanceSetParams {
            name: instance_name.clone(),
            node_name: node.name.clone(),
            beparams: beparams.clone(),
            hvparams: hvparams.clone(),
            osparams: osparams.clone(),
            offline: *offline,
            runtime_mem: *runtime_mem,
            force: *force,
            conversion: None,
            ignore_ipolicy: *ignore_ipolicy,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let nodes = crate::locks::nodes(vec![self.node_name.clone()]);
        match &self.conversion {
            Some(c) => crate::locks::instance_storage_rebuilt(
                &self.name,
                crate::locks::nodes(vec![self.node_name.clone(), c.other_node.clone()]),
            ),
            None => crate::locks::instance_on_nodes_moving(&self.name, nodes.clone(), nodes),
        }
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if let Some(c) = self.conversion.take() {
            let mut converted = inst.clone();
            converted.disk_template = c.template;
            crate::ipolicy::check(cfg, &converted, &inst.primary_node, self.ignore_ipolicy)?;
            check_conversion(cfg, inst, &c)?;
            return Ok(Change::Convert(c));
        }
        let be = ParamKind::Be
            .validate(&without_defaults(&self.beparams))
            .map_err(prereq)?;
        let hv = hv_kind(inst.hypervisor)
            .validate(&without_defaults(&self.hvparams))
            .map_err(prereq)?;
        maguey_model::params::check_instance_hvparams(&hv).map_err(prereq)?;
        let mut be_changes = self.beparams.clone();
        be_changes.extend(be);
        let mut hv_changes = self.hvparams.clone();
        hv_changes.extend(hv);
        let mut updated = inst.clone();
        updated.beparams = merge(&inst.beparams, &be_changes);
        updated.hvparams = merge(&inst.hvparams, &hv_changes);
        updated.osparams = merge(&inst.osparams, &self.osparams);
        let filled = BeParams::from_filled(&filled_be_dict(cfg, inst, &updated.beparams));
        if filled.minmem > filled.maxmem {
            return Err(prereq(format!(
                "minmem ({}) cannot exceed maxmem ({})",
                filled.minmem, filled.maxmem
            )));
        }
        if !self.beparams.is_empty() {
            crate::ipolicy::check(cfg, &updated, &inst.primary_node, self.ignore_ipolicy)?;
        }
        match self.offline {
            Some(true) if inst.admin_state == AdminState::Up => {
                return Err(prereq(format!(
                    "instance {} is up: shut it down before marking it offline",
                    self.name
                )))
            }
            Some(true) => updated.admin_state = AdminState::Offline,
            Some(false) if inst.admin_state == AdminState::Offline => {
                updated.admin_state = AdminState::Down
            }
            _ => {}
        }
        Ok(Change::Params(Box::new(updated)))
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let updated = match checked {
            Change::Convert(c) => return convert(env, &self.name, &c).await,
            Change::Params(updated) => *updated,
        };
        let cfg = env.cfg();
        let old = instance_by_name(&cfg, &self.name)?.clone();
        let node = node_by_uuid(&cfg, &old.primary_node)?.clone();
        let old_be = BeParams::from_filled(&filled_be_dict(&cfg, &old, &old.beparams));
        let new_be = BeParams::from_filled(&filled_be_dict(&cfg, &old, &updated.beparams));
        if new_be.maxmem != old_be.maxmem && !node.offline {
            let info: NodeInfo = env
                .rpc(
                    &node,
                    NodeRequest::NodeInfo {
                        file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                        hypervisor: old.hypervisor.to_string(),
                    },
                )
                .await?;
            if new_be.maxmem > info.memory_total {
                return Err(prereq(format!(
                    "maxmem {} MiB is larger than node {}'s memory ({} MiB)",
                    new_be.maxmem, node.name, info.memory_total
                )));
            }
            let run: Option<InstanceRunInfo> = env
                .rpc(
                    &node,
                    NodeRequest::InstanceInfo {
                        name: old.name.clone(),
                        hypervisor: old.hypervisor.to_string(),
                    },
                )
                .await?;
            if let Some(run) = run {
                let extra = new_be.maxmem.saturating_sub(run.memory);
                if extra > info.memory_free && !self.force {
                    return Err(prereq(format!(
                        "node {} has {} MiB free, not enough for {} MiB more (use --force to override)",
                        node.name, info.memory_free, extra
                    )));
                }
                env.log("the new memory size applies at the next start of the instance");
            }
        }
        let mut changes = Vec::new();
        if let Some(mem) = self.runtime_mem {
            self.balloon(env, &old, &node, &new_be, mem).await?;
            changes.push(json!(["runtime_memory", mem]));
        }
        if updated != old {
            env.apply(Command::UpdateInstance {
                instance: updated.clone(),
            })
            .await?;
        }
        for (k, v) in &self.beparams {
            changes.push(json!([format!("be/{k}"), v]));
        }
        for (k, v) in &self.hvparams {
            changes.push(json!([format!("hv/{k}"), v]));
        }
        for (k, v) in &self.osparams {
            changes.push(json!([format!("os/{k}"), v]));
        }
        if let Some(o) = self.offline {
            changes.push(json!(["admin_state", if o { "offline" } else { "down" }]));
        }
        for c in &changes {
            env.log(format!(
                "modified {} to {}",
                c[0].as_str().unwrap_or(""),
                c[1]
            ));
        }
        Ok(Value::from(changes))
    }
}

impl InstanceSetParams {
    /// Changes the memory of the running instance through its balloon: between minmem and
    /// maxmem (unless `force`), with the node's free memory for any increase.
    async fn balloon(
        &self,
        env: &Env<'_>,
        inst: &Instance,
        node: &maguey_model::Node,
        be: &BeParams,
        mem: u64,
    ) -> Result<(), OpError> {
        if (mem < be.minmem || mem > be.maxmem) && !self.force {
            return Err(prereq(format!(
                "runtime memory {mem} MiB is outside instance {}'s range {}..{} MiB (use \
                 --force to override)",
                inst.name, be.minmem, be.maxmem
            )));
        }
        let run: Option<InstanceRunInfo> = env
            .rpc(
                node,
                NodeRequest::InstanceInfo {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.to_string(),
                },
            )
            .await?;
        let Some(run) = run.filter(|r| r.state != "shutdown") else {
            return Err(prereq(format!(
                "instance {} is not running: its memory can only change at runtime",
                inst.name
            )));
        };
        if mem > run.memory && !self.force {
            let cfg = env.cfg();
            let info: NodeInfo = env
                .rpc(
                    node,
                    NodeRequest::NodeInfo {
                        file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                        hypervisor: inst.hypervisor.to_string(),
                    },
                )
                .await?;
            if mem - run.memory > info.memory_free {
                return Err(prereq(format!(
                    "node {} has {} MiB free, not enough for {} MiB more",
                    node.name,
                    info.memory_free,
                    mem - run.memory
                )));
            }
        }
        env.log(format!(
            "changing the memory of instance {} from {} to {mem} MiB",
            inst.name, run.memory
        ));
        let _: Value = env
            .rpc(
                node,
                NodeRequest::InstanceBalloonMemory {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.to_string(),
                    memory: mem,
                },
            )
            .await?;
        Ok(())
    }
}

/// The second node a conversion locks: the new secondary (`drbd`, from `-n`) or the current
/// secondary (`plain`). Refuses what cannot be converted.
fn conversion_node(
    cfg: &ConfigData,
    inst: &Instance,
    template: DiskTemplate,
    remote_node: Option<&str>,
) -> Result<String, OpError> {
    let convertible = |t: DiskTemplate| t == DiskTemplate::Plain || t == DiskTemplate::Drbd;
    if !convertible(template) {
        return Err(prereq(format!(
            "conversion to disk template '{template}' is not supported (plain or drbd)"
        )));
    }
    if inst.disk_template == template {
        return Err(prereq(format!(
            "instance {} already has disk template '{template}'",
            inst.name
        )));
    }
    if !convertible(inst.disk_template) {
        return Err(prereq(format!(
            "conversion from disk template '{}' to '{template}' is not supported",
            inst.disk_template
        )));
    }
    if template.needs_secondary() {
        let Some(remote) = remote_node else {
            return Err(prereq(
                "converting to drbd needs the new secondary node (-n NODE)",
            ));
        };
        let snode = node_by_name(cfg, remote)?;
        if snode.uuid == inst.primary_node {
            return Err(prereq(format!(
                "the secondary node must differ from the primary node ({})",
                snode.name
            )));
        }
        return Ok(snode.name.clone());
    }
    if remote_node.is_some() {
        return Err(prereq("-n (remote_node) is only for conversions to drbd"));
    }
    crate::drbd::secondary_of(cfg, inst)
        .map(|n| n.name.clone())
        .ok_or_else(|| prereq(format!("instance {} has no secondary node", inst.name)))
}

fn check_conversion(cfg: &ConfigData, inst: &Instance, c: &Conversion) -> Result<(), OpError> {
    if inst.admin_state == AdminState::Up {
        return Err(prereq(format!(
            "instance {} is running: stop it before converting its disks",
            inst.name
        )));
    }
    if !cfg.cluster.enabled_disk_templates.contains(&c.template) {
        return Err(prereq(format!(
            "disk template '{}' is not enabled in the cluster",
            c.template
        )));
    }
    if inst.disks.is_empty() {
        return Err(prereq(format!("instance {} has no disks", inst.name)));
    }
    if let Some(d) = inst
        .disks
        .iter()
        .find(|d| d.dev_type.template() != inst.disk_template)
    {
        return Err(prereq(format!(
            "disk {} is of type '{}', not '{}'",
            d.iv_name, d.dev_type, inst.disk_template
        )));
    }
    // The nodes were named (and locked) before the locks were held: still the same?
    let again = conversion_node(
        cfg,
        inst,
        c.template,
        (c.template.needs_secondary()).then_some(c.other_node.as_str()),
    )?;
    if again != c.other_node {
        return Err(prereq(format!(
            "instance {}'s nodes changed meanwhile; try again",
            inst.name
        )));
    }
    let pnode = node_by_uuid(cfg, &inst.primary_node)?;
    if pnode.offline {
        return Err(prereq(format!("primary node {} is offline", pnode.name)));
    }
    if c.template.needs_secondary() {
        let snode = node_by_name(cfg, &c.other_node)?;
        if snode.offline {
            return Err(prereq(format!("node {} is offline", snode.name)));
        }
        if snode.drained {
            return Err(prereq(format!("node {} is drained", snode.name)));
        }
    }
    Ok(())
}

/// Runs a disk template conversion of the stopped instance `name`.
async fn convert(env: &Env<'_>, name: &str, c: &Conversion) -> Result<Value, OpError> {
    let cfg = env.cfg();
    let inst = instance_by_name(&cfg, name)?.clone();
    let pnode = node_by_uuid(&cfg, &inst.primary_node)?.clone();
    let other = node_by_name(&cfg, &c.other_node)?.clone();
    let run: Option<InstanceRunInfo> = env
        .rpc(
            &pnode,
            NodeRequest::InstanceInfo {
                name: inst.name.clone(),
                hypervisor: inst.hypervisor.to_string(),
            },
        )
        .await?;
    if run.is_some_and(|r| r.state != "shutdown") {
        return Err(prereq(format!(
            "instance {} is running on node {}: stop it before converting its disks",
            inst.name, pnode.name
        )));
    }
    env.log(format!(
        "converting instance {}'s disks from '{}' to '{}'",
        inst.name, inst.disk_template, c.template
    ));
    if c.template.needs_secondary() {
        to_drbd(env, &inst, &pnode, &other, c.wait_for_sync).await?;
    } else {
        to_plain(env, &inst, &pnode, &other).await?;
    }
    env.log(format!("modified disk_template to {}", c.template));
    Ok(json!([["disk_template", c.template]]))
}

/// Refuses when `node`'s volume group has less than `needed` MiB free.
async fn check_vg_space(
    env: &Env<'_>,
    node: &Node,
    needed: u64,
    hypervisor: Hypervisor,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let info: NodeInfo = env
        .rpc(
            node,
            NodeRequest::NodeInfo {
                file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                hypervisor: hypervisor.to_string(),
            },
        )
        .await?;
    match info.storage.iter().find(|s| s.storage_type == "lvm-vg") {
        Some(st) if needed > st.storage_free => Err(prereq(format!(
            "not enough space in the volume group of node {}: needed {needed} MiB, free {} MiB",
            node.name, st.storage_free
        ))),
        Some(_) => Ok(()),
        None => Err(prereq(format!(
            "node {} has no volume group '{}' (or no LVM)",
            node.name, cfg.cluster.vg_name
        ))),
    }
}

/// Plain to drbd (Ganeti's `_ConvertPlainToDrbd`): the existing LVs become the DRBD data
/// children on the primary; meta LVs there, data and meta LVs on the new secondary; the
/// primary is forced to be the sync source (its data wins), then the disks are shut down
/// again (the instance is stopped). On failure everything created is removed.
async fn to_drbd(
    env: &Env<'_>,
    inst: &Instance,
    pnode: &Node,
    snode: &Node,
    wait_for_sync: bool,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let count = inst.disks.len() as u64;
    check_vg_space(
        env,
        snode,
        crate::drbd::storage_needed(
            maguey_model::DiskTemplate::Drbd,
            inst.disks.iter().map(|d| d.size),
        ),
        inst.hypervisor,
    )
    .await?;
    check_vg_space(env, pnode, DRBD_META_SIZE_MIB * count, inst.hypervisor).await?;
    let (allocs, reservation) =
        crate::drbd::allocate(&cfg, &pnode.uuid, &snode.uuid, inst.disks.len())?;
    let now = maguey_model::now();
    let mut new = inst.clone();
    new.disk_template = maguey_model::DiskTemplate::Drbd;
    new.disks = inst
        .disks
        .iter()
        .enumerate()
        .zip(&allocs)
        .map(|((i, d), a)| crate::drbd::drbd_from_plain(d, i, &pnode.uuid, &snode.uuid, *a, now))
        .collect::<Result<_, _>>()?;
    for (d, a) in new.disks.iter().zip(&allocs) {
        env.log(format!(
            "disk {}: DRBD port {}, minor {} on {} and {} on {}",
            d.iv_name, a.port, a.minor_p, pnode.name, a.minor_s, snode.name
        ));
    }
    // Both nodes at once: the secondary (data + meta) and the primary (meta; its data LV
    // exists). A disk whose creation failed is undone too (it may be partly made).
    let storage_dir = crate::util::storage_dir(&cfg, maguey_model::DiskTemplate::Drbd);
    let made = crate::disks::create_on_nodes(
        env,
        &[snode.clone(), pnode.clone()],
        &inst.name,
        &new.disks,
        &storage_dir,
        "creating the DRBD volumes of",
    )
    .await;
    let mut touched = made.made;
    touched.extend(made.failed);
    if let Some(e) = made.error {
        undo_drbd(env, &touched, pnode).await;
        return Err(e);
    }
    env.log(format!(
        "making node {} the DRBD primary once connected: its data is copied to node {}",
        pnode.name, snode.name
    ));
    let mut res = crate::drbd::promote_new(env, &new, pnode).await;
    if res.is_ok() && wait_for_sync {
        res = crate::drbd::wait_for_sync(env, &new, pnode).await;
    }
    if let Err(e) = res {
        undo_drbd(env, &touched, pnode).await;
        return Err(e);
    }
    if let Err(e) = env
        .apply(Command::UpdateInstance {
            instance: new.clone(),
        })
        .await
    {
        undo_drbd(env, &touched, pnode).await;
        return Err(e);
    }
    drop(reservation);
    if wait_for_sync {
        // The instance is stopped: its disks go down again (they sync when next active).
        for node in [pnode, snode] {
            let r: Result<Value, OpError> = env
                .rpc(
                    node,
                    NodeRequest::DrbdShutdown {
                        disks: new.disks.clone(),
                    },
                )
                .await;
            if let Err(e) = r {
                env.log(format!(
                    "warning: could not shut the disks down on node {}: {e}",
                    node.name
                ));
            }
        }
    } else {
        env.log("not waiting for the sync (--no-wait-for-sync): the disks stay active");
    }
    Ok(())
}

/// Undoes a failed plain-to-drbd conversion: DRBD down, the secondary's LVs and the
/// primary's meta LVs removed (the primary's data LVs are the instance's plain disks).
async fn undo_drbd(env: &Env<'_>, touched: &[(Node, Disk)], pnode: &Node) {
    let cfg = env.cfg();
    for (node, disk) in touched.iter().rev() {
        let _: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::DrbdShutdown {
                    disks: vec![disk.clone()],
                },
            )
            .await;
        let victim = if node.uuid == pnode.uuid {
            match disk.children.get(1) {
                Some(meta) => meta.clone(),
                None => continue,
            }
        } else {
            disk.clone()
        };
        env.log(format!(
            "undoing: removing the new volumes of disk {} on node {}",
            disk.iv_name, node.name
        ));
        let r: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: victim,
                    file_storage_dir: crate::util::storage_dir(
                        &cfg,
                        maguey_model::DiskTemplate::Drbd,
                    ),
                },
            )
            .await;
        if let Err(e) = r {
            env.log(format!(
                "warning: could not remove the new volumes of disk {} on node {}: {e}",
                disk.iv_name, node.name
            ));
        }
    }
}

/// Drbd to plain (Ganeti's `_ConvertDrbdToPlain`): DRBD down on both nodes, the data LVs on
/// the primary become the plain disks (config first), then the secondary's LVs and the
/// primary's meta LVs go. Refused when the primary's data is not complete.
async fn to_plain(
    env: &Env<'_>,
    inst: &Instance,
    pnode: &Node,
    snode: &Node,
) -> Result<(), OpError> {
    let cfg = env.cfg();
    let now = maguey_model::now();
    let disks: Vec<Disk> = inst
        .disks
        .iter()
        .map(|d| crate::drbd::plain_from_drbd(d, &pnode.uuid, now))
        .collect::<Result<_, _>>()?;
    // The primary's data must be complete: look at its devices (brought up alone if down).
    let mut st = crate::drbd::status(env, inst, pnode).await?;
    let assembled = st.iter().any(Option::is_none);
    if assembled {
        crate::drbd::assemble(env, inst, pnode, DrbdRole::Secondary).await?;
        st = crate::drbd::status(env, inst, pnode).await?;
    }
    let bad = inst.disks.iter().zip(&st).find_map(|(d, s)| match s {
        Some(s) if s.disk == "UpToDate" || s.disk == "Consistent" => None,
        Some(s) => Some(format!("{} is {}", d.iv_name, s.disk)),
        None => Some(format!("{} is not active", d.iv_name)),
    });
    let nodes: Vec<&Node> = if snode.offline {
        vec![pnode]
    } else {
        vec![pnode, snode]
    };
    for node in &nodes {
        let _: Value = env
            .rpc(
                node,
                NodeRequest::DrbdShutdown {
                    disks: inst.disks.clone(),
                },
            )
            .await?;
    }
    if let Some(why) = bad {
        return Err(prereq(format!(
            "the data of instance {} on its primary node {} is not complete (disk {why}): \
             activate its disks and wait for the resync first",
            inst.name, pnode.name
        )));
    }
    let mut new = inst.clone();
    new.disk_template = maguey_model::DiskTemplate::Plain;
    new.disks = disks;
    env.apply(Command::UpdateInstance { instance: new }).await?;
    let storage_dir = crate::util::storage_dir(&cfg, maguey_model::DiskTemplate::Drbd);
    let mut removals: Vec<(&Node, Disk)> = Vec::new();
    for d in &inst.disks {
        if let Some(meta) = d.children.get(1) {
            removals.push((pnode, meta.clone()));
        }
        if !snode.offline {
            removals.push((snode, d.clone()));
        }
    }
    for (node, disk) in removals {
        env.log(format!(
            "removing volumes of disk {} on node {}",
            disk.iv_name, node.name
        ));
        let r: Result<Value, OpError> = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk,
                    file_storage_dir: storage_dir.clone(),
                },
            )
            .await;
        if let Err(e) = r {
            env.log(format!(
                "warning: could not remove them (cluster verify reports the orphans): {e}"
            ));
        }
    }
    Ok(())
}
