//! The placement model: groups, nodes, instances and the cluster, with the
//! node bookkeeping of htools (`Node.hs`): every add/remove of a primary or
//! secondary instance updates the same derived values htools keeps (free
//! memory, reserved memory for failovers, N+1 flag, free disk, vcpu ratio,
//! spindles, dynamic load, exclusion tags, location scores), so that scores
//! match htools number for number.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::types::*;

pub const TAG_EXCL: &str = "htools:iextags:";
pub const TAG_MIGRATION: &str = "htools:migration:";
pub const TAG_ALLOW_MIGRATION: &str = "htools:allowmigration:";
pub const TAG_LOCATION: &str = "htools:nlocation:";
pub const TAG_DESIRED_LOCATION: &str = "htools:desiredlocation:";

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub uuid: String,
    pub alloc_policy: AllocPolicy,
    pub tags: Vec<String>,
    pub networks: Vec<String>,
    pub ipolicy: IPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub size: i64,
    pub spindles: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nic {
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub mode: Option<String>,
    pub link: Option<String>,
    pub network: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub mem: i64,
    /// Total disk on each node (MiB).
    pub dsk: i64,
    pub disks: Vec<Disk>,
    pub vcpus: i64,
    pub status: InstanceStatus,
    pub pnode: usize,
    pub snode: Option<usize>,
    pub util: DynUtil,
    /// Can and should the instance be moved by the balancer.
    pub movable: bool,
    pub auto_balance: bool,
    pub template: DiskTemplate,
    pub spindle_use: i64,
    pub tags: Vec<String>,
    pub excl_tags: Vec<String>,
    pub dsrd_loc_tags: BTreeSet<String>,
    /// Number of common failure domains of primary and secondary.
    pub location_score: i64,
    pub nics: Vec<Nic>,
    pub forthcoming: bool,
}

impl Instance {
    /// A new instance not placed anywhere yet (pnode = usize::MAX).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        mem: i64,
        dsk: i64,
        disks: Vec<Disk>,
        vcpus: i64,
        status: InstanceStatus,
        tags: Vec<String>,
        auto_balance: bool,
        template: DiskTemplate,
        spindle_use: i64,
        forthcoming: bool,
    ) -> Instance {
        Instance {
            name: name.to_string(),
            mem,
            dsk,
            disks,
            vcpus,
            status,
            pnode: usize::MAX,
            snode: None,
            util: DynUtil::BASE,
            movable: template.supports_moves(),
            auto_balance,
            template,
            spindle_use,
            tags,
            excl_tags: vec![],
            dsrd_loc_tags: BTreeSet::new(),
            location_score: 0,
            nics: vec![],
            forthcoming,
        }
    }
    pub fn is_running(&self) -> bool {
        matches!(
            self.status,
            InstanceStatus::Running | InstanceStatus::ErrorUp
        )
    }
    pub fn not_offline(&self) -> bool {
        self.status != InstanceStatus::AdminOffline
    }
    /// Whether the instance needs its memory on the primary node.
    pub fn uses_memory(&self) -> bool {
        if self.forthcoming {
            return false;
        }
        !matches!(
            self.status,
            InstanceStatus::AdminDown
                | InstanceStatus::AdminOffline
                | InstanceStatus::ErrorDown
                | InstanceStatus::UserDown
        )
    }
    /// Whether the secondary must reserve memory for a failover.
    pub fn uses_sec_mem(&self) -> bool {
        self.not_offline() && self.auto_balance
    }
    pub fn uses_local_storage(&self) -> bool {
        self.template.uses_local_storage()
    }
    pub fn has_secondary(&self) -> bool {
        self.template == DiskTemplate::Drbd
    }
    pub fn mirror_type(&self) -> MirrorType {
        self.template.mirror_type()
    }
    pub fn total_spindles(&self) -> Option<i64> {
        self.disks
            .iter()
            .try_fold(0i64, |acc, d| d.spindles.map(|s| acc + s))
    }
    /// Nodes used by the instance (primary first).
    pub fn all_nodes(&self) -> Vec<usize> {
        match (self.template, self.snode) {
            (DiskTemplate::Drbd, Some(s)) => vec![self.pnode, s],
            _ => vec![self.pnode],
        }
    }

    fn compare_ispec(
        &self,
        which: std::cmp::Ordering,
        spec: &ISpec,
        excl: bool,
    ) -> Option<FailMode> {
        if self.mem.cmp(&spec.mem) == which {
            return Some(FailMode::FailMem);
        }
        if self.disks.iter().any(|d| d.size.cmp(&spec.disk) == which) {
            return Some(FailMode::FailDisk);
        }
        if self.vcpus.cmp(&spec.cpu) == which {
            return Some(FailMode::FailCPU);
        }
        if excl {
            match self.total_spindles() {
                None => return Some(FailMode::FailSpindles),
                Some(s) if s.cmp(&spec.spindle_use) == which => {
                    return Some(FailMode::FailSpindles)
                }
                _ => {}
            }
        } else if self.spindle_use.cmp(&spec.spindle_use) == which {
            return Some(FailMode::FailSpindles);
        }
        if self.template != DiskTemplate::Diskless
            && (self.disks.len() as i64).cmp(&spec.disk_count) == which
        {
            return Some(FailMode::FailDiskCount);
        }
        None
    }

    /// htools' `instMatchesPolicy`.
    pub fn matches_policy(&self, pol: &IPolicy, excl: bool) -> std::result::Result<(), FailMode> {
        use std::cmp::Ordering::*;
        if !pol.minmax.is_empty() {
            let mut last = Some(FailMode::FailInternal);
            for mm in &pol.minmax {
                let r = self
                    .compare_ispec(Less, &mm.min, excl)
                    .or_else(|| self.compare_ispec(Greater, &mm.max, excl));
                if r.is_none() {
                    last = None;
                    break;
                }
                last = r;
            }
            if let Some(f) = last {
                return Err(f);
            }
        }
        if pol.disk_templates.contains(&self.template) {
            Ok(())
        } else {
            Err(FailMode::FailDisk)
        }
    }
}

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
    fn max_peer(&self) -> i64 {
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

    fn spindle_use(&self, cur: f64, inst: &Instance, add: bool) -> f64 {
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
    fn dsrd_loc_score(&self, inst: &Instance) -> i64 {
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
        let strict = !force;
        let st = &d.st;
        let sec_needed = if inst.uses_sec_mem() { inst.mem } else { 0 };
        let new_peem = d.peer(pdx) + sec_needed;
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

/// A whole cluster: groups, nodes, instances, cluster tags and policy.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub groups: Vec<Group>,
    pub nodes: Vec<Node>,
    pub instances: Vec<Instance>,
    pub tags: Vec<String>,
    pub ipolicy: IPolicy,
}

/// Options applied when finalising a loaded cluster (htools' `mergeData`
/// and `updateMissing`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Extra exclusion tag prefixes (hbal `--exclusion-tags`).
    pub ex_tags: Vec<String>,
    pub select_instances: Vec<String>,
    pub exclude_instances: Vec<String>,
    /// Drop dynamic utilisation (hbal `--ignore-dynu`).
    pub ignore_dynu: bool,
    /// Node memory to use for kvm nodes (iallocator input), 0 = keep.
    pub static_kvm_node_mem: i64,
}

fn get_tags(prefix: &str, ctags: &[String], ntags: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for ct in ctags {
        if let Some(p) = ct.strip_prefix(prefix) {
            let pc = format!("{p}:");
            for nt in ntags {
                if nt.starts_with(&pc) {
                    out.insert(nt.clone());
                }
            }
        }
    }
    out
}

fn migrations(ctags: &[String]) -> Vec<(String, String)> {
    ctags
        .iter()
        .filter_map(|t| t.strip_prefix(TAG_ALLOW_MIGRATION))
        .filter_map(|rest| {
            let pos = rest.find("::")?;
            let (a, b) = (&rest[..pos], &rest[pos + 2..]);
            if b.contains("::") {
                None
            } else {
                Some((a.to_string(), b.to_string()))
            }
        })
        .collect()
}

impl Cluster {
    pub fn node_index(&self) -> HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect()
    }
    pub fn instance_index(&self) -> HashMap<&str, usize> {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect()
    }
    pub fn group_by_name(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }
    pub fn group_by_uuid(&self, uuid: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.uuid == uuid)
    }

    /// Exclusion tag prefixes from the cluster tags.
    pub fn excl_prefixes(&self) -> Vec<String> {
        self.tags
            .iter()
            .filter_map(|t| t.strip_prefix(TAG_EXCL))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Compute the exclusion / desired-location tags of an instance from
    /// the cluster tags.
    pub fn update_instance_tags(&self, inst: &mut Instance, extra_ex: &[String]) {
        let mut prefixes: Vec<String> = extra_ex.to_vec();
        prefixes.extend(self.excl_prefixes());
        inst.excl_tags = inst
            .tags
            .iter()
            .filter(|t| prefixes.iter().any(|p| t.starts_with(p.as_str())))
            .cloned()
            .collect();
        let dl: Vec<&str> = self
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix(TAG_DESIRED_LOCATION))
            .filter(|p| !p.is_empty())
            .collect();
        inst.dsrd_loc_tags = inst
            .tags
            .iter()
            .filter(|t| dl.iter().any(|p| t.starts_with(p)))
            .cloned()
            .collect();
    }

    /// Location score of an instance given its (prospective) nodes.
    pub fn instance_location_score(&self, pnode: usize, snode: Option<usize>) -> i64 {
        match snode {
            None => 0,
            Some(s) => self.nodes[pnode]
                .location_tags
                .intersection(&self.nodes[s].location_tags)
                .count() as i64,
        }
    }

    /// Finalise a freshly parsed cluster: compute tags, node states from
    /// the instance placement, peers, memory accounting, policies.
    /// Instances must already have pnode/snode set; node dynamic state must
    /// be fresh (as created by `Node::new`).
    pub fn finalize(&mut self, opts: &LoadOptions) -> Result<()> {
        let nn = self.nodes.len();
        for (i, inst) in self.instances.iter().enumerate() {
            if inst.pnode >= nn {
                return Err(Error::Invalid(format!(
                    "instance {} has no valid primary node",
                    inst.name
                )));
            }
            if let Some(s) = inst.snode {
                if s >= nn {
                    return Err(Error::Invalid(format!(
                        "instance {} has an invalid secondary",
                        inst.name
                    )));
                }
                if s == inst.pnode && inst.has_secondary() {
                    return Err(Error::Invalid(format!(
                        "instance {} has same primary and secondary node",
                        inst.name
                    )));
                }
            }
            let _ = i;
        }
        for g in &self.groups {
            let _ = g;
        }
        for n in &self.nodes {
            if n.group >= self.groups.len() {
                return Err(Error::Invalid(format!(
                    "node {} has an unknown group",
                    n.name
                )));
            }
        }
        for name in opts
            .select_instances
            .iter()
            .chain(opts.exclude_instances.iter())
        {
            if !self.instances.iter().any(|i| &i.name == name) {
                return Err(Error::Invalid(format!("unknown instance '{name}'")));
            }
        }
        // instance attributes from tags and options
        let tags = self.tags.clone();
        let mut insts = std::mem::take(&mut self.instances);
        for inst in insts.iter_mut() {
            if opts.ignore_dynu {
                inst.util = DynUtil::ZERO;
            }
            let ex: Vec<String> = opts.ex_tags.iter().map(|t| format!("{t}:")).collect();
            self.update_instance_tags(inst, &ex);
            if opts.exclude_instances.contains(&inst.name)
                || !(opts.select_instances.is_empty() || opts.select_instances.contains(&inst.name))
            {
                inst.movable = false;
            }
        }
        // node location / migration tags
        let migs = migrations(&tags);
        for n in self.nodes.iter_mut() {
            n.location_tags = get_tags(TAG_LOCATION, &tags, &n.tags);
            n.mig_tags = get_tags(TAG_MIGRATION, &tags, &n.tags);
            let mut r = BTreeSet::new();
            for t in &n.mig_tags {
                r.insert(t.clone());
                for (a, b) in &migs {
                    if b == t {
                        r.insert(a.clone());
                    }
                }
            }
            n.rmig_tags = r;
        }
        for inst in insts.iter_mut() {
            inst.location_score = self.instance_location_score(inst.pnode, inst.snode);
        }
        // place instances (setPri / setSec)
        for (idx, inst) in insts.iter().enumerate() {
            let p = inst.pnode;
            self.set_pri_initial(p, inst);
            self.nodes[p].plist.push(idx);
            if let (true, Some(s)) = (inst.has_secondary() || inst.snode.is_some(), inst.snode) {
                self.set_sec_initial(s, inst);
                self.nodes[s].slist.push(idx);
            }
        }
        // peers (buildPeers), policy
        for ni in 0..nn {
            let mut peers: BTreeMap<usize, i64> = BTreeMap::new();
            for &ii in &self.nodes[ni].slist {
                let inst = &insts[ii];
                let mem = if inst.uses_sec_mem() && !inst.forthcoming {
                    inst.mem
                } else {
                    0
                };
                *peers.entry(inst.pnode).or_insert(0) += mem;
            }
            let n = &mut self.nodes[ni];
            n.d.peers = peers.into_iter().collect();
            let rmem = n.d.max_peer();
            n.d.st.r_mem = rmem;
            n.d.st.fail_n1 = n.f_mem < rmem;
            let pol = self.groups[n.group].ipolicy.clone();
            n.set_policy(&pol);
        }
        // split instances are not movable
        for inst in insts.iter_mut() {
            if let Some(s) = inst.snode {
                if self.nodes[s].group != self.nodes[inst.pnode].group {
                    inst.movable = false;
                }
            }
        }
        // updateMissing: static kvm memory, i_mem, x_mem
        for n in self.nodes.iter_mut() {
            if opts.static_kvm_node_mem > 0 && n.kvm {
                n.n_mem = opts.static_kvm_node_mem;
            }
            let imem: i64 = n
                .plist
                .iter()
                .map(|&i| &insts[i])
                .filter(|i| i.uses_memory())
                .map(|i| i.mem)
                .sum();
            n.d.st.i_mem = imem;
            let recorded_free = (n.t_mem as i64) - n.n_mem - imem;
            n.x_mem = recorded_free - n.f_mem;
        }
        self.instances = insts;
        Ok(())
    }

    fn set_pri_initial(&mut self, ni: usize, inst: &Instance) {
        let n = &mut self.nodes[ni];
        let online = inst.not_offline();
        let loc = inst.location_score + n.dsrd_loc_score(inst);
        let spu_forth = n.spindle_use(n.d.st.inst_spindles_forth, inst, true);
        let spu = n.spindle_use(n.d.st.inst_spindles, inst, true);
        let mut ctags = 0;
        for t in &inst.excl_tags {
            let c = n.d.p_tags.entry(t.clone()).or_insert(0);
            if *c > 0 {
                ctags += 1;
            }
            *c += 1;
        }
        let st = &mut n.d.st;
        st.pri_conflicts += ctags;
        if online {
            st.u_cpu_forth += inst.vcpus;
        }
        if !inst.uses_memory() {
            st.f_mem_forth -= inst.mem;
        }
        st.inst_spindles_forth = spu_forth;
        if inst.forthcoming {
            if inst.uses_local_storage() {
                st.f_dsk_forth -= inst.dsk;
            }
            return;
        }
        if online {
            st.u_cpu += inst.vcpus;
        }
        st.util = st.util.plus(inst.util);
        st.inst_spindles = spu;
        st.location_score += loc;
        st.n_pri += 1;
        let pairs: Vec<(String, String)> = n
            .location_tags
            .iter()
            .flat_map(|l| inst.excl_tags.iter().map(move |e| (l.clone(), e.clone())))
            .collect();
        for p in pairs {
            *n.d.inst_map.entry(p).or_insert(0) += 1;
        }
    }

    fn set_sec_initial(&mut self, ni: usize, inst: &Instance) {
        let n = &mut self.nodes[ni];
        let spu_forth = n.spindle_use(n.d.st.inst_spindles_forth, inst, true);
        let spu = n.spindle_use(n.d.st.inst_spindles, inst, true);
        let st = &mut n.d.st;
        st.inst_spindles_forth = spu_forth;
        if inst.forthcoming {
            if inst.uses_local_storage() {
                st.f_dsk_forth -= inst.dsk;
            }
            return;
        }
        st.util.dsk += inst.util.dsk;
        st.inst_spindles = spu;
        st.n_sec += 1;
    }

    /// Indices of online nodes.
    pub fn online_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].offline)
            .collect()
    }

    /// Node indices per group (in index order), for groups that have nodes.
    pub fn nodes_by_group(&self) -> Vec<(usize, Vec<usize>)> {
        let mut m: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            m.entry(n.group).or_default().push(i);
        }
        m.into_iter().collect()
    }

    /// Restrict the cluster to the nodes of one group and the instances
    /// whose primary is in that group (htools' `splitCluster`); returns the
    /// sub-cluster and the mapping of new node indices to old ones.
    pub fn split_group(&self, gdx: usize) -> (Cluster, Vec<usize>, Vec<usize>) {
        let node_map: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].group == gdx)
            .collect();
        let mut rev = vec![usize::MAX; self.nodes.len()];
        for (new, &old) in node_map.iter().enumerate() {
            rev[old] = new;
        }
        let inst_map: Vec<usize> = (0..self.instances.len())
            .filter(|&i| rev[self.instances[i].pnode] != usize::MAX)
            .collect();
        let mut irev = vec![usize::MAX; self.instances.len()];
        for (new, &old) in inst_map.iter().enumerate() {
            irev[old] = new;
        }
        let nodes = node_map
            .iter()
            .map(|&o| {
                let mut n = self.nodes[o].clone();
                n.plist = n
                    .plist
                    .iter()
                    .filter_map(|&i| Some(irev[i]).filter(|&x| x != usize::MAX))
                    .collect();
                n.slist = n
                    .slist
                    .iter()
                    .filter_map(|&i| Some(irev[i]).filter(|&x| x != usize::MAX))
                    .collect();
                // peers outside the group keep a unique key that is never a
                // node index of the sub-cluster (htools keeps them too)
                n.d.peers =
                    n.d.peers
                        .iter()
                        .map(|p| {
                            if rev[p.0] != usize::MAX {
                                (rev[p.0], p.1)
                            } else {
                                (usize::MAX - p.0, p.1)
                            }
                        })
                        .collect();
                n.d.peers.sort();
                n
            })
            .collect();
        let instances = inst_map
            .iter()
            .map(|&o| {
                let mut i = self.instances[o].clone();
                i.pnode = rev[i.pnode];
                // secondary outside the group: keep it unplaced (not movable)
                i.snode = i
                    .snode
                    .and_then(|s| Some(rev[s]).filter(|&x| x != usize::MAX));
                if self.instances[o].snode.is_some() && i.snode.is_none() {
                    i.movable = false;
                }
                i
            })
            .collect();
        (
            Cluster {
                groups: self.groups.clone(),
                nodes,
                instances,
                tags: self.tags.clone(),
                ipolicy: self.ipolicy.clone(),
            },
            node_map,
            inst_map,
        )
    }
}
