//! OP_INSTANCE_REPLACE_DISKS: replaces the storage under an instance's DRBD disks (Ganeti's
//! LUInstanceReplaceDisks / TLReplaceDisks).
//!
//! - `replace_on_primary` / `replace_on_secondary`: on that node, new data and meta LVs
//!   replace the old ones under the running DRBD device (old LVs set aside as
//!   `<lv>_replaced-<timestamp>`), DRBD resyncs them from the peer, which must be UpToDate;
//!   then the old LVs go.
//! - `replace_new_secondary` (`remote_node`, or `iallocator` for Ganeti's relocate request):
//!   the DRBD devices get a new peer: new minors and LVs there, the old secondary shut down,
//!   the primary disconnected, the config changed (one `UpdateInstance`), the primary
//!   connected to the new node, resync, the old secondary's devices and LVs removed.
//! - `replace_auto`: looks at both nodes and replaces on the one whose disks are faulty
//!   (missing LVs, Diskless, Failed, Inconsistent without a resync); nothing faulty: done.
//!
//! A stopped instance's disks are activated for the operation and deactivated afterwards.

use crate::drbd::secondary_of;
use crate::drbd_replace::*;
use crate::util::{check_node_usable, instance_by_name, node_by_name, node_by_uuid};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Instance, Node};
use serde_json::{json, Value};

/// Ganeti's replace-disks modes.
pub(crate) use maguey_model::ReplaceDisksMode as Mode;

pub struct InstanceReplaceDisks {
    name: String,
    mode: Mode,
    disks: Vec<usize>,
    remote_node: Option<String>,
    iallocator: Option<String>,
    early_release: bool,
    /// Accept a new secondary in the primary's room.
    force: bool,
    /// Node names at expand time (locked; checked again after the locks).
    nodes: Vec<String>,
}

impl LogicalUnit for InstanceReplaceDisks {
    type Op = maguey_model::OpInstanceReplaceDisks;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceReplaceDisks {
            instance_name,
            mode,
            disks,
            remote_node,
            iallocator,
            early_release,
            force,
            ..
        } = op;
        let mode = *mode;
        match mode {
            Mode::NewSecondary => match (remote_node, iallocator) {
                (None, None) => {
                    return Err(prereq(
                        "changing the secondary needs a new node (-n NODE) or an allocator \
                         (-I NAME)",
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(prereq(
                        "give either the new secondary node or an allocator, not both",
                    ))
                }
                _ => {}
            },
            _ if remote_node.is_some() || iallocator.is_some() => {
                return Err(prereq(
                    "a new node or an allocator can only be given when changing the secondary \
                     (replace_new_secondary)",
                ))
            }
            _ => {}
        }
        if !disks.is_empty() && matches!(mode, Mode::NewSecondary | Mode::Auto) {
            return Err(prereq(
                "disks can only be chosen when replacing on the primary or the secondary \
                 (-p, -s); the other modes replace every disk",
            ));
        }
        if let Some(a) = iallocator {
            if !crate::iallocator::BUILTIN.contains(&a.as_str()) {
                return Err(prereq(format!(
                    "unknown allocator '{a}' (built in: {})",
                    crate::iallocator::BUILTIN.join(", ")
                )));
            }
        }
        let inst = instance_by_name(cfg, instance_name)?;
        let mut nodes = vec![node_by_uuid(cfg, &inst.primary_node)?.name.clone()];
        for s in inst.secondary_nodes() {
            nodes.push(node_by_uuid(cfg, s)?.name.clone());
        }
        let remote_node = match remote_node {
            Some(n) => {
                // Issue 15: the policy of the new secondary's group when it is another group.
                let new = &node_by_name(cfg, n)?.uuid;
                crate::ipolicy::check_move(cfg, inst, new, op.ignore_ipolicy)?;
                let name = node_by_name(cfg, n)?.name.clone();
                if !nodes.contains(&name) {
                    nodes.push(name.clone());
                }
                Some(name)
            }
            None => None,
        };
        Ok(InstanceReplaceDisks {
            name: inst.name.clone(),
            mode,
            disks: disks.clone(),
            remote_node,
            iallocator: iallocator.clone(),
            early_release: *early_release,
            force: *force,
            nodes,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let names = if self.iallocator.is_some() {
            crate::locks::all_nodes()
        } else {
            crate::locks::nodes(self.nodes.clone())
        };
        crate::locks::instance_on_nodes_moving(&self.name, names.clone(), names)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if !inst.disk_template.is_internally_mirrored() {
            return Err(prereq(format!(
                "instance {} has disk template {}: replace-disks is only for drbd instances",
                self.name, inst.disk_template
            )));
        }
        let pnode = node_by_uuid(cfg, &inst.primary_node)?;
        let snode = secondary_of(cfg, inst)
            .ok_or_else(|| prereq(format!("instance {} has no secondary node", self.name)))?;
        if !self.nodes.contains(&pnode.name) || !self.nodes.contains(&snode.name) {
            return Err(prereq(format!(
                "the nodes of instance {} changed while this job waited for its locks",
                self.name
            )));
        }
        for &i in &self.disks {
            if i >= inst.disks.len() {
                return Err(prereq(format!(
                    "instance {} has no disk {i} (it has {} disks)",
                    self.name,
                    inst.disks.len()
                )));
            }
        }
        if inst
            .disks
            .iter()
            .any(|d| d.dev_type != maguey_model::DevType::Drbd)
        {
            return Err(prereq(format!(
                "instance {} has disks that are not drbd",
                self.name
            )));
        }
        match self.mode {
            Mode::OnPrimary | Mode::OnSecondary | Mode::Auto => {
                for n in [pnode, snode] {
                    if n.offline {
                        return Err(prereq(format!(
                            "node {} of instance {} is offline: replacing disks in place needs \
                             both nodes; use -n NODE to change the secondary",
                            n.name, self.name
                        )));
                    }
                }
            }
            Mode::NewSecondary => {
                if pnode.offline {
                    return Err(prereq(format!(
                        "the primary node {} is offline: fail the instance over first",
                        pnode.name
                    )));
                }
                if let Some(r) = &self.remote_node {
                    let new = node_by_name(cfg, r)?;
                    check_new_secondary(inst, pnode, snode, new)?;
                    crate::rooms::check_secondary_room(
                        cfg,
                        &inst.name,
                        &pnode.uuid,
                        &new.uuid,
                        self.force,
                    )
                    .map_err(prereq)?;
                }
            }
        }
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let inst = checked;
        let cfg = env.cfg();
        let pnode = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let snode = secondary_of(&cfg, &inst)
            .cloned()
            .ok_or_else(|| prereq(format!("instance {} has no secondary node", inst.name)))?;
        let all: Vec<usize> = (0..inst.disks.len()).collect();
        let selected = if self.disks.is_empty() {
            all.clone()
        } else {
            self.disks.clone()
        };
        match self.mode {
            Mode::OnPrimary => {
                replace_on(env, &inst, &pnode, &snode, &selected, self.early_release).await?;
                Ok(json!({"node": pnode.name, "disks": selected}))
            }
            Mode::OnSecondary => {
                replace_on(env, &inst, &snode, &pnode, &selected, self.early_release).await?;
                Ok(json!({"node": snode.name, "disks": selected}))
            }
            Mode::Auto => self.auto(env, &inst, &pnode, &snode).await,
            Mode::NewSecondary => {
                let new = match (&self.remote_node, &self.iallocator) {
                    (Some(r), _) => node_by_name(&cfg, r)?.clone(),
                    (None, Some(a)) => {
                        let name = relocate(env, &cfg, &inst, &snode, self.force).await?;
                        env.log(format!("allocator {a} chose node {name} as new secondary"));
                        node_by_name(&cfg, &name)?.clone()
                    }
                    (None, None) => return Err(prereq("no new secondary node given")),
                };
                check_new_secondary(&inst, &pnode, &snode, &new)?;
                new_secondary(env, &inst, &pnode, &snode, &new, self.early_release).await?;
                Ok(json!({"node": new.name, "old_node": snode.name}))
            }
        }
    }
}

impl InstanceReplaceDisks {
    /// `replace_auto`: finds the faulty side and replaces its faulty disks there.
    async fn auto(
        &self,
        env: &Env<'_>,
        inst: &Instance,
        pnode: &Node,
        snode: &Node,
    ) -> Result<Value, OpError> {
        let mut faulty = Vec::new();
        for node in [pnode, snode] {
            let bad = faulty_disks(env, inst, node).await?;
            if !bad.is_empty() {
                env.log(format!(
                    "node {} has faulty disks: {}",
                    node.name,
                    bad.iter()
                        .map(|(i, why)| format!("{} ({why})", inst.disks[*i].iv_name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            faulty.push(bad);
        }
        let (pbad, sbad) = (&faulty[0], &faulty[1]);
        match (pbad.is_empty(), sbad.is_empty()) {
            (true, true) => {
                env.log(format!(
                    "no disks of instance {} need replacement",
                    inst.name
                ));
                Ok(json!({"node": null, "disks": []}))
            }
            (false, false) => Err(OpError::Exec(format!(
                "both nodes of instance {} have faulty disks: cannot replace them \
                 automatically",
                inst.name
            ))),
            (false, true) => {
                let idx: Vec<usize> = pbad.iter().map(|(i, _)| *i).collect();
                replace_on(env, inst, pnode, snode, &idx, self.early_release).await?;
                Ok(json!({"node": pnode.name, "disks": idx}))
            }
            (true, false) => {
                let idx: Vec<usize> = sbad.iter().map(|(i, _)| *i).collect();
                replace_on(env, inst, snode, pnode, &idx, self.early_release).await?;
                Ok(json!({"node": snode.name, "disks": idx}))
            }
        }
    }
}

/// The new secondary must be another, usable node.
fn check_new_secondary(
    inst: &Instance,
    pnode: &Node,
    snode: &Node,
    new: &Node,
) -> Result<(), OpError> {
    if new.uuid == pnode.uuid {
        return Err(prereq(format!(
            "node {} is the primary node of instance {}: it cannot be its secondary",
            new.name, inst.name
        )));
    }
    if new.uuid == snode.uuid {
        return Err(prereq(format!(
            "instance {} already uses node {} as its secondary",
            inst.name, new.name
        )));
    }
    check_node_usable(new)
}

/// Ganeti's iallocator `relocate` request for the secondary, answered in-process.
async fn relocate(
    env: &Env<'_>,
    cfg: &ConfigData,
    inst: &Instance,
    snode: &Node,
    force: bool,
) -> Result<String, OpError> {
    let mut req = crate::iallocator::cluster_request(env.master, cfg, inst.disk_template).await;
    // Forced, a new secondary in the primary's room is acceptable (rooms only score).
    req["cluster_tags"] = json!(crate::rooms::request_cluster_tags(cfg, !force));
    req["request"] = json!({
        "type": "relocate",
        "name": inst.name,
        "required_nodes": 1,
        "relocate_from": [snode.name],
        "disk_space_total": crate::drbd::storage_needed(maguey_model::DiskTemplate::Drbd, inst.disks.iter().map(|d| d.size)),
    });
    let opts = maguey_placement::alloc::AllocOptions::default();
    match crate::iallocator::solve(&req, &opts)? {
        Ok((_, maguey_placement::ialloc::Answer::Node(n))) => Ok(n),
        Ok((_, maguey_placement::ialloc::Answer::Nodes(ns))) if !ns.is_empty() => Ok(ns[0].clone()),
        Ok((_, other)) => Err(crate::iallocator::unexpected(&other)),
        Err(why) => Err(prereq(format!(
            "the allocator found no new secondary for instance {}: {why}",
            inst.name
        ))),
    }
}
