//! Moving every instance out of a room and back (`room evacuate`, `room return`, `room
//! failover`): the plans, and their execution as child jobs (one per instance, at most
//! `max_parallel` at once) with a progress line per finished move and a summary. A failed
//! move is reported and the others go on; the origins of the instances that left are kept
//! in the config ([`RoomEvacuation`]) for `room return`. docs/rooms.md.

use crate::{prereq, Env, Master};
use futures::future::{select_all, BoxFuture};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::rooms::{RoomEvacKind, RoomEvacuation};
use maguey_model::{
    ConfigData, Instance, JobStatus, Node, OpCode, OpInstanceFailover, OpInstanceMigrate,
    OpInstanceMove, OpInstanceReplaceDisks, ReplaceDisksMode,
};
use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc::Answer;
use serde_json::{json, Value};

/// One instance's way out of (or back into) the room: a child job.
#[derive(Debug, Clone)]
pub struct RoomMove {
    pub instance: String,
    pub uuid: String,
    /// The primary node (uuid) the instance has before the move.
    pub from: String,
    /// What the job does, for the plan and the progress lines.
    pub what: String,
    pub ops: Vec<OpCode>,
}

/// The moves, and the instances that cannot move (name, why).
#[derive(Debug, Default)]
pub struct RoomPlan {
    pub moves: Vec<RoomMove>,
    pub stuck: Vec<(String, String)>,
}

/// The nodes of a room; refused when it has none.
pub fn room_nodes<'a>(cfg: &'a ConfigData, room: &str) -> Result<Vec<&'a Node>, OpError> {
    maguey_model::rooms::validate_room(room).map_err(|e| prereq(e.to_string()))?;
    let nodes: Vec<&Node> = cfg.nodes.values().filter(|n| n.room == room).collect();
    if nodes.is_empty() {
        return Err(prereq(format!("no node is in room '{room}'")));
    }
    Ok(nodes)
}

/// Names of the room's nodes (for the planning locks).
pub fn room_node_names(cfg: &ConfigData, room: &str) -> Result<Vec<String>, OpError> {
    Ok(room_nodes(cfg, room)?
        .iter()
        .map(|n| n.name.clone())
        .collect())
}

/// A warning when the master node is in the room: it stays there.
pub fn master_warning(cfg: &ConfigData, room: &str) -> Option<String> {
    let m = cfg.master_node()?;
    (m.room == room).then(|| {
        format!(
            "warning: the master node {} is in room {room}: it stays there (the control plane \
             does not move with the instances; see docs/rooms.md)",
            m.name
        )
    })
}

fn name_of(cfg: &ConfigData, uuid: &str) -> String {
    cfg.nodes
        .get(uuid)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| uuid.to_string())
}

fn migrate(instance: &str, target: Option<String>) -> OpCode {
    OpInstanceMigrate {
        instance_name: instance.to_string(),
        mode: None,
        live: None,
        target_node: target,
        cleanup: false,
        allow_failover: true,
        iallocator: None,
        ignore_ipolicy: false,
        allow_runtime_changes: true,
        ignore_hvversions: false,
    }
    .into()
}

fn new_secondary_by_allocator(instance: &str) -> OpCode {
    OpInstanceReplaceDisks {
        instance_name: instance.to_string(),
        mode: ReplaceDisksMode::NewSecondary,
        disks: Vec::new(),
        remote_node: None,
        iallocator: Some("hail".into()),
        early_release: false,
        ignore_ipolicy: false,
        force: false,
    }
    .into()
}

fn failover(instance: &str, target: Option<String>) -> OpCode {
    OpInstanceFailover {
        instance_name: instance.to_string(),
        shutdown_timeout: 120,
        ignore_consistency: true,
        target_node: target,
        iallocator: None,
        ignore_ipolicy: false,
        cleanup: false,
    }
    .into()
}

/// `room evacuate`: `drbd` instances migrate to their secondary (after a new secondary in
/// another room, when theirs is in the room too); the others go where the placement engine
/// puts them with the room's nodes out of reach (live migration with their disks).
pub async fn plan_evacuate(
    master: &Master,
    cfg: &ConfigData,
    room: &str,
) -> Result<RoomPlan, OpError> {
    let in_room: Vec<String> = room_nodes(cfg, room)?
        .iter()
        .map(|n| n.uuid.clone())
        .collect();
    let mut plan = RoomPlan::default();
    let mut others: Vec<&Instance> = Vec::new();
    for i in cfg
        .instances
        .values()
        .filter(|i| in_room.contains(&i.primary_node))
    {
        if !i.disk_template.is_internally_mirrored() {
            others.push(i);
            continue;
        }
        let Some(sec) = i.secondary_nodes().first().map(|s| s.to_string()) else {
            plan.stuck
                .push((i.name.clone(), "it has no secondary node".into()));
            continue;
        };
        let mv = |what: String, ops: Vec<OpCode>| RoomMove {
            instance: i.name.clone(),
            uuid: i.uuid.clone(),
            from: i.primary_node.clone(),
            what,
            ops,
        };
        if cfg.nodes.get(&sec).is_some_and(|n| n.offline) {
            plan.stuck.push((
                i.name.clone(),
                format!("its secondary {} is offline", name_of(cfg, &sec)),
            ));
        } else if in_room.contains(&sec) {
            plan.moves.push(mv(
                "new secondary in another room, then migrate to it".into(),
                vec![new_secondary_by_allocator(&i.name), migrate(&i.name, None)],
            ));
        } else {
            plan.moves.push(mv(
                format!("migrate to its secondary {}", name_of(cfg, &sec)),
                vec![migrate(&i.name, None)],
            ));
        }
    }
    if !others.is_empty() {
        plan_by_engine(master, cfg, &in_room, &others, &mut plan).await?;
    }
    Ok(plan)
}

/// The placement engine's node-evacuate plan for non-mirrored instances, with the room's
/// nodes marked offline in the request (so none is a target). `plain` disks move live like
/// `file` disks, their space counted in the targets' volume groups.
async fn plan_by_engine(
    master: &Master,
    cfg: &ConfigData,
    in_room: &[String],
    insts: &[&Instance],
    plan: &mut RoomPlan,
) -> Result<(), OpError> {
    let template = crate::iallocator::request_template(insts);
    let mut req = crate::iallocator::cluster_request(master, cfg, template).await;
    for u in in_room {
        if let Some(n) = cfg.nodes.get(u) {
            req["nodes"][&n.name]["offline"] = json!(true);
        }
    }
    req["request"] = json!({
        "type": "node-evacuate",
        "instances": insts.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "evac_mode": maguey_model::EvacMode::PrimaryOnly,
    });
    let opts = AllocOptions {
        local_storage_migrates: true,
        ..Default::default()
    };
    let evac = match crate::iallocator::solve(&req, &opts)? {
        Ok((_, Answer::Evac(e))) => e,
        Ok((_, other)) => return Err(crate::iallocator::unexpected(&other)),
        Err(why) => {
            for i in insts {
                plan.stuck.push((i.name.clone(), why.clone()));
            }
            return Ok(());
        }
    };
    for ((name, _group, nodes), ops) in evac.moved.into_iter().zip(evac.jobs) {
        let Some(i) = insts.iter().find(|i| i.name == name) else {
            continue;
        };
        let mut ops: Vec<OpCode> = ops.iter().map(crate::moves::opcode).collect();
        let mut what = format!("live migration to {}", nodes.join(", "));
        // A stopped instance with local disks does not migrate: its disks are copied.
        if i.admin_state != maguey_model::AdminState::Up && i.disk_template.has_local_disks() {
            if let Some(target) = nodes.first() {
                what = format!("stopped: disks copied to {target}");
                ops = vec![OpInstanceMove {
                    instance_name: name.clone(),
                    target_node: target.clone(),
                    shutdown_timeout: 120,
                    ignore_consistency: false,
                    ignore_ipolicy: false,
                }
                .into()];
            }
        }
        plan.moves.push(RoomMove {
            instance: name,
            uuid: i.uuid.clone(),
            from: i.primary_node.clone(),
            what,
            ops,
        });
    }
    plan.stuck.extend(evac.failed);
    Ok(())
}

/// `room return`: every recorded instance that is not on its origin goes back there
/// (`drbd`: migrates to its secondary, which must be the origin).
pub fn plan_return(cfg: &ConfigData, room: &str) -> Result<RoomPlan, OpError> {
    room_nodes(cfg, room)?;
    let rec = cfg.room_evacuations.get(room).ok_or_else(|| {
        prereq(format!(
            "nothing to return to room {room}: no instance left it"
        ))
    })?;
    let mut plan = RoomPlan::default();
    for (uuid, origin) in &rec.origins {
        let Some(i) = cfg.instances.get(uuid) else {
            continue;
        };
        if i.primary_node == *origin {
            continue;
        }
        let node = name_of(cfg, origin);
        if cfg.nodes.get(origin).is_none_or(|n| n.offline) {
            plan.stuck.push((
                i.name.clone(),
                format!("node {node} is offline (node modify --offline no {node})"),
            ));
            continue;
        }
        let target = if i.disk_template.is_internally_mirrored() {
            if !i.secondary_nodes().contains(&origin.as_str()) {
                plan.stuck
                    .push((i.name.clone(), format!("its secondary is no longer {node}")));
                continue;
            }
            None
        } else {
            Some(node.clone())
        };
        let stopped_local =
            i.admin_state != maguey_model::AdminState::Up && i.disk_template.has_local_disks();
        let (what, op) = match target {
            Some(t) if stopped_local => (
                format!("stopped: disks copied back to {node}"),
                OpInstanceMove {
                    instance_name: i.name.clone(),
                    target_node: t,
                    shutdown_timeout: 120,
                    ignore_consistency: false,
                    ignore_ipolicy: false,
                }
                .into(),
            ),
            t => (
                format!("live migration back to {node}"),
                migrate(&i.name, t),
            ),
        };
        plan.moves.push(RoomMove {
            instance: i.name.clone(),
            uuid: i.uuid.clone(),
            from: i.primary_node.clone(),
            what,
            ops: vec![op],
        });
    }
    Ok(plan)
}

/// `room failover`: instances whose primary is in the (dark) room start elsewhere:
/// `drbd` on its secondary outside the room, `sharedfile`/`diskless` on the node outside
/// the room with the fewest primaries; local disks are lost with the room.
pub fn plan_failover(cfg: &ConfigData, room: &str) -> Result<RoomPlan, OpError> {
    let in_room: Vec<String> = room_nodes(cfg, room)?
        .iter()
        .map(|n| n.uuid.clone())
        .collect();
    let mut load: Vec<(usize, &Node)> = cfg
        .nodes
        .values()
        .filter(|n| !in_room.contains(&n.uuid) && !n.offline && n.vm_capable)
        .map(|n| {
            let k = cfg
                .instances
                .values()
                .filter(|i| i.primary_node == n.uuid)
                .count();
            (k, n)
        })
        .collect();
    let mut plan = RoomPlan::default();
    for i in cfg
        .instances
        .values()
        .filter(|i| in_room.contains(&i.primary_node))
    {
        let sec = i.secondary_nodes().first().map(|s| s.to_string());
        let (what, target) = if i.disk_template.is_internally_mirrored() {
            match sec {
                Some(s) if !in_room.contains(&s) => (
                    format!("failover to its secondary {}", name_of(cfg, &s)),
                    None,
                ),
                _ => {
                    plan.stuck
                        .push((i.name.clone(), "its secondary is in the room too".into()));
                    continue;
                }
            }
        } else if i.disk_template.is_node_independent() {
            load.sort_by_key(|(k, n)| (*k, n.name.clone()));
            let Some((k, n)) = load.first_mut() else {
                plan.stuck
                    .push((i.name.clone(), "no online node outside the room".into()));
                continue;
            };
            *k += 1;
            (format!("failover to {}", n.name), Some(n.name.clone()))
        } else {
            plan.stuck.push((
                i.name.clone(),
                format!(
                    "its {} disks are on a node of the room",
                    i.disk_template.as_str()
                ),
            ));
            continue;
        };
        plan.moves.push(RoomMove {
            instance: i.name.clone(),
            uuid: i.uuid.clone(),
            from: i.primary_node.clone(),
            what,
            ops: vec![failover(&i.name, target)],
        });
    }
    Ok(plan)
}

/// Logs the plan, one line per instance; returns it as JSON.
pub fn log_plan(env: &Env<'_>, plan: &RoomPlan) -> Value {
    for m in &plan.moves {
        env.log(format!("plan: {}: {}", m.instance, m.what));
    }
    for (i, why) in &plan.stuck {
        env.log(format!("plan: {i} cannot move: {why}"));
    }
    json!({
        "moves": plan.moves.iter().map(|m| json!([m.instance, m.what])).collect::<Vec<_>>(),
        "stuck": plan.stuck,
    })
}

/// What happened to the moves.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<(RoomMove, u64)>,
    pub failed: Vec<(RoomMove, u64, String)>,
}

type Waiting<'a> = BoxFuture<'a, (RoomMove, u64, Result<Option<maguey_model::Job>, OpError>)>;

/// Submits one job per move, at most `limit` unfinished at once, waits for all of them and
/// logs `[k/n]` as each ends. A failed move does not stop the others.
pub async fn run_moves(
    env: &Env<'_>,
    moves: Vec<RoomMove>,
    limit: usize,
) -> Result<Outcome, OpError> {
    let total = moves.len();
    let mut pending = moves.into_iter();
    let mut running: Vec<Waiting<'_>> = Vec::new();
    let mut out = Outcome::default();
    loop {
        while running.len() < limit.max(1) {
            let Some(m) = pending.next() else {
                break;
            };
            let id = env.ctx.submit_jobs(vec![m.ops.clone()])?[0];
            env.log(format!("job {id}: {}: {}", m.instance, m.what));
            let ctx = env.ctx;
            running.push(Box::pin(async move { (m, id, ctx.wait_job(id).await) }));
        }
        if running.is_empty() {
            break;
        }
        let ((m, id, r), _, rest) = select_all(running).await;
        running = rest;
        let job = r?;
        let k = out.done.len() + out.failed.len() + 1;
        match job.as_ref().map(|j| j.status) {
            Some(JobStatus::Success) => {
                env.log(format!("[{k}/{total}] {}: done (job {id})", m.instance));
                out.done.push((m, id));
            }
            other => {
                let why = job
                    .as_ref()
                    .and_then(|j| j.opresult.iter().rev().find(|v| !v.is_null()).cloned())
                    .map(|v| {
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default();
                env.log(format!(
                    "[{k}/{total}] {}: FAILED (job {id}, {}): {why}",
                    m.instance,
                    other.map(|s| s.as_str()).unwrap_or("unknown")
                ));
                out.failed.push((m, id, why));
            }
        }
    }
    Ok(out)
}

/// Records the origins of the instances that left the room (an earlier origin wins: a
/// second evacuation does not forget where an instance really came from).
pub async fn record_left(
    env: &Env<'_>,
    room: &str,
    kind: RoomEvacKind,
    out: &Outcome,
) -> Result<(), OpError> {
    if out.done.is_empty() {
        return Ok(());
    }
    let cfg = env.cfg();
    let mut rec = cfg
        .room_evacuations
        .get(room)
        .cloned()
        .unwrap_or_else(|| RoomEvacuation {
            kind,
            origins: Default::default(),
            ctime: maguey_model::now(),
        });
    if kind == RoomEvacKind::Failover {
        rec.kind = kind;
    }
    for (m, _) in &out.done {
        rec.origins
            .entry(m.uuid.clone())
            .or_insert_with(|| m.from.clone());
    }
    env.apply(Command::SetRoomEvacuation {
        room: room.to_string(),
        record: Some(rec),
    })
    .await?;
    Ok(())
}

/// Forgets the origins of the instances that are back.
pub async fn record_returned(env: &Env<'_>, room: &str, out: &Outcome) -> Result<(), OpError> {
    let cfg = env.cfg();
    let Some(mut rec) = cfg.room_evacuations.get(room).cloned() else {
        return Ok(());
    };
    for (m, _) in &out.done {
        rec.origins.remove(&m.uuid);
    }
    env.apply(Command::SetRoomEvacuation {
        room: room.to_string(),
        record: Some(rec),
    })
    .await?;
    Ok(())
}

/// Logs the summary and answers the job: `{"done", "failed", "stuck", "jobs"}`; an error
/// when a move failed (after everything else went on).
pub fn summary(
    env: &Env<'_>,
    verb: &str,
    room: &str,
    out: &Outcome,
    stuck: &[(String, String)],
) -> Result<Value, OpError> {
    env.log(format!(
        "room {room}: {} {verb}, {} failed, {} could not move",
        out.done.len(),
        out.failed.len(),
        stuck.len()
    ));
    for (m, id, why) in &out.failed {
        env.log(format!("  failed: {} (job {id}): {why}", m.instance));
    }
    for (i, why) in stuck {
        env.log(format!("  not moved: {i}: {why}"));
    }
    let jobs: Vec<Value> = out
        .done
        .iter()
        .map(|(_, id)| json!([true, id]))
        .chain(out.failed.iter().map(|(_, id, _)| json!([false, id])))
        .collect();
    if !out.failed.is_empty() {
        let names: Vec<&str> = out
            .failed
            .iter()
            .map(|(m, _, _)| m.instance.as_str())
            .collect();
        return Err(OpError::Exec(format!(
            "{} of {} moves failed: {}",
            out.failed.len(),
            out.done.len() + out.failed.len(),
            names.join(", ")
        )));
    }
    Ok(json!({
        "done": out.done.iter().map(|(m, _)| m.instance.clone()).collect::<Vec<_>>(),
        "failed": Vec::<String>::new(),
        "stuck": stuck,
        "jobs": jobs,
    }))
}
