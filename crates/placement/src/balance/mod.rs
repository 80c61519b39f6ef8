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
use crate::types::IMove;

mod eval;
mod fast;

#[cfg(test)]
pub(crate) use eval::best_for_instance_fast;
pub(crate) use eval::possible_moves;
use eval::{best_move, Cand};
pub use eval::{fast_eval_ok, score_aliases};
pub use fast::balance_fast;

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
    /// Maguey: `file` and `plain` instances move to any node (live migration copies their
    /// disks, counted on the target), like shared-storage ones. Off by default, as in hbal
    /// (which cannot move them). Only instances marked `movable` are considered: the caller
    /// marks them.
    pub local_storage_migrates: bool,
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
            local_storage_migrates: false,
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

pub(crate) const TIE_EPS: f64 = 1e-12;
/// Candidates within this of the best are re-scored exactly like hbal.
pub(crate) const NEAR_TIE: f64 = 1e-9;

/// The best candidates of a search, with near-ties kept in evaluation
/// order.
pub(crate) struct Ties<T> {
    cur: f64,
    pub(crate) items: Vec<(f64, T)>,
}

impl<T> Ties<T> {
    pub(crate) fn new(cur: f64) -> Self {
        Ties { cur, items: vec![] }
    }
    fn min(&self) -> f64 {
        self.items.iter().map(|x| x.0).fold(f64::INFINITY, f64::min)
    }
    pub(crate) fn offer(&mut self, sc: f64, item: T) {
        if sc >= self.cur - TIE_EPS {
            return;
        }
        let m = self.min();
        if self.items.is_empty() || sc < m - NEAR_TIE {
            self.items.clear();
            self.items.push((sc, item));
        } else if sc <= m + NEAR_TIE {
            self.items.push((sc, item));
            if sc < m {
                let lim = sc + NEAR_TIE;
                self.items.retain(|x| x.0 <= lim);
            }
        }
    }
}

/// The first candidate, replaced only by one better by more than `TIE_EPS`.
fn first_best<T>(v: Vec<(f64, T)>) -> Option<(f64, T)> {
    let mut best: Option<(f64, T)> = None;
    for x in v {
        if best.as_ref().is_none_or(|b| x.0 < b.0 - TIE_EPS) {
            best = Some(x);
        }
    }
    best
}

/// Full score of the cluster after a move, computed like hbal (`compCV`).
fn exact_score_after(c: &Cluster, out: &MoveOutcome) -> f64 {
    let changed: Vec<crate::model::Node> = out
        .nodes
        .iter()
        .map(|(n, d)| {
            let mut node = c.nodes[*n].clone();
            node.d = d.clone();
            node
        })
        .collect();
    let nodes = (0..c.nodes.len()).map(|i| match out.nodes.iter().position(|(n, _)| *n == i) {
        Some(k) => &changed[k],
        None => &c.nodes[i],
    });
    score::score_nodes(nodes).total
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
        // (value, position, node): the k first of a stable sort by value, found by a
        // selection (ties keep their order through the position)
        let mut v: Vec<(f64, usize, usize)> = vals
            .iter()
            .enumerate()
            .map(|(p, (i, nv))| (nv.std[k_idx], p, *i))
            .collect();
        let cmp = |a: &(f64, usize, usize), b: &(f64, usize, usize)| {
            let o = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
            if asc { o } else { o.reverse() }.then(a.1.cmp(&b.1))
        };
        if k > 0 && k < v.len() {
            v.select_nth_unstable_by(k - 1, cmp);
        }
        for &(_, _, i) in v.iter().take(k) {
            chosen[i] = true;
        }
    }
    online_idx.iter().copied().filter(|&i| chosen[i]).collect()
}

fn mask(n: usize, idx: &[usize]) -> Vec<bool> {
    let mut v = vec![false; n];
    for &i in idx {
        v[i] = true;
    }
    v
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

/// Group the moves into sets that touch disjoint nodes and can run in
/// parallel, sets running one after the other. Moves on disjoint nodes
/// commute (a move only changes the state of the nodes it touches), so each
/// move goes into the earliest set after every earlier move sharing a node
/// with it; the per-node order of the plan is kept.
pub fn split_jobs(moves: &[PlanMove]) -> Vec<Vec<usize>> {
    let mut sets: Vec<Vec<usize>> = vec![];
    let mut last: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, m) in moves.iter().enumerate() {
        let ns = m.nodes();
        let level = ns
            .iter()
            .filter_map(|n| last.get(n))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        if level == sets.len() {
            sets.push(vec![]);
        }
        sets[level].push(i);
        for n in ns {
            last.insert(n, level);
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
    let mode = match opts.mode {
        SearchMode::Auto => {
            if opts.max_moves.is_some() || cluster.nodes.len() <= 60 {
                SearchMode::Exact
            } else {
                SearchMode::Fast
            }
        }
        m => m,
    };
    if mode == SearchMode::Fast {
        return balance_fast(cluster, opts);
    }
    let mut c = cluster.clone();
    let initial = score::score(&c.nodes);
    let stop_score = score::optimal_score(&c.nodes) + opts.min_score;
    let online: Vec<bool> = c.nodes.iter().map(|n| !n.offline).collect();
    let online_idx: Vec<usize> = (0..c.nodes.len()).filter(|&i| online[i]).collect();
    let victims = movable_instances(&c, opts);
    let fast_ok = fast_eval_ok(&c);
    let aliases = score_aliases(&c);
    let mut moves: Vec<PlanMove> = vec![];
    let mut cur = initial;
    while may_continue(opts, moves.len(), cur, stop_score) {
        let stats = Stats::new(c.nodes.iter()).with_aliases(&aliases);
        let cur_inc = stats.score();
        let vals: Vec<score::NodeVals> =
            c.nodes.iter().map(|n| score::node_vals(n, &n.d)).collect();
        let tables = fast_ok.then(|| crate::prune::Tables::new(&c, &stats, &vals, &online_idx));
        let pr = tables.as_ref().map(|t| (t, online.as_slice()));
        {
            {
                let cref = &c;
                let bests: Vec<Vec<(f64, Cand)>> = victims
                    .par_iter()
                    .map(|&i| {
                        best_move(
                            cref,
                            &stats,
                            &vals,
                            fast_ok,
                            cur_inc,
                            i,
                            &online_idx,
                            &online,
                            opts,
                            pr,
                        )
                    })
                    .collect();
                // all near-best candidates, in hbal's evaluation order
                let all: Vec<(f64, Cand)> = bests.into_iter().flatten().collect();
                let gmin = all.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
                let near: Vec<(f64, MoveOutcome)> = all
                    .into_iter()
                    .filter(|x| x.0 <= gmin + NEAR_TIE)
                    .filter_map(|(sc, m)| m.outcome(cref, opts).map(|o| (sc, o)))
                    .collect();
                let best = if near.len() > 1 {
                    // hbal scores every candidate in full and keeps the first
                    // of the lowest: do the same for the near-ties
                    let mut pick: Option<(f64, MoveOutcome)> = None;
                    for (_, out) in near {
                        let ex = exact_score_after(&c, &out);
                        if pick.as_ref().is_none_or(|p| p.0 > ex) {
                            pick = Some((ex, out));
                        }
                    }
                    pick
                } else {
                    near.into_iter().next()
                };
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
        }
    }
    let jobsets = split_jobs(&moves);
    BalanceResult {
        initial_score: initial,
        final_score: cur,
        moves,
        jobsets,
        cluster: c,
    }
}
