//! What every target of a DRBD instance's replace moves shares, computed once per instance
//! for both the full search (`balance`) and the pruned one (`prune`): the old nodes with the
//! instance taken out, and each move kind's score accumulator before a target is added.

use crate::model::{Cluster, NodeDyn};
use crate::score::{node_vals_st, Acc, NodeVals, Stats};
use crate::types::IMove;

pub(crate) struct DrbdBases {
    /// The old primary without the instance.
    pub int_p: NodeDyn,
    /// The old secondary without the instance.
    pub int_s: NodeDyn,
    /// Replace secondary: primary unchanged in effect, secondary removed.
    pub acc_rs: Option<Acc>,
    /// Replace and failover: old secondary removed; per target: new primary on it, the old
    /// primary becomes secondary.
    pub acc_raf: Option<Acc>,
    /// Replace primary: old primary removed; the old secondary hosts the instance for a while
    /// (that state beside), then becomes the secondary of the target.
    pub rp: Option<(Acc, NodeDyn)>,
    /// Failover and replace: old secondary becomes primary, old primary removed, the target
    /// becomes secondary.
    pub acc_far: Option<Acc>,
    /// Whether adding to the old secondary / primary ignores soft limits.
    pub force_s: bool,
    pub force_p: bool,
}

impl DrbdBases {
    /// `kinds` as `possible_moves` gives them (with target 0); `osdx` the old secondary.
    pub fn new(
        c: &Cluster,
        stats: &Stats,
        vals: &[NodeVals],
        idx: usize,
        osdx: usize,
        kinds: &[IMove],
        force: bool,
    ) -> Self {
        let inst = &c.instances[idx];
        let opdx = inst.pnode;
        let (np, ns) = (&c.nodes[opdx], &c.nodes[osdx]);
        let has = |k: fn(usize) -> IMove| kinds.contains(&k(0));
        let base = stats.acc();
        let mut int_p = np.d.clone();
        np.remove_pri(&mut int_p, inst);
        let mut int_s = ns.d.clone();
        ns.remove_sec(&mut int_s, inst, opdx);
        let v_int_p = node_vals_st(np, &int_p.st);
        let v_int_s = node_vals_st(ns, &int_s.st);
        let with = |changes: &[(usize, &NodeVals)]| {
            let mut a = base;
            for (n, v) in changes {
                stats.acc_apply(&mut a, &vals[*n], v);
            }
            a
        };
        let force_p = np.offline || force;
        // (`add_pri_state` is the new scalar state `add_pri` would store: no clone needed)
        let acc_rs = if has(IMove::ReplaceSecondary) {
            np.add_pri_state(&int_p, inst, true)
                .ok()
                .map(|st| with(&[(opdx, &node_vals_st(np, &st)), (osdx, &v_int_s)]))
        } else {
            None
        };
        let acc_raf = has(IMove::ReplaceAndFailover).then(|| with(&[(osdx, &v_int_s)]));
        let rp = if has(IMove::ReplacePrimary) {
            let mut tmp = int_s.clone();
            ns.add_pri(&mut tmp, inst, force_p).ok().map(|()| {
                ns.remove_pri(&mut tmp, inst);
                (with(&[(opdx, &v_int_p)]), tmp)
            })
        } else {
            None
        };
        let acc_far = if has(IMove::FailoverAndReplace) {
            ns.add_pri_state(&int_s, inst, force_p)
                .ok()
                .map(|st| with(&[(opdx, &v_int_p), (osdx, &node_vals_st(ns, &st))]))
        } else {
            None
        };
        DrbdBases {
            int_p,
            int_s,
            acc_rs,
            acc_raf,
            rp,
            acc_far,
            force_s: ns.offline || force,
            force_p,
        }
    }
}
