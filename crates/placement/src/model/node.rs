//! A node of the placement model and its htools bookkeeping (`Node.hs`).

use super::*;

/// The mutable (per-placement) state of a node, all scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeState {
    pub i_mem: i64,
    pub f_mem_forth: i64,
    pub f_dsk: i64,
    pub f_dsk_forth: i64,
    pub u_cpu: i64,
    pub u_cpu_forth: i64,
    pub f_spindles: i64,
    pub f_spindles_forth: i64,
    pub inst_spindles: f64,
    pub inst_spindles_forth: f64,
    /// Number of (non-forthcoming) primary / secondary instances.
    pub n_pri: i64,
    pub n_sec: i64,
    pub r_mem: i64,
    pub fail_n1: bool,
    pub util: DynUtil,
    /// Sum of exclusion-tag counts minus number of distinct tags.
    pub pri_conflicts: i64,
    pub location_score: i64,
}

/// The dynamic part of a node: scalar state plus the small maps htools keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDyn {
    pub st: NodeState,
    /// Primary node index -> memory mirrored here (sorted by key).
    pub peers: Vec<(usize, i64)>,
    /// Exclusion tags of primary instances and their counts.
    pub p_tags: BTreeMap<String, i64>,
    /// (location tag, exclusion tag) -> count of primaries.
    pub inst_map: BTreeMap<(String, String), i64>,
}

impl NodeDyn {
    pub fn peer(&self, pdx: usize) -> i64 {
        match self.peers.binary_search_by_key(&pdx, |p| p.0) {
            Ok(i) => self.peers[i].1,
            Err(_) => 0,
        }
    }
    fn set_peer(&mut self, pdx: usize, v: i64) {
        match self.peers.binary_search_by_key(&pdx, |p| p.0) {
            Ok(i) => self.peers[i].1 = v,
            Err(i) => self.peers.insert(i, (pdx, v)),
        }
    }
    fn remove_peer(&mut self, pdx: usize) {
        if let Ok(i) = self.peers.binary_search_by_key(&pdx, |p| p.0) {
            self.peers.remove(i);
        }
    }
    pub(crate) fn max_peer(&self) -> i64 {
        self.peers.iter().map(|p| p.1).max().unwrap_or(0).max(0)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub t_mem: f64,
    pub n_mem: i64,
    /// Free memory as reported by the node (state of world).
    pub f_mem: i64,
    /// Unaccounted memory (computed after loading).
    pub x_mem: i64,
    pub t_dsk: f64,
    pub t_cpu: f64,
    pub n_cpu: i64,
    pub cpu_speed: f64,
    pub t_spindles: i64,
    /// Offline (or drained, for iallocator input): never a target, skipped in scores.
    pub offline: bool,
    pub drained: bool,
    pub master: bool,
    pub tags: Vec<String>,
    pub group: usize,
    pub excl_storage: bool,
    pub lo_dsk: i64,
    pub hi_cpu: i64,
    pub hi_spindles: f64,
    pub vcpu_ratio: f64,
    pub util_pool: DynUtil,
    pub location_tags: BTreeSet<String>,
    pub mig_tags: BTreeSet<String>,
    pub rmig_tags: BTreeSet<String>,
    /// Counts hail's static kvm node memory ([`LoadOptions::static_kvm_node_mem`]) instead of
    /// the reported one: a kvm node of a request without live node memory.
    pub kvm: bool,
    pub d: NodeDyn,
    /// Primary / secondary instance indices (forthcoming included).
    pub plist: Vec<usize>,
    pub slist: Vec<usize>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        t_mem: f64,
        n_mem: i64,
        f_mem: i64,
        t_dsk: f64,
        f_dsk: i64,
        t_cpu: f64,
        n_cpu: i64,
        offline: bool,
        t_spindles: i64,
        f_spindles: i64,
        group: usize,
        excl_storage: bool,
    ) -> Node {
        let pol = IPolicy::default();
        Node {
            name: name.to_string(),
            t_mem,
            n_mem,
            f_mem,
            x_mem: 0,
            t_dsk,
            t_cpu,
            n_cpu,
            cpu_speed: 1.0,
            t_spindles,
            offline,
            drained: false,
            master: false,
            tags: vec![],
            group,
            excl_storage,
            lo_dsk: 0,
            hi_cpu: (pol.vcpu_ratio * t_cpu).floor() as i64,
            hi_spindles: pol.spindle_ratio * t_spindles as f64,
            vcpu_ratio: pol.vcpu_ratio,
            util_pool: DynUtil::BASE,
            location_tags: BTreeSet::new(),
            mig_tags: BTreeSet::new(),
            rmig_tags: BTreeSet::new(),
            kvm: false,
            d: NodeDyn {
                st: NodeState {
                    i_mem: 0,
                    f_mem_forth: f_mem,
                    f_dsk,
                    f_dsk_forth: f_dsk,
                    u_cpu: n_cpu,
                    u_cpu_forth: n_cpu,
                    f_spindles,
                    f_spindles_forth: f_spindles,
                    inst_spindles: 0.0,
                    inst_spindles_forth: 0.0,
                    n_pri: 0,
                    n_sec: 0,
                    r_mem: 0,
                    fail_n1: true,
                    util: DynUtil::ZERO,
                    pri_conflicts: 0,
                    location_score: 0,
                },
                peers: vec![],
                p_tags: BTreeMap::new(),
                inst_map: BTreeMap::new(),
            },
            plist: vec![],
            slist: vec![],
        }
    }

    pub fn set_policy(&mut self, pol: &IPolicy) {
        self.vcpu_ratio = pol.vcpu_ratio;
        self.hi_cpu = (pol.vcpu_ratio * self.t_cpu).floor() as i64;
        self.hi_spindles = pol.spindle_ratio * self.t_spindles as f64;
    }

    /// State-of-record free memory minus positive unaccounted memory.
    pub fn unallocated_mem(&self, st: &NodeState) -> i64 {
        (self.t_mem as i64) - self.n_mem - st.i_mem - self.x_mem.max(0)
    }
    /// Memory available for new instances (minus failover reservation).
    pub fn avail_mem(&self, st: &NodeState) -> i64 {
        (self.unallocated_mem(st) - st.r_mem).max(0)
    }
    pub fn avail_disk(&self, st: &NodeState) -> i64 {
        if st.f_dsk < self.lo_dsk {
            0
        } else {
            st.f_dsk - self.lo_dsk
        }
    }
    pub fn avail_cpu(&self, st: &NodeState) -> i64 {
        if self.hi_cpu >= st.u_cpu {
            self.hi_cpu - st.u_cpu
        } else {
            0
        }
    }
    pub fn p_mem(&self, st: &NodeState) -> f64 {
        self.unallocated_mem(st) as f64 / self.t_mem
    }
    pub fn p_mem_forth(&self, st: &NodeState) -> f64 {
        st.f_mem_forth as f64 / self.t_mem
    }
    fn compute_pdsk(free: i64, total: f64) -> f64 {
        if total == 0.0 {
            1.0
        } else {
            free as f64 / total
        }
    }
    pub fn p_dsk(&self, st: &NodeState) -> f64 {
        if self.excl_storage {
            Self::compute_pdsk(st.f_spindles, self.t_spindles as f64)
        } else {
            Self::compute_pdsk(st.f_dsk, self.t_dsk)
        }
    }
    pub fn p_dsk_forth(&self, st: &NodeState) -> f64 {
        if self.excl_storage {
            Self::compute_pdsk(st.f_spindles_forth, self.t_spindles as f64)
        } else {
            Self::compute_pdsk(st.f_dsk_forth, self.t_dsk)
        }
    }
    pub fn p_rem(&self, st: &NodeState) -> f64 {
        st.r_mem as f64 / self.t_mem
    }
    pub fn p_cpu(&self, st: &NodeState) -> f64 {
        st.u_cpu as f64 / self.t_cpu
    }
    pub fn p_cpu_forth(&self, st: &NodeState) -> f64 {
        st.u_cpu_forth as f64 / self.t_cpu
    }

    pub(crate) fn spindle_use(&self, cur: f64, inst: &Instance, add: bool) -> f64 {
        if self.excl_storage {
            0.0
        } else if inst.uses_local_storage() {
            if add {
                cur + inst.spindle_use as f64
            } else {
                cur - inst.spindle_use as f64
            }
        } else {
            cur
        }
    }
    fn free_spindles(&self, cur: i64, inst: &Instance, add: bool) -> i64 {
        if !self.excl_storage {
            return 0;
        }
        match inst.total_spindles() {
            None => {
                if add {
                    -1
                } else {
                    cur
                }
            }
            Some(s) => {
                if add {
                    cur - s
                } else {
                    cur + s
                }
            }
        }
    }
    pub(crate) fn dsrd_loc_score(&self, inst: &Instance) -> i64 {
        let sat = inst
            .dsrd_loc_tags
            .iter()
            .filter(|t| self.location_tags.contains(*t))
            .count();
        (inst.dsrd_loc_tags.len() - sat) as i64
    }

    /// htools' `addPriEx`: add `inst` as a primary instance to the dynamic
    /// state `d` of this node (`force` skips the soft checks).
    pub fn add_pri(
        &self,
        d: &mut NodeDyn,
        inst: &Instance,
        force: bool,
    ) -> std::result::Result<(), FailMode> {
        let st = self.add_pri_state(d, inst, force)?;
        if !inst.forthcoming {
            for loc in &self.location_tags {
                for ex in &inst.excl_tags {
                    *d.inst_map.entry((loc.clone(), ex.clone())).or_insert(0) += 1;
                }
            }
        }
        for t in &inst.excl_tags {
            *d.p_tags.entry(t.clone()).or_insert(0) += 1;
        }
        d.st = st;
        Ok(())
    }

    /// The checks and the new scalar state of [`Node::add_pri`], without
    /// touching `d` (the maps are only read).
    pub fn add_pri_state(
        &self,
        d: &NodeDyn,
        inst: &Instance,
        force: bool,
    ) -> std::result::Result<NodeState, FailMode> {
        let strict = !force;
        let st = &d.st;
        let uses_disk = inst.uses_local_storage();
        let l_cpu = self.vcpu_ratio;
        let online = inst.not_offline();
        let new_mem_forth = st.f_mem_forth - inst.mem;
        let new_dsk_forth = if uses_disk {
            st.f_dsk_forth - inst.dsk
        } else {
            st.f_dsk_forth
        };
        let new_free_sp_forth = self.free_spindles(st.f_spindles_forth, inst, true);
        let new_inst_sp_forth = self.spindle_use(st.inst_spindles_forth, inst, true);
        let new_ucpu_forth = if online {
            st.u_cpu_forth + inst.vcpus
        } else {
            st.u_cpu_forth
        };
        let new_pcpu_forth = new_ucpu_forth as f64 / self.t_cpu;
        let forth_violation = || -> Option<FailMode> {
            if new_mem_forth <= 0 {
                Some(FailMode::FailMem)
            } else if uses_disk && (new_dsk_forth <= 0 || new_dsk_forth < self.lo_dsk) {
                Some(FailMode::FailDisk)
            } else if uses_disk && self.excl_storage && new_free_sp_forth < 0 {
                Some(FailMode::FailSpindles)
            } else if uses_disk && new_inst_sp_forth > self.hi_spindles {
                Some(FailMode::FailDisk)
            } else if l_cpu >= 0.0 && l_cpu < new_pcpu_forth {
                Some(FailMode::FailCPU)
            } else {
                None
            }
        };
        let mut ns = *st;
        if inst.forthcoming {
            if strict {
                if let Some(f) = forth_violation() {
                    return Err(f);
                }
            }
        } else {
            let new_i_mem = if inst.uses_memory() {
                st.i_mem + inst.mem
            } else {
                st.i_mem
            };
            let new_free_mem = (self.t_mem as i64) - self.n_mem - new_i_mem - self.x_mem.max(0);
            let new_failn1 = new_free_mem <= st.r_mem;
            let new_dsk = if uses_disk {
                st.f_dsk - inst.dsk
            } else {
                st.f_dsk
            };
            let new_free_sp = self.free_spindles(st.f_spindles, inst, true);
            let new_inst_sp = self.spindle_use(st.inst_spindles, inst, true);
            let new_ucpu = if online {
                st.u_cpu + inst.vcpus
            } else {
                st.u_cpu
            };
            let new_pcpu = new_ucpu as f64 / self.t_cpu;
            if new_free_mem <= 0 {
                return Err(FailMode::FailMem);
            }
            if uses_disk && new_dsk <= 0 {
                return Err(FailMode::FailDisk);
            }
            if strict && uses_disk && new_dsk < self.lo_dsk {
                return Err(FailMode::FailDisk);
            }
            if uses_disk && self.excl_storage && new_free_sp < 0 {
                return Err(FailMode::FailSpindles);
            }
            if strict && uses_disk && new_inst_sp > self.hi_spindles {
                return Err(FailMode::FailDisk);
            }
            if strict && new_failn1 && !st.fail_n1 {
                return Err(FailMode::FailMem);
            }
            if strict && l_cpu >= 0.0 && l_cpu < new_pcpu {
                return Err(FailMode::FailCPU);
            }
            if strict && inst.excl_tags.iter().any(|t| d.p_tags.contains_key(t)) {
                return Err(FailMode::FailTags);
            }
            if strict {
                if let Some(f) = forth_violation() {
                    return Err(f);
                }
            }
            ns.i_mem = new_i_mem;
            ns.f_dsk = new_dsk;
            ns.fail_n1 = new_failn1;
            ns.u_cpu = new_ucpu;
            ns.util = st.util.plus(inst.util);
            ns.inst_spindles = new_inst_sp;
            ns.f_spindles = new_free_sp;
            ns.location_score += inst.location_score + self.dsrd_loc_score(inst);
            ns.n_pri += 1;
        }
        // fields updated for real and forthcoming instances
        for t in &inst.excl_tags {
            if d.p_tags.get(t).is_some_and(|c| *c > 0) {
                ns.pri_conflicts += 1;
            }
        }
        ns.f_mem_forth = new_mem_forth;
        ns.f_dsk_forth = new_dsk_forth;
        ns.f_spindles_forth = new_free_sp_forth;
        ns.inst_spindles_forth = new_inst_sp_forth;
        ns.u_cpu_forth = new_ucpu_forth;
        Ok(ns)
    }

    /// htools' `removePri`.
    pub fn remove_pri(&self, d: &mut NodeDyn, inst: &Instance) {
        let uses_disk = inst.uses_local_storage();
        let online = inst.not_offline();
        {
            let st = &mut d.st;
            st.f_mem_forth += inst.mem;
            if uses_disk {
                st.f_dsk_forth += inst.dsk;
            }
            st.f_spindles_forth = self.free_spindles(st.f_spindles_forth, inst, false);
            st.inst_spindles_forth = self.spindle_use(st.inst_spindles_forth, inst, false);
            if online {
                st.u_cpu_forth -= inst.vcpus;
            }
        }
        for t in &inst.excl_tags {
            if let Some(c) = d.p_tags.get_mut(t) {
                if *c > 1 {
                    *c -= 1;
                    d.st.pri_conflicts -= 1;
                } else {
                    d.p_tags.remove(t);
                }
            }
        }
        if inst.forthcoming {
            return;
        }
        let loc_delta = inst.location_score + self.dsrd_loc_score(inst);
        let st = &mut d.st;
        if inst.uses_memory() {
            st.i_mem -= inst.mem;
        }
        let new_free_mem = self.unallocated_mem(st);
        st.fail_n1 = new_free_mem <= st.r_mem;
        if uses_disk {
            st.f_dsk += inst.dsk;
        }
        st.f_spindles = self.free_spindles(st.f_spindles, inst, false);
        st.inst_spindles = self.spindle_use(st.inst_spindles, inst, false);
        if online {
            st.u_cpu -= inst.vcpus;
        }
        st.util = st.util.minus(inst.util);
        st.location_score -= loc_delta;
        st.n_pri -= 1;
        for loc in &self.location_tags {
            for ex in &inst.excl_tags {
                let key = (loc.clone(), ex.clone());
                if let Some(c) = d.inst_map.get_mut(&key) {
                    if *c > 1 {
                        *c -= 1;
                    } else {
                        d.inst_map.remove(&key);
                    }
                }
            }
        }
    }

    /// htools' `addSecExEx`: add `inst` (whose primary is `pdx`) as a
    /// secondary instance.
    pub fn add_sec(
        &self,
        d: &mut NodeDyn,
        inst: &Instance,
        pdx: usize,
        force: bool,
        ignore_disks: bool,
    ) -> std::result::Result<(), FailMode> {
        let (st, peem) = self.add_sec_state(d, inst, pdx, force, ignore_disks)?;
        if !inst.forthcoming {
            d.set_peer(pdx, peem);
        }
        d.st = st;
        Ok(())
    }

    /// The checks and the new scalar state of [`Node::add_sec`] (plus the
    /// new peer value for `pdx`), without touching `d`.
    pub fn add_sec_state(
        &self,
        d: &NodeDyn,
        inst: &Instance,
        pdx: usize,
        force: bool,
        ignore_disks: bool,
    ) -> std::result::Result<(NodeState, i64), FailMode> {
        self.add_sec_state_peer(d, inst, d.peer(pdx), force, ignore_disks)
    }

    /// [`Node::add_sec_state`] given the memory this node already mirrors
    /// for the instance's primary (`d.peer(pdx)`), which is all the
    /// primary's identity changes.
    pub fn add_sec_state_peer(
        &self,
        d: &NodeDyn,
        inst: &Instance,
        peer_mem: i64,
        force: bool,
        ignore_disks: bool,
    ) -> std::result::Result<(NodeState, i64), FailMode> {
        let strict = !force;
        let st = &d.st;
        let sec_needed = if inst.uses_sec_mem() { inst.mem } else { 0 };
        let new_peem = peer_mem + sec_needed;
        let new_dsk_forth = st.f_dsk_forth - inst.dsk;
        let new_free_sp_forth = self.free_spindles(st.f_spindles_forth, inst, true);
        let new_inst_sp_forth = self.spindle_use(st.inst_spindles_forth, inst, true);
        let forth_violation = || -> Option<FailMode> {
            if !inst.has_secondary() || new_dsk_forth <= 0 || new_dsk_forth < self.lo_dsk {
                Some(FailMode::FailDisk)
            } else if self.excl_storage && new_free_sp_forth < 0 {
                Some(FailMode::FailSpindles)
            } else if new_inst_sp_forth > self.hi_spindles {
                Some(FailMode::FailDisk)
            } else if sec_needed >= st.f_mem_forth {
                Some(FailMode::FailMem)
            } else {
                None
            }
        };
        let mut ns = *st;
        if inst.forthcoming {
            if strict {
                if let Some(f) = forth_violation() {
                    return Err(f);
                }
            }
        } else {
            let old_mem = self.unallocated_mem(st);
            let new_dsk = st.f_dsk - inst.dsk;
            let new_free_sp = self.free_spindles(st.f_spindles, inst, true);
            let new_inst_sp = self.spindle_use(st.inst_spindles, inst, true);
            let new_rmem = st.r_mem.max(new_peem);
            let new_failn1 = old_mem <= new_rmem;
            if !inst.has_secondary() {
                return Err(FailMode::FailDisk);
            }
            if !ignore_disks && new_dsk <= 0 {
                return Err(FailMode::FailDisk);
            }
            if strict && new_dsk < self.lo_dsk {
                return Err(FailMode::FailDisk);
            }
            if self.excl_storage && new_free_sp < 0 {
                return Err(FailMode::FailSpindles);
            }
            if strict && new_inst_sp > self.hi_spindles {
                return Err(FailMode::FailDisk);
            }
            if strict && sec_needed >= old_mem {
                return Err(FailMode::FailMem);
            }
            if strict && new_failn1 && !st.fail_n1 {
                return Err(FailMode::FailMem);
            }
            if strict {
                if let Some(f) = forth_violation() {
                    return Err(f);
                }
            }
            ns.f_dsk = new_dsk;
            ns.fail_n1 = new_failn1;
            ns.r_mem = new_rmem;
            ns.util.dsk += inst.util.dsk;
            ns.inst_spindles = new_inst_sp;
            ns.f_spindles = new_free_sp;
            ns.n_sec += 1;
        }
        ns.f_dsk_forth = new_dsk_forth;
        ns.f_spindles_forth = new_free_sp_forth;
        ns.inst_spindles_forth = new_inst_sp_forth;
        Ok((ns, new_peem))
    }

    /// htools' `removeSec`; `pdx` is the instance's primary node (the peer key).
    pub fn remove_sec(&self, d: &mut NodeDyn, inst: &Instance, pdx: usize) {
        let uses_disk = inst.uses_local_storage();
        {
            let st = &mut d.st;
            if uses_disk {
                st.f_dsk_forth += inst.dsk;
            }
            st.f_spindles_forth = self.free_spindles(st.f_spindles_forth, inst, false);
            st.inst_spindles_forth = self.spindle_use(st.inst_spindles_forth, inst, false);
        }
        if inst.forthcoming {
            return;
        }
        let old_peem = d.peer(pdx);
        let new_peem = if inst.uses_sec_mem() {
            old_peem - inst.mem
        } else {
            old_peem
        };
        if new_peem > 0 {
            d.set_peer(pdx, new_peem);
        } else {
            d.remove_peer(pdx);
        }
        let old_rmem = d.st.r_mem;
        let new_rmem = if old_peem < old_rmem {
            old_rmem
        } else {
            d.max_peer()
        };
        let unalloc = self.unallocated_mem(&d.st);
        let st = &mut d.st;
        if uses_disk {
            st.f_dsk += inst.dsk;
        }
        st.r_mem = new_rmem;
        st.fail_n1 = unalloc <= new_rmem;
        st.util.dsk -= inst.util.dsk;
        st.inst_spindles = self.spindle_use(st.inst_spindles, inst, false);
        st.f_spindles = self.free_spindles(st.f_spindles, inst, false);
        st.n_sec -= 1;
    }

    /// htools' `getPolicyHealth`.
    pub fn policy_health(&self) -> std::result::Result<(), FailMode> {
        if self.d.st.inst_spindles > self.hi_spindles {
            Err(FailMode::FailDisk)
        } else if self.p_cpu(&self.d.st) > self.vcpu_ratio {
            Err(FailMode::FailCPU)
        } else {
            Ok(())
        }
    }
}
