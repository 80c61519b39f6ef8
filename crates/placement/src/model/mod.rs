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
/// Maguey's cluster tag (ignored by htools): location tags are a hard constraint, a DRBD
/// pair never shares a location (rooms as failure domains).
pub const TAG_HARD_LOCATION: &str = "maguey:hard-location";

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

mod node;
pub use node::*;

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
    /// Node memory to use for the nodes marked `kvm` (iallocator input without live node
    /// memory: see [`crate::ialloc::RESERVED_MEMORY_LIVE`]), 0 = keep.
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

    /// Whether the hard location constraint ([`TAG_HARD_LOCATION`]) forbids a DRBD
    /// pair `p`/`s`: the cluster asks for it and the two nodes share a location tag.
    pub fn location_forbids(&self, p: usize, s: Option<usize>) -> bool {
        s.is_some_and(|s| {
            self.instance_location_score(p, Some(s)) > 0
                && self.tags.iter().any(|t| t == TAG_HARD_LOCATION)
        })
    }

    /// [`Cluster::location_forbids`] for the pair `inst` would have after move `mv`
    /// (a plain failover keeps the pair, so it is never forbidden).
    pub fn location_forbids_move(&self, inst: &Instance, mv: IMove) -> bool {
        let (p, s) = (inst.pnode, inst.snode);
        let (np, ns) = match mv {
            IMove::Failover => return false,
            IMove::FailoverToAny(n) => (n, s),
            IMove::ReplacePrimary(n) => (n, s),
            IMove::ReplaceSecondary(n) => (p, Some(n)),
            IMove::ReplaceAndFailover(n) => (n, Some(p)),
            IMove::FailoverAndReplace(n) => match s {
                Some(s) => (s, Some(n)),
                None => return false,
            },
        };
        self.location_forbids(np, ns)
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
