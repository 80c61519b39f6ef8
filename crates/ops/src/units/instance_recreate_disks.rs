//! OP_INSTANCE_RECREATE_DISKS: creates a stopped instance's disks again, empty (Ganeti's
//! LUInstanceRecreateDisks), after a node lost them: on the current nodes, or on new nodes
//! (`nodes`, or an allocator), in which case the config gets the new nodes and, for `drbd`,
//! new ports, minors and secrets. Existing LVs of the right size are reused as they are.

use crate::drbd::{allocate, make_drbd, DrbdReservation};
use crate::util::{check_node_online, instance_by_name, node_by_name, node_by_uuid, storage_dir};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Disk, Instance, LogicalId, Node};
use maguey_rpc::NodeRequest;
use serde_json::{json, Value};

pub struct InstanceRecreateDisks {
    name: String,
    disks: Vec<usize>,
    /// New node names (primary first); empty: the current nodes.
    new_nodes: Vec<String>,
    iallocator: Option<String>,
    /// Current node names at expand time.
    nodes: Vec<String>,
}

impl LogicalUnit for InstanceRecreateDisks {
    type Op = maguey_model::OpInstanceRecreateDisks;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceRecreateDisks {
            instance_name,
            disks,
            nodes,
            iallocator,
        } = op;
        if iallocator.is_some() && !nodes.is_empty() {
            return Err(prereq("give either new nodes or an allocator, not both"));
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
        let mut cur = vec![node_by_uuid(cfg, &inst.primary_node)?.name.clone()];
        for s in inst.secondary_nodes() {
            cur.push(node_by_uuid(cfg, s)?.name.clone());
        }
        let mut new_nodes = Vec::new();
        for n in nodes {
            let name = node_by_name(cfg, n)?.name.clone();
            if new_nodes.contains(&name) {
                return Err(prereq(format!("node {name} given twice")));
            }
            new_nodes.push(name);
        }
        Ok(InstanceRecreateDisks {
            name: inst.name.clone(),
            disks: disks.clone(),
            new_nodes,
            iallocator: iallocator.clone(),
            nodes: cur,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let names = if self.iallocator.is_some() {
            crate::locks::all_nodes()
        } else {
            crate::locks::nodes(self.nodes.iter().chain(&self.new_nodes).cloned())
        };
        crate::locks::instance_storage_rebuilt(&self.name, names)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if !inst.disk_template.has_disks() {
            return Err(prereq(format!(
                "instance {} has disk template {}: nothing to recreate",
                self.name, inst.disk_template
            )));
        }
        if inst.admin_state == AdminState::Up {
            return Err(prereq(format!(
                "instance {} is marked to be running: stop it first",
                self.name
            )));
        }
        let mut cur = vec![node_by_uuid(cfg, &inst.primary_node)?.name.clone()];
        for s in inst.secondary_nodes() {
            cur.push(node_by_uuid(cfg, s)?.name.clone());
        }
        if cur != self.nodes {
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
        let needed = inst.disk_template.node_count();
        let changing = !self.new_nodes.is_empty() || self.iallocator.is_some();
        if !self.new_nodes.is_empty() && self.new_nodes.len() != needed {
            return Err(prereq(format!(
                "instance {} has disk template {}: give {needed} node(s), got {}",
                self.name,
                inst.disk_template,
                self.new_nodes.len()
            )));
        }
        if changing && !self.disks.is_empty() && self.disks.len() != inst.disks.len() {
            return Err(prereq(
                "when changing nodes, every disk is recreated: do not select disks",
            ));
        }
        if changing && inst.disk_template.is_shared() {
            return Err(prereq(
                "sharedfile disks are on every node: no nodes to change",
            ));
        }
        let check = if changing {
            self.new_nodes.clone()
        } else {
            self.nodes.clone()
        };
        for n in &check {
            let node = node_by_name(cfg, n)?;
            check_node_online(node).map_err(|_| {
                prereq(format!(
                    "node {n} is offline: recreate the disks on other nodes (-n)"
                ))
            })?;
        }
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let inst = checked;
        let cfg = env.cfg();
        let drbd = inst.disk_template.is_internally_mirrored();
        let cur_primary = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        // The instance must not run anywhere it could.
        if !cur_primary.offline {
            let running: Result<Vec<String>, OpError> = env
                .rpc(
                    &cur_primary,
                    NodeRequest::InstanceList {
                        hypervisor: inst.hypervisor.to_string(),
                    },
                )
                .await;
            if running.is_ok_and(|r| r.contains(&inst.name)) {
                return Err(prereq(format!(
                    "instance {} is running on node {}: stop it first",
                    inst.name, cur_primary.name
                )));
            }
        }
        let new_names = match &self.iallocator {
            Some(_) => {
                let n = crate::iallocator::allocate(env.master, &cfg, &inst).await?;
                env.log(format!("the allocator chose {}", n.join(":")));
                n
            }
            None => self.new_nodes.clone(),
        };
        let changing = !new_names.is_empty();
        let nodes: Vec<Node> = if changing {
            new_names
                .iter()
                .map(|n| node_by_name(&cfg, n).cloned())
                .collect::<Result<_, _>>()?
        } else {
            self.nodes
                .iter()
                .map(|n| node_by_name(&cfg, n).cloned())
                .collect::<Result<_, _>>()?
        };
        for n in &nodes {
            check_node_online(n)?;
        }
        let needed = if drbd { 2 } else { 1 };
        if nodes.len() != needed {
            return Err(prereq(format!(
                "instance {} needs {needed} node(s), got {}",
                inst.name,
                nodes.len()
            )));
        }
        let pnode = nodes[0].clone();
        let snode = nodes.get(1).cloned();
        let selected: Vec<usize> = if self.disks.is_empty() || changing {
            (0..inst.disks.len()).collect()
        } else {
            self.disks.clone()
        };

        // The disks as they will be (new DRBD ends when the nodes change).
        let mut updated = inst.clone();
        let mut _reservation: Option<DrbdReservation> = None;
        if changing {
            updated.primary_node = pnode.uuid.clone();
            let now = maguey_model::now();
            if let (true, Some(sn)) = (drbd, &snode) {
                let (allocs, res) = allocate(&cfg, &pnode.uuid, &sn.uuid, inst.disks.len())?;
                _reservation = Some(res);
                for (i, (d, a)) in updated.disks.iter_mut().zip(allocs).enumerate() {
                    let vg = d
                        .children
                        .first()
                        .and_then(|c| match &c.logical_id {
                            LogicalId::Plain { vg, .. } => Some(vg.clone()),
                            _ => None,
                        })
                        .unwrap_or_else(|| cfg.cluster.vg_name.clone());
                    make_drbd(d, i, &vg, &pnode.uuid, &sn.uuid, a, now);
                    d.serial_no += 1;
                    env.log(format!(
                        "disk {}: DRBD port {}, minor {} on {} and {} on {}",
                        d.iv_name, a.port, a.minor_p, pnode.name, a.minor_s, sn.name
                    ));
                }
            } else {
                for d in &mut updated.disks {
                    d.nodes = vec![pnode.uuid.clone()];
                    d.serial_no += 1;
                    d.mtime = now;
                }
            }
        }
        let chosen: Vec<Disk> = selected
            .iter()
            .filter_map(|&i| updated.disks.get(i).cloned())
            .collect();
        let fsd = storage_dir(&cfg, inst.disk_template);

        // The old nodes that are still reachable.
        let old_nodes: Vec<Node> = self
            .nodes
            .iter()
            .filter_map(|n| cfg.node_by_name(n).cloned())
            .filter(|n| !n.offline)
            .collect();
        // DRBD devices still configured would keep the minors and the LVs busy.
        if drbd {
            let old_chosen: Vec<Disk> = selected
                .iter()
                .filter_map(|&i| inst.disks.get(i).cloned())
                .collect();
            for n in &old_nodes {
                let res: Result<Value, OpError> = env
                    .rpc(
                        n,
                        NodeRequest::DrbdShutdown {
                            disks: old_chosen.clone(),
                        },
                    )
                    .await;
                if let Err(e) = res {
                    env.log(format!("warning: {e}"));
                }
            }
        }
        // A node that keeps the instance under new ends gets empty disks: the old ones go.
        if changing {
            for n in old_nodes
                .iter()
                .filter(|o| nodes.iter().any(|n| n.uuid == o.uuid))
            {
                remove_old(env, &inst, n, &fsd).await?;
            }
        }

        // Create on the secondary and the primary at once (Ganeti: secondary first, then
        // primary; side by side the wait is the slower node's).
        let targets: Vec<Node> = snode.iter().cloned().chain([pnode.clone()]).collect();
        let made =
            crate::disks::create_on_nodes(env, &targets, &inst.name, &chosen, &fsd, "recreating")
                .await;
        let created = made.made;
        if let Some(e) = made.error {
            if changing {
                undo(env, &created, &fsd).await;
            }
            return Err(e);
        }
        if drbd {
            let mut sel = updated.clone();
            sel.disks = chosen.clone();
            env.log(format!(
                "making node {} the DRBD primary once connected (the resync starts), then \
                 secondary again",
                pnode.name
            ));
            let mut res = crate::drbd::promote_new(env, &sel, &pnode).await;
            if res.is_ok() {
                res = crate::drbd::set_role(env, &sel, &pnode, false, false).await;
            }
            if let Err(e) = res {
                if changing {
                    undo(env, &created, &fsd).await;
                }
                return Err(e);
            }
        }
        if changing {
            let mut fresh = match env.cfg().instances.get(&inst.uuid).cloned() {
                Some(i) => i,
                None => {
                    undo(env, &created, &fsd).await;
                    return Err(OpError::Exec(format!("instance {} vanished", inst.name)));
                }
            };
            fresh.primary_node = updated.primary_node.clone();
            fresh.disks = updated.disks.clone();
            if let Err(e) = env.apply(Command::UpdateInstance { instance: fresh }).await {
                undo(env, &created, &fsd).await;
                return Err(e);
            }
            // The nodes left behind lose their (stale) copies, when they can be reached.
            for n in old_nodes
                .iter()
                .filter(|o| !nodes.iter().any(|n| n.uuid == o.uuid))
            {
                if let Err(e) = remove_old(env, &inst, n, &fsd).await {
                    env.log(format!("warning: {e}"));
                }
            }
            env.log(format!(
                "instance {} now has its disks on {}",
                inst.name,
                nodes
                    .iter()
                    .map(|n| n.name.clone())
                    .collect::<Vec<_>>()
                    .join(":")
            ));
        }
        Ok(json!({
            "disks": selected,
            "nodes": nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        }))
    }
}

async fn undo(env: &Env<'_>, created: &[(Node, Disk)], fsd: &str) {
    for (n, d) in created.iter().rev() {
        env.log(format!(
            "undoing: removing disk {} on node {}",
            d.iv_name, n.name
        ));
        let res: Result<Value, OpError> = env
            .rpc(
                n,
                NodeRequest::BlockdevRemove {
                    disk: d.clone(),
                    file_storage_dir: fsd.to_string(),
                },
            )
            .await;
        if let Err(e) = res {
            env.log(format!("warning: {e}"));
        }
    }
}

/// Removes the instance's old disks on `node` (devices and LVs).
async fn remove_old(env: &Env<'_>, inst: &Instance, node: &Node, fsd: &str) -> Result<(), OpError> {
    for d in &inst.disks {
        env.log(format!(
            "removing the old disk {} on node {}",
            d.iv_name, node.name
        ));
        let _: Value = env
            .rpc(
                node,
                NodeRequest::BlockdevRemove {
                    disk: d.clone(),
                    file_storage_dir: fsd.to_string(),
                },
            )
            .await?;
    }
    Ok(())
}
