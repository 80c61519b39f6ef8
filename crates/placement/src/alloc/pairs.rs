//! The allocator's DRBD pair search without location tags (`try_alloc_pairs_fast`).

use rayon::prelude::*;

use super::{AllocCtx, AllocOptions, AllocSolution, Failures, NEAR_TIE};
use crate::model::{Cluster, Instance};
use crate::score::Stats;
use crate::types::FailMode;

/// DRBD pair evaluation when no location tags exist: the primary side is
/// computed once per primary, the secondary side per pair without cloning
/// any node state; only the winning pair is materialised.
pub(super) fn try_alloc_pairs_fast(
    c: &Cluster,
    stats: &Stats,
    inst: &Instance,
    cands: &[usize],
    pairs: &[usize],
    opts: &AllocOptions,
    ctx: &AllocCtx,
) -> AllocSolution {
    use crate::score::{node_vals, node_vals_st};
    let force = opts.ignore_soft_errors;
    let base = stats.acc();
    let mut is_cand = vec![false; c.nodes.len()];
    for &i in cands {
        is_cand[i] = true;
    }
    let mut pos = vec![usize::MAX; c.nodes.len()];
    for (k, &s) in cands.iter().enumerate() {
        pos[s] = k;
    }
    // Per candidate only (a group's nodes among the whole cluster's), looked up by node.
    let vals = ByCand {
        pos: &pos,
        items: cands
            .iter()
            .map(|&i| Some(node_vals(&c.nodes[i], &c.nodes[i].d)))
            .collect(),
        none: None,
    };
    // The secondary's new state depends on the primary only through the
    // memory it already mirrors for that primary (`peer(p)`): for the
    // (almost all) pairs where that is 0, it is computed once per node.
    let sec_no_peer = ByCand {
        pos: &pos,
        items: cands
            .iter()
            .map(|&s| {
                let sn = &c.nodes[s];
                Some(
                    sn.add_sec_state(&sn.d, inst, usize::MAX, false, false)
                        .map(|(st, _)| node_vals_st(sn, &st)),
                )
            })
            .collect(),
        none: None,
    };
    // Pruning (exact): a pair's score is the primary-only score plus the
    // secondary's own effect on the base score, up to an interaction that
    // `Stats::pair_bound` bounds; secondaries are tried best effect first
    // until no further one can come within NEAR_TIE of the best pair.
    // Failures and successes are still counted for every pair.
    let g_base = stats.score_changes(&base, &[]);
    let mut cb = crate::score::ChangeBounds::default();
    let mut effect = vec![0.0; c.nodes.len()];
    for &s in cands {
        if let (Some(Ok(nv)), Some(v)) = (&sec_no_peer[s], &vals[s]) {
            effect[s] = stats.score_changes(&base, &[(v, nv)]) - g_base;
            cb.widen(stats, &base, v, nv);
        }
    }
    let mut order: Vec<usize> = cands
        .iter()
        .copied()
        .filter(|&s| matches!(sec_no_peer[s], Some(Ok(_))))
        .collect();
    order.sort_by(|&a, &b| effect[a].total_cmp(&effect[b]).then(pos[a].cmp(&pos[b])));
    // per group: number of candidates and of no-peer failures per mode
    let fidx = |f: FailMode| FailMode::ALL.iter().position(|x| *x == f).unwrap_or(0);
    let mut per_group: std::collections::HashMap<usize, (usize, [usize; 9])> =
        std::collections::HashMap::new();
    for &s in cands {
        let e = per_group.entry(c.nodes[s].group).or_insert((0, [0; 9]));
        e.0 += 1;
        if let Some(Err(f)) = &sec_no_peer[s] {
            e.1[fidx(*f)] += 1;
        }
    }
    let per_p: Vec<(Failures, usize, Vec<(f64, usize, usize)>)> = pairs
        .par_iter()
        .map(|&p| {
            let mut fails = Failures::default();
            let mut best: Vec<(f64, usize, usize)> = vec![];
            let pn = &c.nodes[p];
            let (n_grp, grp_fail) = per_group.get(&pn.group).copied().unwrap_or((0, [0; 9]));
            let n_s = n_grp - usize::from(is_cand[p]);
            let prim = inst
                .matches_policy(&c.groups[pn.group].ipolicy, pn.excl_storage)
                .and_then(|_| pn.add_pri_state(&pn.d, inst, force));
            let a0 = match prim {
                Err(f) => {
                    fails.add(f, n_s);
                    return (fails, 0, best);
                }
                Ok(st) => {
                    let mut a = base;
                    if let Some(v) = &vals[p] {
                        stats.acc_apply(&mut a, v, &node_vals_st(pn, &st));
                    }
                    a
                }
            };
            let a0 = &a0;
            // failures of the no-peer secondaries, corrected below for p
            // itself and for the nodes mirroring memory for p
            let mut fcount = grp_fail;
            if let Some(Some(Err(f))) = is_cand[p].then(|| &sec_no_peer[p]) {
                fcount[fidx(*f)] -= 1;
            }
            let mut specials: Vec<usize> = pn
                .plist
                .iter()
                .filter_map(|&i| c.instances[i].snode)
                .filter(|&s| {
                    s != p
                        && is_cand[s]
                        && c.nodes[s].group == pn.group
                        && c.nodes[s].d.peer(p) != 0
                })
                .collect();
            specials.sort_unstable_by_key(|&s| pos[s]);
            specials.dedup();
            let mut found: Vec<(usize, f64, usize)> = vec![];
            for &s in &specials {
                if let Some(Err(f)) = &sec_no_peer[s] {
                    fcount[fidx(*f)] -= 1;
                }
                let sn = &c.nodes[s];
                match sn.add_sec_state(&sn.d, inst, p, false, false) {
                    Err(f) => fails.push(f),
                    Ok((st, _)) => {
                        let sc = match &vals[s] {
                            Some(v) => stats.score_changes(a0, &[(v, &node_vals_st(sn, &st))]),
                            None => stats.score_changes(a0, &[]),
                        };
                        found.push((pos[s], sc, s));
                    }
                }
            }
            for (k, n) in fcount.iter().enumerate() {
                fails.add(FailMode::ALL[k], *n);
            }
            let allocs = n_s - fails.len();
            let g_p = stats.score_changes(a0, &[]);
            let bound = stats.pair_bound(&base, a0, &cb) + crate::score::pair_bound_slack(g_p);
            let mut cur = found.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            for &s in &order {
                if g_p + effect[s] - bound > cur + NEAR_TIE {
                    break;
                }
                if s == p || c.nodes[s].group != pn.group || specials.contains(&s) {
                    continue;
                }
                let (Some(Ok(nv)), Some(v)) = (&sec_no_peer[s], &vals[s]) else {
                    continue;
                };
                let sc = stats.score_changes(a0, &[(v, nv)]);
                cur = cur.min(sc);
                found.push((pos[s], sc, s));
            }
            let pmin = found.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            found.retain(|x| x.1 <= pmin + NEAR_TIE);
            found.sort_unstable_by_key(|x| x.0);
            best.extend(found.into_iter().map(|(_, sc, s)| (sc, p, s)));
            (fails, allocs, best)
        })
        .collect();
    let mut sol = AllocSolution::empty();
    let mut ties: Vec<(f64, usize, usize)> = vec![];
    for (f, a, b) in per_p {
        sol.failures.merge(&f);
        sol.allocs += a;
        ties.extend(b);
    }
    let gbest = ties.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    ties.retain(|x| x.0 <= gbest + NEAR_TIE);
    let mut best: Option<(f64, usize, usize)> = ties.last().copied();
    if ties.len() > 1 {
        // re-score like hail (htools' running statistics) and keep the last
        // of the lowest, as hail does
        let hs = ctx.hstats.get_or_init(|| {
            crate::score::HStats::new(
                c.nodes
                    .iter()
                    .filter(|n| stats.scope.is_none_or(|g| n.group == g)),
            )
        });
        let mut pick: Option<(f64, usize)> = None;
        for (k, &(_, p, s)) in ties.iter().enumerate() {
            let (pn, sn) = (&c.nodes[p], &c.nodes[s]);
            let Ok(pst) = pn.add_pri_state(&pn.d, inst, force) else {
                continue;
            };
            let Ok((sst, _)) = sn.add_sec_state(&sn.d, inst, p, false, false) else {
                continue;
            };
            let (po, pnew) = (node_vals(pn, &pn.d), node_vals_st(pn, &pst));
            let (so, snew) = (node_vals(sn, &sn.d), node_vals_st(sn, &sst));
            let ex = hs.updated_total(&[(&po, &pnew), (&so, &snew)]);
            if pick.is_none_or(|x| x.0 >= ex) {
                pick = Some((ex, k));
            }
        }
        if let Some((_, k)) = pick {
            best = Some(ties[k]);
        }
    }
    if let Some((sc, p, s)) = best {
        if let Ok(nodes) = c.eval_place(inst, p, Some(s), force) {
            sol.best = Some((sc, p, Some(s), nodes));
        }
    }
    sol
}

/// Values kept for the candidates only (`items[k]` for `cands[k]`), read by node index
/// (`none` for the other nodes).
struct ByCand<'a, T> {
    pos: &'a [usize],
    items: Vec<Option<T>>,
    none: Option<T>,
}

impl<T> std::ops::Index<usize> for ByCand<'_, T> {
    type Output = Option<T>;
    fn index(&self, n: usize) -> &Option<T> {
        match self.pos.get(n) {
            Some(&k) if k != usize::MAX => &self.items[k],
            _ => &self.none,
        }
    }
}
