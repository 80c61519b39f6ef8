//! Exact pruning of the balancer's target search.
//!
//! A DRBD instance's move changes its own nodes (independent of the target
//! node) and one target node. The target's new state depends on the
//! instance only through its resources (a "class": memory, disk, vcpus,
//! spindles, status, ...), except on nodes that mirror memory for one of the
//! instance's nodes ("special" targets, evaluated one by one). So for each
//! class the effect of every target on the base score is computed once per
//! round and sorted ([`Table`]); an instance's candidates are then tried in
//! that order, and the walk stops as soon as the effect plus the instance's
//! own-node score, minus [`Stats::pair_bound`] (how much the target's effect
//! can differ on top of the instance's own changes), cannot reach the best
//! candidate any more. The candidates that are evaluated are scored exactly
//! as the full search scores them, so the search keeps its answers.
//!
//! When a move is committed, its nodes are logged ([`Tables::touch`]); a table
//! re-computes their entries (against its own base, which the bound allows)
//! before its next use, so they are pruned like the others instead of being
//! evaluated one by one for every instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::balance::{possible_moves, BalanceOptions, Ties};
use crate::drbd_bases::DrbdBases;
use crate::model::{Cluster, Instance, NodeDyn};
use crate::score::{
    node_vals, node_vals_st, pair_bound_slack, Acc, Change, ChangeBounds, NodeVals, Stats,
};
use crate::types::{DiskTemplate, IMove, MirrorType};

/// What the target side of a move reads of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClassKey {
    pri: bool,
    force: bool,
    tmpl: DiskTemplate,
    uses_mem: bool,
    uses_sec_mem: bool,
    not_offline: bool,
    forthcoming: bool,
    mem: i64,
    dsk: i64,
    vcpus: i64,
    spindle_use: i64,
    spindles: Option<i64>,
    util: [u64; 4],
    loc: i64,
}

impl ClassKey {
    fn of(inst: &Instance, pri: bool, force: bool) -> ClassKey {
        ClassKey {
            pri,
            force,
            tmpl: inst.template,
            uses_mem: inst.uses_memory(),
            uses_sec_mem: inst.uses_sec_mem(),
            not_offline: inst.not_offline(),
            forthcoming: inst.forthcoming,
            mem: inst.mem,
            dsk: inst.dsk,
            vcpus: inst.vcpus,
            spindle_use: inst.spindle_use,
            spindles: inst.total_spindles(),
            util: [
                inst.util.cpu.to_bits(),
                inst.util.mem.to_bits(),
                inst.util.dsk.to_bits(),
                inst.util.net.to_bits(),
            ],
            loc: inst.location_score,
        }
    }
}

/// Targets of one class, by their effect on the base score.
#[derive(Clone)]
pub(crate) struct Table {
    order: Vec<(f64, usize)>,
    cb: ChangeBounds,
    /// how much of the change log (`Tables::log`) the entries include
    seen: usize,
}

/// The per-round tables (built lazily, shared by the threads).
pub(crate) struct Tables {
    stats: Stats,
    base: Acc,
    g_base: f64,
    /// the nodes' values as of their last change (the build, or a later `touch`)
    vals: Vec<NodeVals>,
    targets: Vec<usize>,
    is_target: Vec<bool>,
    /// nodes changed since the tables were started, in order (repeats kept): a table
    /// re-computes their entries, against the base, before it is used again
    log: Vec<usize>,
    /// node -> nodes that mirror memory for it (its peers), as of the build plus what
    /// later changes added (a superset: extra nodes are only evaluated one by one)
    rev_peers: Vec<Vec<usize>>,
    map: Mutex<HashMap<ClassKey, Arc<Table>, std::hash::BuildHasherDefault<FxHasher>>>,
}

/// A small multiplicative hasher for the class keys (no DoS concern here).
#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Tables {
    /// Tables against the current state of `stats` (node values `vals`),
    /// for moves onto `targets`.
    pub(crate) fn new(c: &Cluster, stats: &Stats, vals: &[NodeVals], targets: &[usize]) -> Tables {
        let base = stats.acc();
        let n = c.nodes.len();
        let mut rev_peers = vec![vec![]; n];
        for (s, node) in c.nodes.iter().enumerate() {
            for &(p, v) in &node.d.peers {
                if v != 0 && p < n {
                    rev_peers[p].push(s);
                }
            }
        }
        let mut is_target = vec![false; n];
        for &t in targets {
            is_target[t] = true;
        }
        Tables {
            rev_peers,
            stats: stats.clone(),
            base,
            g_base: stats.score_changes(&base, &[]),
            vals: vals.to_vec(),
            targets: targets.to_vec(),
            is_target,
            log: vec![],
            map: Mutex::new(HashMap::default()),
        }
    }

    /// The cluster changed on these nodes (a move was committed): each table
    /// re-computes their entries before its next use.
    pub(crate) fn touch(&mut self, c: &Cluster, nodes: &[usize]) {
        let len = self.vals.len();
        for &n in nodes.iter().filter(|&&n| n < len) {
            self.log.push(n);
            let node = &c.nodes[n];
            self.vals[n] = node_vals_st(node, &node.d.st);
            for &(p, v) in &node.d.peers {
                if v != 0 && p < len && !self.rev_peers[p].contains(&n) {
                    self.rev_peers[p].push(n);
                }
            }
        }
    }

    /// Moves now go onto `targets`: the nodes that joined or left are logged like
    /// changed nodes (a table adds or drops their entries before its next use).
    pub(crate) fn retarget(&mut self, targets: &[usize]) {
        let len = self.is_target.len();
        let mut now = vec![false; len];
        for &t in targets.iter().filter(|&&t| t < len) {
            now[t] = true;
        }
        for (n, (&a, &b)) in self.is_target.iter().zip(&now).enumerate() {
            if a != b {
                self.log.push(n);
            }
        }
        self.is_target = now;
        self.targets = targets.to_vec();
    }

    /// Target `t`'s entry for the class of `inst`: its effect on the base score.
    fn entry(
        &self,
        c: &Cluster,
        inst: &Instance,
        pri: bool,
        force: bool,
        t: usize,
    ) -> Option<(f64, NodeVals)> {
        let tn = &c.nodes[t];
        let st = if pri {
            tn.add_pri_state(&tn.d, inst, force)
        } else {
            tn.add_sec_state_peer(&tn.d, inst, 0, force, false)
                .map(|x| x.0)
        };
        let st = st.ok()?;
        let nv = node_vals_st(tn, &st);
        let e = self
            .stats
            .score_changes(&self.base, &[(&self.vals[t], &nv)])
            - self.g_base;
        Some((e, nv))
    }

    fn get(&self, c: &Cluster, inst: &Instance, pri: bool, force: bool) -> Arc<Table> {
        let key = ClassKey::of(inst, pri, force);
        let found = self.map.lock().ok().and_then(|m| m.get(&key).cloned());
        let table = match found {
            Some(t) if t.seen == self.log.len() => return t,
            Some(t) => {
                // fold in the nodes changed since: drop their entries, compute them anew
                let mut t = (*t).clone();
                let mut changed = self.log[t.seen..].to_vec();
                changed.sort_unstable();
                changed.dedup();
                t.order.retain(|e| changed.binary_search(&e.1).is_err());
                for &n in &changed {
                    if !self.is_target[n] {
                        continue;
                    }
                    if let Some((e, nv)) = self.entry(c, inst, pri, force, n) {
                        t.order.push((e, n));
                        t.cb.widen(&self.stats, &self.base, &self.vals[n], &nv);
                    }
                }
                t.order
                    .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                t.seen = self.log.len();
                t
            }
            None => {
                let mut cb = ChangeBounds::default();
                let mut order = Vec::with_capacity(self.targets.len());
                for &t in &self.targets {
                    if let Some((e, nv)) = self.entry(c, inst, pri, force, t) {
                        order.push((e, t));
                        cb.widen(&self.stats, &self.base, &self.vals[t], &nv);
                    }
                }
                order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                Table {
                    order,
                    cb,
                    seen: self.log.len(),
                }
            }
        };
        let t = Arc::new(table);
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, t.clone());
        }
        t
    }
}

/// The balancer's best moves of one DRBD instance (as
/// `best_for_instance_fast` finds them), with the pruned target walk.
/// None when the pruning does not apply (the caller searches in full).
#[allow(clippy::too_many_arguments)]
pub(crate) fn best_pruned(
    c: &Cluster,
    stats: &Stats,
    vals: &[NodeVals],
    cur: f64,
    idx: usize,
    is_target: &[bool],
    online: &[bool],
    opts: &BalanceOptions,
    tb: &Tables,
) -> Option<Ties<IMove>> {
    let inst = &c.instances[idx];
    if !inst.excl_tags.is_empty() || inst.mirror_type() != MirrorType::Internal {
        return None;
    }
    let force = opts.ignore_soft_errors;
    let opdx = inst.pnode;
    let osdx = inst.snode?;
    let (np, ns) = (&c.nodes[opdx], &c.nodes[osdx]);
    let use_sec = online[osdx] && opts.instance_moves;
    let prim_off = np.offline;
    // (evaluation order, score, move)
    let mut cands: Vec<(usize, f64, IMove)> = Vec::with_capacity(16);
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
    let DrbdBases {
        int_p,
        int_s,
        acc_rs,
        acc_raf,
        rp,
        acc_far,
        force_s,
        force_p,
    } = DrbdBases::new(c, stats, vals, idx, osdx, &kinds, force);
    if use_sec {
        if let Some(sc) = failover_score(c, stats, inst, &int_p, &int_s, force) {
            cands.push((0, sc, IMove::Failover));
        }
    }
    // the exact score of one candidate, computed as the full search does
    let eval = |kind: usize, t: usize| -> Option<f64> {
        let tn = &c.nodes[t];
        let td = &tn.d;
        let vt = &vals[t];
        match kind {
            0 => {
                let a0 = acc_rs.as_ref()?;
                let (st, _) = tn.add_sec_state(td, inst, opdx, force_s, false).ok()?;
                Some(stats.score_changes(a0, &[(vt, &node_vals_st(tn, &st))]))
            }
            1 => {
                let a0 = acc_raf.as_ref()?;
                let pst = tn.add_pri_state(td, inst, force).ok()?;
                let (sst, _) = np.add_sec_state(&int_p, inst, t, force_s, false).ok()?;
                let (n1, n2) = (node_vals_st(tn, &pst), node_vals_st(np, &sst));
                Some(stats.score_changes(a0, &[(vt, &n1), (&vals[opdx], &n2)]))
            }
            2 => {
                let (a0, tmp) = rp.as_ref()?;
                let pst = tn.add_pri_state(td, inst, force_p).ok()?;
                let (sst, _) = ns.add_sec_state(tmp, inst, t, force_p, false).ok()?;
                let (n1, n2) = (node_vals_st(tn, &pst), node_vals_st(ns, &sst));
                Some(stats.score_changes(a0, &[(vt, &n1), (&vals[osdx], &n2)]))
            }
            _ => {
                let a0 = acc_far.as_ref()?;
                let (st, _) = tn.add_sec_state(td, inst, osdx, force_p, false).ok()?;
                Some(stats.score_changes(a0, &[(vt, &node_vals_st(tn, &st))]))
            }
        }
    };
    let mv_of = |kind: usize, t: usize| match kind {
        0 => IMove::ReplaceSecondary(t),
        1 => IMove::ReplaceAndFailover(t),
        2 => IMove::ReplacePrimary(t),
        _ => IMove::FailoverAndReplace(t),
    };
    let valid_t = |t: usize| t < is_target.len() && is_target[t] && t != opdx && t != osdx;
    let mut run_min = cands.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
    // a candidate above the lowest score + NEAR_TIE cannot change what `Ties` keeps
    // (it would be dropped, or removed once the lowest arrives): only the others are kept
    let push = |cands: &mut Vec<(usize, f64, IMove)>, run_min: &mut f64, kind, t, sc: f64| {
        *run_min = run_min.min(sc);
        if sc <= *run_min + crate::balance::NEAR_TIE {
            cands.push((1 + 4 * t + kind, sc, mv_of(kind, t)));
        }
    };
    let mut specials: Vec<usize> = Vec::with_capacity(16);
    for kind in 0..4usize {
        let (present, pri, f, sec_of) = match kind {
            0 => (acc_rs.is_some(), false, force_s, Some(opdx)),
            1 => (acc_raf.is_some(), true, force, None),
            2 => (rp.is_some(), true, force_p, None),
            _ => (acc_far.is_some(), false, force_p, Some(osdx)),
        };
        if !present {
            continue;
        }
        // own nodes' changes that depend on the target only through a peer
        let own_peers: &[(usize, i64)] = match kind {
            1 => &int_p.peers,
            2 => rp.as_ref().map(|x| x.1.peers.as_slice()).unwrap_or(&[]),
            _ => &[],
        };
        let a_full: Option<Acc> = match kind {
            0 => acc_rs,
            1 => acc_raf.and_then(|mut a| {
                let (sst, _) = np
                    .add_sec_state_peer(&int_p, inst, 0, force_s, false)
                    .ok()?;
                stats.acc_apply(&mut a, &vals[opdx], &node_vals_st(np, &sst));
                Some(a)
            }),
            2 => rp.as_ref().and_then(|(a, tmp)| {
                let mut a = *a;
                let (sst, _) = ns.add_sec_state_peer(tmp, inst, 0, force_p, false).ok()?;
                stats.acc_apply(&mut a, &vals[osdx], &node_vals_st(ns, &sst));
                Some(a)
            }),
            _ => acc_far,
        };
        // special targets: with a
        // peer relation that the class table does not cover
        specials.clear();
        specials.extend(
            own_peers
                .iter()
                .filter(|p| p.1 != 0 && valid_t(p.0))
                .map(|p| p.0),
        );
        if let Some(pdx) = sec_of {
            specials.extend(tb.rev_peers[pdx].iter().copied().filter(|&t| valid_t(t)));
        }
        specials.sort_unstable();
        specials.dedup();
        let is_special = |t: usize| specials.binary_search(&t).is_ok();
        for &t in &specials {
            if let Some(sc) = eval(kind, t) {
                push(&mut cands, &mut run_min, kind, t, sc);
            }
        }
        let Some(a_full) = a_full else {
            // the target-independent part fails (with no peer on the target): only the
            // specials can succeed
            continue;
        };
        let table = tb.get(c, inst, pri, f);
        let g_a = stats.score_changes(&a_full, &[]);
        let bound = stats.pair_bound(&tb.base, &a_full, &table.cb) + pair_bound_slack(g_a);
        if !bound.is_finite() {
            return None;
        }
        for &(e, t) in &table.order {
            let thr = (run_min + crate::balance::NEAR_TIE).min(cur - crate::balance::TIE_EPS);
            if g_a + e - bound > thr {
                break;
            }
            if !valid_t(t) || is_special(t) {
                continue;
            }
            if let Some(sc) = eval(kind, t) {
                push(&mut cands, &mut run_min, kind, t, sc);
            }
        }
    }
    let lim = run_min + crate::balance::NEAR_TIE;
    cands.retain(|x| x.1 <= lim);
    cands.sort_unstable_by_key(|x| x.0);
    let mut best = Ties::new(cur);
    for (_, sc, mv) in cands {
        best.offer(sc, mv);
    }
    Some(best)
}

/// The score after failing the instance over, as `Cluster::eval_move` and
/// `Cluster::score_outcome` compute it, from its old nodes without it (`int_p`,
/// `int_s`): the instance has no exclusion tags, so the nodes' tag maps do not change.
fn failover_score(
    c: &Cluster,
    stats: &Stats,
    inst: &Instance,
    int_p: &NodeDyn,
    int_s: &NodeDyn,
    force: bool,
) -> Option<f64> {
    let (opdx, osdx) = (inst.pnode, inst.snode?);
    let (np, ns) = (&c.nodes[opdx], &c.nodes[osdx]);
    if c.location_forbids_move(inst, IMove::Failover) || !np.mig_tags.is_subset(&ns.rmig_tags) {
        return None;
    }
    let off_p = np.offline;
    let st_s = ns.add_pri_state(int_s, inst, off_p || force).ok()?;
    let (st_p, _) = np
        .add_sec_state(int_p, inst, osdx, off_p || force, off_p)
        .ok()?;
    fn map(n: &crate::model::Node) -> Option<&std::collections::BTreeMap<(String, String), i64>> {
        Some(&n.d.inst_map).filter(|m| !m.is_empty())
    }
    let ch = [
        Change {
            old: node_vals(np, &np.d),
            new: node_vals_st(np, &st_p),
            old_map: map(np),
            new_map: map(np),
        },
        Change {
            old: node_vals(ns, &ns.d),
            new: node_vals_st(ns, &st_s),
            old_map: map(ns),
            new_map: map(ns),
        },
    ];
    Some(stats.score_with(&ch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{best_for_instance_fast, fast_eval_ok, score_aliases};
    use crate::score::node_vals;

    fn cluster(name: &str) -> Cluster {
        let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        let txt = std::fs::read_to_string(&p).expect("test data");
        crate::text::load_text(&txt, &crate::LoadOptions::default()).expect("load")
    }

    /// Fixed-seed generator (no external crate): xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
        }
    }

    fn random_move(c: &Cluster, rng: &mut Rng) -> Option<crate::moves::MoveOutcome> {
        for _ in 0..50 {
            let i = rng.next(c.instances.len());
            let t = rng.next(c.nodes.len());
            let mv = match rng.next(5) {
                0 => IMove::Failover,
                1 => IMove::ReplaceSecondary(t),
                2 => IMove::ReplaceAndFailover(t),
                3 => IMove::ReplacePrimary(t),
                _ => IMove::FailoverAndReplace(t),
            };
            let inst = &c.instances[i];
            if inst.mirror_type() != MirrorType::Internal
                || (mv != IMove::Failover && (t == inst.pnode || Some(t) == inst.snode))
                || c.nodes[t].offline
            {
                continue;
            }
            if let Ok(out) = c.eval_move(i, mv, false) {
                return Some(out);
            }
        }
        None
    }

    fn same(a: &Ties<IMove>, b: &Ties<IMove>) -> bool {
        a.items.len() == b.items.len()
            && a.items
                .iter()
                .zip(&b.items)
                .all(|(x, y)| x.1 == y.1 && x.0.to_bits() == y.0.to_bits())
    }

    /// Pruned and full target searches find the same candidates with
    /// bit-identical scores, on fresh tables and on tables patched after
    /// random moves (committed with running statistics, as the lazy search
    /// does), for every DRBD instance and several option sets.
    #[test]
    fn pruned_search_equals_full_search() {
        for (file, seed) in [
            ("c60s7.data", 7u64),
            ("c150s3.data", 3),
            ("c80s11.data", 11),
        ] {
            let mut c = cluster(file);
            assert!(fast_eval_ok(&c));
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
            let aliases = score_aliases(&c);
            let online: Vec<bool> = c.nodes.iter().map(|n| !n.offline).collect();
            let online_idx: Vec<usize> = (0..c.nodes.len()).filter(|&i| online[i]).collect();
            let opt_sets = [
                BalanceOptions::default(),
                BalanceOptions {
                    ignore_soft_errors: true,
                    ..Default::default()
                },
                BalanceOptions {
                    restricted_migration: true,
                    ..Default::default()
                },
            ];
            let mut checked = 0;
            for round in 0..4 {
                let mut stats = Stats::new(c.nodes.iter()).with_aliases(&aliases);
                let mut vals: Vec<NodeVals> = c.nodes.iter().map(|n| node_vals(n, &n.d)).collect();
                let mut tb = Tables::new(&c, &stats, &vals, &online_idx);
                // build the tables of the classes (default options) before the moves, so
                // that the moves' nodes are patched into them afterwards
                let cur0 = stats.score();
                for idx in 0..c.instances.len() {
                    if c.instances[idx].mirror_type() == MirrorType::Internal {
                        let _ = best_pruned(
                            &c,
                            &stats,
                            &vals,
                            cur0,
                            idx,
                            &online,
                            &online,
                            &opt_sets[0],
                            &tb,
                        );
                    }
                }
                // some moves after the tables were built: their nodes are stale
                for _ in 0..round * 3 {
                    if let Some(out) = random_move(&c, &mut rng) {
                        let touched: Vec<usize> = out.nodes.iter().map(|x| x.0).collect();
                        c.commit_move(out, Some(&mut stats));
                        for &n in &touched {
                            vals[n] = node_vals(&c.nodes[n], &c.nodes[n].d);
                        }
                        tb.touch(&c, &touched);
                    }
                }
                // a target subset, as the fast search uses
                let is_target: Vec<bool> = (0..c.nodes.len())
                    .map(|i| online[i] && (round % 2 == 0 || i % 3 != 0))
                    .collect();
                let targets: Vec<usize> = (0..c.nodes.len()).filter(|&i| is_target[i]).collect();
                let cur = stats.score();
                for opts in &opt_sets {
                    for idx in 0..c.instances.len() {
                        if c.instances[idx].mirror_type() != MirrorType::Internal {
                            continue;
                        }
                        let full = best_for_instance_fast(
                            &c, &stats, &vals, cur, idx, &targets, &online, opts,
                        );
                        let pruned = best_pruned(
                            &c, &stats, &vals, cur, idx, &is_target, &online, opts, &tb,
                        )
                        .expect("pruning applies");
                        assert!(
                            same(&full, &pruned),
                            "{file} round {round} instance {idx}: full {:?} pruned {:?}",
                            full.items,
                            pruned.items
                        );
                        checked += 1;
                    }
                }
            }
            assert!(checked > 100, "{file}: only {checked} instances checked");
        }
    }
}
