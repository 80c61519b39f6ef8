//! Instance moves (htools' `Cluster/Moves.hs`), evaluated without mutating
//! the cluster: a move yields the new dynamic state of the 1-3 nodes it
//! touches, which can be scored incrementally and committed later.

use crate::model::{Cluster, Instance, NodeDyn};
use crate::score::{node_vals, Change, Stats};
use crate::types::{FailMode, IMove};

/// The outcome of a move: new states of the touched nodes and the new
/// placement of the instance.
#[derive(Debug, Clone)]
pub struct MoveOutcome {
    pub inst: usize,
    pub mv: IMove,
    pub nodes: Vec<(usize, NodeDyn)>,
    pub new_p: usize,
    pub new_s: Option<usize>,
    pub location_score: i64,
}

type R<T> = std::result::Result<T, FailMode>;

fn check_migration(c: &Cluster, src: usize, dst: usize) -> R<()> {
    if c.nodes[src].mig_tags.is_subset(&c.nodes[dst].rmig_tags) {
        Ok(())
    } else {
        Err(FailMode::FailMig)
    }
}

/// The instance as placed on `p`/`s`, as far as the node bookkeeping sees
/// it (only its location score changes): borrowed when that is unchanged.
fn with_loc<'a>(
    c: &Cluster,
    inst: &'a Instance,
    p: usize,
    s: Option<usize>,
) -> std::borrow::Cow<'a, Instance> {
    let loc = c.instance_location_score(p, s);
    if loc == inst.location_score {
        return std::borrow::Cow::Borrowed(inst);
    }
    let mut i = inst.clone();
    i.location_score = loc;
    i.pnode = p;
    i.snode = s;
    std::borrow::Cow::Owned(i)
}

impl Cluster {
    fn dyn_of(&self, n: usize) -> NodeDyn {
        self.nodes[n].d.clone()
    }

    /// Evaluate a move of instance `idx` (htools' `applyMoveEx`).
    pub fn eval_move(&self, idx: usize, mv: IMove, force: bool) -> R<MoveOutcome> {
        self.eval_move_ov(&[], &self.instances[idx], idx, mv, force)
    }

    /// Evaluate a move of instance `idx`, whose current placement is given
    /// by `inst`, on top of the node states in `overlay` (states that
    /// differ from the committed ones). The outcome lists the touched
    /// nodes only; merge it into the overlay with [`merge_overlay`].
    pub fn eval_move_ov(
        &self,
        overlay: &[(usize, NodeDyn)],
        inst: &Instance,
        idx: usize,
        mv: IMove,
        force: bool,
    ) -> R<MoveOutcome> {
        let dyn_of = |n: usize| -> NodeDyn {
            match overlay.iter().find(|(k, _)| *k == n) {
                Some((_, d)) => d.clone(),
                None => self.nodes[n].d.clone(),
            }
        };
        if self.location_forbids_move(inst, mv) {
            return Err(FailMode::FailTags);
        }
        let opdx = inst.pnode;
        let nodes = &self.nodes;
        let off_p = nodes[opdx].offline;
        match mv {
            IMove::Failover => {
                let osdx = inst.snode.ok_or(FailMode::FailInternal)?;
                let mut int_p = dyn_of(opdx);
                nodes[opdx].remove_pri(&mut int_p, inst);
                let mut int_s = dyn_of(osdx);
                nodes[osdx].remove_sec(&mut int_s, inst, opdx);
                check_migration(self, opdx, osdx)?;
                nodes[osdx].add_pri(&mut int_s, inst, off_p || force)?;
                nodes[opdx].add_sec(&mut int_p, inst, osdx, off_p || force, off_p)?;
                Ok(MoveOutcome {
                    inst: idx,
                    mv,
                    nodes: vec![(opdx, int_p), (osdx, int_s)],
                    new_p: osdx,
                    new_s: Some(opdx),
                    location_score: inst.location_score,
                })
            }
            IMove::FailoverToAny(np) => {
                check_migration(self, opdx, np)?;
                let mut new_p = dyn_of(np);
                nodes[np].add_pri(&mut new_p, inst, off_p || force)?;
                let mut old_p = dyn_of(opdx);
                nodes[opdx].remove_pri(&mut old_p, inst);
                Ok(MoveOutcome {
                    inst: idx,
                    mv,
                    nodes: vec![(opdx, old_p), (np, new_p)],
                    new_p: np,
                    new_s: inst.snode,
                    location_score: inst.location_score,
                })
            }
            IMove::ReplacePrimary(np) => {
                let osdx = inst.snode.ok_or(FailMode::FailInternal)?;
                let mut int_p = dyn_of(opdx);
                nodes[opdx].remove_pri(&mut int_p, inst);
                let mut int_s = dyn_of(osdx);
                nodes[osdx].remove_sec(&mut int_s, inst, opdx);
                let new_inst = with_loc(self, inst, np, Some(osdx));
                let force_p = off_p || force;
                check_migration(self, opdx, osdx)?;
                check_migration(self, osdx, np)?;
                nodes[osdx].add_pri(&mut int_s, &new_inst, force_p)?;
                nodes[osdx].remove_pri(&mut int_s, &new_inst);
                let mut tgt = dyn_of(np);
                nodes[np].add_pri(&mut tgt, &new_inst, force_p)?;
                nodes[osdx].add_sec(&mut int_s, &new_inst, np, force_p, false)?;
                Ok(MoveOutcome {
                    inst: idx,
                    mv,
                    nodes: vec![(opdx, int_p), (osdx, int_s), (np, tgt)],
                    new_p: np,
                    new_s: Some(osdx),
                    location_score: new_inst.location_score,
                })
            }
            IMove::ReplaceSecondary(ns) => {
                let osdx = inst.snode.ok_or(FailMode::FailInternal)?;
                let mut pn = dyn_of(opdx);
                nodes[opdx].remove_pri(&mut pn, inst);
                let mut int_s = dyn_of(osdx);
                nodes[osdx].remove_sec(&mut int_s, inst, opdx);
                let force_s = nodes[osdx].offline || force;
                let new_inst = with_loc(self, inst, opdx, Some(ns));
                let mut tgt = dyn_of(ns);
                nodes[ns].add_sec(&mut tgt, &new_inst, opdx, force_s, false)?;
                nodes[opdx].add_pri(&mut pn, &new_inst, true)?;
                Ok(MoveOutcome {
                    inst: idx,
                    mv,
                    nodes: vec![(opdx, pn), (osdx, int_s), (ns, tgt)],
                    new_p: opdx,
                    new_s: Some(ns),
                    location_score: new_inst.location_score,
                })
            }
            IMove::ReplaceAndFailover(np) => {
                let osdx = inst.snode.ok_or(FailMode::FailInternal)?;
                let mut int_p = dyn_of(opdx);
                nodes[opdx].remove_pri(&mut int_p, inst);
                let mut int_s = dyn_of(osdx);
                nodes[osdx].remove_sec(&mut int_s, inst, opdx);
                let new_inst = with_loc(self, inst, np, Some(opdx));
                let force_s = nodes[osdx].offline || force;
                check_migration(self, opdx, np)?;
                let mut tgt = dyn_of(np);
                nodes[np].add_pri(&mut tgt, &new_inst, force)?;
                nodes[opdx].add_sec(&mut int_p, &new_inst, np, force_s, false)?;
                Ok(MoveOutcome {
                    inst: idx,
                    mv,
                    nodes: vec![(opdx, int_p), (osdx, int_s), (np, tgt)],
                    new_p: np,
                    new_s: Some(opdx),
                    location_score: new_inst.location_score,
                })
            }
            IMove::FailoverAndReplace(ns) => {
                let osdx = inst.snode.ok_or(FailMode::FailInternal)?;
                let mut int_p = dyn_of(opdx);
                nodes[opdx].remove_pri(&mut int_p, inst);
                let mut int_s = dyn_of(osdx);
                nodes[osdx].remove_sec(&mut int_s, inst, opdx);
                let force_p = off_p || force;
                let new_inst = with_loc(self, inst, osdx, Some(ns));
                check_migration(self, opdx, osdx)?;
                nodes[osdx].add_pri(&mut int_s, &new_inst, force_p)?;
                let mut tgt = dyn_of(ns);
                nodes[ns].add_sec(&mut tgt, &new_inst, osdx, force_p, false)?;
                Ok(MoveOutcome {
                    inst: idx,
                    mv,
                    nodes: vec![(opdx, int_p), (osdx, int_s), (ns, tgt)],
                    new_p: osdx,
                    new_s: Some(ns),
                    location_score: new_inst.location_score,
                })
            }
        }
    }

    /// Score of the cluster (as tracked by `stats`) after `out`.
    pub fn score_outcome(&self, stats: &Stats, out: &MoveOutcome) -> f64 {
        let mut ch: Vec<Change> = Vec::with_capacity(3);
        for (n, d) in &out.nodes {
            let node = &self.nodes[*n];
            ch.push(Change {
                old: node_vals(node, &node.d),
                new: node_vals(node, d),
                old_map: Some(&node.d.inst_map).filter(|m| !m.is_empty()),
                new_map: Some(&d.inst_map).filter(|m| !m.is_empty()),
            });
        }
        stats.score_with(&ch)
    }

    /// Commit a move outcome into the cluster (and `stats`, if given).
    pub fn commit_move(&mut self, out: MoveOutcome, stats: Option<&mut Stats>) {
        if let Some(stats) = stats {
            let mut ch: Vec<Change> = Vec::with_capacity(3);
            for (n, d) in &out.nodes {
                let node = &self.nodes[*n];
                ch.push(Change {
                    old: node_vals(node, &node.d),
                    new: node_vals(node, d),
                    old_map: Some(&node.d.inst_map),
                    new_map: Some(&d.inst_map),
                });
            }
            stats.apply(&ch);
        }
        let idx = out.inst;
        let (op, os) = (self.instances[idx].pnode, self.instances[idx].snode);
        for (n, d) in out.nodes {
            self.nodes[n].d = d;
        }
        self.nodes[op].plist.retain(|&i| i != idx);
        if let Some(s) = os {
            self.nodes[s].slist.retain(|&i| i != idx);
        }
        self.nodes[out.new_p].plist.push(idx);
        if let Some(s) = out.new_s {
            self.nodes[s].slist.push(idx);
        }
        let inst = &mut self.instances[idx];
        inst.pnode = out.new_p;
        inst.snode = out.new_s;
        inst.location_score = out.location_score;
    }

    /// Evaluate and commit a move; returns the failure if it is not possible.
    pub fn apply_move(&mut self, idx: usize, mv: IMove, force: bool) -> R<()> {
        let out = self.eval_move(idx, mv, force)?;
        self.commit_move(out, None);
        Ok(())
    }

    /// Place a new instance (already pushed into `instances`, with pnode /
    /// snode unset) on `p` (and `s`), with htools' checks.
    pub fn eval_place(
        &self,
        inst: &Instance,
        p: usize,
        s: Option<usize>,
        force: bool,
    ) -> R<Vec<(usize, NodeDyn)>> {
        if self.location_forbids(p, s) {
            return Err(FailMode::FailTags);
        }
        let mut out = vec![];
        let new_inst = with_loc(self, inst, p, s);
        let mut pd = self.dyn_of(p);
        self.nodes[p].add_pri(&mut pd, &new_inst, force)?;
        out.push((p, pd));
        if let Some(s) = s {
            let mut sd = self.dyn_of(s);
            self.nodes[s].add_sec(&mut sd, &new_inst, p, false, false)?;
            out.push((s, sd));
        }
        Ok(out)
    }

    /// Add a new instance to the cluster at `p`/`s` given the node states
    /// computed by [`Cluster::eval_place`]. Returns its index.
    pub fn commit_place(
        &mut self,
        mut inst: Instance,
        p: usize,
        s: Option<usize>,
        nodes: Vec<(usize, NodeDyn)>,
    ) -> usize {
        inst.location_score = self.instance_location_score(p, s);
        inst.pnode = p;
        inst.snode = s;
        let idx = self.instances.len();
        self.instances.push(inst);
        for (n, d) in nodes {
            self.nodes[n].d = d;
        }
        self.nodes[p].plist.push(idx);
        if let Some(s) = s {
            self.nodes[s].slist.push(idx);
        }
        idx
    }
}

/// Merge the touched nodes of an outcome into an overlay.
pub fn merge_overlay(overlay: &mut Vec<(usize, NodeDyn)>, nodes: Vec<(usize, NodeDyn)>) {
    for (n, d) in nodes {
        match overlay.iter_mut().find(|(k, _)| *k == n) {
            Some(slot) => slot.1 = d,
            None => overlay.push((n, d)),
        }
    }
}

impl Cluster {
    /// Score (per `stats`) after replacing the node states in `overlay`;
    /// nodes for which `include` is false are not part of the scored set.
    pub fn score_overlay(
        &self,
        stats: &Stats,
        overlay: &[(usize, NodeDyn)],
        include: &dyn Fn(usize) -> bool,
    ) -> f64 {
        let mut ch: Vec<Change> = Vec::with_capacity(overlay.len());
        for (n, d) in overlay {
            if !include(*n) {
                continue;
            }
            let node = &self.nodes[*n];
            ch.push(Change {
                old: node_vals(node, &node.d),
                new: node_vals(node, d),
                old_map: Some(&node.d.inst_map).filter(|m| !m.is_empty()),
                new_map: Some(&d.inst_map).filter(|m| !m.is_empty()),
            });
        }
        stats.score_with(&ch)
    }

    /// Commit an overlay and a new placement of instance `idx`.
    pub fn commit_overlay(
        &mut self,
        idx: usize,
        overlay: Vec<(usize, NodeDyn)>,
        new_p: usize,
        new_s: Option<usize>,
    ) {
        let (op, os) = (self.instances[idx].pnode, self.instances[idx].snode);
        for (n, d) in overlay {
            self.nodes[n].d = d;
        }
        self.nodes[op].plist.retain(|&i| i != idx);
        if let Some(s) = os {
            self.nodes[s].slist.retain(|&i| i != idx);
        }
        self.nodes[new_p].plist.push(idx);
        if let Some(s) = new_s {
            self.nodes[s].slist.push(idx);
        }
        let loc = self.instance_location_score(new_p, new_s);
        let inst = &mut self.instances[idx];
        inst.pnode = new_p;
        inst.snode = new_s;
        inst.location_score = loc;
    }
}
