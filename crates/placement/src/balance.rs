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

use crate::drbd_bases::DrbdBases;
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
/// Moves after which the fast search rebuilds its target tables against the
/// current statistics (in between, the tables are patched with the nodes
/// each move changed; rebuilding less often loosens their bound: 16 is the
/// fastest on the 2000-node benchmark, 8 and 32 are slower).
const TABLES_EVERY: usize = 16;

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

#[allow(clippy::too_many_arguments)]
pub(crate) fn possible_moves(
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
) -> Ties<MoveOutcome> {
    let inst = &c.instances[idx];
    let force = opts.ignore_soft_errors;
    let opdx = inst.pnode;
    let osdx = inst.snode;
    let mir = match inst.mirror_type() {
        MirrorType::None
            if opts.local_storage_migrates
                && matches!(
                    inst.template,
                    crate::types::DiskTemplate::File | crate::types::DiskTemplate::Plain
                ) =>
        {
            MirrorType::External
        }
        m => m,
    };
    let use_sec = osdx.is_some_and(|s| online[s]) && opts.instance_moves;
    let mut best: Ties<MoveOutcome> = Ties::new(cur);
    let consider = |out: MoveOutcome, best: &mut Ties<MoveOutcome>| {
        let s = c.score_outcome(stats, &out);
        best.offer(s, out);
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

/// Whether the specialised evaluator applies: no location or migration
/// tags (then a move's effect on the instance's own nodes does not depend
/// on the target node).
pub fn fast_eval_ok(c: &Cluster) -> bool {
    c.nodes
        .iter()
        .all(|n| n.location_tags.is_empty() && n.mig_tags.is_empty())
        && c.instances.iter().all(|i| i.dsrd_loc_tags.is_empty())
}

/// Best move of one DRBD instance, computing the instance's own nodes once
/// and only the target side per candidate. Returns (score, move).
#[allow(clippy::too_many_arguments)]
pub(crate) fn best_for_instance_fast(
    c: &Cluster,
    stats: &Stats,
    vals: &[score::NodeVals],
    cur: f64,
    idx: usize,
    targets: &[usize],
    online: &[bool],
    opts: &BalanceOptions,
) -> Ties<IMove> {
    use score::node_vals_st;
    let inst = &c.instances[idx];
    let force = opts.ignore_soft_errors;
    let opdx = inst.pnode;
    let Some(osdx) = inst.snode else {
        return Ties::new(cur);
    };
    let (np, ns) = (&c.nodes[opdx], &c.nodes[osdx]);
    let use_sec = online[osdx] && opts.instance_moves;
    let prim_off = np.offline;
    let mut best: Ties<IMove> = Ties::new(cur);
    let consider = |sc: f64, mv: IMove, best: &mut Ties<IMove>| best.offer(sc, mv);
    if use_sec {
        if let Ok(out) = c.eval_move(idx, IMove::Failover, force) {
            consider(c.score_outcome(stats, &out), IMove::Failover, &mut best);
        }
    }
    let mut kinds = Vec::with_capacity(4);
    possible_moves(
        MirrorType::Internal,
        use_sec,
        opts.instance_moves,
        opts.disk_moves,
        opts.restricted_migration,
        prim_off,
        0,
        &mut kinds,
    );
    if kinds.is_empty() {
        return best;
    }
    let DrbdBases {
        int_p,
        int_s: _,
        acc_rs,
        acc_raf,
        rp,
        acc_far,
        force_s,
        force_p,
    } = DrbdBases::new(c, stats, vals, idx, osdx, &kinds, force);
    for &t in targets {
        if t == opdx || t == osdx {
            continue;
        }
        let tn = &c.nodes[t];
        let td = &tn.d;
        let vt = &vals[t];
        // htools order per target: RS, RAF, RP, FAR
        if let Some(a0) = &acc_rs {
            if let Ok((st, _)) = tn.add_sec_state(td, inst, opdx, force_s, false) {
                let nv = node_vals_st(tn, &st);
                consider(
                    stats.score_changes(a0, &[(vt, &nv)]),
                    IMove::ReplaceSecondary(t),
                    &mut best,
                );
            }
        }
        let new_p_st = if acc_raf.is_some() || rp.is_some() {
            Some(tn.add_pri_state(td, inst, force))
        } else {
            None
        };
        if let (Some(a0), Some(Ok(pst))) = (&acc_raf, &new_p_st) {
            if let Ok((sst, _)) = np.add_sec_state(&int_p, inst, t, force_s, false) {
                let (n1, n2) = (node_vals_st(tn, pst), node_vals_st(np, &sst));
                let sc = stats.score_changes(a0, &[(vt, &n1), (&vals[opdx], &n2)]);
                consider(sc, IMove::ReplaceAndFailover(t), &mut best);
            }
        }
        if let Some((a0, tmp)) = &rp {
            let pst = if force_p == force {
                new_p_st.unwrap_or_else(|| tn.add_pri_state(td, inst, force_p))
            } else {
                tn.add_pri_state(td, inst, force_p)
            };
            if let Ok(pst) = pst {
                if let Ok((sst, _)) = ns.add_sec_state(tmp, inst, t, force_p, false) {
                    let (n1, n2) = (node_vals_st(tn, &pst), node_vals_st(ns, &sst));
                    let sc = stats.score_changes(a0, &[(vt, &n1), (&vals[osdx], &n2)]);
                    consider(sc, IMove::ReplacePrimary(t), &mut best);
                }
            }
        }
        if let Some(a0) = &acc_far {
            if let Ok((st, _)) = tn.add_sec_state(td, inst, osdx, force_p, false) {
                let nv = node_vals_st(tn, &st);
                consider(
                    stats.score_changes(a0, &[(vt, &nv)]),
                    IMove::FailoverAndReplace(t),
                    &mut best,
                );
            }
        }
    }
    best
}

/// Score components that are provably identical on every node now and
/// after any move (common case: no down or forthcoming instances, no
/// dynamic-load data), so the scorer can fold them together.
pub fn score_aliases(c: &Cluster) -> Vec<(usize, usize)> {
    if c.instances.iter().any(|i| i.forthcoming) {
        return vec![];
    }
    let mut v = vec![];
    let all = |f: &dyn Fn(&crate::model::Node) -> bool| c.nodes.iter().all(f);
    let util_ok = c
        .instances
        .iter()
        .all(|i| i.util.cpu == i.util.mem && i.util.cpu == i.util.net);
    if util_ok
        && all(&|n| {
            n.d.st.util.cpu == n.d.st.util.mem
                && n.d.st.util.cpu == n.d.st.util.net
                && n.util_pool == crate::types::DynUtil::BASE
        })
    {
        v.push((4, 5));
        v.push((4, 7));
    }
    if all(&|n| n.d.st.f_dsk == n.d.st.f_dsk_forth && n.d.st.f_spindles == n.d.st.f_spindles_forth)
    {
        v.push((1, 10));
    }
    if all(&|n| n.d.st.u_cpu == n.d.st.u_cpu_forth) {
        v.push((3, 11));
    }
    if all(&|n| n.d.st.inst_spindles == n.d.st.inst_spindles_forth) {
        v.push((8, 12));
    }
    if c.instances.iter().all(|i| i.uses_memory())
        && all(&|n| n.d.st.f_mem_forth == n.unallocated_mem(&n.d.st))
    {
        v.push((0, 9));
    }
    v
}

/// Best move of an instance: (score, outcome), with the fastest applicable
/// evaluator.
#[allow(clippy::too_many_arguments)]
fn best_move(
    c: &Cluster,
    stats: &Stats,
    vals: &[score::NodeVals],
    fast_ok: bool,
    cur: f64,
    idx: usize,
    targets: &[usize],
    online: &[bool],
    opts: &BalanceOptions,
    pr: Option<(&crate::prune::Tables, &[bool])>,
) -> Vec<(f64, Cand)> {
    if fast_ok && c.instances[idx].mirror_type() == MirrorType::Internal {
        pr.and_then(|(tb, is_target)| {
            crate::prune::best_pruned(c, stats, vals, cur, idx, is_target, online, opts, tb)
        })
        .unwrap_or_else(|| best_for_instance_fast(c, stats, vals, cur, idx, targets, online, opts))
        .items
        .into_iter()
        .map(|(sc, mv)| (sc, Cand::Lazy(idx, mv)))
        .collect()
    } else {
        best_for_instance(c, stats, cur, idx, targets, online, opts)
            .items
            .into_iter()
            .map(|(sc, o)| (sc, Cand::Done(o)))
            .collect()
    }
}

/// A candidate move, its node states computed only when it is needed.
enum Cand {
    Lazy(usize, IMove),
    Done(MoveOutcome),
}

impl Cand {
    fn outcome(self, c: &Cluster, opts: &BalanceOptions) -> Option<MoveOutcome> {
        match self {
            Cand::Lazy(idx, mv) => c.eval_move(idx, mv, opts.ignore_soft_errors).ok(),
            Cand::Done(o) => Some(o),
        }
    }
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

/// Lazy-greedy search for big clusters: every instance's best move (over
/// a pruned set of promising targets) is kept in a priority queue with the
/// gain it had when it was computed; the top entry is re-evaluated against
/// the current state and applied only if it is still the best, and the
/// instances living on the nodes a move touched are re-evaluated at once.
/// The whole queue is rebuilt periodically (and when it runs dry), so the
/// result approximates hbal's step-by-step greedy at a tiny fraction of
/// its cost.
pub fn balance_fast(cluster: &Cluster, opts: &BalanceOptions) -> BalanceResult {
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;

    #[derive(PartialEq)]
    struct Entry(f64, usize);
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Entry {
        fn cmp(&self, o: &Self) -> Ordering {
            self.0
                .partial_cmp(&o.0)
                .unwrap_or(Ordering::Equal)
                .then(o.1.cmp(&self.1))
        }
    }

    let mut c = cluster.clone();
    let initial = score::score(&c.nodes);
    let stop_score = score::optimal_score(&c.nodes) + opts.min_score;
    let online: Vec<bool> = c.nodes.iter().map(|n| !n.offline).collect();
    let online_idx: Vec<usize> = (0..c.nodes.len()).filter(|&i| online[i]).collect();
    let victims = movable_instances(&c, opts);
    let is_victim: Vec<bool> = {
        let mut v = vec![false; c.instances.len()];
        for &i in &victims {
            v[i] = true;
        }
        v
    };
    let fast_ok = fast_eval_ok(&c);
    let aliases = score_aliases(&c);
    let k0 = 16usize;
    let mut k = k0;
    let refresh_every = 64usize.max(victims.len() / 40);
    let mut moves: Vec<PlanMove> = vec![];
    let mut cur = initial;
    let mut dry_refresh = false;
    let mut polish_left = 2usize;
    'outer: while may_continue(opts, moves.len(), cur, stop_score) {
        // full rebuild of the queue
        let mut stats = Stats::new(c.nodes.iter()).with_aliases(&aliases);
        let mut vals: Vec<score::NodeVals> =
            c.nodes.iter().map(|n| score::node_vals(n, &n.d)).collect();
        let mut targets = pruned_targets(&c, &online_idx, k);
        let mut tables = fast_ok.then(|| crate::prune::Tables::new(&c, &stats, &vals, &targets));
        let mut is_target = mask(c.nodes.len(), &targets);
        let cur_inc = stats.score();
        let cref = &c;
        let pr = tables.as_ref().map(|t| (t, is_target.as_slice()));
        let init: Vec<Entry> = victims
            .par_iter()
            .filter_map(|&i| {
                first_best(best_move(
                    cref, &stats, &vals, fast_ok, cur_inc, i, &targets, &online, opts, pr,
                ))
                .map(|(s, _)| Entry(cur_inc - s, i))
            })
            .collect();
        let mut heap: BinaryHeap<Entry> = init.into_iter().collect();
        let mut applied = 0usize;
        while let Some(Entry(stale, idx)) = heap.pop() {
            if !may_continue(opts, moves.len(), cur, stop_score) {
                break 'outer;
            }
            if stale <= TIE_EPS {
                break;
            }
            let now = stats.score();
            let pr = tables.as_ref().map(|t| (t, is_target.as_slice()));
            let Some((s_new, out)) = first_best(best_move(
                &c, &stats, &vals, fast_ok, now, idx, &targets, &online, opts, pr,
            ))
            .and_then(|(sc, m)| m.outcome(&c, opts).map(|o| (sc, o))) else {
                continue;
            };
            let gain = now - s_new;
            let next = heap.peek().map(|e| e.0).unwrap_or(0.0);
            if gain + TIE_EPS < next {
                heap.push(Entry(gain, idx));
                continue;
            }
            if !accept(opts, cur, cur - gain) {
                continue;
            }
            let touched: Vec<usize> = out.nodes.iter().map(|x| x.0).collect();
            let pm = record(&c, &out, 0.0);
            c.commit_move(out, Some(&mut stats));
            for &n in &touched {
                vals[n] = score::node_vals(&c.nodes[n], &c.nodes[n].d);
            }
            if let Some(t) = tables.as_mut() {
                t.touch(&c, &touched);
            }
            cur -= gain;
            moves.push(PlanMove { score: cur, ..pm });
            applied += 1;
            dry_refresh = false;
            if applied.is_multiple_of(16) {
                targets = pruned_targets(&c, &online_idx, k);
                is_target = mask(c.nodes.len(), &targets);
                if let Some(t) = tables.as_mut() {
                    t.retarget(&targets);
                }
            }
            if fast_ok && applied.is_multiple_of(TABLES_EVERY) {
                tables = Some(crate::prune::Tables::new(&c, &stats, &vals, &targets));
            }
            if applied >= refresh_every {
                break;
            }
            // instances on the touched nodes changed most: re-evaluate now
            let mut again: Vec<usize> = touched
                .iter()
                .flat_map(|&n| {
                    c.nodes[n]
                        .plist
                        .iter()
                        .chain(c.nodes[n].slist.iter())
                        .copied()
                })
                .filter(|&i| is_victim[i])
                .collect();
            again.sort_unstable();
            again.dedup();
            let now = stats.score();
            let cref = &c;
            let pr = tables.as_ref().map(|t| (t, is_target.as_slice()));
            let fresh: Vec<Entry> = again
                .par_iter()
                .filter_map(|&i| {
                    first_best(best_move(
                        cref, &stats, &vals, fast_ok, now, i, &targets, &online, opts, pr,
                    ))
                    .map(|(s, _)| Entry(now - s, i))
                })
                .collect();
            heap.extend(fresh);
        }
        // exact score (avoids drift of the running sums)
        cur = score::score(&c.nodes);
        if let Some(m) = moves.last_mut() {
            m.score = cur;
        }
        if applied == 0 {
            if dry_refresh || k >= online_idx.len() || polish_left == 0 {
                break;
            }
            polish_left -= 1;
            // no move left among the promising targets: look at all nodes
            dry_refresh = true;
            k = online_idx.len().min(4 * k0);
        } else {
            k = k0;
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
