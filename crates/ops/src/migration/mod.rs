//! The migration tasklet: the one way an instance changes its primary node, in the shape of
//! Ganeti's `TLMigrateInstance`. OP_INSTANCE_MIGRATE, OP_INSTANCE_FAILOVER and
//! OP_INSTANCE_MOVE build a [`Migration`] in `check_prereq` and run it in `exec`; node
//! evacuation (OP_NODE_EVACUATE, OP_NODE_MIGRATE) and the balancer submit those opcodes as
//! child jobs, so every move of a primary runs through here.
//!
//! [`Migration::check`] is the prerequisite check (nothing changes): the instance is still on
//! the node its job locked, the kind of move suits its disk template, the target is usable.
//! [`Migration::exec`] resolves the target (the DRBD secondary, the admin's node, or the
//! placement engine's choice) and moves the instance:
//! - [`MoveKind::Live`]: `live::live_migrate` (memory, plus the local disks over NBD or a
//!   DRBD dual-primary window); a stopped instance is relocated instead when allowed;
//! - [`MoveKind::Failover`]: stop on the primary, start on the target (shared or DRBD disks);
//! - [`MoveKind::Copy`]: stop, copy the disks, start (file disks);
//! - [`MoveKind::Cleanup`]: repair what a failed live migration left (`cleanup`).

mod cleanup;
mod live;
mod offline;
mod target;

use crate::lifecycle::is_running;
use crate::util::{node_by_name, node_by_uuid};
use crate::{prereq, Env, LockRequest};
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance, Node};
use serde_json::{json, Value};
use target::{check_target, check_target_memory, choose_target};

/// How the instance moves.
#[derive(Debug, Clone, Copy)]
pub enum MoveKind {
    /// Live migration; a stopped instance is relocated without migration if
    /// `allow_failover`, refused otherwise.
    Live { allow_failover: bool },
    /// Shut down on the primary, started on the target: disks every node sees, or DRBD
    /// (the target is the secondary). `ignore_consistency` goes on when the primary is dead.
    Failover {
        shutdown_timeout: u64,
        ignore_consistency: bool,
    },
    /// Shut down, the disks copied to the target, started there (file disks).
    Copy {
        shutdown_timeout: u64,
        ignore_consistency: bool,
    },
    /// Repair after a failed live migration: no target.
    Cleanup,
}

/// Which instance moves where, resolved from an opcode's names (nothing locked yet); the
/// units of migrate, failover and move each keep one with their [`MoveKind`].
#[derive(Debug)]
pub struct MoveRequest {
    name: String,
    /// The primary node's name when the job was expanded (checked again under the locks).
    primary: String,
    target: Option<String>,
    kind: MoveKind,
}

impl MoveRequest {
    pub fn expand(
        cfg: &ConfigData,
        instance_name: &str,
        target_node: Option<&str>,
        kind: MoveKind,
        ignore_ipolicy: bool,
    ) -> Result<Self, OpError> {
        let inst = crate::util::instance_by_name(cfg, instance_name)?;
        let target = match target_node {
            Some(t) => {
                let node = node_by_name(cfg, t)?;
                // The policy of the target's group, when it is another group.
                crate::ipolicy::check_move(cfg, inst, &node.uuid, ignore_ipolicy)?;
                Some(node.name.clone())
            }
            None => None,
        };
        if matches!(kind, MoveKind::Cleanup) && target.is_some() {
            return Err(prereq("--cleanup takes no target node"));
        }
        Ok(MoveRequest {
            name: instance_name.to_string(),
            primary: node_by_uuid(cfg, &inst.primary_node)?.name.clone(),
            target,
            kind,
        })
    }

    /// The instance, its primary and the target (if named), through the moving policy.
    pub fn locks(&self) -> Vec<LockRequest> {
        crate::locks::instance_moving(&self.name, &self.primary, self.target.as_deref())
    }

    /// The prerequisites on a fresh snapshot: the [`Migration`] to run.
    pub fn check(&self, cfg: &ConfigData) -> Result<Migration, OpError> {
        Migration::check(
            cfg,
            &self.name,
            &self.primary,
            self.target.as_deref(),
            self.kind,
        )
    }
}

/// One checked move of one instance (see the module docs).
#[derive(Debug)]
pub struct Migration {
    inst: Instance,
    /// The target node's name; `None`: the placement engine chooses.
    target: Option<String>,
    kind: MoveKind,
}

impl Migration {
    /// The prerequisites, on a fresh snapshot taken under the job's locks: `primary` is the
    /// node the job locked as the instance's primary.
    pub fn check(
        cfg: &ConfigData,
        name: &str,
        primary: &str,
        target: Option<&str>,
        kind: MoveKind,
    ) -> Result<Self, OpError> {
        let inst = crate::util::instance_by_name(cfg, name)?;
        crate::cut_off::check(cfg, inst)?;
        let mut target = target.map(str::to_string);
        match kind {
            MoveKind::Cleanup => still_on(cfg, inst, primary)?,
            MoveKind::Live { .. } => {
                still_on(cfg, inst, primary)?;
                if inst.admin_state == AdminState::Offline {
                    return Err(prereq(format!("instance {name} is offline")));
                }
                let p = node_by_uuid(cfg, &inst.primary_node)?;
                if p.offline {
                    return Err(prereq(format!(
                        "the primary node {} is offline; use 'instance failover \
                         --ignore-consistency' to restart the instance elsewhere",
                        p.name
                    )));
                }
            }
            MoveKind::Failover { .. } => {
                let drbd = inst.disk_template.is_internally_mirrored();
                if drbd {
                    let sec = crate::drbd::secondary_of(cfg, inst)
                        .ok_or_else(|| prereq(format!("instance {name} has no secondary node")))?;
                    match &target {
                        Some(t) if *t != sec.name => {
                            return Err(prereq(format!(
                                "instance {name} has drbd disks: it can only fail over to its \
                                 secondary node {}",
                                sec.name
                            )))
                        }
                        _ => target = Some(sec.name.clone()),
                    }
                }
                if !drbd && !inst.disk_template.is_node_independent() {
                    return Err(prereq(format!(
                        "instance {name} has disk template {}: failover needs disks every node \
                         sees (sharedfile); use 'instance migrate' (live, copies the disks) or \
                         'instance move' for file disks",
                        inst.disk_template
                    )));
                }
                still_on(cfg, inst, primary)?;
            }
            MoveKind::Copy { .. } => {
                if !inst.disk_template.can_move_by_copy() {
                    return Err(prereq(format!(
                        "instance {name} has disk template {}; 'instance move' copies file \
                         disks only (use 'instance migrate' or 'instance failover' for shared \
                         disks)",
                        inst.disk_template
                    )));
                }
                still_on(cfg, inst, primary)?;
                let src = node_by_uuid(cfg, &inst.primary_node)?;
                if src.offline {
                    return Err(prereq(format!(
                        "the primary node {} is offline: its disks cannot be copied",
                        src.name
                    )));
                }
            }
        }
        if !matches!(kind, MoveKind::Cleanup) {
            if let Some(t) = &target {
                check_target(inst, node_by_name(cfg, t)?)?;
            }
        }
        Ok(Migration {
            inst: inst.clone(),
            target,
            kind,
        })
    }

    /// Moves the instance. On failure the instance is where it was, running if it ran, and
    /// the config names the old primary (or the job log says what to clean up).
    pub async fn exec(self, env: &Env<'_>) -> Result<Value, OpError> {
        let inst = &self.inst;
        if let MoveKind::Cleanup = self.kind {
            return cleanup::cleanup(env, inst).await;
        }
        let cfg = env.cfg();
        let src = node_by_uuid(&cfg, &inst.primary_node)?.clone();
        let dst = self.resolve_target(env, &cfg).await?;
        check_target(inst, &dst)?;
        match self.kind {
            MoveKind::Live { allow_failover } => {
                if !is_running(env, inst, &src).await? {
                    if !allow_failover {
                        return Err(prereq(format!(
                            "instance {} is not running, and failover is not allowed",
                            inst.name
                        )));
                    }
                    env.log(format!(
                        "instance {} is not running: moving it without migration",
                        inst.name
                    ));
                    offline::relocate_stopped(env, inst, &src, &dst).await?;
                    return Ok(json!({"migrated": false, "node": dst.name}));
                }
                check_target_memory(env, inst, &dst).await?;
                let st = live::live_migrate(env, inst, &src, &dst).await?;
                Ok(json!({
                    "node": dst.name,
                    "total_time_ms": st.total_time,
                    "downtime_ms": st.downtime,
                    "ram_bytes": st.transferred,
                    "disk_bytes": st.disk_transferred,
                }))
            }
            MoveKind::Failover {
                shutdown_timeout,
                ignore_consistency,
            } => {
                offline::failover(env, inst, &src, &dst, shutdown_timeout, ignore_consistency)
                    .await?;
                Ok(json!({"node": dst.name}))
            }
            MoveKind::Copy {
                shutdown_timeout,
                ignore_consistency,
            } => {
                offline::copy(env, inst, &src, &dst, shutdown_timeout, ignore_consistency).await?;
                Ok(json!({"node": dst.name}))
            }
            MoveKind::Cleanup => cleanup::cleanup(env, inst).await,
        }
    }

    /// The target: a DRBD instance's secondary (the only node with its data; a live
    /// migration elsewhere is refused), the admin's node, or the placement engine's choice.
    async fn resolve_target(&self, env: &Env<'_>, cfg: &ConfigData) -> Result<Node, OpError> {
        let inst = &self.inst;
        if let MoveKind::Live { .. } = self.kind {
            if inst.disk_template.is_internally_mirrored() {
                if let Some(sec) = crate::drbd::secondary_of(cfg, inst) {
                    if self.target.as_deref().is_some_and(|t| t != sec.name) {
                        return Err(prereq(format!(
                            "instance {} has drbd disks: it can only migrate to its secondary \
                             node {}",
                            inst.name, sec.name
                        )));
                    }
                    return Ok(sec.clone());
                }
            }
        }
        match &self.target {
            Some(t) => Ok(node_by_name(cfg, t)?.clone()),
            None => choose_target(env, inst).await,
        }
    }
}

/// The instance is still on the node its job locked as its primary.
fn still_on(cfg: &ConfigData, inst: &Instance, primary: &str) -> Result<(), OpError> {
    if node_by_uuid(cfg, &inst.primary_node)?.name != primary {
        return Err(prereq(format!(
            "instance {} moved while this job waited for its locks",
            inst.name
        )));
    }
    Ok(())
}
