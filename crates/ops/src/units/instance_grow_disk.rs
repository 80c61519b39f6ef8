//! OP_INSTANCE_GROW_DISK: grows one disk of an instance, in Ganeti's order: free space on
//! every node of the disk, then the storage on all of them (`plain`: lvextend; `drbd`: the
//! data LV on both nodes, then `drbdsetup resize` on the primary; `file`: the image), then
//! the config, then the running guest (kvm: QMP `block_resize`), then the DRBD resync of the
//! new area (unless `wait_for_sync` is off).
//!
//! A failure after part of the growth keeps the old size in the config and logs what grew
//! (as Ganeti does: a larger LV or image is harmless, and a later grow-disk goes on from it).

use crate::util::{check_node_online, instance_by_name, node_by_uuid};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance, Node};
use maguey_rpc::{InstanceRunInfo, NodeInfo, NodeRequest};
use serde_json::{json, Value};

pub struct InstanceGrowDisk {
    name: String,
    disk: usize,
    amount: u64,
    absolute: bool,
    wait_for_sync: bool,
    /// Node names of the instance at expansion (locked), primary first.
    nodes: Vec<String>,
    /// MiB to add, computed by check_prereq.
    delta: u64,
    ignore_ipolicy: bool,
}

/// The MiB to add to a disk of `current` MiB: `amount` more, or up to `amount` with
/// `absolute`. Shrinking and empty growth are refused; an absolute size equal to the current
/// one is nothing to do (`Ok(0)`).
pub(crate) fn growth(
    current: u64,
    amount: u64,
    absolute: bool,
    disk: usize,
) -> Result<u64, OpError> {
    if absolute {
        if amount < current {
            return Err(prereq(format!(
                "cannot shrink disk {disk} from {current} MiB to {amount} MiB: disks only grow"
            )));
        }
        Ok(amount - current)
    } else if amount == 0 {
        Err(prereq(format!(
            "the amount to grow disk {disk} by must be positive"
        )))
    } else if current
        .checked_add(amount)
        .is_none_or(|s| s > u64::MAX >> 21)
    {
        Err(prereq(format!(
            "growing disk {disk} by {amount} MiB gives an impossible size"
        )))
    } else {
        Ok(amount)
    }
}

fn instance_nodes(cfg: &ConfigData, inst: &Instance) -> Result<Vec<String>, OpError> {
    let mut uuids = vec![inst.primary_node.as_str()];
    uuids.extend(inst.secondary_nodes());
    uuids
        .into_iter()
        .map(|u| node_by_uuid(cfg, u).map(|n| n.name.clone()))
        .collect()
}

impl LogicalUnit for InstanceGrowDisk {
    type Op = maguey_model::OpInstanceGrowDisk;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceGrowDisk {
            instance_name,
            disk,
            amount,
            absolute,
            wait_for_sync,
            ignore_ipolicy,
        } = op;
        let inst = instance_by_name(cfg, instance_name)?;
        Ok(InstanceGrowDisk {
            name: inst.name.clone(),
            disk: *disk,
            amount: *amount,
            absolute: *absolute,
            wait_for_sync: *wait_for_sync,
            nodes: instance_nodes(cfg, inst)?,
            delta: 0,
            ignore_ipolicy: *ignore_ipolicy,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let nodes = crate::locks::nodes(self.nodes.clone());
        crate::locks::instance_on_nodes_moving(&self.name, nodes.clone(), nodes)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        if instance_nodes(cfg, inst)? != self.nodes {
            return Err(prereq(format!(
                "instance {} moved while this job waited for its locks",
                self.name
            )));
        }
        if !inst.disk_template.has_disks() {
            return Err(prereq(format!(
                "instance {} has disk template {}: its disks cannot grow",
                self.name, inst.disk_template
            )));
        }
        let disk = inst.disks.get(self.disk).ok_or_else(|| {
            prereq(format!(
                "instance {} has no disk {} (it has {} disk(s), numbered from 0)",
                self.name,
                self.disk,
                inst.disks.len()
            ))
        })?;
        self.delta = growth(disk.size, self.amount, self.absolute, self.disk)?;
        let mut grown = inst.clone();
        grown.disks[self.disk].size += self.delta;
        crate::ipolicy::check(cfg, &grown, &inst.primary_node, self.ignore_ipolicy)?;
        for u in &disk.nodes {
            check_node_online(node_by_uuid(cfg, u)?)?;
        }
        Ok(inst.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let inst = checked;
        let cfg = env.cfg();
        let disk = inst.disks[self.disk].clone();
        let old = disk.size;
        if self.delta == 0 {
            env.log(format!(
                "disk {} of instance {} is already {old} MiB: nothing to do",
                self.disk, inst.name
            ));
            return Ok(json!({"disk": self.disk, "old_size": old, "new_size": old}));
        }
        let new = old + self.delta;
        let primary = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let nodes: Vec<Node> = disk
            .nodes
            .iter()
            .map(|u| node_by_uuid(&cfg, u).cloned())
            .collect::<Result<_, _>>()?;
        let sdir = crate::util::storage_dir(&cfg, disk.dev_type.template());

        // 1. Free space on every node of the disk (LVM; file storage is not checked, as in
        // Ganeti).
        if disk.dev_type.template().uses_lvm() {
            for n in &nodes {
                let info: NodeInfo = env
                    .rpc(
                        n,
                        NodeRequest::NodeInfo {
                            file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                            hypervisor: inst.hypervisor.to_string(),
                        },
                    )
                    .await?;
                match info.storage.iter().find(|s| s.storage_type == "lvm-vg") {
                    Some(st) if st.storage_free < self.delta => {
                        return Err(prereq(format!(
                            "not enough space in volume group {} on node {} to grow disk {} \
                             by {} MiB: {} MiB free",
                            st.name, n.name, self.disk, self.delta, st.storage_free
                        )))
                    }
                    Some(_) => {}
                    None => {
                        return Err(prereq(format!(
                            "node {} reports no LVM volume group",
                            n.name
                        )))
                    }
                }
            }
        }

        // 2. DRBD must be connected with a primary for `drbdsetup resize`: bring the disks up
        // when the instance is down (and put them back afterwards).
        let drbd = disk.dev_type == maguey_model::DevType::Drbd;
        let mut activated = false;
        if drbd {
            let st = crate::drbd::status(env, &inst, &primary).await?;
            let idx = crate::drbd::drbd_disks(&inst)
                .iter()
                .position(|d| d.uuid == disk.uuid);
            let primary_up = idx
                .and_then(|i| st.get(i).cloned().flatten())
                .is_some_and(|s| s.role == "Primary");
            if !primary_up {
                env.log(format!(
                    "activating the disks of instance {} for the growth",
                    inst.name
                ));
                crate::drbd::activate_for_start(env, &inst, &primary, false).await?;
                activated = true;
            }
            crate::drbd::wait_connected(env, &inst, &primary).await?;
        }

        // 3. The storage on every node, then the DRBD device on the primary.
        env.log(format!(
            "growing disk {} of instance {} by {} MiB to {new} MiB",
            self.disk, inst.name, self.delta
        ));
        let mut grown: Vec<String> = Vec::new();
        let mut steps: Vec<(&Node, bool)> = nodes.iter().map(|n| (n, true)).collect();
        if drbd {
            steps.push((&primary, false));
        }
        for (n, backing) in steps {
            let r: Result<Value, OpError> = env
                .rpc(
                    n,
                    NodeRequest::BlockdevGrow {
                        disk: disk.clone(),
                        file_storage_dir: sdir.clone(),
                        amount: self.delta,
                        backingstore: backing,
                    },
                )
                .await;
            if let Err(e) = r {
                let what = if grown.is_empty() {
                    "nothing grew".to_string()
                } else {
                    format!("already grown: {}", grown.join(", "))
                };
                env.log(format!(
                    "growing disk {} failed ({what}); the config keeps its size of {old} MiB \
                     (the extra space is harmless; grow-disk again to finish)",
                    self.disk
                ));
                if activated {
                    let _ = crate::drbd::set_role(env, &inst, &primary, false, false).await;
                }
                return Err(e);
            }
            grown.push(if backing {
                format!("{} storage on node {}", disk.dev_type, n.name)
            } else {
                format!("DRBD device on node {}", n.name)
            });
        }

        // 4. The config.
        let cfg = env.cfg();
        let mut updated = cfg
            .instances
            .get(&inst.uuid)
            .cloned()
            .ok_or_else(|| OpError::Exec(format!("instance {} vanished", inst.name)))?;
        let d = updated
            .disks
            .get_mut(self.disk)
            .ok_or_else(|| OpError::Exec(format!("disk {} vanished", self.disk)))?;
        d.size = new;
        if drbd {
            // The data LV (first child) grew with the device; the meta LV did not.
            if let Some(data) = d.children.first_mut() {
                data.size += self.delta;
            }
        }
        env.apply(Command::UpdateInstance { instance: updated })
            .await?;
        env.log(format!("disk {} is now {new} MiB in the config", self.disk));

        // 5. The running guest.
        let info: Option<InstanceRunInfo> = env
            .rpc(
                &primary,
                NodeRequest::InstanceInfo {
                    name: inst.name.clone(),
                    hypervisor: inst.hypervisor.to_string(),
                },
            )
            .await?;
        let mut notified = false;
        if info.is_some() {
            let r: Result<Value, OpError> = env
                .rpc(
                    &primary,
                    NodeRequest::InstanceResizeDisk {
                        name: inst.name.clone(),
                        hypervisor: inst.hypervisor.to_string(),
                        disk_index: self.disk,
                        size: new,
                    },
                )
                .await;
            match r {
                Ok(_) => {
                    env.log(format!(
                        "hypervisor {} told: the guest sees disk {} as {new} MiB",
                        inst.hypervisor, self.disk
                    ));
                    notified = true;
                }
                Err(e) => env.log(format!(
                    "WARNING: the running guest was not told about the new size ({e}); it \
                     sees it after its next restart"
                )),
            }
        }

        // 6. The resync of the new area.
        if drbd {
            if self.wait_for_sync {
                crate::drbd::wait_for_sync(env, &inst, &primary).await?;
            } else {
                env.log("not waiting for the DRBD resync (--no-wait-for-sync)");
            }
            if activated && inst.admin_state != AdminState::Up {
                crate::drbd::set_role(env, &inst, &primary, false, false).await?;
            }
        }
        Ok(json!({
            "disk": self.disk,
            "old_size": old,
            "new_size": new,
            "hypervisor_notified": notified,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_amounts() {
        assert_eq!(growth(64, 32, false, 0).ok(), Some(32));
        assert_eq!(growth(64, 96, true, 0).ok(), Some(32));
        assert_eq!(growth(64, 64, true, 0).ok(), Some(0));
        let e = growth(64, 32, true, 1).unwrap_err().to_string();
        assert!(
            e.contains("cannot shrink disk 1 from 64 MiB to 32 MiB"),
            "{e}"
        );
        let e = growth(64, 0, false, 0).unwrap_err().to_string();
        assert!(e.contains("must be positive"), "{e}");
        assert!(growth(64, u64::MAX, false, 0).is_err());
    }
}
