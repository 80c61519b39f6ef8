//! The balancer's lazy-greedy search for big clusters (`SearchMode::Fast`).

use rayon::prelude::*;

use super::{
    accept, best_move, fast_eval_ok, first_best, mask, may_continue, movable_instances,
    pruned_targets, record, score_aliases, split_jobs, BalanceOptions, BalanceResult, PlanMove,
    TIE_EPS,
};
use crate::model::Cluster;
use crate::score::{self, Stats};

/// Moves after which the fast search rebuilds its target tables against the
/// current statistics (in between, the tables are patched with the nodes
/// each move changed; rebuilding less often loosens their bound: 16 is the
/// fastest on the 2000-node benchmark, 8 and 32 are slower).
const TABLES_EVERY: usize = 16;

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
