//! OP_INSTANCE_ACTIVATE_DISKS and OP_INSTANCE_DEACTIVATE_DISKS (Ganeti's
//! `gnt-instance activate-disks` / `deactivate-disks`).
//!
//! Activation brings the disks up on the instance's nodes without starting it: `plain` and
//! `file` disks are looked up on the primary node; a `drbd` disk is assembled and connected
//! on the secondary node first, then on the primary, which is promoted once both ends are
//! connected (Ganeti issue #846: never promote before the connection is up). The result is
//! Ganeti's: `[[node, iv_name, device path], ...]` on the primary node.
//!
//! A DRBD connection that ends StandAlone is a split brain in practice (both ends changed
//! data while apart, e.g. "primary cut off → failover → old primary returns"): DRBD's
//! policies (`after-sb-1pri consensus`) refuse to pick a winner and so does activation,
//! naming the disk and the command that decides. With `resolve_split_brain` the admin has
//! decided: the configured primary's data wins; the secondary drops its connection, is
//! demoted and connects again with `--discard-my-data`, then resyncs from the primary.
//!
//! Deactivation tears the DRBD devices down on both nodes (the LVs stay; `plain` and `file`
//! disks need nothing, as in Ganeti). Without `force` the instance must be marked down and
//! not run on its primary node; `force` skips those checks of the primary (Ganeti's
//! `--force`: the hypervisor is confused, deactivate anyway).

use crate::drbd;
use crate::instance_state::is_running;
use crate::util::{check_node_online, instance_by_name, node_by_uuid};
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{AdminState, ConfigData, Instance, LogicalId, Node, OpCode};
use maguey_rpc::{BlockdevInfo, DrbdDiskStatus, DrbdRole, NodeRequest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

enum Mode {
    Activate {
        wait_for_sync: bool,
        resolve_split_brain: bool,
    },
    Deactivate {
        force: bool,
    },
}

pub struct InstanceActivateDisks {
    name: String,
    /// Primary first, then the secondary (names), as expanded.
    nodes: Vec<String>,
    mode: Mode,
    instance: Option<Instance>,
}

/// The command that resolves a split brain of `inst` in favour of its primary.
pub(crate) fn resolve_command(inst: &str) -> String {
    format!("maguey instance activate-disks --resolve-split-brain {inst}")
}

/// The message for a DRBD disk that will not connect because one end is StandAlone.
pub(crate) fn split_brain_message(
    inst: &str,
    iv_name: &str,
    standalone_on: &str,
    other: &str,
    other_state: &str,
    primary: &str,
) -> String {
    format!(
        "disk {iv_name} of instance {inst}: DRBD is StandAlone on node {standalone_on} \
         ({other}: {other_state}): the two nodes refuse to connect, which means a split \
         brain (both changed data while apart, e.g. after a failover while the old primary \
         was cut off). To keep the data of the primary node {primary} and discard what was \
         written on the other node since the split, run: {}",
        resolve_command(inst)
    )
}

fn describe(st: &Option<DrbdDiskStatus>) -> String {
    match st {
        Some(s) => format!(
            "{} {}/{} {}/{}",
            s.connection, s.role, s.peer_role, s.disk, s.peer_disk
        ),
        None => "not active".into(),
    }
}

/// How long both ends of a DRBD disk may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls both nodes until every DRBD disk is connected; a StandAlone end fails at once with
/// the split-brain message.
async fn wait_both_connected(
    env: &Env<'_>,
    inst: &Instance,
    pnode: &Node,
    snode: &Node,
) -> Result<(), OpError> {
    let disks = drbd::drbd_disks(inst);
    let start = Instant::now();
    loop {
        let sp = drbd::status(env, inst, pnode).await?;
        let ss = drbd::status(env, inst, snode).await?;
        let mut waiting = None;
        for ((d, p), s) in disks.iter().zip(&sp).zip(&ss) {
            let standalone = |x: &Option<DrbdDiskStatus>| {
                x.as_ref().is_some_and(|x| x.connection == "StandAlone")
            };
            if standalone(p) || standalone(s) {
                let (on, other, other_st) = if standalone(s) {
                    (&snode.name, &pnode.name, describe(p))
                } else {
                    (&pnode.name, &snode.name, describe(s))
                };
                return Err(OpError::Exec(split_brain_message(
                    &inst.name,
                    &d.iv_name,
                    on,
                    other,
                    &other_st,
                    &pnode.name,
                )));
            }
            let connected = |x: &Option<DrbdDiskStatus>| {
                x.as_ref().is_some_and(|x| x.connection == "Connected")
            };
            if !(connected(p) && connected(s)) {
                waiting = Some(format!(
                    "{}: {} on {}, {} on {}",
                    d.iv_name,
                    describe(p),
                    pnode.name,
                    describe(s),
                    snode.name
                ));
            }
        }
        let Some(why) = waiting else {
            env.log(format!(
                "DRBD connected between {} and {} ({:.1} s)",
                pnode.name,
                snode.name,
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        };
        if start.elapsed() > CONNECT_TIMEOUT {
            return Err(OpError::Exec(format!(
                "DRBD of instance {} did not connect within {} s: {why}",
                inst.name,
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl InstanceActivateDisks {
    fn get(&self) -> Result<Instance, OpError> {
        self.instance
            .clone()
            .ok_or_else(|| OpError::Exec("internal error: not checked".into()))
    }

    async fn activate(
        &self,
        env: &Env<'_>,
        wait_for_sync: bool,
        resolve: bool,
    ) -> Result<Value, OpError> {
        let inst = self.get()?;
        let cfg = env.cfg();
        let pnode = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let mut out = Vec::new();
        if !drbd::drbd_disks(&inst).is_empty() {
            let snode = drbd::secondary_of(&cfg, &inst).cloned();
            let peer = snode.filter(|s| {
                if s.offline {
                    env.log(format!(
                        "secondary node {} is offline: the disks run degraded",
                        s.name
                    ));
                }
                !s.offline
            });
            if let Some(s) = &peer {
                if resolve {
                    env.log(format!(
                        "resolving the split brain of instance {}: node {} discards what it \
                         wrote since the split and resyncs from the primary node {}",
                        inst.name, s.name, pnode.name
                    ));
                    let _: Value = env
                        .rpc(
                            s,
                            NodeRequest::DrbdReconnectDiscard {
                                disks: drbd::drbd_disks(&inst),
                                instance_name: inst.name.clone(),
                            },
                        )
                        .await?;
                } else {
                    env.log(format!("assembling the disks on node {}", s.name));
                    drbd::assemble(env, &inst, s, DrbdRole::Secondary).await?;
                }
            }
            env.log(format!("assembling the disks on node {}", pnode.name));
            drbd::assemble(env, &inst, &pnode, DrbdRole::Secondary).await?;
            if let Some(s) = &peer {
                wait_both_connected(env, &inst, &pnode, s).await?;
            }
            drbd::set_role(env, &inst, &pnode, true, peer.is_none()).await?;
            if wait_for_sync && peer.is_some() {
                drbd::wait_for_sync(env, &inst, &pnode).await?;
            }
        }
        for (i, d) in inst.disks.iter().enumerate() {
            let path = match &d.logical_id {
                LogicalId::Drbd {
                    node_a,
                    minor_a,
                    minor_b,
                    ..
                } => {
                    let minor = if *node_a == pnode.uuid {
                        minor_a
                    } else {
                        minor_b
                    };
                    format!("/dev/drbd{minor}")
                }
                _ => {
                    let found: Option<BlockdevInfo> = env
                        .rpc(
                            &pnode,
                            NodeRequest::BlockdevFind {
                                disk: d.clone(),
                                file_storage_dir: crate::util::storage_dir(
                                    &cfg,
                                    inst.disk_template,
                                ),
                            },
                        )
                        .await?;
                    found
                        .ok_or_else(|| {
                            OpError::Exec(format!(
                                "disk {} (index {i}) of instance {} is missing on node {}; \
                                 'instance recreate-disks' makes it again",
                                d.iv_name, inst.name, pnode.name
                            ))
                        })?
                        .path
                }
            };
            out.push(json!([pnode.name, d.iv_name, path]));
        }
        env.log(format!("instance {}'s disks are active", inst.name));
        Ok(Value::Array(out))
    }

    async fn deactivate(&self, env: &Env<'_>, force: bool) -> Result<Value, OpError> {
        let inst = self.get()?;
        let cfg = env.cfg();
        let pnode = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        if !force && !pnode.offline {
            let running = is_running(env, &inst, &pnode).await.map_err(|e| {
                OpError::Exec(format!(
                    "cannot check whether instance {} runs on node {}: {e}; -f skips the check",
                    inst.name, pnode.name
                ))
            })?;
            if running {
                return Err(prereq(format!(
                    "instance {} is running on node {}: stop it before deactivating its disks",
                    inst.name, pnode.name
                )));
            }
        }
        if drbd::drbd_disks(&inst).is_empty() {
            env.log(format!(
                "instance {} has no disks that need deactivating ({})",
                inst.name, inst.disk_template
            ));
            return Ok(Value::Null);
        }
        let mut nodes = vec![pnode];
        nodes.extend(drbd::secondary_of(&cfg, &inst).cloned());
        for n in &nodes {
            if n.offline {
                env.log(format!("node {} is offline: skipped", n.name));
                continue;
            }
            env.log(format!("shutting the disks down on node {}", n.name));
            let _: Value = env
                .rpc(
                    n,
                    NodeRequest::DrbdShutdown {
                        disks: drbd::drbd_disks(&inst),
                    },
                )
                .await?;
        }
        Ok(Value::Null)
    }
}

impl LogicalUnit for InstanceActivateDisks {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let (name, mode) = match op {
            OpCode::InstanceActivateDisks(maguey_model::OpInstanceActivateDisks {
                instance_name,
                ignore_size: _,
                wait_for_sync,
                resolve_split_brain,
            }) => (
                instance_name,
                Mode::Activate {
                    wait_for_sync: *wait_for_sync,
                    resolve_split_brain: *resolve_split_brain,
                },
            ),
            OpCode::InstanceDeactivateDisks(maguey_model::OpInstanceDeactivateDisks {
                instance_name,
                force,
            }) => (instance_name, Mode::Deactivate { force: *force }),
            _ => return Err(wrong_op(op)),
        };
        let inst = instance_by_name(cfg, name)?;
        let mut nodes = vec![node_by_uuid(cfg, &inst.primary_node)?.name.clone()];
        for s in inst.secondary_nodes() {
            nodes.push(node_by_uuid(cfg, s)?.name.clone());
        }
        Ok(InstanceActivateDisks {
            name: inst.name.clone(),
            nodes,
            mode,
            instance: None,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        vec![
            (
                LockLevel::Instance,
                LockNames::Names(vec![self.name.clone()]),
                LockMode::Exclusive,
            ),
            (
                LockLevel::Node,
                LockNames::Names(self.nodes.clone()),
                LockMode::Shared,
            ),
        ]
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError> {
        let inst = instance_by_name(cfg, &self.name)?;
        let pnode = node_by_uuid(cfg, &inst.primary_node)?;
        if pnode.name != self.nodes[0] {
            return Err(prereq(format!(
                "instance {} moved while this job waited for its locks",
                self.name
            )));
        }
        match self.mode {
            Mode::Activate {
                resolve_split_brain,
                ..
            } => {
                check_node_online(pnode)?;
                if resolve_split_brain {
                    if !inst.disk_template.is_internally_mirrored() {
                        return Err(prereq(format!(
                            "instance {} has no DRBD disks (template {}): there is no split \
                             brain to resolve",
                            self.name, inst.disk_template
                        )));
                    }
                    let s = drbd::secondary_of(cfg, inst).ok_or_else(|| {
                        prereq(format!("instance {} has no secondary node", self.name))
                    })?;
                    if s.offline {
                        return Err(prereq(format!(
                            "the secondary node {} of instance {} is offline: a split brain \
                             can only be resolved with both nodes up",
                            s.name, self.name
                        )));
                    }
                }
            }
            Mode::Deactivate { force } => {
                if !force {
                    check_node_online(pnode)?;
                    if inst.admin_state == AdminState::Up {
                        return Err(prereq(format!(
                            "instance {} is marked up: stop it before deactivating its \
                             disks (-f skips this check)",
                            self.name
                        )));
                    }
                }
            }
        }
        self.instance = Some(inst.clone());
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        match self.mode {
            Mode::Activate {
                wait_for_sync,
                resolve_split_brain,
            } => self.activate(env, wait_for_sync, resolve_split_brain).await,
            Mode::Deactivate { force } => self.deactivate(env, force).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_brain_message_names_the_disk_and_the_command() {
        let m = split_brain_message("d", "disk/0", "node2", "node1", "Connecting", "node1");
        assert!(m.contains("disk disk/0 of instance d"), "{m}");
        assert!(m.contains("StandAlone on node node2"), "{m}");
        assert!(m.contains("split brain"), "{m}");
        assert!(
            m.ends_with("maguey instance activate-disks --resolve-split-brain d"),
            "{m}"
        );
    }
}
