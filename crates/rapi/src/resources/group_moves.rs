//! `PUT /2/instances/I/change-group` and `PUT /2/groups/G/evacuate` (Ganeti's
//! OP_INSTANCE_CHANGE_GROUP and OP_GROUP_EVACUATE): the body has the opcode's fields
//! (`target_groups`, `iallocator`, `early_release`; `sequential` and `force_failover` for
//! the evacuation); `?dry-run=1` only plans, the plan is in the job's log and result.

use super::request::Body;
use super::submit_op;
use crate::{ApiResult, Rapi, Req};
use maguey_model::{OpCode, OpGroupEvacuate, OpInstanceChangeGroup};

pub(super) fn change_group(rapi: &Rapi, req: &Req, inst: &str) -> ApiResult {
    let b = Body::parse(
        req,
        "OP_INSTANCE_CHANGE_GROUP",
        &["early_release", "iallocator", "target_groups"],
        &[],
    )?;
    let op = OpInstanceChangeGroup {
        instance_name: inst.to_string(),
        early_release: b.or("early_release", false)?,
        iallocator: b.opt("iallocator")?,
        target_groups: b.opt("target_groups")?.unwrap_or_default(),
        dry_run: req.flag("dry-run", false)?,
        ..Default::default()
    };
    submit_op(rapi, OpCode::InstanceChangeGroup(op))
}

pub(super) fn evacuate(rapi: &Rapi, req: &Req, group: &str) -> ApiResult {
    let b = Body::parse(
        req,
        "OP_GROUP_EVACUATE",
        &[
            "early_release",
            "iallocator",
            "target_groups",
            "sequential",
            "force_failover",
        ],
        &[],
    )?;
    let op = OpGroupEvacuate {
        group_name: group.to_string(),
        early_release: b.or("early_release", false)?,
        iallocator: b.opt("iallocator")?,
        target_groups: b.opt("target_groups")?.unwrap_or_default(),
        sequential: b.or("sequential", false)?,
        force_failover: b.or("force_failover", false)?,
        dry_run: req.flag("dry-run", false)?,
    };
    submit_op(rapi, OpCode::GroupEvacuate(op))
}
