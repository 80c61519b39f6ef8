//! The allocator (hail's job): placement of new instances (single node or
//! DRBD primary/secondary pair inside one group), relocation of a
//! secondary, node evacuation, group change and multi-allocation, with
//! htools' semantics (`Cluster.hs`, `Cluster/Evacuate.hs`).
//!
//! Candidates are scored incrementally: a candidate only changes one or two
//! nodes, so its score is derived from running sums instead of a full
//! rescoring; DRBD pairs are evaluated in parallel per primary node.

use rayon::prelude::*;

use crate::model::{Cluster, Instance, NodeDyn};
use crate::moves::merge_overlay;
use crate::score::Stats;
use crate::types::{EvacMode, FailMode, IMove, MirrorType};

#[derive(Debug, Clone, Default)]
pub struct AllocOptions {
    pub ignore_soft_errors: bool,
    /// Only consider these nodes (iallocator `restrict-to-nodes`).
    pub restrict_to_nodes: Option<Vec<String>>,
    /// Also require global N+1 redundancy after the allocation (hail's
    /// default "capacity checks", see [`crate::capacity::redundant`]):
    /// candidates are tried in score order until one passes; rejected
    /// ones count as `FailN1`.
    pub capacity_checks: bool,
    /// Maguey: instances on local `file` disks can move to any node (live migration copies
    /// their disks), so node evacuation relocates them like shared-storage instances.
    /// Off by default, as in hail (where they cannot be relocated).
    pub local_storage_migrates: bool,
}

/// Best placement found for one instance in one group.
#[derive(Debug, Clone)]
pub struct AllocSolution {
    pub failures: Vec<FailMode>,
    pub allocs: usize,
    /// (score, primary, secondary, new node states)
    pub best: Option<(f64, usize, Option<usize>, Vec<(usize, NodeDyn)>)>,
}

impl AllocSolution {
    fn empty() -> Self {
        AllocSolution {
            failures: vec![],
            allocs: 0,
            best: None,
        }
    }
    /// Failure counts in htools' order, only non-zero ones.
    pub fn failure_counts(&self) -> Vec<(FailMode, usize)> {
        FailMode::ALL
            .iter()
            .map(|f| (*f, self.failures.iter().filter(|x| *x == f).count()))
            .filter(|x| x.1 > 0)
            .collect()
    }
    /// htools-like description of the solution.
    pub fn describe(&self, c: &Cluster) -> String {
        let freasons: Vec<String> = self
            .failure_counts()
            .iter()
            .map(|(f, n)| format!("{f}: {n}"))
            .collect();
        match &self.best {
            None => format!(
                "No valid allocation solutions, failure reasons: {}",
                if self.failures.is_empty() {
                    "unknown reasons".to_string()
                } else {
                    freasons.join(", ")
                }
            ),
            Some((cv, p, s, _)) => {
                let mut names = vec![c.nodes[*p].name.clone()];
                if let Some(s) = s {
                    names.push(c.nodes[*s].name.clone());
                }
                format!(
                    "score: {:.8}, successes {}, failures {} ({}) for node(s) {}",
                    cv,
                    self.allocs,
                    self.failures.len(),
                    freasons.join(", "),
                    names.join("/")
                )
            }
        }
    }
}

fn better(new: f64, old: Option<f64>) -> bool {
    // htools keeps the later candidate on ties
    old.is_none_or(|o| new <= o)
}

/// Evaluate all placements of `inst` on the candidate nodes `cands` (all
/// online, one group), scoring with `stats` (cluster or group wide).
pub fn try_alloc(
    c: &Cluster,
    stats: &Stats,
    inst: &Instance,
    cands: &[usize],
    required: usize,
    opts: &AllocOptions,
) -> std::result::Result<AllocSolution, String> {
    if opts.capacity_checks {
        return try_alloc_capacity(c, stats, inst, cands, required, opts);
    }
    let force = opts.ignore_soft_errors;
    let policy_ok = |p: usize| -> std::result::Result<(), FailMode> {
        let n = &c.nodes[p];
        inst.matches_policy(&c.groups[n.group].ipolicy, n.excl_storage)
    };
    match required {
        1 => {
            if cands.is_empty() {
                return Err("No online nodes".into());
            }
            let mut sol = AllocSolution::empty();
            let mut ties: Vec<(f64, usize, Vec<(usize, NodeDyn)>)> = vec![];
            for &p in cands {
                let r = policy_ok(p).and_then(|_| c.eval_place(inst, p, None, force));
                match r {
                    Err(f) => sol.failures.push(f),
                    Ok(nodes) => {
                        sol.allocs += 1;
                        let s = c.score_overlay(stats, &nodes, &|_| true);
                        let cur = ties.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
                        if s <= cur + NEAR_TIE {
                            if s < cur - NEAR_TIE {
                                ties.retain(|x| x.0 <= s + NEAR_TIE);
                            }
                            ties.push((s, p, nodes));
                        }
                    }
                }
            }
            // htools scores every candidate in full: break near-ties that way
            let mut pick: Option<(f64, usize)> = None;
            if ties.len() > 1 {
                for (k, (_, _, nodes)) in ties.iter().enumerate() {
                    let ex = exact_scope_score(c, nodes, stats.scope);
                    if pick.is_none_or(|p| p.0 >= ex) {
                        pick = Some((ex, k));
                    }
                }
            } else if !ties.is_empty() {
                pick = Some((0.0, 0));
            }
            if let Some((_, k)) = pick {
                let (sc, p, nodes) = ties.swap_remove(k);
                sol.best = Some((sc, p, None, nodes));
            }
            Ok(sol)
        }
        2 => {
            let pairs: Vec<usize> = cands
                .iter()
                .copied()
                .filter(|&p| {
                    cands
                        .iter()
                        .any(|&s| s != p && c.nodes[s].group == c.nodes[p].group)
                })
                .collect();
            if pairs.is_empty() {
                return Err("Not enough online nodes".into());
            }
            if crate::balance::fast_eval_ok(c) {
                return Ok(try_alloc_pairs_fast(c, stats, inst, cands, &pairs, opts));
            }
            let per_p: Vec<AllocSolution> = pairs
                .par_iter()
                .map(|&p| {
                    let mut sol = AllocSolution::empty();
                    let ss: Vec<usize> = cands
                        .iter()
                        .copied()
                        .filter(|&s| s != p && c.nodes[s].group == c.nodes[p].group)
                        .collect();
                    let prim = policy_ok(p).and_then(|_| {
                        let mut pd = c.nodes[p].d.clone();
                        c.nodes[p]
                            .add_pri(&mut pd, &with_loc_none(inst), force)
                            .map(|_| pd)
                    });
                    for &s in &ss {
                        // primary part depends on the location score of the pair
                        let pd = match &prim {
                            Err(f) => {
                                sol.failures.push(*f);
                                continue;
                            }
                            Ok(pd) => pd,
                        };
                        let loc = c.instance_location_score(p, Some(s));
                        let pd = if loc != 0 || !inst.dsrd_loc_tags.is_empty() {
                            let mut li = inst.clone();
                            li.location_score = loc;
                            let mut pd2 = c.nodes[p].d.clone();
                            match c.nodes[p].add_pri(&mut pd2, &li, force) {
                                Ok(()) => pd2,
                                Err(f) => {
                                    sol.failures.push(f);
                                    continue;
                                }
                            }
                        } else {
                            pd.clone()
                        };
                        let mut sd = c.nodes[s].d.clone();
                        let mut si = inst.clone();
                        si.location_score = loc;
                        match c.nodes[s].add_sec(&mut sd, &si, p, false, false) {
                            Err(f) => sol.failures.push(f),
                            Ok(()) => {
                                sol.allocs += 1;
                                let nodes = vec![(p, pd), (s, sd)];
                                let sc = c.score_overlay(stats, &nodes, &|_| true);
                                if better(sc, sol.best.as_ref().map(|b| b.0)) {
                                    sol.best = Some((sc, p, Some(s), nodes));
                                }
                            }
                        }
                    }
                    sol
                })
                .collect();
            let mut sol = AllocSolution::empty();
            for ps in per_p {
                sol.failures.extend(ps.failures);
                sol.allocs += ps.allocs;
                if let Some(b) = ps.best {
                    if better(b.0, sol.best.as_ref().map(|x| x.0)) {
                        sol.best = Some(b);
                    }
                }
            }
            Ok(sol)
        }
        n => Err(format!(
            "Unsupported number of nodes, only one or two supported (got {n})"
        )),
    }
}

/// DRBD pair evaluation when no location tags exist: the primary side is
/// computed once per primary, the secondary side per pair without cloning
/// any node state; only the winning pair is materialised.
fn try_alloc_pairs_fast(
    c: &Cluster,
    stats: &Stats,
    inst: &Instance,
    cands: &[usize],
    pairs: &[usize],
    opts: &AllocOptions,
) -> AllocSolution {
    use crate::score::{node_vals, node_vals_st};
    let force = opts.ignore_soft_errors;
    let base = stats.acc();
    let mut is_cand = vec![false; c.nodes.len()];
    for &i in cands {
        is_cand[i] = true;
    }
    let vals: Vec<Option<crate::score::NodeVals>> = (0..c.nodes.len())
        .map(|i| is_cand[i].then(|| node_vals(&c.nodes[i], &c.nodes[i].d)))
        .collect();
    // The secondary's new state depends on the primary only through the
    // memory it already mirrors for that primary (`peer(p)`): for the
    // (almost all) pairs where that is 0, it is computed once per node.
    let sec_no_peer: Vec<Option<std::result::Result<crate::score::NodeVals, FailMode>>> =
        (0..c.nodes.len())
            .map(|s| {
                is_cand[s].then(|| {
                    let sn = &c.nodes[s];
                    sn.add_sec_state(&sn.d, inst, usize::MAX, false, false)
                        .map(|(st, _)| node_vals_st(sn, &st))
                })
            })
            .collect();
    let per_p: Vec<(Vec<FailMode>, usize, Vec<(f64, usize, usize)>)> = pairs
        .par_iter()
        .map(|&p| {
            let mut fails = vec![];
            let mut allocs = 0;
            let mut best: Vec<(f64, usize, usize)> = vec![];
            let pn = &c.nodes[p];
            let prim = inst
                .matches_policy(&c.groups[pn.group].ipolicy, pn.excl_storage)
                .and_then(|_| pn.add_pri_state(&pn.d, inst, force));
            let acc_p = prim.map(|st| {
                let mut a = base;
                if let Some(v) = &vals[p] {
                    stats.acc_apply(&mut a, v, &node_vals_st(pn, &st));
                }
                a
            });
            for &s in cands {
                if s == p || c.nodes[s].group != pn.group {
                    continue;
                }
                let a0 = match &acc_p {
                    Err(f) => {
                        fails.push(*f);
                        continue;
                    }
                    Ok(a) => a,
                };
                let sn = &c.nodes[s];
                let sec = match &sec_no_peer[s] {
                    Some(r) if sn.d.peer(p) == 0 => *r,
                    _ => sn
                        .add_sec_state(&sn.d, inst, p, false, false)
                        .map(|(st, _)| node_vals_st(sn, &st)),
                };
                match sec {
                    Err(f) => fails.push(f),
                    Ok(new_vals) => {
                        allocs += 1;
                        let sc = match &vals[s] {
                            Some(v) => stats.score_changes(a0, &[(v, &new_vals)]),
                            None => stats.score_changes(a0, &[]),
                        };
                        let cur = best.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
                        if sc <= cur + NEAR_TIE {
                            if sc < cur - NEAR_TIE {
                                best.retain(|x| x.0 <= sc + NEAR_TIE);
                            }
                            best.push((sc, p, s));
                        }
                    }
                }
            }
            (fails, allocs, best)
        })
        .collect();
    let mut sol = AllocSolution::empty();
    let mut ties: Vec<(f64, usize, usize)> = vec![];
    for (f, a, b) in per_p {
        sol.failures.extend(f);
        sol.allocs += a;
        ties.extend(b);
    }
    let gbest = ties.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    ties.retain(|x| x.0 <= gbest + NEAR_TIE);
    let mut best: Option<(f64, usize, usize)> = ties.last().copied();
    if ties.len() > 1 {
        // re-score like hail (htools' running statistics) and keep the last
        // of the lowest, as hail does
        let hs = crate::score::HStats::new(
            c.nodes
                .iter()
                .filter(|n| stats.scope.is_none_or(|g| n.group == g)),
        );
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

/// Allocation with the global N+1 capacity check.
fn try_alloc_capacity(
    c: &Cluster,
    stats: &Stats,
    inst: &Instance,
    cands: &[usize],
    required: usize,
    opts: &AllocOptions,
) -> std::result::Result<AllocSolution, String> {
    let force = opts.ignore_soft_errors;
    let mut pairs: Vec<(usize, Option<usize>)> = vec![];
    for &p in cands {
        if required == 1 {
            pairs.push((p, None));
        } else if required == 2 {
            for &s in cands {
                if s != p && c.nodes[s].group == c.nodes[p].group {
                    pairs.push((p, Some(s)));
                }
            }
        } else {
            return Err(format!(
                "Unsupported number of nodes, only one or two supported (got {required})"
            ));
        }
    }
    if pairs.is_empty() {
        return Err("No online nodes".into());
    }
    let evals: Vec<std::result::Result<(f64, usize), FailMode>> = pairs
        .par_iter()
        .enumerate()
        .map(|(k, &(p, s))| {
            let n = &c.nodes[p];
            inst.matches_policy(&c.groups[n.group].ipolicy, n.excl_storage)?;
            let nodes = c.eval_place(inst, p, s, force)?;
            Ok((c.score_overlay(stats, &nodes, &|_| true), k))
        })
        .collect();
    let mut sol = AllocSolution::empty();
    let mut good: Vec<(f64, usize)> = vec![];
    for e in evals {
        match e {
            Err(f) => sol.failures.push(f),
            Ok(x) => good.push(x),
        }
    }
    // htools sorts by score; on ties the later candidate comes first
    good.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.1.cmp(&a.1))
    });
    sol.allocs = good.len();
    for (sc, k) in good {
        let (p, s) = pairs[k];
        let Ok(nodes) = c.eval_place(inst, p, s, force) else {
            continue;
        };
        let mut c2 = c.clone();
        c2.commit_place(inst.clone(), p, s, nodes.clone());
        if crate::capacity::redundant(&c2, &|_| true) {
            sol.best = Some((sc, p, s, nodes));
            break;
        }
        sol.failures.push(FailMode::FailN1);
        sol.allocs -= 1;
    }
    Ok(sol)
}

/// Score aliases valid for the cluster with `inst` added.
fn aliases_for(c: &Cluster, inst: &Instance) -> Vec<(usize, usize)> {
    if inst.forthcoming {
        return vec![];
    }
    let util_ok = inst.util.cpu == inst.util.mem && inst.util.cpu == inst.util.net;
    crate::balance::score_aliases(c)
        .into_iter()
        .filter(|a| match a {
            (0, 9) => inst.uses_memory(),
            (4, _) => util_ok,
            _ => true,
        })
        .collect()
}

fn with_loc_none(inst: &Instance) -> Instance {
    let mut i = inst.clone();
    i.location_score = 0;
    i
}

/// Online candidate nodes of a group (honouring `restrict_to_nodes`).
fn group_candidates(c: &Cluster, gdx: usize, opts: &AllocOptions) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|&i| {
            let n = &c.nodes[i];
            n.group == gdx
                && !n.offline
                && opts
                    .restrict_to_nodes
                    .as_ref()
                    .is_none_or(|r| r.iter().any(|x| x == &n.name))
        })
        .collect()
}

fn has_required_networks(c: &Cluster, gdx: usize, inst: &Instance) -> bool {
    inst.nics.iter().all(|n| {
        n.network
            .as_ref()
            .is_none_or(|net| c.groups[gdx].networks.contains(net))
    })
}

/// Result of a group-choosing allocation.
#[derive(Debug, Clone)]
pub struct GroupAlloc {
    pub group: usize,
    pub solution: AllocSolution,
    pub log: Vec<String>,
}

/// htools' `findBestAllocGroup`: allocate in every allowed group (scores
/// are cluster-wide), keep preferred groups first, then the best score.
pub fn find_best_alloc_group(
    c: &Cluster,
    stats: &Stats,
    allowed: Option<&[usize]>,
    inst: &Instance,
    required: usize,
    opts: &AllocOptions,
) -> std::result::Result<GroupAlloc, String> {
    let groups: Vec<usize> = c
        .nodes_by_group()
        .into_iter()
        .map(|(g, _)| g)
        .filter(|g| allowed.is_none_or(|a| a.contains(g)))
        .collect();
    let mut msgs = vec![];
    let mut good: Vec<(usize, AllocSolution)> = vec![];
    for &g in &groups {
        let gname = &c.groups[g].name;
        if !has_required_networks(c, g, inst) {
            msgs.push(format!(
                "group {gname} is not connected to a network required by instance {}",
                inst.name
            ));
            continue;
        }
        let pol = c.groups[g].alloc_policy.to_raw();
        let cands = group_candidates(c, g, opts);
        match try_alloc(c, stats, inst, &cands, required, opts) {
            Err(e) => msgs.push(format!("Group {gname}: error {e}")),
            Ok(sol) => {
                msgs.push(format!("Group {gname} ({pol}): {}", sol.describe(c)));
                if sol.best.is_some() && c.groups[g].alloc_policy.is_allocable() {
                    good.push((g, sol));
                }
            }
        }
    }
    // htools reverses the list, then sorts stably by (policy, score)
    good.reverse();
    good.sort_by(|a, b| {
        let ka = (
            c.groups[a.0].alloc_policy,
            a.1.best.as_ref().map(|x| x.0).unwrap_or(f64::MAX),
        );
        let kb = (
            c.groups[b.0].alloc_policy,
            b.1.best.as_ref().map(|x| x.0).unwrap_or(f64::MAX),
        );
        ka.0.cmp(&kb.0)
            .then(ka.1.partial_cmp(&kb.1).unwrap_or(std::cmp::Ordering::Equal))
    });
    match good.into_iter().next() {
        None => Err(if groups.is_empty() {
            "no groups for evacuation".to_string()
        } else {
            msgs.join(", ")
        }),
        Some((g, sol)) => Ok(GroupAlloc {
            group: g,
            solution: sol,
            log: msgs,
        }),
    }
}

/// Allocate a new instance anywhere in the cluster (htools' `tryMGAlloc`).
pub fn allocate(
    c: &Cluster,
    inst: &Instance,
    required: usize,
    opts: &AllocOptions,
) -> std::result::Result<GroupAlloc, String> {
    let stats = Stats::new(c.nodes.iter()).with_aliases(&aliases_for(c, inst));
    let mut r = find_best_alloc_group(c, &stats, None, inst, required, opts)?;
    let mut log = vec![format!("Selected group: {}", c.groups[r.group].name)];
    log.append(&mut r.log);
    r.log = log;
    Ok(r)
}

/// Allocate a new instance in the named group (htools' `tryGroupAlloc`);
/// scores are computed over the group's nodes.
pub fn allocate_in_group(
    c: &Cluster,
    group: &str,
    inst: &Instance,
    required: usize,
    opts: &AllocOptions,
) -> std::result::Result<GroupAlloc, String> {
    let gdx = c
        .group_by_name(group)
        .ok_or_else(|| format!("unknown group '{group}'"))?;
    if !has_required_networks(c, gdx, inst) {
        return Err(format!(
            "The group {group} is not connected to a network required by instance {}",
            inst.name
        ));
    }
    let mut stats =
        Stats::new(c.nodes.iter().filter(|n| n.group == gdx)).with_aliases(&aliases_for(c, inst));
    stats.scope = Some(gdx);
    let cands = group_candidates(c, gdx, opts);
    let sol = try_alloc(c, &stats, inst, &cands, required, opts)?;
    let pol = c.groups[gdx].alloc_policy.to_raw();
    let log = vec![format!("Group {group} ({pol}): {}", sol.describe(c))];
    Ok(GroupAlloc {
        group: gdx,
        solution: sol,
        log,
    })
}

/// Commit an allocation into the cluster; returns the new instance index.
pub fn commit_alloc(c: &mut Cluster, inst: &Instance, sol: &AllocSolution) -> Option<usize> {
    let (_, p, s, nodes) = sol.best.clone()?;
    Some(c.commit_place(inst.clone(), p, s, nodes))
}

/// One request of a multi-allocation.
#[derive(Debug, Clone)]
pub struct AllocRequest {
    pub inst: Instance,
    pub required: usize,
    pub group: Option<String>,
}

/// Allocate a list of instances one after the other (htools' `allocList`).
/// Returns, in order, (name, Ok(nodes) | Err(reason)).
pub fn multi_allocate(
    c: &mut Cluster,
    reqs: &[AllocRequest],
    opts: &AllocOptions,
) -> std::result::Result<Vec<(String, std::result::Result<Vec<usize>, String>)>, String> {
    let mut out = vec![];
    for r in reqs {
        let res = match &r.group {
            None => allocate(c, &r.inst, r.required, opts),
            Some(g) => allocate_in_group(c, g, &r.inst, r.required, opts),
        };
        match res {
            Err(e) => return Err(e),
            Ok(ga) => match &ga.solution.best {
                Some((_, p, s, _)) => {
                    let mut nodes = vec![*p];
                    nodes.extend(*s);
                    commit_alloc(c, &r.inst, &ga.solution);
                    out.push((r.inst.name.clone(), Ok(nodes)));
                }
                None => {
                    let mut log = vec![format!("Selected group: {}", c.groups[ga.group].name)];
                    log.extend(ga.log.iter().cloned());
                    out.push((r.inst.name.clone(), Err(log.join(", "))));
                }
            },
        }
    }
    Ok(out)
}

/// Result of an evacuation / change-group request.
#[derive(Debug, Clone, Default)]
pub struct EvacSolution {
    /// (instance, group, new nodes)
    pub moved: Vec<(usize, usize, Vec<usize>)>,
    pub failed: Vec<(usize, String)>,
    /// One job per moved instance: the moves to execute, in order.
    pub jobs: Vec<(usize, Vec<IMove>)>,
}

type Ev = std::result::Result<(Vec<(usize, NodeDyn)>, Instance, Vec<IMove>), String>;

/// Apply a sequence of moves on top of an overlay.
fn chain(
    c: &Cluster,
    ov: &mut Vec<(usize, NodeDyn)>,
    inst: &mut Instance,
    idx: usize,
    mv: IMove,
    force: bool,
) -> std::result::Result<(), FailMode> {
    let out = c.eval_move_ov(ov, inst, idx, mv, force)?;
    inst.pnode = out.new_p;
    inst.snode = out.new_s;
    inst.location_score = out.location_score;
    merge_overlay(ov, out.nodes);
    Ok(())
}

/// Window within which incrementally computed scores are treated as a
/// possible tie and re-scored exactly like htools.
const NEAR_TIE: f64 = 1e-9;

/// The score of group `gdx` with `ov` applied, computed exactly as htools
/// does (full two-pass, htools' summation order), for breaking near-ties.
fn exact_group_score(c: &Cluster, ov: &[(usize, NodeDyn)], gdx: usize) -> f64 {
    exact_scope_score(c, ov, Some(gdx))
}

/// Exact htools score of the scope (a group, or the whole cluster).
fn exact_scope_score(c: &Cluster, ov: &[(usize, NodeDyn)], scope: Option<usize>) -> f64 {
    let changed: Vec<crate::model::Node> = ov
        .iter()
        .map(|(n, d)| {
            let mut node = c.nodes[*n].clone();
            node.d = d.clone();
            node
        })
        .collect();
    let nodes = (0..c.nodes.len())
        .filter(|&i| scope.is_none_or(|g| c.nodes[i].group == g))
        .map(|i| match ov.iter().position(|(n, _)| *n == i) {
            Some(k) => &changed[k],
            None => &c.nodes[i],
        });
    crate::score::score_nodes(nodes).total
}

/// Among candidates (in evaluation order) whose incremental score is within
/// `NEAR_TIE` of the best, pick what htools would: the last one with the
/// lowest exact score. Returns the index into `cands`.
fn htools_pick(c: &Cluster, gdx: usize, cands: &[(f64, &[(usize, NodeDyn)])]) -> Option<usize> {
    let best = cands.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    let mut pick: Option<(f64, usize)> = None;
    for (k, (sc, ov)) in cands.iter().enumerate() {
        if *sc > best + NEAR_TIE {
            continue;
        }
        let ex = exact_group_score(c, ov, gdx);
        if pick.is_none_or(|p| p.0 >= ex) {
            pick = Some((ex, k));
        }
    }
    pick.map(|p| p.1)
}

/// Change one node of an instance (secondary for DRBD, primary for shared
/// storage) to the best of `avail` (htools' `evacOneNodeOnly`).
fn evac_one_node(
    c: &Cluster,
    stats: &Stats,
    idx: usize,
    gdx: usize,
    avail: &[usize],
    force: bool,
) -> Ev {
    evac_one_node_as(c, stats, idx, gdx, avail, force, false)
}

/// [`evac_one_node`]; `movable`: the instance's local disks move with it (Maguey's live
/// migration of `file` disks), so it can go to any node like a shared-storage instance.
fn evac_one_node_as(
    c: &Cluster,
    stats: &Stats,
    idx: usize,
    gdx: usize,
    avail: &[usize],
    force: bool,
    movable: bool,
) -> Ev {
    let inst = &c.instances[idx];
    let op: fn(usize) -> IMove = match inst.mirror_type() {
        MirrorType::None if movable => IMove::FailoverToAny,
        MirrorType::None => return Err("Can't relocate/evacuate non-mirrored instances".into()),
        MirrorType::Internal => IMove::ReplaceSecondary,
        MirrorType::External => IMove::FailoverToAny,
    };
    let in_group = |n: usize| c.nodes[n].group == gdx;
    let mut all: Vec<(f64, Vec<(usize, NodeDyn)>, Instance, IMove)> = vec![];
    let mut fails = String::new();
    for &n in avail {
        let mut ov = vec![];
        let mut i2 = inst.clone();
        match chain(c, &mut ov, &mut i2, idx, op(n), force) {
            Err(f) => fails.push_str(&format!(" Node {} failed: {f:?};", c.nodes[n].name)),
            Ok(()) => {
                let sc = c.score_overlay(stats, &ov, &in_group);
                all.push((sc, ov, i2, op(n)));
            }
        }
    }
    let cands: Vec<(f64, &[(usize, NodeDyn)])> =
        all.iter().map(|x| (x.0, x.1.as_slice())).collect();
    match htools_pick(c, gdx, &cands) {
        Some(k) => {
            let (_, ov, i2, mv) = all.swap_remove(k);
            Ok((ov, i2, vec![mv]))
        }
        None => Err(format!("Can't find any good node:{fails}")),
    }
}

/// Move both nodes of a DRBD instance (htools' ChangeAll: r:p, f, r:s),
/// trying every (p, s) pair of `avail`.
fn evac_drbd_all(
    c: &Cluster,
    stats: &Stats,
    idx: usize,
    gdx: usize,
    avail: &[usize],
    force: bool,
) -> Ev {
    use crate::score::{node_vals, node_vals_st};
    let inst0 = &c.instances[idx];
    let in_group = |n: usize| c.nodes[n].group == gdx;
    let fast_ok = crate::balance::fast_eval_ok(c);
    // optional failover when the primary is offline
    let mut ov0 = vec![];
    let mut i0 = inst0.clone();
    let mut ops0 = vec![];
    if c.nodes[inst0.pnode].offline {
        chain(c, &mut ov0, &mut i0, idx, IMove::Failover, force)
            .map_err(|f| format!("Failing over to the secondary: {f:?}"))?;
        ops0.push(IMove::Failover);
    }
    // per new primary: r:p then f (independent of s)
    let per_p: Vec<(
        usize,
        std::result::Result<(Vec<(usize, NodeDyn)>, Instance), String>,
    )> = avail
        .par_iter()
        .map(|&p| {
            let mut ov = ov0.clone();
            let mut i1 = i0.clone();
            let r = chain(c, &mut ov, &mut i1, idx, IMove::ReplaceSecondary(p), force)
                .map_err(|f| format!("Changing secondary to new primary: {f:?}"))
                .and_then(|_| {
                    chain(c, &mut ov, &mut i1, idx, IMove::Failover, force)
                        .map_err(|f| format!("Failing over to new primary: {f:?}"))
                })
                .map(|_| (ov, i1));
            (p, r)
        })
        .collect();
    type Best = (f64, usize, Vec<(usize, NodeDyn)>, Instance);
    let bests: Vec<(Vec<Best>, Option<String>)> = per_p
        .par_iter()
        .map(|(p, r)| {
            let mut best: Option<Best> = None;
            let mut err = None;
            // fast path: only the new secondary changes per candidate
            let fast = match r {
                Ok((ov, i1)) if fast_ok => {
                    let old_s = i1.snode;
                    let mut ov3 = ov.clone();
                    match old_s {
                        Some(os) => {
                            let node = &c.nodes[os];
                            let mut d = ov3
                                .iter()
                                .find(|(k, _)| *k == os)
                                .map(|x| x.1.clone())
                                .unwrap_or_else(|| node.d.clone());
                            node.remove_sec(&mut d, i1, i1.pnode);
                            merge_overlay(&mut ov3, vec![(os, d)]);
                            let mut a = stats.acc();
                            for (n, d) in &ov3 {
                                if in_group(*n) {
                                    let nd = &c.nodes[*n];
                                    stats.acc_apply(
                                        &mut a,
                                        &node_vals(nd, &nd.d),
                                        &node_vals(nd, d),
                                    );
                                }
                            }
                            Some((a, ov3, c.nodes[os].offline || force))
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            let mut fast_ties: Vec<(f64, usize)> = vec![];
            for &s in avail.iter() {
                if s == *p {
                    continue;
                }
                if let (Some((a0, ov3, force_s)), Ok((_, i1))) = (&fast, r) {
                    if !ov3.iter().any(|(k, _)| *k == s) {
                        let sn = &c.nodes[s];
                        match sn.add_sec_state(&sn.d, i1, *p, *force_s, false) {
                            Err(f) => {
                                err = Some(format!("Changing secondary to final secondary: {f:?}"))
                            }
                            Ok((st, _)) => {
                                let sc = if in_group(s) {
                                    let (o, n) = (node_vals(sn, &sn.d), node_vals_st(sn, &st));
                                    stats.score_changes(a0, &[(&o, &n)])
                                } else {
                                    stats.score_changes(a0, &[])
                                };
                                let cur =
                                    fast_ties.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
                                if sc <= cur + NEAR_TIE {
                                    if sc < cur - NEAR_TIE {
                                        fast_ties.retain(|x| x.0 <= sc + NEAR_TIE);
                                    }
                                    fast_ties.push((sc, s));
                                }
                            }
                        }
                        continue;
                    }
                }
                match r {
                    Err(e) => err = Some(e.clone()),
                    Ok((ov, i1)) => {
                        let mut ov = ov.clone();
                        let mut i2 = i1.clone();
                        match chain(c, &mut ov, &mut i2, idx, IMove::ReplaceSecondary(s), force) {
                            Err(f) => {
                                err = Some(format!("Changing secondary to final secondary: {f:?}"))
                            }
                            Ok(()) => {
                                let sc = c.score_overlay(stats, &ov, &in_group);
                                if best.as_ref().is_none_or(|b| b.0 >= sc) {
                                    best = Some((sc, s, ov, i2));
                                }
                            }
                        }
                    }
                }
            }
            let mut list: Vec<Best> = best.into_iter().collect();
            if let Ok((ov, i1)) = r {
                for (sc, s) in fast_ties {
                    let mut ov = ov.clone();
                    let mut i2 = i1.clone();
                    if chain(c, &mut ov, &mut i2, idx, IMove::ReplaceSecondary(s), force).is_ok() {
                        list.push((sc, s, ov, i2));
                    }
                }
            }
            (list, err)
        })
        .collect();
    let mut all: Vec<Best> = vec![];
    let mut last_err = "no nodes available".to_string();
    for (b, e) in bests {
        if let (true, Some(e)) = (all.is_empty(), e) {
            last_err = format!("Allocation failed: {e}");
        }
        all.extend(b);
    }
    let cands: Vec<(f64, &[(usize, NodeDyn)])> =
        all.iter().map(|x| (x.0, x.2.as_slice())).collect();
    let best = htools_pick(c, gdx, &cands).map(|k| all.swap_remove(k));
    match best {
        None => Err(format!(
            "Can't find any good nodes for relocation: {last_err}"
        )),
        Some((_, s, ov, i2)) => {
            let mut ops = ops0;
            ops.extend([
                IMove::ReplaceSecondary(i2.pnode),
                IMove::Failover,
                IMove::ReplaceSecondary(s),
            ]);
            Ok((ov, i2, ops))
        }
    }
}

/// htools' `nodeEvacInstance`.
#[allow(clippy::too_many_arguments)]
fn node_evac_instance(
    c: &Cluster,
    stats: &Stats,
    idx: usize,
    mode: EvacMode,
    gdx: usize,
    avail: &[usize],
    force: bool,
    local_migrates: bool,
) -> Ev {
    use crate::types::DiskTemplate::*;
    let inst = &c.instances[idx];
    match inst.template {
        Plain => Err("Instances of type plain cannot be relocated".into()),
        File if !local_migrates => Err("Instances of type file cannot be relocated".into()),
        File => {
            if mode == EvacMode::SecondaryOnly {
                return Err("Instances with disk template 'file' have no secondary".into());
            }
            evac_one_node_as(c, stats, idx, gdx, avail, force, true)
        }
        Drbd => match mode {
            EvacMode::PrimaryOnly => {
                let mut ov = vec![];
                let mut i2 = inst.clone();
                chain(c, &mut ov, &mut i2, idx, IMove::Failover, force)
                    .map_err(|f| format!("{f:?}"))?;
                Ok((ov, i2, vec![IMove::Failover]))
            }
            EvacMode::SecondaryOnly => evac_one_node(c, stats, idx, gdx, avail, force),
            EvacMode::All => evac_drbd_all(c, stats, idx, gdx, avail, force),
        },
        t => {
            if mode == EvacMode::SecondaryOnly {
                return Err(format!(
                    "Instances with disk template '{}' can't execute change secondary",
                    t.to_raw()
                ));
            }
            evac_one_node(c, stats, idx, gdx, avail, force)
        }
    }
}

fn record_evac(c: &mut Cluster, es: &mut EvacSolution, idx: usize, r: Ev) {
    match r {
        Err(e) => es.failed.push((idx, e)),
        Ok((ov, i2, ops)) => {
            c.commit_overlay(idx, ov, i2.pnode, i2.snode);
            let g = c.nodes[i2.pnode].group;
            es.moved.push((idx, g, c.instances[idx].all_nodes()));
            es.jobs.push((idx, ops));
        }
    }
}

/// Node evacuation (htools' `tryNodeEvac`): move the given instances off
/// the nodes implied by `mode`, one instance after the other.
pub fn node_evacuate(
    c: &mut Cluster,
    idxs: &[usize],
    mode: EvacMode,
    opts: &AllocOptions,
) -> EvacSolution {
    let mut excl = vec![false; c.nodes.len()];
    for &i in idxs {
        let inst = &c.instances[i];
        match mode {
            EvacMode::PrimaryOnly => excl[inst.pnode] = true,
            EvacMode::SecondaryOnly => {
                if let (true, Some(s)) = (inst.has_secondary(), inst.snode) {
                    excl[s] = true;
                }
            }
            EvacMode::All => {
                excl[inst.pnode] = true;
                if let (true, Some(s)) = (inst.has_secondary(), inst.snode) {
                    excl[s] = true;
                }
            }
        }
    }
    for (i, n) in c.nodes.iter().enumerate() {
        if n.offline {
            excl[i] = true;
        }
    }
    let mut es = EvacSolution::default();
    let aliases = crate::balance::score_aliases(c);
    for &idx in idxs {
        let pdx = c.instances[idx].pnode;
        let gdx = c.nodes[pdx].group;
        let avail: Vec<usize> = (0..c.nodes.len())
            .filter(|&n| c.nodes[n].group == gdx && !excl[n] && n != pdx)
            .collect();
        let stats = Stats::new(c.nodes.iter().filter(|n| n.group == gdx)).with_aliases(&aliases);
        let r = node_evac_instance(
            c,
            &stats,
            idx,
            mode,
            gdx,
            &avail,
            opts.ignore_soft_errors,
            opts.local_storage_migrates,
        );
        record_evac(c, &mut es, idx, r);
    }
    es
}

/// Relocate the secondary (DRBD) or primary (shared storage) of one
/// instance; returns the new node.
pub fn relocate(
    c: &mut Cluster,
    idx: usize,
    required: usize,
    from: &[usize],
    opts: &AllocOptions,
) -> std::result::Result<Vec<usize>, String> {
    if required != 1 {
        return Err(format!("Exchange {required} nodes mode is not implemented"));
    }
    let inst = &c.instances[idx];
    let (exp, kind, mode) = match inst.mirror_type() {
        MirrorType::None => return Err("Can't relocate non-mirrored instances".into()),
        MirrorType::Internal => (
            inst.snode.ok_or("instance has no secondary")?,
            "secondary",
            EvacMode::SecondaryOnly,
        ),
        MirrorType::External => (inst.pnode, "primary", EvacMode::PrimaryOnly),
    };
    if from != [exp] {
        return Err(format!(
            "Unsupported request: excluded nodes not equal to instance's {kind} ({} versus {:?})",
            c.nodes[exp].name,
            from.iter()
                .map(|&n| c.nodes[n].name.clone())
                .collect::<Vec<_>>()
        ));
    }
    let (sorig, porig) = (inst.snode, inst.pnode);
    let es = if inst.mirror_type() == MirrorType::External {
        // shared storage: change the primary to any node of the group
        let gdx = c.nodes[porig].group;
        let avail: Vec<usize> = (0..c.nodes.len())
            .filter(|&n| c.nodes[n].group == gdx && !c.nodes[n].offline && n != porig)
            .collect();
        let stats = Stats::new(c.nodes.iter().filter(|n| n.group == gdx));
        let r = evac_one_node(c, &stats, idx, gdx, &avail, opts.ignore_soft_errors);
        let mut es = EvacSolution::default();
        record_evac(c, &mut es, idx, r);
        es
    } else {
        node_evacuate(c, &[idx], mode, opts)
    };
    if let Some((_, msg)) = es.failed.first() {
        return Err(msg.clone());
    }
    let inst = &c.instances[idx];
    match inst.mirror_type() {
        MirrorType::Internal => {
            if inst.snode == sorig {
                return Err("Internal error: instance didn't change secondary node?!".into());
            }
            inst.snode
                .map(|s| vec![s])
                .ok_or_else(|| "Internal error: no secondary".to_string())
        }
        _ => {
            if inst.pnode == porig {
                return Err("Internal error: instance didn't change primary node?!".into());
            }
            Ok(vec![inst.pnode])
        }
    }
}

/// Move instances to other node groups (htools' `tryChangeGroup`).
/// `targets` empty = any group other than the instances' current ones.
pub fn change_group(
    c: &mut Cluster,
    idxs: &[usize],
    targets: &[usize],
    opts: &AllocOptions,
) -> EvacSolution {
    let mut evac_g: Vec<usize> = idxs
        .iter()
        .map(|&i| c.nodes[c.instances[i].pnode].group)
        .collect();
    evac_g.dedup();
    let target_g: Vec<usize> = if targets.is_empty() {
        (0..c.groups.len()).collect()
    } else {
        targets.to_vec()
    }
    .into_iter()
    .filter(|g| !evac_g.contains(g))
    .collect();
    let mut es = EvacSolution::default();
    for &idx in idxs {
        let r = (|| -> Ev {
            let inst = c.instances[idx].clone();
            let stats = Stats::new(c.nodes.iter());
            let ga = find_best_alloc_group(
                c,
                &stats,
                Some(&target_g),
                &inst,
                inst.template.required_nodes(),
                opts,
            )?;
            let gdx = ga.group;
            let avail: Vec<usize> = (0..c.nodes.len())
                .filter(|&n| c.nodes[n].group == gdx && !c.nodes[n].offline)
                .collect();
            let gstats = Stats::new(c.nodes.iter().filter(|n| n.group == gdx));
            node_evac_instance(c, &gstats, idx, EvacMode::All, gdx, &avail, false, false)
        })();
        record_evac(c, &mut es, idx, r);
    }
    es
}

/// Find a secondary for an instance that has none (htools'
/// `tryAllocateSecondary`); the instance becomes DRBD. Returns (info, node).
pub fn allocate_secondary(
    c: &mut Cluster,
    idx: usize,
    opts: &AllocOptions,
) -> std::result::Result<(String, usize), String> {
    let inst = c.instances[idx].clone();
    if inst.snode.is_some() {
        return Err("Instance already has a secondary".into());
    }
    let pidx = inst.pnode;
    let mut c2 = c.clone();
    let mut pd = c2.nodes[pidx].d.clone();
    c2.nodes[pidx].remove_pri(&mut pd, &inst);
    c2.nodes[pidx].d = pd;
    c2.nodes[pidx].plist.retain(|&i| i != idx);
    let mut inst2 = inst.clone();
    inst2.template = crate::types::DiskTemplate::Drbd;
    let gdx = c2.nodes[pidx].group;
    let stats = Stats::new(c2.nodes.iter());
    let mut sol = AllocSolution::empty();
    let pol = &c2.groups[gdx].ipolicy;
    for s in (0..c2.nodes.len()).filter(|&s| s != pidx && c2.nodes[s].group == gdx) {
        let r = inst2
            .matches_policy(pol, c2.nodes[pidx].excl_storage)
            .and_then(|_| c2.eval_place(&inst2, pidx, Some(s), opts.ignore_soft_errors));
        match r {
            Err(f) => sol.failures.push(f),
            Ok(nodes) => {
                sol.allocs += 1;
                let sc = c2.score_overlay(&stats, &nodes, &|_| true);
                if better(sc, sol.best.as_ref().map(|b| b.0)) {
                    sol.best = Some((sc, pidx, Some(s), nodes));
                }
            }
        }
    }
    let info = sol.describe(&c2);
    match sol.best {
        Some((_, _, Some(s), nodes)) => {
            for (n, d) in nodes {
                c2.nodes[n].d = d;
            }
            c2.nodes[pidx].plist.push(idx);
            c2.nodes[s].slist.push(idx);
            c2.instances[idx] = inst2;
            c2.instances[idx].snode = Some(s);
            c2.instances[idx].location_score = c2.instance_location_score(pidx, Some(s));
            *c = c2;
            Ok((info, s))
        }
        _ => Err(info),
    }
}
