//! OP_ROOM_EVACUATE and OP_ROOM_RETURN: every instance leaves a room live, and comes back.
//! The plan comes from `room_moves` (placement engine for the non-mirrored instances); each
//! move is its own child job, and the origins of the instances that left are recorded in
//! the config for the return. docs/rooms.md.

use crate::room_moves::{self, RoomPlan};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::rooms::RoomEvacKind;
use maguey_model::ConfigData;
use serde_json::Value;

/// Which way the instances go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Out,
    Back,
}

pub struct RoomEvacuate {
    room: String,
    way: Way,
    dry_run: bool,
    max_parallel: usize,
    nodes: Vec<String>,
}

crate::unit_alias!(
    /// OP_ROOM_RETURN: the recorded instances go back to their nodes in the room.
    RoomReturn,
    maguey_model::OpRoomReturn,
    RoomEvacuate,
    RoomEvacuate::back
);

impl RoomEvacuate {
    fn back(op: &maguey_model::OpRoomReturn, cfg: &ConfigData) -> Result<Self, OpError> {
        Self::new(&op.room, Way::Back, op.dry_run, op.max_parallel, cfg)
    }

    fn new(
        room: &str,
        way: Way,
        dry_run: bool,
        max_parallel: u32,
        cfg: &ConfigData,
    ) -> Result<Self, OpError> {
        if max_parallel == 0 {
            return Err(prereq("max_parallel must be at least 1"));
        }
        Ok(RoomEvacuate {
            room: room.to_string(),
            way,
            dry_run,
            max_parallel: max_parallel as usize,
            nodes: room_moves::room_node_names(cfg, room)?,
        })
    }
}

impl LogicalUnit for RoomEvacuate {
    type Op = maguey_model::OpRoomEvacuate;
    type Checked = ();

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        Self::new(&op.room, Way::Out, op.dry_run, op.max_parallel, cfg)
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::room_planning(self.nodes.clone())
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        room_moves::room_nodes(cfg, &self.room)?;
        if self.way == Way::Back {
            room_moves::plan_return(cfg, &self.room)?;
        }
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let plan: RoomPlan = match self.way {
            Way::Out => {
                if let Some(w) = room_moves::master_warning(&cfg, &self.room) {
                    env.log(w);
                }
                room_moves::plan_evacuate(env.master, &cfg, &self.room).await?
            }
            Way::Back => room_moves::plan_return(&cfg, &self.room)?,
        };
        let shown = room_moves::log_plan(env, &plan);
        crate::locks::release_planning(env.ctx);
        if self.dry_run {
            env.log(format!(
                "dry run: {} moves planned, nothing done",
                plan.moves.len()
            ));
            return Ok(shown);
        }
        let out = room_moves::run_moves(env, plan.moves, self.max_parallel).await?;
        match self.way {
            Way::Out => {
                room_moves::record_left(env, &self.room, RoomEvacKind::Evacuate, &out).await?
            }
            Way::Back => room_moves::record_returned(env, &self.room, &out).await?,
        }
        let verb = match self.way {
            Way::Out => "left the room",
            Way::Back => "returned",
        };
        room_moves::summary(env, verb, &self.room, &out, &plan.stuck)
    }
}
