//! Node evacuation, relocation, group change and secondary allocation
//! (htools' `Cluster/Evacuate.hs`).

use super::*;

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
pub(crate) const NEAR_TIE: f64 = 1e-9;

/// The score of group `gdx` with `ov` applied, computed exactly as htools
/// does (full two-pass, htools' summation order), for breaking near-ties.
pub(crate) fn exact_group_score(c: &Cluster, ov: &[(usize, NodeDyn)], gdx: usize) -> f64 {
    exact_scope_score(c, ov, Some(gdx))
}

/// Exact htools score of the scope (a group, or the whole cluster).
pub(crate) fn exact_scope_score(c: &Cluster, ov: &[(usize, NodeDyn)], scope: Option<usize>) -> f64 {
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
    let near = cands.iter().filter(|x| x.0 <= best + NEAR_TIE).count();
    let xs = (near > 1).then(|| crate::score::ExactScorer::new(&c.nodes, Some(gdx)));
    for (k, (sc, ov)) in cands.iter().enumerate() {
        if *sc > best + NEAR_TIE {
            continue;
        }
        let ex = xs
            .as_ref()
            .and_then(|x| x.score(&c.nodes, ov))
            .unwrap_or_else(|| exact_group_score(c, ov, gdx));
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
    // per new primary: r:p then f (independent of s); the instance's new
    // placement is kept as (primary, secondary, location score)
    type Pl = (usize, Option<usize>, i64);
    let at = |pl: &Pl| -> Instance {
        let mut i = i0.clone();
        (i.pnode, i.snode, i.location_score) = *pl;
        i
    };
    let per_p: Vec<(
        usize,
        std::result::Result<(Vec<(usize, NodeDyn)>, Pl), String>,
    )> = avail
        .par_iter()
        .map_init(
            || i0.clone(),
            |i1, &p| {
                (i1.pnode, i1.snode, i1.location_score) = (i0.pnode, i0.snode, i0.location_score);
                let mut ov = ov0.clone();
                let r = chain(c, &mut ov, i1, idx, IMove::ReplaceSecondary(p), force)
                    .map_err(|f| format!("Changing secondary to new primary: {f:?}"))
                    .and_then(|_| {
                        chain(c, &mut ov, i1, idx, IMove::Failover, force)
                            .map_err(|f| format!("Failing over to new primary: {f:?}"))
                    })
                    .map(|_| (ov, (i1.pnode, i1.snode, i1.location_score)));
                (p, r)
            },
        )
        .collect();
    type Best = (f64, usize, Vec<(usize, NodeDyn)>, Instance);
    // Secondary side, computed once: the new secondary's state depends on
    // the new primary only through the memory it already mirrors for it
    // (nodes with such a peer are evaluated per pair). `force_s`: the old
    // secondary after `r:p, f` is the current primary.
    let pos_of: std::collections::HashMap<usize, usize> =
        avail.iter().enumerate().map(|(k, &s)| (s, k)).collect();
    let force_s0 = c.nodes[i0.pnode].offline || force;
    let base = stats.acc();
    let g_base = stats.score_changes(&base, &[]);
    let mut cb = crate::score::ChangeBounds::default();
    // (position in avail, node, new vals or failure, old vals, effect on the base score)
    type SecPre = (
        usize,
        usize,
        std::result::Result<crate::score::NodeVals, FailMode>,
        crate::score::NodeVals,
        f64,
    );
    let pre: Vec<SecPre> = if fast_ok {
        avail
            .par_iter()
            .enumerate()
            .map(|(k, &s)| {
                let sn = &c.nodes[s];
                let old = node_vals(sn, &sn.d);
                let r = sn
                    .add_sec_state_peer(&sn.d, &i0, 0, force_s0, false)
                    .map(|(st, _)| node_vals_st(sn, &st));
                let e = match &r {
                    Ok(nv) if in_group(s) => stats.score_changes(&base, &[(&old, nv)]) - g_base,
                    _ => 0.0,
                };
                (k, s, r, old, e)
            })
            .collect()
    } else {
        vec![]
    };
    for (_, s, r, old, _) in &pre {
        if let (Ok(nv), true) = (r, in_group(*s)) {
            cb.widen(stats, &base, old, nv);
        }
    }
    // valid secondaries by effect on the base score
    let mut order: Vec<usize> = (0..pre.len()).filter(|&k| pre[k].2.is_ok()).collect();
    order.sort_by(|&a, &b| pre[a].4.total_cmp(&pre[b].4).then(a.cmp(&b)));
    let invalid: Vec<usize> = (0..pre.len()).filter(|&k| pre[k].2.is_err()).collect();
    // candidates of one primary: (score, secondary, materialised move or
    // None for a fast-path candidate, built only if it can still win)
    type Cand = (f64, usize, Option<(Vec<(usize, NodeDyn)>, Instance)>);
    let bests: Vec<(Vec<Cand>, Option<String>)> = per_p
        .par_iter()
        .map(|(p, r)| {
            let mut best: Option<Best> = None;
            let mut err = None;
            // fast path: only the new secondary changes per candidate
            let fast = match r {
                Ok((ov, pl)) if fast_ok => {
                    let old_s = pl.1;
                    let mut ov3 = ov.clone();
                    match old_s {
                        Some(os) => {
                            let node = &c.nodes[os];
                            let mut d = ov3
                                .iter()
                                .find(|(k, _)| *k == os)
                                .map(|x| x.1.clone())
                                .unwrap_or_else(|| node.d.clone());
                            node.remove_sec(&mut d, &i0, pl.0);
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
            if let (Some((a0, ov3, force_s)), Ok((ov, pl))) = (&fast, r) {
                // Secondaries needing an exact per-pair evaluation: those in
                // the overlay (slow path below) and those mirroring memory
                // for p; the others come from `pre`, best first, until the
                // lower bound shows none can be within NEAR_TIE of the best.
                let in_ov = |s: usize| ov3.iter().any(|(k, _)| *k == s);
                // nodes mirroring memory for p: secondaries of p's primaries
                let mut specials: Vec<(usize, usize)> = c.nodes[*p]
                    .plist
                    .iter()
                    .filter_map(|&i| c.instances[i].snode)
                    .chain(ov3.iter().map(|x| x.0))
                    .filter(|&s| s != *p && (in_ov(s) || c.nodes[s].d.peer(*p) != 0))
                    .filter_map(|s| pos_of.get(&s).map(|&k| (k, s)))
                    .collect();
                specials.sort_unstable();
                specials.dedup();
                let special = |s: usize| s == *p || specials.iter().any(|x| x.1 == s);
                let mut found: Vec<(usize, f64, usize)> = vec![];
                let mut fail_at: Option<(usize, String)> = None;
                let note_fail = |fail_at: &mut Option<(usize, String)>, k: usize, m: String| {
                    if fail_at.as_ref().is_none_or(|x| x.0 < k) {
                        *fail_at = Some((k, m));
                    }
                };
                for &(k, s) in &specials {
                    if ov3.iter().any(|(x, _)| *x == s) {
                        let mut ov = ov.clone();
                        let mut i2 = at(pl);
                        match chain(c, &mut ov, &mut i2, idx, IMove::ReplaceSecondary(s), force) {
                            Err(f) => note_fail(
                                &mut fail_at,
                                k,
                                format!("Changing secondary to final secondary: {f:?}"),
                            ),
                            Ok(()) => {
                                let sc = c.score_overlay(stats, &ov, &in_group);
                                if best.as_ref().is_none_or(|b| b.0 >= sc) {
                                    best = Some((sc, s, ov, i2));
                                }
                            }
                        }
                        continue;
                    }
                    let sn = &c.nodes[s];
                    match sn.add_sec_state(&sn.d, &i0, *p, *force_s, false) {
                        Err(f) => note_fail(
                            &mut fail_at,
                            k,
                            format!("Changing secondary to final secondary: {f:?}"),
                        ),
                        Ok((st, _)) => {
                            let sc = if in_group(s) {
                                let (o, n) = (node_vals(sn, &sn.d), node_vals_st(sn, &st));
                                stats.score_changes(a0, &[(&o, &n)])
                            } else {
                                stats.score_changes(a0, &[])
                            };
                            found.push((k, sc, s));
                        }
                    }
                }
                if let Some(&k) = invalid.iter().rev().find(|&&k| !special(pre[k].1)) {
                    if let Err(f) = &pre[k].2 {
                        note_fail(
                            &mut fail_at,
                            k,
                            format!("Changing secondary to final secondary: {f:?}"),
                        );
                    }
                }
                let g_p = stats.score_changes(a0, &[]);
                let slack = crate::score::pair_bound_slack(g_p);
                let bound = stats.pair_bound(&base, a0, &cb) + slack;
                let mut cur = found
                    .iter()
                    .map(|x| x.1)
                    .chain(best.as_ref().map(|b| b.0))
                    .fold(f64::INFINITY, f64::min);
                for &k in &order {
                    let (_, s, ref nv, ref old, e) = pre[k];
                    if g_p + e - bound > cur + NEAR_TIE {
                        break;
                    }
                    if special(s) {
                        continue;
                    }
                    let Ok(nv) = nv else { continue };
                    let sc = if in_group(s) {
                        stats.score_changes(a0, &[(old, nv)])
                    } else {
                        stats.score_changes(a0, &[])
                    };
                    cur = cur.min(sc);
                    found.push((k, sc, s));
                }
                let pmin = found.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
                found.retain(|x| x.1 <= pmin + NEAR_TIE);
                found.sort_by_key(|x| x.0);
                let mut list: Vec<Cand> = best
                    .into_iter()
                    .map(|(sc, s, ov, i2)| (sc, s, Some((ov, i2))))
                    .collect();
                list.extend(found.into_iter().map(|(_, sc, s)| (sc, s, None)));
                return (list, fail_at.map(|x| x.1));
            }
            if let Err(e) = r {
                // every pair with this primary fails the same way
                let any_s = avail.iter().any(|&s| s != *p);
                return (vec![], any_s.then(|| e.clone()));
            }
            for &s in avail.iter() {
                if s == *p {
                    continue;
                }
                match r {
                    Err(_) => {}
                    Ok((ov, pl)) => {
                        let mut ov = ov.clone();
                        let mut i2 = at(pl);
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
            (
                best.into_iter()
                    .map(|(sc, s, ov, i2)| (sc, s, Some((ov, i2))))
                    .collect(),
                err,
            )
        })
        .collect();
    let mut last_err = "no nodes available".to_string();
    let mut any = false;
    for (b, e) in &bests {
        if let (false, Some(e)) = (any, e) {
            last_err = format!("Allocation failed: {e}");
        }
        any |= !b.is_empty();
    }
    // only candidates within NEAR_TIE of the best can be picked
    let gmin = bests
        .iter()
        .flat_map(|b| b.0.iter().map(|x| x.0))
        .fold(f64::INFINITY, f64::min);
    let mut all: Vec<Best> = vec![];
    for ((_, r), (b, _)) in per_p.iter().zip(bests) {
        for (sc, s, m) in b {
            if sc > gmin + NEAR_TIE {
                continue;
            }
            match (m, r) {
                (Some((ov, i2)), _) => all.push((sc, s, ov, i2)),
                (None, Ok((ov, pl))) => {
                    let mut ov = ov.clone();
                    let mut i2 = at(pl);
                    if chain(c, &mut ov, &mut i2, idx, IMove::ReplaceSecondary(s), force).is_ok() {
                        all.push((sc, s, ov, i2));
                    }
                }
                (None, Err(_)) => {}
            }
        }
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
    let local = || {
        if mode == EvacMode::SecondaryOnly {
            return Err(format!(
                "Instances with disk template '{}' have no secondary",
                inst.template.to_raw()
            ));
        }
        evac_one_node_as(c, stats, idx, gdx, avail, force, true)
    };
    match inst.template {
        Plain | File if !local_migrates => Err(format!(
            "Instances of type {} cannot be relocated",
            inst.template.to_raw()
        )),
        // Maguey: live migration copies local disks (their space counted on the target); a
        // diskless instance moves anywhere.
        Plain | File => local(),
        Diskless if local_migrates => local(),
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
            // An instance the evacuation refuses whatever the group (local disks that do
            // not migrate): only whether some group could take it matters.
            let refused = matches!(
                inst.template,
                crate::types::DiskTemplate::Plain | crate::types::DiskTemplate::File
            ) && !opts.local_storage_migrates;
            let ga = super::find_best_alloc_group_with(
                c,
                &stats,
                Some(&target_g),
                &inst,
                inst.template.required_nodes(),
                opts,
                !refused,
            )?;
            let gdx = ga.group;
            let avail: Vec<usize> = (0..c.nodes.len())
                .filter(|&n| c.nodes[n].group == gdx && !c.nodes[n].offline)
                .collect();
            let gstats = Stats::new(c.nodes.iter().filter(|n| n.group == gdx));
            node_evac_instance(
                c,
                &gstats,
                idx,
                EvacMode::All,
                gdx,
                &avail,
                false,
                opts.local_storage_migrates,
            )
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
