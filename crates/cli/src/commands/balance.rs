//! `maguey cluster balance [--execute]`: hbal on the live cluster. The placement engine plans
//! moves that lower the cluster score; the plan is printed as sets of moves that touch
//! disjoint nodes, and `--execute` submits each set's moves as jobs (in parallel within a
//! set, set after set), with a progress bar.

use crate::wait::follow;
use crate::{CliError, CliResult};
use maguey_client::MasterClient;
use maguey_model::{JobStatus, OpCode};
use maguey_placement::balance::{balance, BalanceOptions};
use maguey_placement::types::DiskTemplate;

/// The balancing options the CLI takes.
pub struct Options {
    pub max_moves: Option<usize>,
    pub min_gain: Option<f64>,
    pub no_disk_moves: bool,
    pub execute: bool,
    pub priority: i32,
    /// Only this node group (hbal -G).
    pub group: Option<String>,
}

/// Plans (and with `execute`, runs) the balance of every node group, or of `o.group` only;
/// each group is balanced on its own (its instances only move between its nodes). Exit
/// code 0 when every job succeeded (or nothing was to do), 1 when one failed.
pub async fn run(c: &MasterClient, o: Options) -> CliResult<u8> {
    let desc = c.cluster_description().await?;
    let full = maguey_placement::ialloc::parse_cluster(&desc.to_string())
        .map_err(|e| CliError::Other(format!("reading the live cluster: {e}")))?;
    let only = match &o.group {
        Some(g) => Some(
            full.group_by_name(g)
                .ok_or_else(|| CliError::Usage(format!("node group {g} not found")))?,
        ),
        None => None,
    };
    let mut failed = 0usize;
    for gdx in 0..full.groups.len() {
        if only.is_some_and(|g| g != gdx) {
            continue;
        }
        let (mut cl, _, _) = full.split_group(gdx);
        if cl.instances.is_empty() {
            if only.is_some() {
                println!("Group {}: no instances to balance.", full.groups[gdx].name);
            }
            continue;
        }
        // Maguey moves instances on local file disks live, disks and all.
        for inst in &mut cl.instances {
            if inst.template == DiskTemplate::File {
                inst.movable = true;
            }
        }
        let mut opts = BalanceOptions {
            max_moves: o.max_moves,
            disk_moves: !o.no_disk_moves,
            local_storage_migrates: true,
            ..Default::default()
        };
        if let Some(g) = o.min_gain {
            opts.min_gain = g;
        }
        let r = balance(&cl, &opts);
        println!("Group {}:", full.groups[gdx].name);
        println!("Initial score: {:.8}", r.initial_score);
        println!("Final score: {:.8}", r.final_score);
        if r.moves.is_empty() {
            println!("No moves: the group is balanced.");
            continue;
        }
        let mut sets: Vec<Vec<(String, Vec<OpCode>)>> = Vec::new();
        for (k, set) in r.jobsets.iter().enumerate() {
            println!("Set {}:", k + 1);
            let mut jobs = Vec::new();
            for &m in set {
                let pm = &r.moves[m];
                let inst = &cl.instances[pm.instance].name;
                let nodes = |p: usize, s: Option<usize>| {
                    let mut v = cl.nodes[p].name.clone();
                    if let Some(s) = s {
                        v = format!("{v}:{}", cl.nodes[s].name);
                    }
                    v
                };
                println!(
                    "  {inst}  {} => {}  (score {:.8})",
                    nodes(pm.old_p, pm.old_s),
                    nodes(pm.new_p, pm.new_s),
                    pm.score
                );
                let ops = maguey_ops::moves::move_opcodes(&cl, pm.instance, pm.mv);
                jobs.push((inst.clone(), ops));
            }
            sets.push(jobs);
        }
        if !o.execute {
            println!("Run 'maguey cluster balance --execute' to carry the plan out.");
            continue;
        }
        failed += execute(c, sets, r.moves.len(), o.priority).await?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Submits set after set; returns how many jobs failed. Stops after a set with a failure.
async fn execute(
    c: &MasterClient,
    sets: Vec<Vec<(String, Vec<OpCode>)>>,
    total: usize,
    priority: i32,
) -> CliResult<usize> {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(total as u64);
    let tty = std::io::stdout().is_terminal();
    // Above the bar on a terminal; plain lines otherwise (a hidden bar prints nothing).
    let say = |msg: String| {
        if tty {
            bar.println(msg);
        } else {
            println!("{msg}");
        }
    };
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} moves  {msg}")
                .map_err(|e| CliError::Other(e.to_string()))?,
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let nsets = sets.len();
    for (k, set) in sets.into_iter().enumerate() {
        bar.set_message(format!("set {}/{nsets}", k + 1));
        let mut ids = Vec::new();
        for (inst, ops) in set {
            let id = c.submit(ops, priority).await?;
            say(format!("set {}: job {id} moves {inst}", k + 1));
            ids.push((inst, id));
        }
        let mut failed = 0;
        for (inst, id) in ids {
            let job = follow(c, id, true).await?;
            bar.inc(1);
            if job.status == JobStatus::Success {
                say(format!("job {id} ({inst}) succeeded"));
            } else {
                let why = job
                    .opresult
                    .last()
                    .map(|v| {
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default();
                say(format!("job {id} ({inst}) {}: {why}", job.status.as_str()));
                failed += 1;
            }
        }
        if failed > 0 {
            bar.abandon_with_message(format!("stopped after set {}: {failed} failed", k + 1));
            return Ok(failed);
        }
    }
    bar.finish_with_message("done");
    Ok(0)
}
