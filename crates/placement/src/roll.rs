//! Rolling-reboot planning (hroller's job): groups of nodes that can be
//! rebooted together without losing redundancy.
//!
//! This follows htools' `Program/Hroller.hs` (3.0.2) step by step, so the
//! groups (and, with `full_evacuation`, the moves) are the ones hroller
//! prints:
//!
//! * the conflict graph has the selected nodes as vertices (in fact every
//!   node index between the smallest and the largest selected one, as
//!   `Data.Graph` does); two nodes conflict if they hold the two halves of a
//!   DRBD instance, or (unless `offline_maintenance`) if both are primaries
//!   of instances sharing a secondary node;
//! * it is coloured three ways (largest-first, DSatur, Dcolor, with htools'
//!   orders and tie-breaks) and the first colouring with the fewest colours
//!   wins;
//! * each colour class is split greedily so that the non-redundant
//!   instances of its nodes can be moved to other online nodes of the same
//!   group (first node that takes each instance);
//! * with `full_evacuation`, the DRBD primaries of each group are migrated
//!   to their secondaries and the group is split again so that all the
//!   secondaries on its nodes can be replaced by other nodes (first fit);
//!   the moves are reported per group;
//! * groups are sorted by size (largest first, stable), the master last.
//!
//! Like hroller, the simulation works on a copy of htools' node records
//! ("slots"); hroller's replace-secondary step stores the updated record of
//! the instance's *primary* in the old secondary's slot, so that slot then
//! carries another node's name; this is reproduced (it can show in the
//! move listing on unusual inputs).

use crate::model::{Cluster, NodeDyn};

#[derive(Debug, Clone, Default)]
pub struct RollOptions {
    /// Only this node group.
    pub group: Option<usize>,
    /// Only nodes with one of these tags.
    pub node_tags: Option<Vec<String>>,
    /// Skip nodes with non-redundant instances.
    pub skip_non_redundant: bool,
    /// Do not plan moves of non-redundant instances.
    pub ignore_non_redundant: bool,
    /// Offline maintenance: only primary/secondary edges matter.
    pub offline_maintenance: bool,
    /// Nodes rebooted together must be fully evacuated (hroller
    /// `--full-evacuation`): migrate their DRBD primaries away and move
    /// their secondaries to other nodes.
    pub full_evacuation: bool,
}

/// An instance move of a reboot group (hroller `--print-moves`): the
/// instance and the node (index) whose name hroller prints as its new
/// primary and secondary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollMove {
    pub instance: usize,
    pub pnode: usize,
    pub snode: Option<usize>,
}

/// One reboot group: its nodes (master last) and the moves that clear it.
#[derive(Debug, Clone, Default)]
pub struct RebootGroup {
    pub nodes: Vec<usize>,
    pub moves: Vec<RollMove>,
}

/// htools' node record as hroller's simulation sees it.
#[derive(Debug, Clone)]
struct Slot {
    /// The node this record describes (name, static data, group).
    n: usize,
    d: NodeDyn,
    /// Primary / secondary instances, most recently added first.
    plist: Vec<usize>,
    slist: Vec<usize>,
}

/// A configuration: node records by node index and instance placement.
#[derive(Debug, Clone)]
struct Conf {
    slots: Vec<Slot>,
    pn: Vec<usize>,
    sn: Vec<Option<usize>>,
}

/// Undo log of a tentative change.
#[derive(Default)]
struct Journal {
    slots: Vec<(usize, Slot)>,
    insts: Vec<(usize, usize, Option<usize>)>,
}

impl Conf {
    fn new(c: &Cluster) -> Conf {
        Conf {
            slots: c
                .nodes
                .iter()
                .enumerate()
                .map(|(k, n)| Slot {
                    n: k,
                    d: n.d.clone(),
                    // htools' loader prepends: newest (highest index) first
                    plist: n.plist.iter().rev().copied().collect(),
                    slist: n.slist.iter().rev().copied().collect(),
                })
                .collect(),
            pn: c.instances.iter().map(|i| i.pnode).collect(),
            sn: c
                .instances
                .iter()
                .map(|i| if i.has_secondary() { i.snode } else { None })
                .collect(),
        }
    }

    fn save_slot(&self, j: &mut Journal, k: usize) {
        if !j.slots.iter().any(|(x, _)| *x == k) {
            j.slots.push((k, self.slots[k].clone()));
        }
    }
    fn save_inst(&self, j: &mut Journal, i: usize) {
        if !j.insts.iter().any(|(x, _, _)| *x == i) {
            j.insts.push((i, self.pn[i], self.sn[i]));
        }
    }
    fn undo(&mut self, j: Journal) {
        for (k, s) in j.slots.into_iter().rev() {
            self.slots[k] = s;
        }
        for (i, p, s) in j.insts.into_iter().rev() {
            self.pn[i] = p;
            self.sn[i] = s;
        }
    }

    fn group(&self, c: &Cluster, k: usize) -> usize {
        c.nodes[self.slots[k].n].group
    }

    /// `addPriEx True` on a copy of slot `k`.
    fn add_pri(&self, c: &Cluster, k: usize, i: usize) -> Option<Slot> {
        let mut s = self.slots[k].clone();
        c.nodes[s.n].add_pri(&mut s.d, &c.instances[i], true).ok()?;
        s.plist.insert(0, i);
        Some(s)
    }
    /// `addSecEx True` (primary `pdx`) on slot `s`.
    fn add_sec(c: &Cluster, mut s: Slot, i: usize, pdx: usize) -> Option<Slot> {
        c.nodes[s.n]
            .add_sec(&mut s.d, &c.instances[i], pdx, true, false)
            .ok()?;
        s.slist.insert(0, i);
        Some(s)
    }
    fn remove_pri(c: &Cluster, mut s: Slot, i: usize) -> Slot {
        c.nodes[s.n].remove_pri(&mut s.d, &c.instances[i]);
        s.plist.retain(|&x| x != i);
        s
    }
    fn remove_sec(c: &Cluster, mut s: Slot, i: usize, pdx: usize) -> Slot {
        c.nodes[s.n].remove_sec(&mut s.d, &c.instances[i], pdx);
        s.slist.retain(|&x| x != i);
        s
    }

    /// hroller's `move`: the (non-redundant) instance to `new`.
    fn move_pri(&mut self, c: &Cluster, j: &mut Journal, i: usize, new: usize) -> bool {
        let old = self.pn[i];
        let Some(new_s) = self.add_pri(c, new, i) else {
            return false;
        };
        let old_s = Self::remove_pri(c, self.slots[old].clone(), i);
        self.save_slot(j, old);
        self.save_slot(j, new);
        self.save_inst(j, i);
        self.slots[old] = old_s;
        self.slots[new] = new_s;
        self.pn[i] = new;
        true
    }

    /// hroller's `migrate`: swap primary and secondary.
    fn migrate(&mut self, c: &Cluster, i: usize) -> bool {
        let pdx = self.pn[i];
        let Some(sdx) = self.sn[i] else {
            return false;
        };
        let p1 = Self::remove_pri(c, self.slots[pdx].clone(), i);
        let s1 = Self::remove_sec(c, self.slots[sdx].clone(), i, pdx);
        let mut s2 = s1;
        if c.nodes[s2.n]
            .add_pri(&mut s2.d, &c.instances[i], true)
            .is_err()
        {
            return false;
        }
        s2.plist.insert(0, i);
        let Some(p2) = Self::add_sec(c, p1, i, sdx) else {
            return false;
        };
        self.slots[pdx] = p2;
        self.slots[sdx] = s2;
        self.pn[i] = sdx;
        self.sn[i] = Some(pdx);
        true
    }

    /// hroller's `replaceSecondary`, including its use of the primary's
    /// record for the old secondary's slot.
    fn replace_sec(&mut self, c: &Cluster, j: &mut Journal, i: usize, new: usize) -> bool {
        let pdx = self.pn[i];
        let Some(old) = self.sn[i] else {
            return false;
        };
        if pdx == new {
            return false;
        }
        let Some(new_s) = Self::add_sec(c, self.slots[new].clone(), i, pdx) else {
            return false;
        };
        let old_s = Self::remove_sec(c, self.slots[pdx].clone(), i, pdx);
        self.save_slot(j, old);
        self.save_slot(j, new);
        self.save_inst(j, i);
        self.slots[old] = old_s;
        self.slots[new] = new_s;
        self.sn[i] = Some(new);
        true
    }
}

/// htools' `Graph.buildG` adjacency for the reboot graph: vertices
/// `lo..=hi` (offset by `lo`), edges with multiplicity and self-loops as
/// htools builds them.
fn build_graph(c: &Cluster, sel: &[bool], opts: &RollOptions) -> (usize, Vec<Vec<usize>>) {
    let idx: Vec<usize> = (0..sel.len()).filter(|&k| sel[k]).collect();
    let (Some(&lo), Some(&hi)) = (idx.first(), idx.last()) else {
        return (0, vec![]);
    };
    let mut edges: Vec<(usize, usize)> = vec![];
    for inst in &c.instances {
        if let (true, Some(s)) = (inst.has_secondary(), inst.snode) {
            edges.push((inst.pnode, s));
            edges.push((s, inst.pnode));
        }
    }
    if !opts.offline_maintenance {
        // `union`: the shared-secondary cliques, without duplicates and
        // without the edges already present
        let present: std::collections::HashSet<(usize, usize)> = edges.iter().copied().collect();
        let mut seen: std::collections::HashSet<(usize, usize)> = Default::default();
        for n in &c.nodes {
            let prims: Vec<usize> = n
                .slist
                .iter()
                .rev()
                .map(|&i| c.instances[i].pnode)
                .collect();
            for &a in &prims {
                for &b in &prims {
                    if !present.contains(&(a, b)) && seen.insert((a, b)) {
                        edges.push((a, b));
                    }
                }
            }
        }
    }
    let mut adj: Vec<Vec<usize>> = vec![vec![]; hi - lo + 1];
    for (a, b) in edges {
        if sel[a] && sel[b] {
            adj[a - lo].push(b - lo);
        }
    }
    (lo, adj)
}

fn color_node(adj: &[Vec<usize>], color: &[Option<usize>], v: usize) -> usize {
    let mut used = vec![false; adj[v].len() + 1];
    for &u in &adj[v] {
        if let Some(c) = color[u] {
            if c < used.len() {
                used[c] = true;
            }
        }
    }
    used.iter().position(|x| !x).unwrap_or(used.len())
}

/// htools' `colorLF`: `colorInOrder` (a right fold) over the vertices
/// sorted by ascending degree, i.e. highest degree first, ties from the
/// highest vertex.
fn color_lf(adj: &[Vec<usize>]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..adj.len()).collect();
    order.sort_by_key(|&v| adj[v].len());
    let mut color = vec![None; adj.len()];
    for &v in order.iter().rev() {
        color[v] = Some(color_node(adj, &color, v));
    }
    color
}

/// htools' `colorDynamicOrder` with the DSatur key (distinct neighbour
/// colours, degree) or the Dcolor key (coloured neighbours counted with
/// multiplicity, degree); `maximumBy` takes the last maximum.
fn color_dynamic(adj: &[Vec<usize>], dsatur: bool) -> Vec<Option<usize>> {
    let mut color: Vec<Option<usize>> = vec![None; adj.len()];
    let mut remaining: Vec<usize> = (0..adj.len()).collect();
    let mut seen = vec![usize::MAX; adj.len() + 1];
    let mut stamp = 0usize;
    while !remaining.is_empty() {
        let mut best = 0;
        let mut best_key = (0usize, 0usize);
        for (k, &v) in remaining.iter().enumerate() {
            let sat = if dsatur {
                stamp += 1;
                let mut n = 0;
                for &u in &adj[v] {
                    if let Some(c) = color[u] {
                        if c < seen.len() && seen[c] != stamp {
                            seen[c] = stamp;
                            n += 1;
                        }
                    }
                }
                n
            } else {
                adj[v].iter().filter(|&&u| color[u].is_some()).count()
            };
            let key = (sat, adj[v].len());
            if k == 0 || key >= best_key {
                best = k;
                best_key = key;
            }
        }
        let v = remaining.remove(best);
        color[v] = Some(color_node(adj, &color, v));
    }
    color
}

/// Colour classes in colour order, each with its vertices ascending.
fn classes(color: &[Option<usize>]) -> Vec<Vec<usize>> {
    let k = color.iter().flatten().max().map_or(0, |m| m + 1);
    let mut cl: Vec<Vec<usize>> = vec![vec![]; k];
    for (v, c) in color.iter().enumerate() {
        if let Some(c) = c {
            cl[*c].push(v);
        }
    }
    cl.retain(|x| !x.is_empty());
    cl
}

/// hroller's `greedyClearNodes`: pick, in order, the nodes whose instances
/// (`secondaries` or non-redundant primaries) can all be relocated to the
/// other remaining targets of their group; returns the picked nodes and
/// the configuration after clearing them.
fn greedy_clear(
    c: &Cluster,
    ndxs: &[usize],
    targets: &[usize],
    conf: &Conf,
    secondaries: bool,
) -> (Vec<usize>, Conf) {
    let mut conf = conf.clone();
    let mut targets = targets.to_vec();
    let mut picked = vec![];
    for &ndx in ndxs {
        let others: Vec<usize> = targets.iter().copied().filter(|&t| t != ndx).collect();
        let grp = conf.group(c, ndx);
        let same: Vec<usize> = others
            .iter()
            .copied()
            .filter(|&t| conf.group(c, t) == grp)
            .collect();
        let insts: Vec<usize> = if secondaries {
            conf.slots[ndx].slist.clone()
        } else {
            conf.slots[ndx]
                .plist
                .iter()
                .copied()
                .filter(|&i| !c.instances[i].has_secondary())
                .collect()
        };
        let mut j = Journal::default();
        let ok = insts.iter().all(|&i| {
            same.iter().any(|&t| {
                if secondaries {
                    conf.replace_sec(c, &mut j, i, t)
                } else {
                    conf.move_pri(c, &mut j, i, t)
                }
            })
        });
        if ok {
            picked.push(ndx);
            targets = others;
        } else {
            conf.undo(j);
        }
    }
    (picked, conf)
}

/// hroller's `partitionNodes`: split `ndxs` into groups that can be
/// cleared together (each from the same starting configuration).
fn partition(
    c: &Cluster,
    ndxs: &[usize],
    targets: &[usize],
    conf: &Conf,
    secondaries: bool,
) -> Option<Vec<(Vec<usize>, Conf)>> {
    let mut out = vec![];
    let mut rest = ndxs.to_vec();
    while !rest.is_empty() {
        let (grp, conf2) = greedy_clear(c, &rest, targets, conf, secondaries);
        if grp.is_empty() {
            return None;
        }
        rest.retain(|n| !grp.contains(n));
        out.push((grp, conf2));
    }
    Some(out)
}

/// hroller's `getMoves`: instances placed differently in `conf` than in
/// the cluster, except pure primary/secondary swaps.
fn get_moves(c: &Cluster, conf: &Conf) -> Vec<RollMove> {
    let mut out = vec![];
    for (i, inst) in c.instances.iter().enumerate() {
        let has_sec = inst.has_secondary();
        let (p0, s0) = (inst.pnode, if has_sec { inst.snode } else { None });
        let (p1, s1) = (conf.pn[i], conf.sn[i]);
        if !(p0 != p1 || (has_sec && s0 != s1)) {
            continue;
        }
        if Some(p1) == s0 && s1 == Some(p0) {
            continue;
        }
        out.push(RollMove {
            instance: i,
            pnode: conf.slots[p1].n,
            snode: if has_sec {
                s1.map(|s| conf.slots[s].n)
            } else {
                None
            },
        });
    }
    out
}

/// Compute the reboot groups and, with `full_evacuation`, the moves of
/// each group (hroller's algorithm and output order).
pub fn plan(c: &Cluster, opts: &RollOptions) -> std::result::Result<Vec<RebootGroup>, String> {
    let nn = c.nodes.len();
    let has_non_redundant = |n: usize| {
        c.nodes[n]
            .plist
            .iter()
            .any(|&i| !c.instances[i].has_secondary())
    };
    let selected: Vec<bool> = (0..nn)
        .map(|i| {
            let n = &c.nodes[i];
            !n.offline
                && (!opts.skip_non_redundant || !has_non_redundant(i))
                && opts
                    .node_tags
                    .as_ref()
                    .is_none_or(|t| n.tags.iter().any(|x| t.contains(x)))
                && opts.group.is_none_or(|g| n.group == g)
        })
        .collect();
    let (lo, adj) = build_graph(c, &selected, opts);
    if adj.is_empty() {
        return Err("Cannot create node graph".into());
    }
    let colorings = [
        color_lf(&adj),
        color_dynamic(&adj, true),
        color_dynamic(&adj, false),
    ];
    let mut best: Option<Vec<Vec<usize>>> = None;
    for col in &colorings {
        let cl = classes(col);
        if best.as_ref().is_none_or(|b| cl.len() < b.len()) {
            best = Some(cl);
        }
    }
    let smallest: Vec<Vec<usize>> = best
        .unwrap_or_default()
        .into_iter()
        .map(|cl| cl.into_iter().map(|v| v + lo).collect())
        .collect();
    let all_ndx: Vec<usize> = (0..nn).filter(|&i| !c.nodes[i].offline).collect();
    let base = Conf::new(c);
    let mut groups: Vec<(Vec<usize>, Conf)> = vec![];
    if opts.ignore_non_redundant {
        groups = smallest.into_iter().map(|g| (g, base.clone())).collect();
    } else {
        for cl in &smallest {
            let parts = partition(c, cl, &all_ndx, &base, false)
                .ok_or_else(|| "Not enough capacity to move non-redundant instances".to_string())?;
            groups.extend(parts);
        }
    }
    if opts.full_evacuation {
        let mut split = vec![];
        for (grp, mut conf) in groups {
            let insts: Vec<usize> = grp
                .iter()
                .flat_map(|&n| {
                    conf.slots[n]
                        .plist
                        .iter()
                        .copied()
                        .filter(|&i| c.instances[i].has_secondary())
                        .collect::<Vec<_>>()
                })
                .collect();
            for i in insts {
                if !conf.migrate(c, i) {
                    return Err("Failed to migrate instances off nodes".into());
                }
            }
            let parts = partition(c, &grp, &all_ndx, &conf, true)
                .ok_or_else(|| "Not enough capacity to move secondaries".to_string())?;
            split.extend(parts);
        }
        groups = split;
    }
    let mut out: Vec<RebootGroup> = groups
        .into_iter()
        .map(|(grp, conf)| RebootGroup {
            nodes: grp.into_iter().filter(|&n| selected[n]).collect(),
            moves: get_moves(c, &conf),
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.nodes.len()));
    // masterLast: groups without the master first; the master last in its
    // group
    for g in out.iter_mut() {
        let (mut rest, mut master): (Vec<usize>, Vec<usize>) =
            g.nodes.iter().partition(|&&n| !c.nodes[n].master);
        rest.append(&mut master);
        g.nodes = rest;
    }
    let (mut plain, mut with_master): (Vec<RebootGroup>, Vec<RebootGroup>) = out
        .into_iter()
        .partition(|g| !g.nodes.iter().any(|&n| c.nodes[n].master));
    plain.append(&mut with_master);
    Ok(plain)
}

/// The reboot groups (node indices) of [`plan`].
pub fn reboot_groups(
    c: &Cluster,
    opts: &RollOptions,
) -> std::result::Result<Vec<Vec<usize>>, String> {
    Ok(plan(c, opts)?.into_iter().map(|g| g.nodes).collect())
}
