//! OP_GROUP_EVACUATE and OP_INSTANCE_CHANGE_GROUP: instances leave their node group
//! (Ganeti's LUGroupEvacuate and LUInstanceChangeGroup). The placement engine plans every
//! move at once (`group_moves::plan`, hail's `change-group`) under shared locks on the groups
//! and nodes; the locks are released and each move runs as its own child job (at most four
//! at once, one with `sequential`). Nothing moves when an instance cannot: the plan is
//! refused whole, as Ganeti does. `dry_run` logs the plan and stops.
//!
//! The child job of a `drbd` instance is an OP_INSTANCE_CHANGE_GROUP naming the new pair
//! (`target_node`, `remote_node`): no planning, the instance and the four nodes locked
//! (the new pair's resources exclusively), `drbd_group_move::PairMove` run.

use crate::drbd_group_move::{self, PairMove};
use crate::group_moves;
use crate::room_moves::{self, RoomPlan};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::ConfigData;
use serde_json::{json, Value};

/// Moves at once without `sequential` (Ganeti runs the evacuation's jobs side by side).
const PARALLEL: usize = 4;

/// What leaves: one instance, or every instance of a group; or one `drbd` instance onto
/// a new pair chosen by a plan.
#[derive(Debug, Clone)]
enum Leaving {
    Instance(String),
    Group(String),
    Pair {
        instance: String,
        /// The primary node (name) when the job was expanded.
        primary: String,
        /// Every node involved (old and new pair), for the locks.
        nodes: Vec<String>,
        pnode: String,
        snode: String,
    },
}

/// What the checks hand to `exec`: the instances that leave and the target groups (a
/// plan), or the move of one `drbd` instance onto its new pair.
pub enum Checked {
    Plan(Vec<String>, Vec<String>),
    Pair(Box<PairMove>),
}

pub struct GroupEvacuate {
    leaving: Leaving,
    targets: Vec<String>,
    dry_run: bool,
    sequential: bool,
    force_failover: bool,
}

crate::unit_alias!(
    /// OP_INSTANCE_CHANGE_GROUP: one instance to another group.
    InstanceChangeGroup,
    maguey_model::OpInstanceChangeGroup,
    GroupEvacuate,
    GroupEvacuate::one
);

fn check_iallocator(a: Option<&str>) -> Result<(), OpError> {
    match a {
        None | Some("") | Some("hail") | Some("maguey") => Ok(()),
        Some(other) => Err(prereq(format!(
            "unknown iallocator '{other}' (Maguey's placement engine answers as 'hail')"
        ))),
    }
}

impl GroupEvacuate {
    fn one(op: &maguey_model::OpInstanceChangeGroup, cfg: &ConfigData) -> Result<Self, OpError> {
        check_iallocator(op.iallocator.as_deref())?;
        match (&op.target_node, &op.remote_node) {
            (Some(p), Some(s)) => return Self::pair(op, p, s, cfg),
            (None, None) => {}
            _ => {
                return Err(prereq(
                    "target_node and remote_node (a new DRBD pair) go together",
                ))
            }
        }
        let u = GroupEvacuate {
            leaving: Leaving::Instance(op.instance_name.clone()),
            targets: op.target_groups.clone(),
            dry_run: op.dry_run,
            sequential: true,
            force_failover: false,
        };
        u.resolve(cfg)?;
        Ok(u)
    }

    /// The child job of a `drbd` instance: onto the new pair `pnode`/`snode`.
    fn pair(
        op: &maguey_model::OpInstanceChangeGroup,
        pnode: &str,
        snode: &str,
        cfg: &ConfigData,
    ) -> Result<Self, OpError> {
        if op.dry_run {
            return Err(prereq(
                "a move onto a named DRBD pair is not planned: no dry run (plan with \
                 'instance change-group --dry-run' without nodes)",
            ));
        }
        let inst = crate::util::instance_by_name(cfg, &op.instance_name)?;
        let pn = crate::util::node_by_name(cfg, pnode)?.name.clone();
        let sn = crate::util::node_by_name(cfg, snode)?.name.clone();
        let primary = crate::util::node_by_uuid(cfg, &inst.primary_node)?
            .name
            .clone();
        let u = GroupEvacuate {
            leaving: Leaving::Pair {
                instance: inst.name.clone(),
                primary: primary.clone(),
                nodes: drbd_group_move::involved_nodes(cfg, inst, &pn, &sn),
                pnode: pn.clone(),
                snode: sn.clone(),
            },
            targets: Vec::new(),
            dry_run: false,
            sequential: true,
            force_failover: false,
        };
        PairMove::check(cfg, &inst.name, &primary, &pn, &sn)?;
        Ok(u)
    }

    /// The instances that leave (names) and the target groups (uuids), on `cfg`.
    fn resolve(&self, cfg: &ConfigData) -> Result<(Vec<String>, Vec<String>), OpError> {
        match &self.leaving {
            Leaving::Pair { .. } => Err(OpError::Exec(
                "a move onto a named DRBD pair has no plan".into(),
            )),
            Leaving::Instance(name) => {
                let i = crate::util::instance_by_name(cfg, name)?;
                let from = group_moves::group_of(cfg, i);
                let t = group_moves::target_groups(cfg, &self.targets, &[from.as_str()])?;
                Ok((vec![i.name.clone()], t))
            }
            Leaving::Group(g) => {
                let g = group_moves::group(cfg, g)?;
                let t = group_moves::target_groups(cfg, &self.targets, &[g.uuid.as_str()])?;
                let mut names: Vec<String> = cfg
                    .instances
                    .values()
                    .filter(|i| group_moves::group_of(cfg, i) == g.uuid)
                    .map(|i| i.name.clone())
                    .collect();
                names.sort();
                Ok((names, t))
            }
        }
    }
}

impl LogicalUnit for GroupEvacuate {
    type Op = maguey_model::OpGroupEvacuate;
    type Checked = Checked;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        check_iallocator(op.iallocator.as_deref())?;
        let u = GroupEvacuate {
            leaving: Leaving::Group(op.group_name.clone()),
            targets: op.target_groups.clone(),
            dry_run: op.dry_run,
            sequential: op.sequential,
            force_failover: op.force_failover,
        };
        u.resolve(cfg)?;
        Ok(u)
    }

    fn locks(&self) -> Vec<LockRequest> {
        match &self.leaving {
            // The instance exclusively; the four nodes shared (the old pair's other instances
            // keep running); the new pair's resources exclusively (memory, storage, minors).
            Leaving::Pair {
                instance,
                nodes,
                pnode,
                snode,
                ..
            } => crate::locks::instance_on_nodes_moving(
                instance,
                crate::locks::nodes(nodes.clone()),
                crate::locks::nodes([pnode.clone(), snode.clone()]),
            ),
            _ => crate::locks::group_planning(),
        }
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        match &self.leaving {
            Leaving::Pair {
                instance,
                primary,
                pnode,
                snode,
                ..
            } => Ok(Checked::Pair(Box::new(PairMove::check(
                cfg, instance, primary, pnode, snode,
            )?))),
            _ => {
                let (names, targets) = self.resolve(cfg)?;
                Ok(Checked::Plan(names, targets))
            }
        }
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let (names, targets) = match checked {
            Checked::Pair(m) => return m.exec(env).await,
            Checked::Plan(n, t) => (n, t),
        };
        let cfg = env.cfg();
        let what = match &self.leaving {
            Leaving::Instance(i) | Leaving::Pair { instance: i, .. } => format!("instance {i}"),
            Leaving::Group(g) => format!("group {g}"),
        };
        if names.is_empty() {
            crate::locks::release_group_planning(env.ctx);
            env.log(format!("{what}: no instance to move"));
            return Ok(json!({"done": [], "failed": [], "stuck": [], "jobs": []}));
        }
        let insts: Vec<&maguey_model::Instance> = names
            .iter()
            .filter_map(|n| cfg.instance_by_name(n))
            .collect();
        let plan: RoomPlan =
            group_moves::plan(env.master, &cfg, &insts, &targets, self.force_failover).await?;
        let shown = room_moves::log_plan(env, &plan);
        crate::locks::release_group_planning(env.ctx);
        if self.dry_run {
            env.log(format!(
                "dry run: {} moves planned, {} instances cannot move; nothing done",
                plan.moves.len(),
                plan.stuck.len()
            ));
            return Ok(shown);
        }
        if !plan.stuck.is_empty() {
            let why: Vec<String> = plan
                .stuck
                .iter()
                .map(|(i, m)| format!("{i}: {m}"))
                .collect();
            return Err(prereq(format!(
                "{what}: not every instance can change group, nothing moved: {}",
                why.join("; ")
            )));
        }
        let limit = if self.sequential { 1 } else { PARALLEL };
        let out = room_moves::run_moves(env, plan.moves, limit).await?;
        env.log(format!(
            "{what}: {} moved to other groups, {} failed",
            out.done.len(),
            out.failed.len()
        ));
        let jobs: Vec<Value> = out
            .done
            .iter()
            .map(|(_, id)| json!([true, id]))
            .chain(out.failed.iter().map(|(_, id, _)| json!([false, id])))
            .collect();
        if !out.failed.is_empty() {
            let why: Vec<String> = out
                .failed
                .iter()
                .map(|(m, id, why)| format!("{} (job {id}): {why}", m.instance))
                .collect();
            return Err(OpError::Exec(format!(
                "{} of {} moves failed: {}",
                out.failed.len(),
                out.done.len() + out.failed.len(),
                why.join("; ")
            )));
        }
        Ok(json!({
            "done": out.done.iter().map(|(m, _)| m.instance.clone()).collect::<Vec<_>>(),
            "failed": Vec::<String>::new(),
            "stuck": Vec::<String>::new(),
            "jobs": jobs,
        }))
    }
}
