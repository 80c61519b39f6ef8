//! The balancer's per-instance search: every move of one instance over the
//! target nodes, scored incrementally (the full evaluator, the DRBD one that
//! computes the instance's own nodes once, and the pruned one in `prune.rs`).

use super::{BalanceOptions, Ties};
use crate::drbd_bases::DrbdBases;
use crate::model::Cluster;
use crate::moves::MoveOutcome;
use crate::score::{self, Stats};
use crate::types::{IMove, MirrorType};

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
pub(super) fn best_move(
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
pub(super) enum Cand {
    Lazy(usize, IMove),
    Done(MoveOutcome),
}

impl Cand {
    pub(super) fn outcome(self, c: &Cluster, opts: &BalanceOptions) -> Option<MoveOutcome> {
        match self {
            Cand::Lazy(idx, mv) => c.eval_move(idx, mv, opts.ignore_soft_errors).ok(),
            Cand::Done(o) => Some(o),
        }
    }
}
