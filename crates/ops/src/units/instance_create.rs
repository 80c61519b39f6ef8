//! OP_INSTANCE_CREATE: creates the disks, installs the OS, adds the instance, starts it.

use crate::disks::*;
use crate::util::{
    check_node_usable, generate_mac, hv_kind, instance_runtime, node_by_name, normalize_mac,
};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{
    names::validate_hostname, new_uuid, AdminState, ConfigData, DevType, Disk, DiskSpec,
    DiskTemplate, Hypervisor, Instance, InstanceCreateMode, LogicalId, Nic, NicSpec, Node,
    ParamKind, Params,
};
use maguey_rpc::{NodeInfo, NodeRequest};
use serde_json::{json, Value};

/// Ganeti's per-instance limits.
const MAX_DISKS: usize = 16;
const MAX_NICS: usize = 8;

pub struct InstanceCreate {
    name: String,
    template: DiskTemplate,
    disks: Vec<DiskSpec>,
    nics: Vec<NicSpec>,
    /// None: the allocator chooses, under locks on every node.
    pnode: Option<String>,
    /// `drbd`: the secondary node (with `pnode`).
    snode: Option<String>,
    /// `drbd`: wait for the initial resync before installing and starting.
    wait_for_sync: bool,
    os: Option<String>,
    osparams: Params,
    no_install: bool,
    start: bool,
    hypervisor: Hypervisor,
    hvparams: Params,
    beparams: Params,
    tags: Vec<String>,
    /// `-g`: the allocator chooses in this group only.
    group: Option<String>,
    ignore_ipolicy: bool,
    /// Addresses taken from networks, held until the job ends.
    ips: crate::netpool::IpReservation,
    /// Policy warnings (with --ignore-ipolicy) to log.
    warnings: Vec<String>,
}

impl LogicalUnit for InstanceCreate {
    type Op = maguey_model::OpInstanceCreate;
    type Checked = Instance;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpInstanceCreate {
            instance_name,
            mode,
            disk_template,
            disks,
            nics,
            pnode,
            snode,
            os_type,
            osparams,
            no_install,
            start,
            hypervisor,
            hvparams,
            beparams,
            iallocator,
            tags,
            wait_for_sync,
            group_name,
            ignore_ipolicy,
        } = op;
        validate_hostname(instance_name)
            .map_err(|e| prereq(format!("invalid instance name: {e}")))?;
        if *mode != InstanceCreateMode::Create {
            return Err(prereq(format!(
                "instance creation mode '{mode}' is not supported (only 'create')"
            )));
        }
        if snode.is_some() && !disk_template.needs_secondary() {
            return Err(prereq(format!(
                "disk template '{disk_template}' does not take a secondary node"
            )));
        }
        if disk_template.needs_secondary() && pnode.is_some() && snode.is_none() {
            return Err(prereq(format!(
                "disk template '{disk_template}' needs a secondary node: -n PRIMARY:SECONDARY"
            )));
        }
        if snode.is_some() && snode == pnode {
            return Err(prereq(
                "the secondary node must differ from the primary node",
            ));
        }
        if let Some(ia) = iallocator {
            if !crate::iallocator::BUILTIN.contains(&ia.as_str()) {
                return Err(prereq(format!(
                    "unknown iallocator '{ia}' (built in: {})",
                    crate::iallocator::BUILTIN.join(", ")
                )));
            }
        }
        if pnode.is_some() && iallocator.is_some() {
            return Err(prereq(
                "give either a node (-n) or an iallocator (-I), not both",
            ));
        }
        let pnode = pnode.clone();
        let _ = cfg;
        if os_type.is_none() && !*no_install {
            return Err(prereq(
                "an OS is required (-o OS), unless --no-install is given",
            ));
        }
        let hypervisor = hypervisor
            .or_else(|| cfg.cluster.enabled_hypervisors.first().copied())
            .unwrap_or(Hypervisor::Fake);
        Ok(InstanceCreate {
            name: instance_name.clone(),
            template: *disk_template,
            disks: disks.clone(),
            nics: nics.clone(),
            pnode,
            snode: snode.clone(),
            wait_for_sync: *wait_for_sync,
            os: os_type.clone(),
            osparams: osparams.clone(),
            no_install: *no_install,
            start: *start,
            hypervisor,
            hvparams: hvparams.clone(),
            beparams: beparams.clone(),
            tags: tags.clone(),
            group: group_name.clone(),
            ignore_ipolicy: *ignore_ipolicy,
            ips: Default::default(),
            warnings: Vec::new(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        let nodes = match &self.pnode {
            Some(p) => crate::locks::nodes(std::iter::once(p.clone()).chain(self.snode.clone())),
            None => crate::locks::all_nodes(),
        };
        crate::locks::instance_on_nodes_moving(&self.name, nodes.clone(), nodes)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        if cfg.instance_by_name(&self.name).is_some() {
            return Err(prereq(format!(
                "instance name '{}' is already in use",
                self.name
            )));
        }
        if !cfg.cluster.enabled_disk_templates.contains(&self.template) {
            return Err(prereq(format!(
                "disk template '{}' is not enabled on this cluster",
                self.template
            )));
        }
        if !cfg.cluster.enabled_hypervisors.contains(&self.hypervisor) {
            return Err(prereq(format!(
                "hypervisor '{}' is not enabled on this cluster (enabled: {})",
                self.hypervisor,
                cfg.cluster
                    .enabled_hypervisors
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let node_uuid = match &self.pnode {
            Some(p) => {
                let node = node_by_name(cfg, p)?;
                check_node_usable(node)?;
                node.uuid.clone()
            }
            None => String::new(),
        };
        if let Some(s) = &self.snode {
            check_node_usable(node_by_name(cfg, s)?)?;
        }
        if !self.template.has_disks() && !self.disks.is_empty() {
            return Err(prereq("a diskless instance cannot have disks"));
        }
        if self.template.has_disks() && self.disks.is_empty() {
            return Err(prereq(format!(
                "template '{}' needs at least one disk",
                self.template
            )));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(prereq(format!("at most {MAX_DISKS} disks are allowed")));
        }
        if self.nics.len() > MAX_NICS {
            return Err(prereq(format!("at most {MAX_NICS} NICs are allowed")));
        }
        let beparams = ParamKind::Be.validate(&self.beparams).map_err(prereq)?;
        let hvparams = hv_kind(self.hypervisor)
            .validate(&self.hvparams)
            .map_err(prereq)?;
        maguey_model::params::check_instance_hvparams(&hvparams).map_err(prereq)?;
        let now = maguey_model::now();
        let disks = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                if spec.size == 0 {
                    return Err(prereq(format!("disk {i} has size 0")));
                }
                let mode = spec.mode.unwrap_or_default();
                let uuid = new_uuid();
                let (driver, path) = (
                    "loop".to_string(),
                    format!("{}/disk{i}-{}", self.name, &uuid[..8]),
                );
                let vg = spec
                    .vg
                    .clone()
                    .unwrap_or_else(|| cfg.cluster.vg_name.clone());
                if spec.vg.is_some() && !self.template.uses_lvm() {
                    return Err(prereq(format!(
                        "disk {i}: vg= is only for plain and drbd disks"
                    )));
                }
                if self.template.uses_lvm() && !valid_lvm_name(&vg) {
                    return Err(prereq(format!("disk {i}: invalid volume group '{vg}'")));
                }
                Ok(Disk {
                    logical_id: match self.template {
                        DiskTemplate::Sharedfile => LogicalId::Sharedfile { driver, path },
                        // `drbd`: filled in once both nodes are known (exec).
                        DiskTemplate::Plain | DiskTemplate::Drbd => {
                            crate::drbd::plain_logical_id(&vg, &uuid, i)
                        }
                        DiskTemplate::File | DiskTemplate::Diskless => {
                            LogicalId::File { driver, path }
                        }
                    },
                    uuid,
                    name: spec.name.clone(),
                    dev_type: self.template.dev_type().unwrap_or(DevType::File),
                    size: spec.size,
                    mode,
                    children: Vec::new(),
                    nodes: vec![node_uuid.clone()],
                    iv_name: format!("disk/{i}"),
                    serial_no: 1,
                    ctime: now,
                    mtime: now,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut nics = Vec::new();
        let mut macs: Vec<String> = Vec::new();
        for (i, spec) in self.nics.iter().enumerate() {
            let mac = match spec.mac.as_deref() {
                None | Some("auto") | Some("generate") => generate_mac(cfg, &macs)?,
                Some(m) => {
                    let m = normalize_mac(m)?;
                    if macs.contains(&m)
                        || cfg
                            .instances
                            .values()
                            .any(|x| x.nics.iter().any(|n| n.mac == m))
                    {
                        return Err(prereq(format!("MAC address {m} is already in use")));
                    }
                    m
                }
            };
            macs.push(mac.clone());
            let network = match &spec.network {
                Some(name) => {
                    let n = cfg
                        .network_by_name(name)
                        .ok_or_else(|| prereq(format!("NIC {i}: network '{name}' is not known")))?;
                    if !node_uuid.is_empty() {
                        let g = cfg.group_of_node(&node_uuid);
                        if !g.is_some_and(|g| g.networks.contains_key(&n.uuid)) {
                            return Err(prereq(format!(
                                "NIC {i}: network {name} is not connected to the group of node {}",
                                self.pnode.clone().unwrap_or_default()
                            )));
                        }
                    }
                    Some(n.uuid.clone())
                }
                None => None,
            };
            // A generated MAC takes the network's prefix, if it has one.
            let prefix = network
                .as_ref()
                .and_then(|u| cfg.networks.get(u))
                .and_then(|n| n.mac_prefix.clone());
            let mac = match prefix {
                Some(p) if matches!(spec.mac.as_deref(), None | Some("auto" | "generate")) => {
                    let m = format!("{p}{}", mac.get(8..).unwrap_or_default());
                    let used = macs[..macs.len().saturating_sub(1)].contains(&m)
                        || cfg
                            .instances
                            .values()
                            .any(|x| x.nics.iter().any(|n| n.mac == m));
                    if used {
                        return Err(prereq(format!("NIC {i}: generated MAC {m} is in use")));
                    }
                    if let Some(last) = macs.last_mut() {
                        *last = m.clone();
                    }
                    m
                }
                _ => mac,
            };
            let ip = match (spec.ip.as_deref(), &network) {
                (Some("pool"), Some(net)) => {
                    let a = self.ips.take(cfg, net, None, false)?;
                    Some(a.to_string())
                }
                (Some("pool"), None) => {
                    return Err(prereq(format!("NIC {i}: ip=pool needs a network")));
                }
                (Some(ip), Some(net)) if ip != "none" => {
                    Some(self.ips.take(cfg, net, Some(ip), false)?.to_string())
                }
                (ip, _) => ip.map(str::to_string),
            };
            let mut nicparams = Params::new();
            if let Some(mode) = &spec.mode {
                nicparams.insert("mode".into(), Value::from(mode.as_str()));
            }
            if let Some(link) = &spec.link {
                nicparams.insert("link".into(), Value::from(link.clone()));
            }
            let nicparams = ParamKind::Nic
                .validate(&nicparams)
                .map_err(|e| prereq(format!("NIC {i}: {e}")))?;
            if let Some(ip) = &ip {
                if ip != "none" && ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(prereq(format!("NIC {i}: invalid IP address '{ip}'")));
                }
            }
            nics.push(Nic {
                uuid: new_uuid(),
                name: spec.name.clone(),
                mac,
                ip: ip.filter(|ip| ip != "none"),
                nicparams,
                network,
            });
        }
        let instance = Instance {
            uuid: new_uuid(),
            name: self.name.clone(),
            primary_node: node_uuid.clone(),
            os: self.os.clone().unwrap_or_default(),
            hypervisor: self.hypervisor,
            admin_state: if self.start {
                AdminState::Up
            } else {
                AdminState::Down
            },
            disk_template: self.template,
            beparams,
            hvparams,
            osparams: self.osparams.clone(),
            disks,
            nics,
            tags: self.tags.clone(),
            serial_no: 0,
            ctime: now,
            mtime: now,
            admin_state_source: Default::default(),
            pending_move: None,
        };
        let be = crate::util::filled_beparams(cfg, &instance);
        if be.minmem > be.maxmem {
            return Err(prereq(format!(
                "minmem ({}) cannot exceed maxmem ({})",
                be.minmem, be.maxmem
            )));
        }
        if let Some(g) = &self.group {
            match cfg.group_by_name(g) {
                None => {
                    return Err(prereq(format!(
                        "node group '{g}' is not known to the cluster"
                    )))
                }
                Some(g) if g.alloc_policy == maguey_model::AllocPolicy::Unallocable => {
                    return Err(prereq(format!(
                        "node group {} is unallocable: no node for instance {} there",
                        g.name, self.name
                    )))
                }
                Some(_) => {}
            }
        }
        if !node_uuid.is_empty() {
            let w = crate::ipolicy::check(cfg, &instance, &node_uuid, self.ignore_ipolicy)?;
            self.warnings.extend(w);
        }
        Ok(instance)
    }

    fn hooks_env(&self, cfg: &ConfigData, planned: &Instance) -> Option<crate::hooks::HooksEnv> {
        // The planned instance (not in the config yet); Ganeti adds these two.
        let mut h = crate::hooks::HooksEnv::instance(cfg, planned);
        h.vars.insert(
            "INSTANCE_ADD_MODE".into(),
            if self.no_install { "none" } else { "create" }.into(),
        );
        if let Some(s) = &self.snode {
            if let Some(n) = cfg.node_by_name(s) {
                h.nodes.push(n.uuid.clone());
                h.vars.insert("INSTANCE_SECONDARIES".into(), n.name.clone());
            }
        }
        Some(h)
    }
    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        let mut instance = checked;
        let cfg = env.cfg();
        let drbd = instance.disk_template.is_internally_mirrored();
        let mut snode_uuid = match &self.snode {
            Some(s) => Some(node_by_name(&cfg, s)?.uuid.clone()),
            None => None,
        };
        for w in self.warnings.drain(..) {
            env.log(w);
        }
        if instance.primary_node.is_empty() {
            let chosen =
                crate::iallocator::allocate_in(env.master, &cfg, &instance, self.group.as_deref())
                    .await?;
            let node = node_by_name(&cfg, &chosen[0])?;
            check_node_usable(node)?;
            if let Some(w) =
                crate::ipolicy::check(&cfg, &instance, &node.uuid, self.ignore_ipolicy)?
            {
                env.log(w);
            }
            if drbd {
                let sec = chosen.get(1).ok_or_else(|| {
                    prereq("the allocator did not choose a secondary node for a drbd instance")
                })?;
                let sec = node_by_name(&cfg, sec)?;
                check_node_usable(sec)?;
                env.log(format!(
                    "the allocator placed instance {} on nodes {} (primary) and {} (secondary)",
                    instance.name, node.name, sec.name
                ));
                if crate::rooms::has_rooms(&cfg)
                    && maguey_model::rooms::same_room(&cfg, &node.uuid, &sec.uuid)
                {
                    env.log("warning: no two rooms have capacity for it: both nodes share a room");
                }
                snode_uuid = Some(sec.uuid.clone());
            } else {
                env.log(format!(
                    "the allocator placed instance {} on node {}",
                    instance.name, node.name
                ));
            }
            instance.primary_node = node.uuid.clone();
            for d in &mut instance.disks {
                d.nodes = vec![node.uuid.clone()];
            }
        }
        let node = crate::util::node_by_uuid(&cfg, &instance.primary_node)?.clone();
        let snode = match &snode_uuid {
            Some(u) => Some(crate::util::node_by_uuid(&cfg, u)?.clone()),
            None => None,
        };
        let be = crate::util::filled_beparams(&cfg, &instance);

        // Memory: the node must be able to hold the instance if it is to start now. Both
        // nodes are asked at once (each answer reads its volume group).
        let info_req = || NodeRequest::NodeInfo {
            file_storage_dir: cfg.cluster.file_storage_dir.clone(),
            hypervisor: instance.hypervisor.to_string(),
        };
        let (info, sinfo) = futures::future::join(env.rpc::<NodeInfo>(&node, info_req()), async {
            match &snode {
                Some(sn) => env.rpc::<NodeInfo>(sn, info_req()).await.map(Some),
                None => Ok(None),
            }
        })
        .await;
        let info = info?;
        if be.maxmem > info.memory_total {
            return Err(prereq(format!(
                "instance needs {} MiB of memory but node {} has only {} MiB in total",
                be.maxmem, node.name, info.memory_total
            )));
        }
        if self.start && be.maxmem > info.memory_free {
            return Err(prereq(format!(
                "not enough memory on node {} to start the instance: needed {} MiB, free {} MiB",
                node.name, be.maxmem, info.memory_free
            )));
        }
        let template = instance.disk_template;
        let needed = crate::drbd::storage_needed(template, instance.disks.iter().map(|d| d.size));
        let check_space = |info: &NodeInfo, n: &Node| -> Result<(), OpError> {
            let kind = crate::drbd::storage_type(template);
            match info.storage.iter().find(|s| s.storage_type == kind) {
                Some(st) if needed > st.storage_free => Err(prereq(format!(
                    "not enough {kind} storage on node {}: needed {needed} MiB, free {} MiB",
                    n.name, st.storage_free
                ))),
                None if kind == "lvm-vg" => Err(prereq(format!(
                    "node {} has no volume group '{}' (or no LVM)",
                    n.name, cfg.cluster.vg_name
                ))),
                _ => Ok(()),
            }
        };
        check_space(&info, &node)?;
        if let (Some(sn), Some(sinfo)) = (&snode, sinfo?) {
            check_space(&sinfo, sn)?;
        }

        // DRBD: ports, minors and secrets, reserved until the instance is in the config.
        let mut _reservation = None;
        if drbd {
            let sn = snode
                .as_ref()
                .ok_or_else(|| prereq("disk template 'drbd' needs a secondary node"))?;
            let (allocs, res) =
                crate::drbd::allocate(&cfg, &node.uuid, &sn.uuid, instance.disks.len())?;
            _reservation = Some(res);
            let now = maguey_model::now();
            for (i, (d, a)) in instance.disks.iter_mut().zip(allocs).enumerate() {
                let vg = match &d.logical_id {
                    LogicalId::Plain { vg, .. } => vg.clone(),
                    _ => cfg.cluster.vg_name.clone(),
                };
                crate::drbd::make_drbd(d, i, &vg, &node.uuid, &sn.uuid, a, now);
                env.log(format!(
                    "disk {}: DRBD port {}, minor {} on {} and {} on {}",
                    d.iv_name, a.port, a.minor_p, node.name, a.minor_s, sn.name
                ));
            }
        }

        // 0. The OS checks its parameters (`verify parameters`) before anything exists.
        if !self.no_install && !instance.os.is_empty() {
            let install = crate::util::os_install(&cfg, &instance, &instance.name);
            let _: Value = env
                .rpc(&node, NodeRequest::OsValidate { install })
                .await
                .map_err(|e| {
                    env.log(format!("the OS refused the instance's parameters: {e}"));
                    prereq(format!("OS parameters refused: {e}"))
                })?;
        }

        // 1. Disks: on the secondary and the primary at once (each node's disks in order).
        // Ganeti creates on the secondary first so that a failure leaves the primary
        // untouched; the same holds here: whatever either node made is removed again when
        // either fails, and the config is only written once every disk exists.
        let storage_dir = crate::util::storage_dir(&cfg, template);
        let targets: Vec<Node> = snode.iter().cloned().chain([node.clone()]).collect();
        let made = crate::disks::create_on_nodes(
            env,
            &targets,
            &instance.name,
            &instance.disks,
            &storage_dir,
            "creating",
        )
        .await;
        let created = made.made;
        if let Some(e) = made.error {
            undo_created(env, &created).await;
            return Err(e);
        }
        if drbd {
            // The first primary of a new disk is forced, once connected: it starts the
            // full initial sync from the primary (Ganeti does a full sync too).
            let mut res = crate::drbd::promote_new(env, &instance, &node).await;
            if res.is_ok() && self.wait_for_sync {
                res = crate::drbd::wait_for_sync(env, &instance, &node).await;
            }
            if let Err(e) = res {
                undo_created(env, &created).await;
                return Err(e);
            }
            if !self.wait_for_sync {
                env.log("not waiting for the initial sync (--no-wait-for-sync)");
            }
        }

        // The disks exist: the node-resource locks can go (the OS installation may be long).
        crate::locks::release_node_resources(env.ctx);

        // 2. OS installation.
        if !self.no_install {
            env.log(format!(
                "running the OS create scripts of '{}'",
                instance.os
            ));
            let install = crate::util::os_install(&cfg, &instance, &instance.name);
            let res: Result<Value, OpError> = env
                .rpc(
                    &node,
                    NodeRequest::InstanceOsAdd {
                        install,
                        reinstall: false,
                    },
                )
                .await;
            match res {
                Ok(out) => crate::util::os_output(env, &out, &mut instance, "create"),
                Err(e) => {
                    env.log(format!("OS installation failed: {e}"));
                    undo_created(env, &created).await;
                    return Err(e);
                }
            }
        }

        // 3. Config.
        if let Err(e) = env
            .apply(Command::AddInstance {
                instance: instance.clone(),
            })
            .await
        {
            undo_created(env, &created).await;
            return Err(e);
        }
        drop(_reservation);

        // 4. Start.
        if self.start {
            env.log(format!(
                "starting instance {} on node {}",
                instance.name, node.name
            ));
            let cfg = env.cfg();
            let res: Result<Value, OpError> = env
                .rpc(
                    &node,
                    NodeRequest::InstanceStart {
                        instance: instance_runtime(&cfg, &instance),
                    },
                )
                .await;
            if let Err(e) = res {
                env.log(format!("could not start the instance: {e}"));
                env.log("undoing: removing the instance from the configuration");
                if let Err(e2) = env
                    .apply(Command::RemoveInstance {
                        uuid: instance.uuid.clone(),
                    })
                    .await
                {
                    env.log(format!(
                        "could not remove the instance from the config: {e2}"
                    ));
                }
                undo_created(env, &created).await;
                return Err(e);
            }
        }
        Ok(json!({"instance_name": instance.name, "uuid": instance.uuid, "pnode": node.name}))
    }
}

/// Removes the disks a failed creation made, on every node, in reverse order.
async fn undo_created(env: &Env<'_>, created: &[(Node, Disk)]) {
    for (node, disk) in created.iter().rev() {
        undo_disks(env, node, std::slice::from_ref(disk)).await;
    }
}

/// LVM's naming rules for a volume group.
fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}
