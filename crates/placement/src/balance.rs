//! The balancer (hbal's job): greedy search over instance moves that lower
//! the cluster score.
//!
//! * `Exact` search does what hbal does — at each step every movable
//!   instance, every target node and every move type is evaluated and the
//!   single best move is applied — but each candidate is scored
//!   incrementally (only the 2-3 touched nodes are recomputed) and the
//!   instances are evaluated in parallel with rayon.
//! * `Fast` search (for big clusters) evaluates, per round, every instance
//!   against a pruned set of promising target nodes, then applies the best
//!   non-conflicting moves of the round (each re-checked against the current
//!   state), so one round yields a whole set of moves that can run in
//!   parallel.

use rayon::prelude::*;

use crate::model::Cluster;
use crate::moves::MoveOutcome;
use crate::score::{self, Stats};
use crate::types::{IMove, MirrorType};

/// Search strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// hbal's full greedy step (one best move per step).
    Exact,
    /// Pruned targets, several non-conflicting moves per round.
    Fast,
    /// Exact for small clusters or when a move budget is given, fast otherwise.
    Auto,
}

#[derive(Debug, Clone)]
pub struct BalanceOptions {
    /// Maximum number of moves (None = unlimited), hbal `-l`.
    pub max_moves: Option<usize>,
    /// Minimum gain per step, hbal `-g`.
    pub min_gain: f64,
    /// Score below which `min_gain` applies, hbal `--min-gain-limit`.
    pub min_gain_limit: f64,
    /// Stop when the score is this close to the optimum, hbal `-e`.
    pub min_score: f64,
    /// Allow replace-disks moves (false = hbal `--no-disk-moves`).
    pub disk_moves: bool,
    /// Allow failovers / migrations (false = hbal `--no-instance-moves`).
    pub instance_moves: bool,
    pub ignore_soft_errors: bool,
    /// Only move instances touching offline nodes (hbal `--evac-mode`).
    pub evac_mode: bool,
    pub restricted_migration: bool,
    pub mode: SearchMode,
}

impl Default for BalanceOptions {
    fn default() -> Self {
        BalanceOptions {
            max_moves: None,
            min_gain: 0.01,
            min_gain_limit: 0.1,
            min_score: 1e-9,
            disk_moves: true,
            instance_moves: true,
            ignore_soft_errors: false,
            evac_mode: false,
            restricted_migration: false,
            mode: SearchMode::Auto,
        }
    }
}

/// One move of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanMove {
    pub instance: usize,
    pub mv: IMove,
    pub old_p: usize,
    pub old_s: Option<usize>,
    pub new_p: usize,
    pub new_s: Option<usize>,
    /// Cluster score after this move.
    pub score: f64,
}

impl PlanMove {
    /// Nodes involved in the move.
    pub fn nodes(&self) -> Vec<usize> {
        let mut v = vec![self.new_p];
        v.extend(self.new_s);
        v.push(self.old_p);
        v.extend(self.old_s);
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[derive(Debug, Clone)]
pub struct BalanceResult {
    pub initial_score: f64,
    pub final_score: f64,
    pub moves: Vec<PlanMove>,
    /// Indices into `moves`, grouped into sets that touch disjoint nodes
    /// and can run in parallel; sets run one after the other.
    pub jobsets: Vec<Vec<usize>>,
    /// The cluster after the plan.
    pub cluster: Cluster,
}

const TIE_EPS: f64 = 1e-12;

#[allow(clippy::too_many_arguments)]
fn possible_moves(
    mir: MirrorType,
    use_sec: bool,
    inst_moves: bool,
    disk_moves: bool,
    rest_mig: bool,
    prim_off: bool,
    t: usize,
    out: &mut Vec<IMove>,
) {
    use IMove::*;
    match mir {
        MirrorType::None => {}
        MirrorType::External => {
            if inst_moves {
                out.push(FailoverToAny(t));
            }
        }
        MirrorType::Internal => {
            if !disk_moves {
            } else if !inst_moves || (rest_mig && !prim_off) {
                out.push(ReplaceSecondary(t));
            } else if use_sec && !rest_mig {
                out.extend([
                    ReplaceSecondary(t),
                    ReplaceAndFailover(t),
                    ReplacePrimary(t),
                    FailoverAndReplace(t),
                ]);
            } else if use_sec {
                out.extend([
                    ReplaceSecondary(t),
                    ReplaceAndFailover(t),
                    FailoverAndReplace(t),
                ]);
            } else {
                out.extend([ReplaceSecondary(t), ReplaceAndFailover(t)]);
            }
        }
    }
}

/// Best move of one instance over the given targets: (score, outcome).
fn best_for_instance(
    c: &Cluster,
    stats: &Stats,
    cur: f64,
    idx: usize,
    targets: &[usize],
    online: &[bool],
    opts: &BalanceOptions,
) -> Option<(f64, MoveOutcome)> {
    let inst = &c.instances[idx];
    let force = opts.ignore_soft_errors;
    let opdx = inst.pnode;
    let osdx = inst.snode;
    let mir = inst.mirror_type();
    let use_sec = osdx.is_some_and(|s| online[s]) && opts.instance_moves;
    let mut best: Option<(f64, MoveOutcome)> = None;
    let consider = |out: MoveOutcome, best: &mut Option<(f64, MoveOutcome)>| {
        let s = c.score_outcome(stats, &out);
        let bar = best.as_ref().map(|b| b.0).unwrap_or(cur);
        if s < bar - TIE_EPS {
            *best = Some((s, out));
        }
    };
    if mir == MirrorType::Internal && use_sec {
        if let Ok(out) = c.eval_move(idx, IMove::Failover, force) {
            consider(out, &mut best);
        }
    }
    let prim_off = c.nodes[opdx].offline;
    let mut mvs = Vec::with_capacity(4);
    for &t in targets {
        if t == opdx || Some(t) == osdx {
            continue;
        }
        mvs.clear();
        possible_moves(
            mir,
            use_sec,
            opts.instance_moves,
            opts.disk_moves,
            opts.restricted_migration,
            prim_off,
            t,
            &mut mvs,
        );
        for &mv in &mvs {
            if let Ok(out) = c.eval_move(idx, mv, force) {
                consider(out, &mut best);
            }
        }
    }
    best
}

fn movable_instances(c: &Cluster, opts: &BalanceOptions) -> Vec<usize> {
    (0..c.instances.len())
        .filter(|&i| {
            let inst = &c.instances[i];
            if !(inst.movable && inst.auto_balance) {
                return false;
            }
            if opts.evac_mode {
                inst.all_nodes().iter().any(|&n| c.nodes[n].offline)
            } else {
                true
            }
        })
        .collect()
}

/// Candidate target nodes for the fast search: the most attractive nodes
/// by each main score component.
fn pruned_targets(c: &Cluster, online_idx: &[usize], k: usize) -> Vec<usize> {
    if online_idx.len() <= 3 * k {
        return online_idx.to_vec();
    }
    let vals: Vec<(usize, score::NodeVals)> = online_idx
        .iter()
        .map(|&i| (i, score::node_vals(&c.nodes[i], &c.nodes[i].d)))
        .collect();
    let mut chosen = vec![false; c.nodes.len()];
    // (component, ascending?) : lower is better for loads / ratios,
    // higher is better for free memory / disk.
    let keys: [(usize, bool); 7] = [
        (4, true),
        (6, true),
        (0, false),
        (1, false),
        (3, true),
        (2, true),
        (8, true),
    ];
    for (k_idx, asc) in keys {
        let mut v: Vec<(f64, usize)> = vals.iter().map(|(i, nv)| (nv.std[k_idx], *i)).collect();
        v.sort_by(|a, b| {
            let o = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
            if asc {
                o
            } else {
                o.reverse()
            }
        });
        for (_, i) in v.into_iter().take(k) {
            chosen[i] = true;
        }
    }
    online_idx.iter().copied().filter(|&i| chosen[i]).collect()
}

fn record(c: &Cluster, out: &MoveOutcome, score: f64) -> PlanMove {
    let inst = &c.instances[out.inst];
    PlanMove {
        instance: out.inst,
        mv: out.mv,
        old_p: inst.pnode,
        old_s: inst.snode,
        new_p: out.new_p,
        new_s: out.new_s,
        score,
    }
}

/// Group consecutive moves into sets that touch disjoint nodes.
pub fn split_jobs(moves: &[PlanMove]) -> Vec<Vec<usize>> {
    let mut sets: Vec<Vec<usize>> = vec![];
    let mut used: Vec<usize> = vec![];
    for (i, m) in moves.iter().enumerate() {
        let ns = m.nodes();
        if !sets.is_empty() && ns.iter().all(|n| !used.contains(n)) {
            if let Some(last) = sets.last_mut() {
                last.push(i);
            }
            used.extend(ns);
        } else {
            sets.push(vec![i]);
            used = ns;
        }
    }
    sets
}

/// Whether a further step may be attempted (htools' `doNextBalance`).
fn may_continue(opts: &BalanceOptions, done: usize, cur: f64, stop_score: f64) -> bool {
    opts.max_moves.is_none_or(|m| done < m) && cur > stop_score
}

/// Whether a step from `cur` to `new` is accepted (htools' `tryBalance`).
fn accept(opts: &BalanceOptions, cur: f64, new: f64) -> bool {
    new < cur && (cur > opts.min_gain_limit || cur - new >= opts.min_gain)
}

/// Balance a cluster (already restricted to one node group).
pub fn balance(cluster: &Cluster, opts: &BalanceOptions) -> BalanceResult {
    let mut c = cluster.clone();
    let initial = score::score(&c.nodes);
    let stop_score = score::optimal_score(&c.nodes) + opts.min_score;
    let online: Vec<bool> = c.nodes.iter().map(|n| !n.offline).collect();
    let online_idx: Vec<usize> = (0..c.nodes.len()).filter(|&i| online[i]).collect();
    let victims = movable_instances(&c, opts);
    let mode = match opts.mode {
        SearchMode::Auto => {
            if opts.max_moves.is_some() || c.nodes.len() <= 200 {
                SearchMode::Exact
            } else {
                SearchMode::Fast
            }
        }
        m => m,
    };
    let mut moves: Vec<PlanMove> = vec![];
    let mut cur = initial;
    let mut fast_sets: Vec<Vec<usize>> = vec![];
    while may_continue(opts, moves.len(), cur, stop_score) {
        let stats = Stats::new(c.nodes.iter());
        let cur_inc = stats.score();
        match mode {
            SearchMode::Exact | SearchMode::Auto => {
                let cref = &c;
                let bests: Vec<Option<(f64, MoveOutcome)>> = victims
                    .par_iter()
                    .map(|&i| {
                        best_for_instance(cref, &stats, cur_inc, i, &online_idx, &online, opts)
                    })
                    .collect();
                let mut best: Option<(f64, MoveOutcome)> = None;
                for b in bests.into_iter().flatten() {
                    let bar = best.as_ref().map(|x| x.0).unwrap_or(cur_inc);
                    if b.0 < bar - TIE_EPS {
                        best = Some(b);
                    }
                }
                let Some((_, out)) = best else { break };
                let mut next = c.clone();
                let pm_base = record(&c, &out, 0.0);
                next.commit_move(out, None);
                let new = score::score(&next.nodes);
                if !accept(opts, cur, new) {
                    break;
                }
                c = next;
                cur = new;
                moves.push(PlanMove {
                    score: new,
                    ..pm_base
                });
            }
            SearchMode::Fast => {
                let targets = pruned_targets(&c, &online_idx, 16);
                let cref = &c;
                let mut cands: Vec<(f64, MoveOutcome)> = victims
                    .par_iter()
                    .filter_map(|&i| {
                        best_for_instance(cref, &stats, cur_inc, i, &targets, &online, opts)
                    })
                    .collect();
                if cands.is_empty() {
                    break;
                }
                cands.sort_by(|a, b| {
                    a.0.partial_cmp(&b.0)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(a.1.inst.cmp(&b.1.inst))
                });
                let mut stats = stats;
                let mut used = vec![false; c.nodes.len()];
                let mut set = vec![];
                for (_, out) in cands {
                    if !may_continue(opts, moves.len(), cur, stop_score) {
                        break;
                    }
                    if out.nodes.iter().any(|(n, _)| used[*n]) {
                        continue;
                    }
                    // re-evaluate against the current state
                    let Ok(out) = c.eval_move(out.inst, out.mv, opts.ignore_soft_errors) else {
                        continue;
                    };
                    let s_now = stats.score();
                    let s_new = c.score_outcome(&stats, &out);
                    if s_new >= s_now - TIE_EPS || !accept(opts, cur, cur + (s_new - s_now)) {
                        continue;
                    }
                    for (n, _) in &out.nodes {
                        used[*n] = true;
                    }
                    let pm = record(&c, &out, 0.0);
                    c.commit_move(out, Some(&mut stats));
                    cur += s_new - s_now;
                    set.push(moves.len());
                    moves.push(PlanMove { score: cur, ..pm });
                }
                if set.is_empty() {
                    break;
                }
                // exact score after the round (avoids drift)
                cur = score::score(&c.nodes);
                if let Some(&last) = set.last() {
                    moves[last].score = cur;
                }
                fast_sets.push(set);
            }
        }
    }
    let jobsets = if mode == SearchMode::Fast {
        fast_sets
    } else {
        split_jobs(&moves)
    };
    BalanceResult {
        initial_score: initial,
        final_score: cur,
        moves,
        jobsets,
        cluster: c,
    }
}
