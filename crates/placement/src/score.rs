//! The cluster score of htools (`Cluster/Metrics.hs`): a weighted sum of
//! standard deviations of per-node ratios plus weighted counts. Lower is
//! better. `Stats` keeps running sums so that a candidate move touching a
//! few nodes is scored in O(changed nodes), without rescoring the cluster.

use std::collections::BTreeMap;

use crate::model::{Node, NodeDyn};

/// Number of standard-deviation components.
pub const NSTD: usize = 13;

/// Names and weights of the std-dev components, in evaluation order.
pub const STD_NAMES: [&str; NSTD] = [
    "free_mem_cv",
    "free_disk_cv",
    "reserved_mem_cv",
    "vcpu_ratio_cv",
    "cpu_load_cv",
    "mem_load_cv",
    "disk_load_cv",
    "net_load_cv",
    "spindles_cv",
    "free_mem_cv_forth",
    "free_disk_cv_forth",
    "vcpu_ratio_cv_forth",
    "spindles_cv_forth",
];
pub const STD_WEIGHTS: [f64; NSTD] = [
    0.5, 0.5, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5,
];
pub const W_N1: f64 = 1.0;
pub const W_OFF_ALL: f64 = 4.0;
pub const W_OFF_PRI: f64 = 16.0;
pub const W_PRI_TAGS: f64 = 2.0;
pub const W_LOCATION: f64 = 1.0;
pub const W_LOC_EXCL: f64 = 1.0;
pub const W_RESERVED_TOTAL: f64 = 0.25;

/// Per-node contribution to the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeVals {
    pub online: bool,
    pub std: [f64; NSTD],
    pub n1: f64,
    pub pri_tags: f64,
    pub location: f64,
    pub off_all: f64,
    pub off_pri: f64,
}

/// Compute the score contribution of `node` in dynamic state `d`.
pub fn node_vals(node: &Node, d: &NodeDyn) -> NodeVals {
    node_vals_st(node, &d.st)
}

/// Score contribution of `node` with scalar state `st`.
pub fn node_vals_st(node: &Node, st: &crate::model::NodeState) -> NodeVals {
    let n1 = if st.fail_n1 {
        (st.n_sec + st.n_pri) as f64
    } else {
        0.0
    };
    let pool = node.util_pool;
    NodeVals {
        online: !node.offline,
        std: [
            node.p_mem(st),
            node.p_dsk(st),
            node.p_rem(st),
            node.p_cpu(st) / node.cpu_speed,
            st.util.cpu / pool.cpu,
            st.util.mem / pool.mem,
            st.util.dsk / pool.dsk,
            st.util.net / pool.net,
            st.inst_spindles / node.hi_spindles,
            node.p_mem_forth(st),
            node.p_dsk_forth(st),
            node.p_cpu_forth(st) / node.cpu_speed,
            st.inst_spindles_forth / node.hi_spindles,
        ],
        n1,
        pri_tags: st.pri_conflicts as f64,
        location: st.location_score as f64,
        off_all: (st.n_pri + st.n_sec) as f64,
        off_pri: st.n_pri as f64,
    }
}

/// Detailed score: the value of every component (unweighted) and the total.
#[derive(Debug, Clone, PartialEq)]
pub struct Detailed {
    pub std: [f64; NSTD],
    pub n1: f64,
    pub off_all: f64,
    pub off_pri: f64,
    pub pri_tags: f64,
    pub location: f64,
    pub loc_excl: f64,
    pub reserved_total: f64,
    pub total: f64,
}

/// Full (two-pass) computation of the score of a set of nodes, exactly as
/// htools' `compCV`.
pub fn score_nodes<'a>(nodes: impl Iterator<Item = &'a Node>) -> Detailed {
    let mut vals = Vec::new();
    let mut map: BTreeMap<&(String, String), i64> = BTreeMap::new();
    for n in nodes {
        let v = node_vals(n, &n.d);
        if v.online {
            for (k, c) in &n.d.inst_map {
                *map.entry(k).or_insert(0) += *c;
            }
        }
        vals.push(v);
    }
    let loc_excl = (map.values().sum::<i64>() - map.len() as i64) as f64;
    detailed_from_vals(vals.iter(), loc_excl)
}

/// [`score_nodes`] from the nodes' values (in node order) and the
/// location-exclusion count.
fn detailed_from_vals<'a>(vals: impl Iterator<Item = &'a NodeVals>, loc_excl: f64) -> Detailed {
    let vals: Vec<&NodeVals> = vals.collect();
    let online: Vec<&NodeVals> = vals.iter().copied().filter(|v| v.online).collect();
    let cnt = online.len() as f64;
    let mut std = [0.0; NSTD];
    if !online.is_empty() {
        for (k, s) in std.iter_mut().enumerate() {
            let mean = online.iter().fold(0.0, |a, v| a + v.std[k]) / cnt;
            let nvar = online.iter().fold(0.0, |a, v| {
                let d = v.std[k] - mean;
                a + d * d
            });
            *s = (nvar / cnt).sqrt();
        }
    }
    let n1 = online.iter().fold(0.0, |a, v| a + v.n1);
    let pri_tags = online.iter().fold(0.0, |a, v| a + v.pri_tags);
    let location = online.iter().fold(0.0, |a, v| a + v.location);
    let reserved_total = online.iter().fold(0.0, |a, v| a + v.std[2]);
    let offline: Vec<&NodeVals> = vals.iter().copied().filter(|v| !v.online).collect();
    let off_all = offline.iter().fold(0.0, |a, v| a + v.off_all);
    let off_pri = offline.iter().fold(0.0, |a, v| a + v.off_pri);
    // summed in htools' order (left fold), so equal placements give
    // bit-identical scores and ties break like htools
    let terms = [
        STD_WEIGHTS[0] * std[0],
        STD_WEIGHTS[1] * std[1],
        W_N1 * n1,
        STD_WEIGHTS[2] * std[2],
        W_OFF_ALL * off_all,
        W_OFF_PRI * off_pri,
        STD_WEIGHTS[3] * std[3],
        STD_WEIGHTS[4] * std[4],
        STD_WEIGHTS[5] * std[5],
        STD_WEIGHTS[6] * std[6],
        STD_WEIGHTS[7] * std[7],
        W_PRI_TAGS * pri_tags,
        STD_WEIGHTS[8] * std[8],
        STD_WEIGHTS[9] * std[9],
        STD_WEIGHTS[10] * std[10],
        STD_WEIGHTS[11] * std[11],
        STD_WEIGHTS[12] * std[12],
        W_LOCATION * location,
        W_LOC_EXCL * loc_excl,
        W_RESERVED_TOTAL * reserved_total,
    ];
    let total = terms.iter().fold(0.0, |a, t| a + t);
    Detailed {
        std,
        n1,
        off_all,
        off_pri,
        pri_tags,
        location,
        loc_excl,
        reserved_total,
        total,
    }
}

/// Exact (two-pass, htools' order) scores of a scope with a few node
/// states replaced, from node values computed once: for breaking near-ties
/// among many candidates without rescoring every node each time.
pub struct ExactScorer {
    /// values of the scope's nodes, in node order
    vals: Vec<NodeVals>,
    pos: Vec<usize>,
    /// no location/exclusion maps in the scope (else: full rescoring)
    simple: bool,
}

impl ExactScorer {
    pub fn new(nodes: &[Node], scope: Option<usize>) -> ExactScorer {
        let idx: Vec<usize> = (0..nodes.len())
            .filter(|&i| scope.is_none_or(|g| nodes[i].group == g))
            .collect();
        let mut pos = vec![usize::MAX; nodes.len()];
        for (k, &i) in idx.iter().enumerate() {
            pos[i] = k;
        }
        ExactScorer {
            vals: idx
                .iter()
                .map(|&i| node_vals(&nodes[i], &nodes[i].d))
                .collect(),
            simple: idx.iter().all(|&i| nodes[i].d.inst_map.is_empty()),
            pos,
        }
    }

    /// The score with the states in `ov` (node index, new state); None when
    /// the scope has location maps (use [`score_nodes`]).
    pub fn score(&self, all: &[Node], ov: &[(usize, crate::model::NodeDyn)]) -> Option<f64> {
        if !self.simple || ov.iter().any(|(_, d)| !d.inst_map.is_empty()) {
            return None;
        }
        let repl: Vec<(usize, NodeVals)> = ov
            .iter()
            .filter(|(n, _)| self.pos.get(*n).is_some_and(|&p| p != usize::MAX))
            .map(|(n, d)| (self.pos[*n], node_vals(&all[*n], d)))
            .collect();
        let it = self
            .vals
            .iter()
            .enumerate()
            .map(|(k, v)| repl.iter().find(|r| r.0 == k).map(|r| &r.1).unwrap_or(v));
        Some(detailed_from_vals(it, 0.0).total)
    }
}

/// Score of all nodes of a cluster.
pub fn score(nodes: &[Node]) -> f64 {
    score_nodes(nodes.iter()).total
}

/// htools' `optimalCVScore`: the lower bound due to N+1 reservations.
pub fn optimal_score(nodes: &[Node]) -> f64 {
    if nodes.len() <= 1 {
        return 0.0;
    }
    let total: f64 = nodes.iter().map(|n| n.t_mem).sum();
    let maxm = nodes.iter().map(|n| n.t_mem).fold(f64::MIN, f64::max);
    let less = total - maxm;
    if less <= 0.0 {
        return 0.0;
    }
    let drbd: f64 = nodes
        .iter()
        .map(|n| n.d.peers.iter().map(|p| p.1).sum::<i64>() as f64)
        .sum();
    W_RESERVED_TOTAL * (drbd / less - drbd / total)
}

/// Running statistics for incremental scoring.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The node group the statistics cover (None = whole cluster).
    pub scope: Option<usize>,
    n: f64,
    /// Effective weights: components proven identical to another one carry
    /// weight 0 and their weight is added to the representative.
    eff_w: [f64; NSTD],
    refv: [f64; NSTD],
    sum: [f64; NSTD],
    sumsq: [f64; NSTD],
    n1: f64,
    pri_tags: f64,
    location: f64,
    reserved: f64,
    off_all: f64,
    off_pri: f64,
    loc_map: BTreeMap<(String, String), i64>,
    loc_excl: f64,
}

/// One node's change for incremental scoring.
pub struct Change<'a> {
    pub old: NodeVals,
    pub new: NodeVals,
    pub old_map: Option<&'a BTreeMap<(String, String), i64>>,
    pub new_map: Option<&'a BTreeMap<(String, String), i64>>,
}

impl Stats {
    pub fn new<'a>(nodes: impl Iterator<Item = &'a Node> + Clone) -> Stats {
        let vals: Vec<(NodeVals, &Node)> = nodes.map(|n| (node_vals(n, &n.d), n)).collect();
        let online: Vec<&NodeVals> = vals.iter().map(|v| &v.0).filter(|v| v.online).collect();
        let n = online.len() as f64;
        let mut refv = [0.0; NSTD];
        if n > 0.0 {
            for (k, r) in refv.iter_mut().enumerate() {
                *r = online.iter().map(|v| v.std[k]).sum::<f64>() / n;
            }
        }
        let mut s = Stats {
            scope: None,
            n,
            eff_w: STD_WEIGHTS,
            refv,
            sum: [0.0; NSTD],
            sumsq: [0.0; NSTD],
            n1: 0.0,
            pri_tags: 0.0,
            location: 0.0,
            reserved: 0.0,
            off_all: 0.0,
            off_pri: 0.0,
            loc_map: BTreeMap::new(),
            loc_excl: 0.0,
        };
        for (v, node) in &vals {
            s.add(v, 1.0);
            if v.online {
                for (k, c) in &node.d.inst_map {
                    *s.loc_map.entry(k.clone()).or_insert(0) += *c;
                }
            }
        }
        s.loc_excl = (s.loc_map.values().sum::<i64>() - s.loc_map.len() as i64) as f64;
        s
    }

    /// Declare components `b` equal to `a` on every node, now and after any
    /// move (the caller guarantees it); `b` is then folded into `a`.
    pub fn with_aliases(mut self, aliases: &[(usize, usize)]) -> Stats {
        for &(a, b) in aliases {
            if a < NSTD && b < NSTD && self.eff_w[b] != 0.0 && a != b {
                self.eff_w[a] += self.eff_w[b];
                self.eff_w[b] = 0.0;
            }
        }
        self
    }

    /// Score of `base` with some nodes' contributions replaced, without
    /// building a new accumulator.
    #[inline]
    pub fn score_changes(&self, base: &Acc, ch: &[(&NodeVals, &NodeVals)]) -> f64 {
        let mut t = 0.0;
        if self.n > 0.0 {
            let inv_n = 1.0 / self.n;
            for k in 0..NSTD {
                let w = self.eff_w[k];
                if w == 0.0 {
                    continue;
                }
                let (mut s, mut ss) = (base.sum[k], base.sumsq[k]);
                let r = self.refv[k];
                for (o, nw) in ch {
                    if o.online {
                        let x = o.std[k] - r;
                        s -= x;
                        ss -= x * x;
                    }
                    if nw.online {
                        let x = nw.std[k] - r;
                        s += x;
                        ss += x * x;
                    }
                }
                let m = s * inv_n;
                t += w * (ss * inv_n - m * m).max(0.0).sqrt();
            }
        }
        let mut sums = base.sums;
        for (o, nw) in ch {
            for (v, sign) in [(*o, -1.0), (*nw, 1.0)] {
                if v.online {
                    sums[0] += sign * v.n1;
                    sums[1] += sign * v.pri_tags;
                    sums[2] += sign * v.location;
                    sums[3] += sign * v.std[2];
                } else {
                    sums[4] += sign * v.off_all;
                    sums[5] += sign * v.off_pri;
                }
            }
        }
        t + W_N1 * sums[0]
            + W_PRI_TAGS * sums[1]
            + W_LOCATION * sums[2]
            + W_RESERVED_TOTAL * sums[3]
            + W_OFF_ALL * sums[4]
            + W_OFF_PRI * sums[5]
            + W_LOC_EXCL * self.loc_excl
    }

    fn add(&mut self, v: &NodeVals, sign: f64) {
        if v.online {
            for k in 0..NSTD {
                let x = v.std[k] - self.refv[k];
                self.sum[k] += sign * x;
                self.sumsq[k] += sign * x * x;
            }
            self.n1 += sign * v.n1;
            self.pri_tags += sign * v.pri_tags;
            self.location += sign * v.location;
            self.reserved += sign * v.std[2];
        } else {
            self.off_all += sign * v.off_all;
            self.off_pri += sign * v.off_pri;
        }
    }

    fn value(&self, sum: &[f64; NSTD], sumsq: &[f64; NSTD], sums: [f64; 6], loc_excl: f64) -> f64 {
        let mut t = 0.0;
        if self.n > 0.0 {
            for k in 0..NSTD {
                let w = self.eff_w[k];
                if w == 0.0 {
                    continue;
                }
                let m = sum[k] / self.n;
                let var = (sumsq[k] / self.n - m * m).max(0.0);
                t += w * var.sqrt();
            }
        }
        t + W_N1 * sums[0]
            + W_PRI_TAGS * sums[1]
            + W_LOCATION * sums[2]
            + W_RESERVED_TOTAL * sums[3]
            + W_OFF_ALL * sums[4]
            + W_OFF_PRI * sums[5]
            + W_LOC_EXCL * loc_excl
    }

    /// Current score.
    pub fn score(&self) -> f64 {
        self.value(
            &self.sum,
            &self.sumsq,
            [
                self.n1,
                self.pri_tags,
                self.location,
                self.reserved,
                self.off_all,
                self.off_pri,
            ],
            self.loc_excl,
        )
    }

    fn loc_delta(&self, changes: &[Change]) -> f64 {
        let mut delta: BTreeMap<&(String, String), i64> = BTreeMap::new();
        let mut any = false;
        for c in changes {
            if let (true, Some(m)) = (c.old.online, c.old_map) {
                for (k, v) in m {
                    *delta.entry(k).or_insert(0) -= v;
                    any = true;
                }
            }
            if let (true, Some(m)) = (c.new.online, c.new_map) {
                for (k, v) in m {
                    *delta.entry(k).or_insert(0) += v;
                    any = true;
                }
            }
        }
        if !any {
            return 0.0;
        }
        let mut d = 0.0;
        for (k, dv) in delta {
            if dv == 0 {
                continue;
            }
            let old = self.loc_map.get(k).copied().unwrap_or(0);
            let new = old + dv;
            let contrib = |c: i64| if c > 0 { (c - 1) as f64 } else { 0.0 };
            d += contrib(new) - contrib(old);
        }
        d
    }

    /// Score after replacing the given nodes' contributions (no mutation).
    pub fn score_with(&self, changes: &[Change]) -> f64 {
        let mut sum = self.sum;
        let mut sumsq = self.sumsq;
        let mut sums = [
            self.n1,
            self.pri_tags,
            self.location,
            self.reserved,
            self.off_all,
            self.off_pri,
        ];
        for c in changes {
            for (v, sign) in [(&c.old, -1.0), (&c.new, 1.0)] {
                if v.online {
                    for k in 0..NSTD {
                        let x = v.std[k] - self.refv[k];
                        sum[k] += sign * x;
                        sumsq[k] += sign * x * x;
                    }
                    sums[0] += sign * v.n1;
                    sums[1] += sign * v.pri_tags;
                    sums[2] += sign * v.location;
                    sums[3] += sign * v.std[2];
                } else {
                    sums[4] += sign * v.off_all;
                    sums[5] += sign * v.off_pri;
                }
            }
        }
        let le = self.loc_excl + self.loc_delta(changes);
        self.value(&sum, &sumsq, sums, le)
    }

    /// Apply changes permanently.
    pub fn apply(&mut self, changes: &[Change]) {
        let ld = self.loc_delta(changes);
        for c in changes {
            self.add(&c.old, -1.0);
            self.add(&c.new, 1.0);
            if let (true, Some(m)) = (c.old.online, c.old_map) {
                for (k, v) in m {
                    *self.loc_map.entry(k.clone()).or_insert(0) -= v;
                }
            }
            if let (true, Some(m)) = (c.new.online, c.new_map) {
                for (k, v) in m {
                    *self.loc_map.entry(k.clone()).or_insert(0) += v;
                }
            }
        }
        self.loc_map.retain(|_, v| *v > 0);
        self.loc_excl += ld;
    }
}

/// Partial sums for fast incremental scoring of several candidates that
/// share some node changes (location-exclusion term assumed unchanged).
#[derive(Debug, Clone, Copy)]
pub struct Acc {
    sum: [f64; NSTD],
    sumsq: [f64; NSTD],
    sums: [f64; 6],
}

impl Stats {
    /// Accumulator of the current state.
    pub fn acc(&self) -> Acc {
        Acc {
            sum: self.sum,
            sumsq: self.sumsq,
            sums: [
                self.n1,
                self.pri_tags,
                self.location,
                self.reserved,
                self.off_all,
                self.off_pri,
            ],
        }
    }

    /// Replace one node's contribution in an accumulator.
    #[inline]
    pub fn acc_apply(&self, acc: &mut Acc, old: &NodeVals, new: &NodeVals) {
        for (v, sign) in [(old, -1.0), (new, 1.0)] {
            if v.online {
                for k in 0..NSTD {
                    let x = v.std[k] - self.refv[k];
                    acc.sum[k] += sign * x;
                    acc.sumsq[k] += sign * x * x;
                }
                acc.sums[0] += sign * v.n1;
                acc.sums[1] += sign * v.pri_tags;
                acc.sums[2] += sign * v.location;
                acc.sums[3] += sign * v.std[2];
            } else {
                acc.sums[4] += sign * v.off_all;
                acc.sums[5] += sign * v.off_pri;
            }
        }
    }

    /// Score of an accumulator.
    #[inline]
    pub fn acc_score(&self, acc: &Acc) -> f64 {
        self.value(&acc.sum, &acc.sumsq, acc.sums, self.loc_excl)
    }
}

/// Per-component bounds of one node change, for [`Stats::pair_bound`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeBounds {
    /// max |change of the node's value| per component
    pub d: [f64; NSTD],
    /// max |change of the variance| per component (against the reference
    /// accumulator)
    pub u: [f64; NSTD],
}

impl ChangeBounds {
    /// Widen the bounds by one node change `old` -> `new` (online nodes),
    /// measured against accumulator `a0`.
    pub fn widen(&mut self, stats: &Stats, a0: &Acc, old: &NodeVals, new: &NodeVals) {
        if !(old.online && new.online) || stats.n <= 0.0 {
            for k in 0..NSTD {
                self.d[k] = f64::INFINITY;
                self.u[k] = f64::INFINITY;
            }
            return;
        }
        let n = stats.n;
        for k in 0..NSTD {
            if stats.eff_w[k] == 0.0 {
                continue;
            }
            let r = stats.refv[k];
            let (xo, xn) = (old.std[k] - r, new.std[k] - r);
            let d = xn - xo;
            let s0 = a0.sum[k];
            let u = (xn * xn - xo * xo) / n - ((s0 + d) * (s0 + d) - s0 * s0) / (n * n);
            self.d[k] = self.d[k].max(d.abs());
            self.u[k] = self.u[k].max(u.abs());
        }
    }
}

/// Floating-point slack added to [`Stats::pair_bound`] for a score of
/// magnitude `score` (rounding of the running sums).
pub fn pair_bound_slack(score: f64) -> f64 {
    1e-9 + 1e-12 * score.abs()
}

impl Stats {
    /// Bound on how much the score effect of a single further node change
    /// (bounded by `cb`, measured against `a0`) can differ when it is
    /// applied on top of `ap` instead of `a0` (the node is not one of the
    /// nodes changed between `a0` and `ap`):
    /// `|[S(ap+δ) - S(ap)] - [S(a0+δ) - S(a0)]| <= pair_bound`.
    /// The linear terms are additive, so only the standard deviations
    /// contribute (mean value theorem on `sqrt`). Infinite when a variance
    /// can come close to 0.
    pub fn pair_bound(&self, a0: &Acc, ap: &Acc, cb: &ChangeBounds) -> f64 {
        if self.n <= 0.0 {
            return 0.0;
        }
        let n = self.n;
        let g1 = |x: f64| 0.5 / x.sqrt();
        let mut b = 0.0;
        for k in 0..NSTD {
            let w = self.eff_w[k];
            if w == 0.0 || (cb.d[k] == 0.0 && cb.u[k] == 0.0) {
                continue;
            }
            let var = |a: &Acc| {
                let m = a.sum[k] / n;
                (a.sumsq[k] / n - m * m).max(0.0)
            };
            let (v0, vp) = (var(a0), var(ap));
            let c = 2.0 * cb.d[k] * ((a0.sum[k] - ap.sum[k]) / n).abs() / n;
            let lo = v0.min(vp) - cb.u[k] - c;
            let hi = v0.max(vp) + cb.u[k] + c;
            if lo.is_nan() || lo <= 0.0 || !hi.is_finite() {
                return f64::INFINITY;
            }
            b += w * ((g1(lo) - g1(hi)) * (vp - v0).abs() + g1(lo) * c);
        }
        b
    }
}

/// htools' own running statistics (`Utils/Statistics.hs`): used to re-score
/// near-tied DRBD pair candidates exactly as hail does
/// (`updateClusterStatisticsTwice`), so that ties break identically.
#[derive(Debug, Clone)]
pub struct HStats {
    n: f64,
    s: [f64; NSTD],
    var: [f64; NSTD],
    /// n1, pri_tags, location, reserved total, off_all, off_pri
    sums: [f64; 6],
    loc_excl: f64,
}

impl HStats {
    pub fn new<'a>(nodes: impl Iterator<Item = &'a Node>) -> HStats {
        score_nodes_stats(nodes)
    }

    /// Total after replacing node contributions one after the other, with
    /// htools' update formulas.
    pub fn updated_total(&self, changes: &[(&NodeVals, &NodeVals)]) -> f64 {
        let mut s = self.s;
        let mut var = self.var;
        let mut sums = self.sums;
        let n = self.n;
        for (x, y) in changes {
            if !x.online {
                continue;
            }
            for k in 0..NSTD {
                let (xv, yv) = (x.std[k], y.std[k]);
                let ds = yv - xv;
                let dss = yv * yv - xv * xv;
                let dnnvar = (n * dss - 2.0 * s[k] * ds) - ds * ds;
                s[k] += ds;
                var[k] = (var[k] + dnnvar / (n * n)).max(0.0);
            }
            sums[0] += y.n1 - x.n1;
            sums[1] += y.pri_tags - x.pri_tags;
            sums[2] += y.location - x.location;
            sums[3] += y.std[2] - x.std[2];
        }
        let st: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
        htools_total(
            &st,
            sums[0],
            sums[4],
            sums[5],
            sums[1],
            sums[2],
            self.loc_excl,
            sums[3],
        )
    }
}

/// Weighted sum in htools' order (left fold).
#[allow(clippy::too_many_arguments)]
fn htools_total(
    std: &[f64],
    n1: f64,
    off_all: f64,
    off_pri: f64,
    pri_tags: f64,
    location: f64,
    loc_excl: f64,
    reserved_total: f64,
) -> f64 {
    let terms = [
        STD_WEIGHTS[0] * std[0],
        STD_WEIGHTS[1] * std[1],
        W_N1 * n1,
        STD_WEIGHTS[2] * std[2],
        W_OFF_ALL * off_all,
        W_OFF_PRI * off_pri,
        STD_WEIGHTS[3] * std[3],
        STD_WEIGHTS[4] * std[4],
        STD_WEIGHTS[5] * std[5],
        STD_WEIGHTS[6] * std[6],
        STD_WEIGHTS[7] * std[7],
        W_PRI_TAGS * pri_tags,
        STD_WEIGHTS[8] * std[8],
        STD_WEIGHTS[9] * std[9],
        STD_WEIGHTS[10] * std[10],
        STD_WEIGHTS[11] * std[11],
        STD_WEIGHTS[12] * std[12],
        W_LOCATION * location,
        W_LOC_EXCL * loc_excl,
        W_RESERVED_TOTAL * reserved_total,
    ];
    terms.iter().fold(0.0, |a, t| a + t)
}

fn score_nodes_stats<'a>(nodes: impl Iterator<Item = &'a Node>) -> HStats {
    let mut vals = Vec::new();
    let mut map: BTreeMap<&(String, String), i64> = BTreeMap::new();
    for n in nodes {
        let v = node_vals(n, &n.d);
        if v.online {
            for (k, c) in &n.d.inst_map {
                *map.entry(k).or_insert(0) += *c;
            }
        }
        vals.push(v);
    }
    let online: Vec<&NodeVals> = vals.iter().filter(|v| v.online).collect();
    let cnt = online.len() as f64;
    let mut s = [0.0; NSTD];
    let mut var = [0.0; NSTD];
    for k in 0..NSTD {
        let sum = online.iter().fold(0.0, |a, v| a + v.std[k]);
        let mean = sum / cnt;
        let nvar = online.iter().fold(0.0, |a, v| {
            let d = v.std[k] - mean;
            a + d * d
        });
        s[k] = sum;
        var[k] = nvar / cnt;
    }
    let offline: Vec<&NodeVals> = vals.iter().filter(|v| !v.online).collect();
    HStats {
        n: cnt,
        s,
        var,
        sums: [
            online.iter().fold(0.0, |a, v| a + v.n1),
            online.iter().fold(0.0, |a, v| a + v.pri_tags),
            online.iter().fold(0.0, |a, v| a + v.location),
            online.iter().fold(0.0, |a, v| a + v.std[2]),
            offline.iter().fold(0.0, |a, v| a + v.off_all),
            offline.iter().fold(0.0, |a, v| a + v.off_pri),
        ],
        loc_excl: (map.values().sum::<i64>() - map.len() as i64) as f64,
    }
}
