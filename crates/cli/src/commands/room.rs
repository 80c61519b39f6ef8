//! `maguey room`: rooms (failure domains) — list them, move every instance out of one and
//! back, fail a dark room over. docs/rooms.md.

use crate::args::JobOpts;
use crate::input::usage;
use crate::master::{client, run_job};
use crate::CliResult;
use clap::Subcommand;
use maguey_client::Resource;
use maguey_model::{OpCode, OpRoomEvacuate, OpRoomFailover, OpRoomReturn};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum RoomCmd {
    /// Lists the rooms: their nodes, primary instances, free memory and disk.
    List,
    /// Moves every instance whose primary node is in the room out of it, live.
    Evacuate {
        room: String,
        /// Only print the plan.
        #[arg(long)]
        dry_run: bool,
        /// At most this many moves at once.
        #[arg(long, default_value_t = 4)]
        max_parallel: u32,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves the instances that left the room (evacuate, failover) back, live.
    Return {
        room: String,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value_t = 4)]
        max_parallel: u32,
        #[command(flatten)]
        job: JobOpts,
    },
    /// The room is down: marks its nodes offline and starts its instances elsewhere.
    Failover {
        room: String,
        /// Confirms that the room is really down (its nodes are off or cut off).
        #[arg(long)]
        yes_do_it: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value_t = 4)]
        max_parallel: u32,
        #[command(flatten)]
        job: JobOpts,
    },
}

fn room_ok(room: &str) -> CliResult {
    maguey_model::rooms::validate_room(room).map_err(|e| usage(e.to_string()))
}

pub async fn run(dir: &Path, cmd: RoomCmd) -> CliResult<u8> {
    let op: (OpCode, JobOpts) = match cmd {
        RoomCmd::List => return list(dir).await,
        RoomCmd::Evacuate {
            room,
            dry_run,
            max_parallel,
            job,
        } => {
            room_ok(&room)?;
            let op = OpRoomEvacuate {
                room,
                dry_run,
                max_parallel,
            };
            (op.into(), job)
        }
        RoomCmd::Return {
            room,
            dry_run,
            max_parallel,
            job,
        } => {
            room_ok(&room)?;
            let op = OpRoomReturn {
                room,
                dry_run,
                max_parallel,
            };
            (op.into(), job)
        }
        RoomCmd::Failover {
            room,
            yes_do_it,
            dry_run,
            max_parallel,
            job,
        } => {
            room_ok(&room)?;
            if !yes_do_it && !dry_run {
                return Err(usage(format!(
                    "room failover starts room {room}'s instances elsewhere while their \
                     nodes may still run them: make sure the room is down, then add --yes-do-it"
                )));
            }
            let op = OpRoomFailover {
                room,
                dry_run,
                max_parallel,
            };
            (op.into(), job)
        }
    };
    let c = client(dir)?;
    run_job(&c, vec![op.0], op.1).await?;
    Ok(0)
}

/// One room's line of `room list`.
#[derive(Default)]
struct Row {
    nodes: Vec<String>,
    offline: usize,
    instances: u64,
    mfree: u64,
    dfree: u64,
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

async fn list(dir: &Path) -> CliResult<u8> {
    let c = client(dir)?;
    let fields = ["name", "room", "offline", "pinst_cnt", "mfree", "dfree"];
    let r = c
        .query(
            Resource::Node,
            Vec::new(),
            fields.iter().map(|f| f.to_string()).collect(),
        )
        .await?;
    let mut rooms: BTreeMap<String, Row> = BTreeMap::new();
    for row in &r.rows {
        let room = row[1].as_str().unwrap_or_default();
        let e = rooms
            .entry(if room.is_empty() { "-" } else { room }.to_string())
            .or_default();
        e.nodes
            .push(row[0].as_str().unwrap_or_default().to_string());
        if row[2].as_bool() == Some(true) {
            e.offline += 1;
        }
        e.instances += num(&row[3]);
        e.mfree += num(&row[4]);
        e.dfree += num(&row[5]);
    }
    println!(
        "{:<16} {:>5} {:>9} {:>10} {:>10}  Nodes",
        "Room", "Nodes", "Instances", "MFree", "DFree"
    );
    for (room, e) in &rooms {
        let mut nodes = e.nodes.join(",");
        if e.offline > 0 {
            nodes += &format!(" ({} offline)", e.offline);
        }
        println!(
            "{:<16} {:>5} {:>9} {:>10} {:>10}  {nodes}",
            room,
            e.nodes.len(),
            e.instances,
            format!("{}M", e.mfree),
            format!("{}M", e.dfree),
        );
    }
    Ok(0)
}
