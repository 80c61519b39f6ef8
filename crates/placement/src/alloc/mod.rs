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
    /// Maguey: instances on local `file` and `plain` disks can move to any node (live
    /// migration copies their disks; `plain` ones need the space in the target's volume
    /// group), so node evacuation relocates them like shared-storage instances.
    /// Off by default, as in hail (where they cannot be relocated).
    pub local_storage_migrates: bool,
}

/// Failures counted per mode (htools keeps the list; only the counts are read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures([usize; 9]);

impl Failures {
    pub fn push(&mut self, f: FailMode) {
        self.0[f as usize] += 1;
    }
    /// `n` failures of mode `f`.
    pub fn add(&mut self, f: FailMode, n: usize) {
        self.0[f as usize] += n;
    }
    pub fn merge(&mut self, o: &Failures) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }
    pub fn count(&self, f: FailMode) -> usize {
        self.0[f as usize]
    }
    pub fn len(&self) -> usize {
        self.0.iter().sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn contains(&self, f: &FailMode) -> bool {
        self.count(*f) > 0
    }
}

/// Best placement found for one instance in one group.
#[derive(Debug, Clone)]
pub struct AllocSolution {
    pub failures: Failures,
    pub allocs: usize,
    /// (score, primary, secondary, new node states)
    pub best: Option<(f64, usize, Option<usize>, Vec<(usize, NodeDyn)>)>,
}

impl AllocSolution {
    fn empty() -> Self {
        AllocSolution {
            failures: Failures::default(),
            allocs: 0,
            best: None,
        }
    }
    /// Failure counts in htools' order, only non-zero ones.
    pub fn failure_counts(&self) -> Vec<(FailMode, usize)> {
        FailMode::ALL
            .iter()
            .map(|f| (*f, self.failures.count(*f)))
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
    try_alloc_with(c, stats, inst, cands, required, opts, &AllocCtx::new(true))
}

/// What the allocations of one instance with the same statistics share (one per group
/// when the group is chosen): whether near-ties are re-scored, htools' statistics for that.
pub(crate) struct AllocCtx {
    tie_break: bool,
    hstats: std::cell::OnceCell<crate::score::HStats>,
}

impl AllocCtx {
    pub(crate) fn new(tie_break: bool) -> Self {
        AllocCtx {
            tie_break,
            hstats: std::cell::OnceCell::new(),
        }
    }
}

/// [`try_alloc`]; without `tie_break` the near-ties of a single-node allocation are not
/// re-scored in full (the caller only reads whether there is a solution and the counts).
fn try_alloc_with(
    c: &Cluster,
    stats: &Stats,
    inst: &Instance,
    cands: &[usize],
    required: usize,
    opts: &AllocOptions,
    ctx: &AllocCtx,
) -> std::result::Result<AllocSolution, String> {
    let tie_break = ctx.tie_break;
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
            if ties.len() > 1 && tie_break {
                let xs = crate::score::ExactScorer::new(&c.nodes, stats.scope);
                for (k, (_, _, nodes)) in ties.iter().enumerate() {
                    let ex = xs
                        .score(&c.nodes, nodes)
                        .unwrap_or_else(|| exact_scope_score(c, nodes, stats.scope));
                    if pick.is_none_or(|p| p.0 >= ex) {
                        pick = Some((ex, k));
                    }
                }
            } else if !ties.is_empty() {
                pick = Some((0.0, ties.len() - 1));
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
                return Ok(try_alloc_pairs_fast(
                    c, stats, inst, cands, &pairs, opts, ctx,
                ));
            }
            let per_p: Vec<AllocSolution> = pairs
                .par_iter()
                .map(|&p| {
                    let mut sol = AllocSolution::empty();
                    let ss: Vec<usize> = cands
                        .iter()
                        .copied()
                        .filter(|&s| s != p && c.nodes[s].group == c.nodes[p].group)
                        .filter(|&s| !c.location_forbids(p, Some(s)))
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
                sol.failures.merge(&ps.failures);
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
    find_best_alloc_group_with(c, stats, allowed, inst, required, opts, true)
}

/// [`find_best_alloc_group`]; without `tie_break` (see [`try_alloc_with`]) the chosen group
/// and node may differ among near-ties: for callers that only read whether one exists.
pub(crate) fn find_best_alloc_group_with(
    c: &Cluster,
    stats: &Stats,
    allowed: Option<&[usize]>,
    inst: &Instance,
    required: usize,
    opts: &AllocOptions,
    tie_break: bool,
) -> std::result::Result<GroupAlloc, String> {
    let groups: Vec<usize> = c
        .nodes_by_group()
        .into_iter()
        .map(|(g, _)| g)
        .filter(|g| allowed.is_none_or(|a| a.contains(g)))
        .collect();
    let mut msgs = vec![];
    let mut good: Vec<(usize, AllocSolution)> = vec![];
    let ctx = AllocCtx::new(tie_break);
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
        match try_alloc_with(c, stats, inst, &cands, required, opts, &ctx) {
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

mod evac;
mod pairs;
pub use evac::*;
use pairs::try_alloc_pairs_fast;
