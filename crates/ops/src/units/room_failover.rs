//! OP_ROOM_FAILOVER: the admin says a room went dark. Its nodes are marked offline (child
//! OP_NODE_SET_PARAMS jobs, the master excepted), then every instance whose primary was
//! there starts elsewhere (child OP_INSTANCE_FAILOVER jobs with `ignore_consistency`):
//! `drbd` on its secondary in another room. The origins are recorded, so that once the
//! nodes are back (`node modify --offline no`) `room return` brings the instances home
//! live. docs/rooms.md.

use crate::room_moves::{self, RoomMove};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::rooms::RoomEvacKind;
use maguey_model::{ConfigData, OpNodeSetParams};
use serde_json::Value;

pub struct RoomFailover {
    room: String,
    dry_run: bool,
    max_parallel: usize,
    nodes: Vec<String>,
}

impl LogicalUnit for RoomFailover {
    type Op = maguey_model::OpRoomFailover;
    type Checked = ();

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        if op.max_parallel == 0 {
            return Err(prereq("max_parallel must be at least 1"));
        }
        Ok(RoomFailover {
            room: op.room.clone(),
            dry_run: op.dry_run,
            max_parallel: op.max_parallel as usize,
            nodes: room_moves::room_node_names(cfg, &op.room)?,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::room_planning(self.nodes.clone())
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        room_moves::room_nodes(cfg, &self.room)?;
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        let cfg = env.cfg();
        if let Some(w) = room_moves::master_warning(&cfg, &self.room) {
            env.log(w);
        }
        let plan = room_moves::plan_failover(&cfg, &self.room)?;
        let shown = room_moves::log_plan(env, &plan);
        crate::locks::release_planning(env.ctx);
        if self.dry_run {
            env.log(format!(
                "dry run: {} failovers planned, nothing done",
                plan.moves.len()
            ));
            return Ok(shown);
        }
        // The room's nodes first: offline, so nothing waits for them.
        let offline: Vec<RoomMove> = room_moves::room_nodes(&cfg, &self.room)?
            .into_iter()
            .filter(|n| !n.offline && n.uuid != cfg.cluster.master_node)
            .map(|n| RoomMove {
                instance: format!("node {}", n.name),
                uuid: n.uuid.clone(),
                from: n.uuid.clone(),
                what: "mark offline".into(),
                ops: vec![OpNodeSetParams {
                    node_name: n.name.clone(),
                    offline: Some(true),
                    force: true,
                    ..Default::default()
                }
                .into()],
            })
            .collect();
        let marked = room_moves::run_moves(env, offline, self.max_parallel).await?;
        for (m, _, why) in &marked.failed {
            env.log(format!(
                "warning: {}: not marked offline: {why}",
                m.instance
            ));
        }
        let out = room_moves::run_moves(env, plan.moves, self.max_parallel).await?;
        room_moves::record_left(env, &self.room, RoomEvacKind::Failover, &out).await?;
        room_moves::summary(env, "failed over", &self.room, &out, &plan.stuck)
    }
}
