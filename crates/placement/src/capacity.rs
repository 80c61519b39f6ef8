//! Capacity planning (hspace's job): how many more instances of a fixed
//! spec fit (standard allocation), or of a shrinking spec (tiered
//! allocation); plus htools' `--simulate` cluster generator.
//!
//! Each step is one allocation over all allocable nodes with incremental
//! scoring, like hspace without its global N+1 capacity check
//! (`--no-capacity-checks`).

use crate::alloc::{commit_alloc, try_alloc, AllocOptions};
use crate::model::*;
use crate::score::Stats;
use crate::types::*;

/// A resource spec (memory MiB, disk MiB, cpus, spindles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub mem: i64,
    pub disk: i64,
    pub cpu: i64,
    pub spindles: i64,
}

/// Parse a size with an optional unit (m, g, t binary; M, G, T SI),
/// returning MiB (htools' `parseUnit`).
pub fn parse_unit(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| Error::Parse(format!("cannot parse size '{s}'")))?;
    let mib = match unit {
        "" | "m" | "mib" | "MiB" => v,
        "g" | "gib" | "GiB" => v * 1024.0,
        "t" | "tib" | "TiB" => v * 1024.0 * 1024.0,
        "M" | "MB" => v * 1e6 / 1048576.0,
        "G" | "GB" => v * 1e9 / 1048576.0,
        "T" | "TB" => v * 1e12 / 1048576.0,
        _ => return Err(Error::Parse(format!("unknown unit in '{s}'"))),
    };
    Ok(mib as i64)
}

/// Parse `DISK,MEM,CPU[,SPINDLES]` (hspace's `--standard-alloc` order).
pub fn parse_spec(s: &str) -> Result<Spec> {
    let f: Vec<&str> = s.split(',').collect();
    if f.len() < 3 || f.len() > 4 {
        return Err(Error::Parse(format!(
            "invalid spec '{s}', expected DISK,MEM,CPU[,SPINDLES]"
        )));
    }
    Ok(Spec {
        disk: parse_unit(f[0])?,
        mem: parse_unit(f[1])?,
        cpu: parse_int("cpu count", f[2])?,
        spindles: match f.get(3) {
            Some(x) => parse_int("spindles", x)?,
            None => 1,
        },
    })
}

/// Build a simulated cluster (htools' `--simulate`), one group per
/// description `POLICY,NODES,DISK,MEM,CPU[,SPINDLES[,EXCL_STORAGE]]`.
pub fn simulate(descs: &[String]) -> Result<Cluster> {
    let mut groups = vec![];
    let mut nodes = vec![];
    for (gi, d) in descs.iter().enumerate() {
        let f: Vec<&str> = d.split(',').collect();
        if f.len() < 5 || f.len() > 7 {
            return Err(Error::Parse(format!("invalid cluster specification '{d}'")));
        }
        let pol = AllocPolicy::from_raw(f[0])?;
        let count = parse_int("node count", f[1])?;
        let disk = parse_unit(f[2])?;
        let mem = parse_unit(f[3])?;
        let cpu = parse_int("cpu count", f[4])?;
        let spindles = match f.get(5) {
            Some(x) => parse_int("spindles", x)?,
            None => 1,
        };
        let excl = matches!(f.get(6), Some(&"True") | Some(&"true"));
        let g = gi + 1;
        groups.push(Group {
            name: format!("group-{g:02}"),
            uuid: format!("fake-uuid-{g:02}"),
            alloc_policy: pol,
            tags: vec![],
            networks: vec![],
            ipolicy: IPolicy::default(),
        });
        for k in 1..=count {
            let mut n = Node::new(
                &format!("node-{g:02}-{k:03}"),
                mem as f64,
                0,
                mem,
                disk as f64,
                disk,
                cpu as f64,
                1,
                false,
                spindles,
                0,
                gi,
                excl,
            );
            n.master = g == 1 && k == 1;
            nodes.push(n);
        }
    }
    let mut c = Cluster {
        groups,
        nodes,
        instances: vec![],
        tags: vec![],
        ipolicy: IPolicy::default(),
    };
    c.finalize(&LoadOptions::default())?;
    Ok(c)
}

/// The instance hspace allocates for a spec.
pub fn inst_from_spec(spec: &Spec, template: DiskTemplate, spindle_use: i64) -> Instance {
    Instance::new(
        "new",
        spec.mem,
        spec.disk,
        vec![Disk {
            size: spec.disk,
            spindles: Some(spec.spindles),
        }],
        spec.cpu,
        InstanceStatus::Running,
        vec![],
        true,
        template,
        spindle_use,
        false,
    )
}

/// Failure counts in htools order (all modes, zeros included).
pub type FailStats = Vec<(FailMode, usize)>;

fn collapse(f: &crate::alloc::Failures) -> FailStats {
    FailMode::ALL.iter().map(|m| (*m, f.count(*m))).collect()
}

/// Allocation candidates: online nodes of allocable groups.
pub fn alloc_nodes(c: &Cluster) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|&i| !c.nodes[i].offline && c.groups[c.nodes[i].group].alloc_policy.is_allocable())
        .collect()
}

/// Result of a capacity run.
#[derive(Debug, Clone)]
pub struct CapacityResult {
    /// Instances placed, per spec (in allocation order).
    pub specs: Vec<(Spec, usize)>,
    /// Failure statistics of the last (failed) allocation attempt.
    pub failures: FailStats,
    pub cluster: Cluster,
}

impl CapacityResult {
    pub fn count(&self) -> usize {
        self.specs.iter().map(|s| s.1).sum()
    }
    /// Most likely failure reason (most frequent failure).
    pub fn fail_reason(&self) -> Option<FailMode> {
        let mut v = self.failures.clone();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v.first().map(|x| x.0)
    }
}

/// Place copies of `inst` until allocation fails (or `limit` reached);
/// returns (number placed, failure stats of the failed attempt).
pub fn iterate_alloc(
    c: &mut Cluster,
    inst: &Instance,
    limit: Option<usize>,
    opts: &AllocOptions,
) -> std::result::Result<(usize, FailStats), String> {
    let required = inst.template.required_nodes();
    let cands = alloc_nodes(c);
    let mut placed = 0;
    loop {
        let mut i = inst.clone();
        i.name = format!("new-{}", c.instances.len());
        let stats = Stats::new(c.nodes.iter());
        let sol = try_alloc(c, &stats, &i, &cands, required, opts)?;
        let fails = collapse(&sol.failures);
        if sol.best.is_none() || limit == Some(placed) {
            return Ok((placed, fails));
        }
        commit_alloc(c, &i, &sol);
        placed += 1;
    }
}

fn shrink(inst: &Instance, fm: FailMode) -> Option<Instance> {
    const UNIT_MEM: i64 = 64;
    const UNIT_DSK: i64 = 256;
    const UNIT_CPU: i64 = 1;
    let mut i = inst.clone();
    match fm {
        FailMode::FailMem => {
            let v = i.mem - UNIT_MEM;
            if v < UNIT_MEM {
                return None;
            }
            i.mem = v;
        }
        FailMode::FailDisk => {
            let n = i.disks.len() as i64;
            for d in i.disks.iter_mut() {
                d.size -= UNIT_DSK;
            }
            if i.disks.iter().any(|d| d.size < UNIT_DSK) {
                return None;
            }
            i.dsk -= n * UNIT_DSK;
        }
        FailMode::FailCPU => {
            let v = i.vcpus - UNIT_CPU;
            if v < UNIT_CPU {
                return None;
            }
            i.vcpus = v;
        }
        FailMode::FailSpindles => {
            if i.disks.len() != 1 {
                return None;
            }
            let sp = i.disks[0].spindles? - 1;
            if sp < 1 {
                return None;
            }
            i.disks[0].spindles = Some(sp);
        }
        _ => return None,
    }
    Some(i)
}

fn spec_of(i: &Instance) -> Spec {
    Spec {
        mem: i.mem,
        disk: i.dsk,
        cpu: i.vcpus,
        spindles: match i.disks.as_slice() {
            [d] => d.spindles.unwrap_or(0),
            _ => 0,
        },
    }
}

/// Standard allocation (hspace `--standard-alloc`).
pub fn standard(
    c: &Cluster,
    inst: &Instance,
    limit: Option<usize>,
    opts: &AllocOptions,
) -> std::result::Result<CapacityResult, String> {
    let mut c = c.clone();
    let (n, failures) = iterate_alloc(&mut c, inst, limit, opts)?;
    Ok(CapacityResult {
        specs: vec![(spec_of(inst), n)],
        failures,
        cluster: c,
    })
}

/// One trial allocation of a spec on a fixed cluster state: whether it
/// fits and its raw failure list. Cached per spec while the tiered search
/// looks for the next spec (the cluster does not change meanwhile).
struct Trials<'a> {
    c: &'a Cluster,
    opts: &'a AllocOptions,
    cands: Vec<usize>,
    stats: Stats,
    cache: std::collections::HashMap<SpecKey, (bool, crate::alloc::Failures)>,
}

impl<'a> Trials<'a> {
    fn new(c: &'a Cluster, opts: &'a AllocOptions) -> Self {
        Trials {
            c,
            opts,
            cands: alloc_nodes(c),
            stats: Stats::new(c.nodes.iter()),
            cache: Default::default(),
        }
    }
    fn get(&mut self, i: &Instance) -> std::result::Result<(bool, crate::alloc::Failures), String> {
        let key = spec_key(i);
        if let Some(r) = self.cache.get(&key) {
            return Ok(*r);
        }
        let sol = try_alloc(
            self.c,
            &self.stats,
            i,
            &self.cands,
            i.template.required_nodes(),
            self.opts,
        )?;
        let r = (sol.best.is_some(), sol.failures);
        self.cache.insert(key, r);
        Ok(r)
    }
}

/// Failure modes by ascending count, stable (htools' `sortBy (comparing snd)`).
fn sorted_modes(f: &FailStats) -> Vec<FailMode> {
    let mut v = f.clone();
    v.sort_by_key(|x| x.1);
    v.into_iter().map(|x| x.0).collect()
}

type SpecKey = (i64, i64, i64, i64);

fn spec_key(i: &Instance) -> SpecKey {
    let s = spec_of(i);
    (s.mem, s.disk, s.cpu, s.spindles)
}

/// htools' `sufficesShrinking`: shrink `inst` along `fm` (starting with
/// `inst` itself) while `fm` is among the failures, until a spec fits.
/// The walk from a spec along `fm` is deterministic, so its answer is
/// remembered for every spec passed (the unwinding walks overlap).
fn suffices_shrinking(
    t: &mut Trials,
    memo: &mut std::collections::HashMap<(SpecKey, FailMode), Option<Instance>>,
    inst: &Instance,
    fm: FailMode,
) -> std::result::Result<Option<Instance>, String> {
    let mut cur = inst.clone();
    let mut path: Vec<SpecKey> = vec![];
    let ans = loop {
        let key = spec_key(&cur);
        if let Some(r) = memo.get(&(key, fm)) {
            break r.clone();
        }
        path.push(key);
        let (ok, fails) = t.get(&cur)?;
        if ok {
            break Some(cur);
        }
        if !fails.contains(&fm) {
            break None;
        }
        match shrink(&cur, fm) {
            Some(n) => cur = n,
            None => break None,
        }
    };
    for k in path {
        memo.insert((k, fm), ans.clone());
    }
    Ok(ans)
}

/// Tiered allocation (hspace `--tiered-alloc`, htools' `tieredAlloc`):
/// allocate the spec until it fails, then continue with a smaller spec.
///
/// htools recurses: it first shrinks the spec by one unit of its most
/// frequent failure and recurses (where the shrunk spec's own failures
/// choose the next unit, and so on down to the smallest spec); if nothing
/// below fits, each spec of that chain, the smallest first, tries its "big
/// steps" (`sufficesShrinking` along each failure mode, most frequent
/// first). This is the same search without the recursion: the chain of
/// one-unit shrinks, then the big steps unwinding from its end; the first
/// spec that fits is where the allocation continues.
pub fn tiered(
    c: &Cluster,
    inst: &Instance,
    limit: Option<usize>,
    opts: &AllocOptions,
) -> std::result::Result<CapacityResult, String> {
    let mut c = c.clone();
    let mut specs: Vec<(Spec, usize)> = vec![];
    let mut cur = inst.clone();
    let mut failures;
    let mut remaining = limit;
    loop {
        let (n, fails) = iterate_alloc(&mut c, &cur, remaining, opts)?;
        failures = fails;
        if n > 0 {
            match specs.last_mut() {
                Some(last) if last.0 == spec_of(&cur) => last.1 += n,
                _ => specs.push((spec_of(&cur), n)),
            }
        }
        if let Some(r) = remaining.as_mut() {
            *r = r.saturating_sub(n);
            if *r == 0 {
                break;
            }
        }
        let mut t = Trials::new(&c, opts);
        // the chain of one-unit shrinks along the most frequent failure
        let mut chain: Vec<(Instance, Vec<FailMode>)> =
            vec![(cur.clone(), sorted_modes(&failures))];
        let mut next = None;
        loop {
            let (last, modes) = &chain[chain.len() - 1];
            let Some(fm) = modes.last() else { break };
            let Some(i2) = shrink(last, *fm) else { break };
            let (ok, fails) = t.get(&i2)?;
            if ok {
                next = Some(i2);
                break;
            }
            let modes = sorted_modes(&collapse(&fails));
            chain.push((i2, modes));
        }
        if next.is_none() {
            let mut memo = Default::default();
            'unwind: for (i, modes) in chain.iter().rev() {
                for fm in modes.iter().rev() {
                    if let Some(i3) = suffices_shrinking(&mut t, &mut memo, i, *fm)? {
                        next = Some(i3);
                        break 'unwind;
                    }
                }
            }
        }
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    Ok(CapacityResult {
        specs,
        failures,
        cluster: c,
    })
}

/// htools' global N+1 predicate (`GlobalN1.redundant`): for every node
/// (of the groups selected by `in_scope`), fail over all its DRBD
/// primaries to their secondaries, move its shared-storage instances and
/// re-create its other instances elsewhere in its group; the cluster is
/// redundant if that is possible for every node. The simulation for one
/// node works on an overlay of node states and never clones the cluster.
pub fn redundant(c: &Cluster, in_scope: &dyn Fn(usize) -> bool) -> bool {
    use crate::moves::merge_overlay;
    use crate::score::{node_vals, node_vals_st};
    let stats = Stats::new(c.nodes.iter());
    let vals: Vec<crate::score::NodeVals> = c.nodes.iter().map(|n| node_vals(n, &n.d)).collect();
    (0..c.nodes.len()).filter(|&n| in_scope(n)).all(|n| {
        let node = &c.nodes[n];
        let mut ov: Vec<(usize, crate::model::NodeDyn)> = vec![];
        let mut shared = vec![];
        let mut others = vec![];
        for &i in &node.plist {
            let inst = &c.instances[i];
            match inst.template {
                DiskTemplate::Drbd => {
                    let Ok(out) = c.eval_move_ov(&ov, inst, i, IMove::Failover, true) else {
                        return false;
                    };
                    merge_overlay(&mut ov, out.nodes);
                }
                t if t.mirror_type() == MirrorType::External => shared.push(i),
                _ => others.push(i),
            }
        }
        let escape: Vec<usize> = (0..c.nodes.len())
            .filter(|&t| t != n && c.nodes[t].group == node.group)
            .collect();
        let dyn_of = |ov: &Vec<(usize, crate::model::NodeDyn)>, t: usize| {
            ov.iter()
                .find(|(k, _)| *k == t)
                .map(|x| x.1.clone())
                .unwrap_or_else(|| c.nodes[t].d.clone())
        };
        // shared storage: move the primary to the best escape node
        for i in shared {
            let inst = &c.instances[i];
            let mut best: Option<(f64, crate::moves::MoveOutcome)> = None;
            for &t in &escape {
                if let Ok(out) = c.eval_move_ov(&ov, inst, i, IMove::FailoverToAny(t), true) {
                    let mut ov2 = ov.clone();
                    merge_overlay(&mut ov2, out.nodes.clone());
                    let sc = c.score_overlay(&stats, &ov2, &|_| true);
                    if best.as_ref().is_none_or(|b| b.0 >= sc) {
                        best = Some((sc, out));
                    }
                }
            }
            match best {
                Some((_, out)) => merge_overlay(&mut ov, out.nodes),
                None => return false,
            }
        }
        // other instances: re-create, biggest memory first
        others.sort_by_key(|&i| std::cmp::Reverse(c.instances[i].mem));
        for i in others {
            let inst = &c.instances[i];
            let mut base = stats.acc();
            for (k, d) in &ov {
                stats.acc_apply(&mut base, &vals[*k], &node_vals(&c.nodes[*k], d));
            }
            let mut best: Option<(f64, usize, crate::model::NodeDyn)> = None;
            for &t in &escape {
                let tn = &c.nodes[t];
                let cur = dyn_of(&ov, t);
                let Ok(st) = tn.add_pri_state(&cur, inst, true) else {
                    continue;
                };
                let mut a = base;
                stats.acc_apply(&mut a, &node_vals(tn, &cur), &node_vals_st(tn, &st));
                let sc = stats.acc_score(&a);
                if best.as_ref().is_none_or(|b| b.0 >= sc) {
                    let mut d = cur;
                    if tn.add_pri(&mut d, inst, true).is_ok() {
                        best = Some((sc, t, d));
                    }
                }
            }
            match best {
                Some((_, t, d)) => merge_overlay(&mut ov, vec![(t, d)]),
                None => return false,
            }
        }
        true
    })
}
