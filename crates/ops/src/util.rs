//! Helpers shared by the logical units.

use crate::prereq;
use maguey_jobs::OpError;
use maguey_model::{
    fill, BeParams, ConfigData, DiskTemplate, Hypervisor, Instance, Node, NodeGroup, ParamKind,
    Params,
};
use maguey_rpc::{InstanceRuntime, NicRuntime};

/// `ip:port` of a node's daemon.
pub fn node_addr(cfg: &ConfigData, node: &Node) -> String {
    format!("{}:{}", node.primary_ip, cfg.cluster.rpc_port)
}

pub(crate) fn node_by_name<'a>(cfg: &'a ConfigData, name: &str) -> Result<&'a Node, OpError> {
    cfg.node_by_name(name)
        .ok_or_else(|| prereq(format!("node '{name}' is not known to the cluster")))
}

pub(crate) fn instance_by_name<'a>(
    cfg: &'a ConfigData,
    name: &str,
) -> Result<&'a Instance, OpError> {
    cfg.instance_by_name(name)
        .ok_or_else(|| prereq(format!("instance '{name}' is not known to the cluster")))
}

pub(crate) fn node_by_uuid<'a>(cfg: &'a ConfigData, uuid: &str) -> Result<&'a Node, OpError> {
    cfg.nodes
        .get(uuid)
        .ok_or_else(|| OpError::Exec(format!("config references unknown node {uuid}")))
}

fn group_of<'a>(cfg: &'a ConfigData, node: &Node) -> Option<&'a NodeGroup> {
    cfg.nodegroups.get(&node.group)
}

/// Filled beparams of an instance (cluster → group of its primary → instance).
pub(crate) fn filled_beparams(cfg: &ConfigData, inst: &Instance) -> BeParams {
    BeParams::from_filled(&filled_be_dict(cfg, inst, &inst.beparams))
}

pub(crate) fn filled_be_dict(cfg: &ConfigData, inst: &Instance, own: &Params) -> Params {
    let group = cfg
        .nodes
        .get(&inst.primary_node)
        .and_then(|n| group_of(cfg, n))
        .map(|g| g.beparams.clone())
        .unwrap_or_default();
    fill(ParamKind::Be, &cfg.cluster.beparams_default(), &group, own)
}

pub(crate) fn hv_kind(hv: Hypervisor) -> ParamKind {
    ParamKind::Hv(hv)
}

/// The QEMU migration capabilities filled hvparams switch on (`migration_caps`, split).
pub(crate) fn migration_caps(hv: &Params) -> Vec<String> {
    hv.get("migration_caps")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .split(':')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Filled hvparams of an instance.
pub(crate) fn filled_hvparams(cfg: &ConfigData, inst: &Instance) -> Params {
    let group = cfg
        .nodes
        .get(&inst.primary_node)
        .and_then(|n| group_of(cfg, n))
        .and_then(|g| g.hvparams.get(inst.hypervisor.as_str()).cloned())
        .unwrap_or_default();
    fill(
        hv_kind(inst.hypervisor),
        &cfg.cluster.hvparams_for(inst.hypervisor),
        &group,
        &inst.hvparams,
    )
}

/// The storage directory the nodes use for a template's disks: the cluster's shared one for
/// `sharedfile`, the (node-local) file storage directory otherwise.
pub fn storage_dir(cfg: &ConfigData, template: DiskTemplate) -> String {
    if template.is_shared() {
        cfg.cluster.shared_file_storage_dir.clone()
    } else {
        cfg.cluster.file_storage_dir.clone()
    }
}

/// Everything a node needs to run the instance, with every parameter filled.
pub fn instance_runtime(cfg: &ConfigData, inst: &Instance) -> InstanceRuntime {
    let be = filled_beparams(cfg, inst);
    let mut hvparams = filled_hvparams(cfg, inst);
    if inst.disk_template.is_internally_mirrored() && hvparams.contains_key("disk_cache") {
        // Both ends may write during a live migration (dual-primary): no host page cache
        // (Ganeti issue #1824).
        hvparams.insert("disk_cache".into(), serde_json::json!("none"));
    }
    InstanceRuntime {
        name: inst.name.clone(),
        uuid: inst.uuid.clone(),
        hypervisor: inst.hypervisor.to_string(),
        memory: be.maxmem,
        vcpus: be.vcpus,
        hvparams,
        disks: inst.disks.clone(),
        nics: nic_runtimes(cfg, inst),
        file_storage_dir: storage_dir(cfg, inst.disk_template),
    }
}

/// What the OS definition's scripts get to work on `inst` (named `name`: the new name for a
/// rename): its OS, parameters, disks, NICs and storage directory.
pub(crate) fn os_install(cfg: &ConfigData, inst: &Instance, name: &str) -> maguey_rpc::OsInstall {
    maguey_rpc::OsInstall {
        instance_name: name.to_string(),
        os: inst.os.clone(),
        hypervisor: inst.hypervisor.to_string(),
        osparams: inst.osparams.clone(),
        disks: inst.disks.clone(),
        nics: nic_runtimes(cfg, inst),
        file_storage_dir: storage_dir(cfg, inst.disk_template),
        debug_level: 0,
    }
}

pub(crate) fn nic_runtimes(cfg: &ConfigData, inst: &Instance) -> Vec<NicRuntime> {
    inst.nics
        .iter()
        .map(|n| {
            let p = fill(
                ParamKind::Nic,
                &cfg.cluster.nicparams_default(),
                &Params::new(),
                &n.nicparams,
            );
            let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            // A NIC in a network takes the mode and link of the connection of its primary
            // node's group (so they follow the instance to another group).
            let conn = n.network.as_ref().and_then(|net| {
                cfg.group_of_node(&inst.primary_node)
                    .and_then(|g| g.networks.get(net))
            });
            NicRuntime {
                mac: n.mac.clone(),
                ip: n.ip.clone(),
                // nicparams are validated when set (ParamKind::Nic); the default mode
                // stands in for a value an older config could hold.
                mode: conn
                    .map(|c| c.mode)
                    .unwrap_or_else(|| s("mode").parse().unwrap_or_default()),
                link: conn.map(|c| c.link.clone()).unwrap_or_else(|| s("link")),
                network: n
                    .network
                    .as_ref()
                    .and_then(|u| cfg.networks.get(u))
                    .map(|net| maguey_rpc::NicNetwork {
                        name: net.name.clone(),
                        uuid: net.uuid.clone(),
                        subnet: net.network.clone(),
                        gateway: net.gateway.clone(),
                        subnet6: net.network6.clone(),
                        gateway6: net.gateway6.clone(),
                        mac_prefix: net.mac_prefix.clone(),
                        tags: net.tags.clone(),
                    }),
            }
        })
        .collect()
}

/// Checks that a node can take new instances.
pub(crate) fn check_node_usable(node: &Node) -> Result<(), OpError> {
    if node.offline {
        return Err(prereq(format!(
            "node '{}' is offline and cannot be used",
            node.name
        )));
    }
    if node.drained {
        return Err(prereq(format!(
            "node '{}' is drained and takes no new instances",
            node.name
        )));
    }
    if !node.vm_capable {
        return Err(prereq(format!("node '{}' is not vm_capable", node.name)));
    }
    Ok(())
}

pub(crate) fn check_node_online(node: &Node) -> Result<(), OpError> {
    if node.offline {
        return Err(prereq(format!("node '{}' is offline", node.name)));
    }
    Ok(())
}

/// A random MAC under the cluster's prefix that no NIC uses yet.
pub(crate) fn generate_mac(cfg: &ConfigData, taken: &[String]) -> Result<String, OpError> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let mac = format!(
            "{}:{:02x}:{:02x}:{:02x}",
            cfg.cluster.mac_prefix,
            rng.gen::<u8>(),
            rng.gen::<u8>(),
            rng.gen::<u8>()
        );
        let used = taken.contains(&mac)
            || cfg
                .instances
                .values()
                .any(|i| i.nics.iter().any(|n| n.mac == mac));
        if !used {
            return Ok(mac);
        }
    }
    Err(OpError::Exec(
        "could not generate a unique MAC address".to_string(),
    ))
}

/// Checks a MAC given by the user: six lowercase hex pairs.
pub(crate) fn normalize_mac(mac: &str) -> Result<String, OpError> {
    let m = mac.to_ascii_lowercase();
    let parts: Vec<&str> = m.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(m)
    } else {
        Err(prereq(format!(
            "invalid MAC address '{mac}' (expected aa:bb:cc:dd:ee:ff)"
        )))
    }
}

/// Logs what an OS installation answered: the script output (OS definitions answer a
/// string), or the image provider's object, whose cloud-init seed becomes the instance's
/// CD-ROM (`cdrom_image_path`).
pub(crate) fn os_output(
    env: &crate::Env<'_>,
    out: &serde_json::Value,
    inst: &mut Instance,
    what: &str,
) {
    let text = out
        .as_str()
        .or_else(|| out.get("output").and_then(|o| o.as_str()))
        .unwrap_or_default();
    if !text.trim().is_empty() {
        env.log(format!("OS {what} output:\n{}", text.trim_end()));
    }
    let seed = out.get("cdrom_image_path").and_then(|p| p.as_str());
    if let Some(seed) = seed.filter(|_| inst.hypervisor == Hypervisor::Kvm) {
        env.log(format!("cloud-init seed {seed} attached as the CD-ROM"));
        inst.hvparams
            .insert("cdrom_image_path".into(), serde_json::json!(seed));
    }
}
