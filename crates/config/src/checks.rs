//! The checks behind [`crate::commands::validate`] and [`verify`]: each object's fields, its
//! references, and the DRBD resources of instances.

use crate::commands::*;
use maguey_model::names::validate_hostname;
use maguey_model::*;
use std::collections::HashMap;
use std::net::IpAddr;

/// Checks every invariant of a whole config (what a chain of valid commands guarantees).
/// Used on import; cheap enough to run in tests after every change.
pub fn verify(state: &ConfigData) -> Result<(), ConfigError> {
    if !is_initialised(state) {
        if state.nodes.is_empty()
            && state.nodegroups.is_empty()
            && state.instances.is_empty()
            && state.join_tokens.is_empty()
        {
            return Ok(());
        }
        return Err(ConfigError::Invalid(
            "the config has objects but no cluster uuid".into(),
        ));
    }
    if state.version != CONFIG_VERSION {
        return Err(ConfigError::Invalid(format!(
            "unsupported config version {} (expected {CONFIG_VERSION})",
            state.version
        )));
    }
    let key_mismatch = |kind: &str, key: &str, uuid: &str| {
        ConfigError::Invalid(format!("{kind} stored under key '{key}' has uuid '{uuid}'"))
    };
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut claim = |uuid: &str, by: String| -> Result<(), ConfigError> {
        if uuid.is_empty() {
            return Err(ConfigError::Invalid(format!("{by} has an empty uuid")));
        }
        if let Some(first) = owners.insert(uuid.to_string(), by) {
            return Err(ConfigError::UuidInUse {
                uuid: uuid.to_string(),
                used_by: first,
            });
        }
        Ok(())
    };

    check_cluster_fields(&state.cluster)?;
    claim(&state.cluster.uuid, "the cluster".into())?;
    node(state, &state.cluster.master_node)?;
    for (key, g) in &state.nodegroups {
        if key != &g.uuid {
            return Err(key_mismatch("node group", key, &g.uuid));
        }
        check_group_fields(g)?;
        check_group_name_free(state, g)?;
        claim(&g.uuid, format!("node group {}", g.name))?;
    }
    for (key, n) in &state.nodes {
        if key != &n.uuid {
            return Err(key_mismatch("node", key, &n.uuid));
        }
        check_node_fields(n)?;
        check_node_in_config(state, n)?;
        claim(&n.uuid, format!("node {}", n.name))?;
    }
    for (key, i) in &state.instances {
        if key != &i.uuid {
            return Err(key_mismatch("instance", key, &i.uuid));
        }
        check_instance(state, i, false)?;
        claim(&i.uuid, format!("instance {}", i.name))?;
        for d in all_disks(&i.disks) {
            claim(&d.uuid, format!("a disk of instance {}", i.name))?;
        }
        for n in &i.nics {
            claim(&n.uuid, format!("a NIC of instance {}", i.name))?;
        }
    }
    for (key, t) in &state.join_tokens {
        if key != &t.node_name {
            return Err(ConfigError::Invalid(format!(
                "join token stored under '{key}' is for node '{}'",
                t.node_name
            )));
        }
        group(state, &t.group)?;
    }
    Ok(())
}

// ---- helpers -------------------------------------------------------------------------------

pub(crate) fn stamp_new(serial_no: &mut u64, ctime: &mut f64, mtime: &mut f64, ts: f64) {
    *serial_no = 1;
    *ctime = ts;
    *mtime = ts;
}

pub(crate) fn insert_group(
    state: &mut ConfigData,
    mut group: NodeGroup,
    old: Option<&NodeGroup>,
    ts: f64,
) {
    match old {
        Some(o) => {
            group.serial_no = o.serial_no + 1;
            group.ctime = o.ctime;
            group.mtime = ts;
        }
        None => stamp_new(&mut group.serial_no, &mut group.ctime, &mut group.mtime, ts),
    }
    state.nodegroups.insert(group.uuid.clone(), group);
}

pub(crate) fn insert_node(state: &mut ConfigData, mut node: Node, old: Option<&Node>, ts: f64) {
    match old {
        Some(o) => {
            node.serial_no = o.serial_no + 1;
            node.ctime = o.ctime;
            node.mtime = ts;
        }
        None => stamp_new(&mut node.serial_no, &mut node.ctime, &mut node.mtime, ts),
    }
    state.nodes.insert(node.uuid.clone(), node);
}

/// Two disks are the same if they only differ in their serial number and times.
pub(crate) fn same_disk(a: &Disk, b: &Disk) -> bool {
    let strip = |d: &Disk| Disk {
        serial_no: 0,
        ctime: 0.0,
        mtime: 0.0,
        ..d.clone()
    };
    strip(a) == strip(b)
}

/// True if `f` holds for a disk or one of its children (depth first, no allocation).
pub(crate) fn any_disk(disks: &[Disk], f: &mut impl FnMut(&Disk) -> bool) -> bool {
    disks
        .iter()
        .any(|d| f(d) || (!d.children.is_empty() && any_disk(&d.children, f)))
}

/// DRBD disks: ports in Ganeti's pool, two different known nodes, and each port and each
/// (node, minor) used by one disk of the whole cluster only (Ganeti's `tcpudp_port_pool` and
/// per-node minors).
pub(crate) fn check_drbd(state: &ConfigData, inst: &Instance) -> Result<(), ConfigError> {
    let mut ports: Vec<u16> = Vec::new();
    let mut minors: Vec<(&str, u32)> = Vec::new();
    for d in all_disks(&inst.disks) {
        let LogicalId::Drbd {
            node_a,
            node_b,
            port,
            minor_a,
            minor_b,
            secret,
        } = &d.logical_id
        else {
            continue;
        };
        if !(DRBD_PORT_FIRST..=DRBD_PORT_LAST).contains(port) {
            return Err(ConfigError::Invalid(format!(
                "disk {} of instance '{}': DRBD port {port} is outside {DRBD_PORT_FIRST}-{DRBD_PORT_LAST}",
                d.iv_name, inst.name
            )));
        }
        if node_a == node_b {
            return Err(ConfigError::Invalid(format!(
                "disk {} of instance '{}': both DRBD ends are the same node",
                d.iv_name, inst.name
            )));
        }
        node(state, node_a)?;
        node(state, node_b)?;
        if *minor_a > DRBD_MAX_MINOR || *minor_b > DRBD_MAX_MINOR {
            return Err(ConfigError::Invalid(format!(
                "disk {} of instance '{}': DRBD minor above {DRBD_MAX_MINOR}",
                d.iv_name, inst.name
            )));
        }
        if secret.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "disk {} of instance '{}': empty DRBD secret",
                d.iv_name, inst.name
            )));
        }
        if ports.contains(port) {
            return Err(ConfigError::Invalid(format!(
                "DRBD port {port} is used twice by instance '{}'",
                inst.name
            )));
        }
        ports.push(*port);
        for m in [(node_a.as_str(), *minor_a), (node_b.as_str(), *minor_b)] {
            if minors.contains(&m) {
                return Err(ConfigError::Invalid(format!(
                    "DRBD minor {} of node {} is used twice by instance '{}'",
                    m.1, m.0, inst.name
                )));
            }
            minors.push(m);
        }
    }
    if ports.is_empty() {
        return Ok(());
    }
    for other in state.instances.values().filter(|o| o.uuid != inst.uuid) {
        for d in all_disks(&other.disks) {
            if let LogicalId::Drbd {
                node_a,
                node_b,
                port,
                minor_a,
                minor_b,
                ..
            } = &d.logical_id
            {
                if ports.contains(port) {
                    return Err(ConfigError::Invalid(format!(
                        "DRBD port {port} is already used by instance '{}'",
                        other.name
                    )));
                }
                for (n, m) in [(node_a, minor_a), (node_b, minor_b)] {
                    if minors.contains(&(n.as_str(), *m)) {
                        return Err(ConfigError::Invalid(format!(
                            "DRBD minor {m} of node {n} is already used by instance '{}'",
                            other.name
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every disk, children included, depth first.
pub(crate) fn all_disks(disks: &[Disk]) -> Vec<&Disk> {
    let mut out = Vec::new();
    let mut stack: Vec<&Disk> = disks.iter().rev().collect();
    while let Some(d) = stack.pop() {
        out.push(d);
        stack.extend(d.children.iter().rev());
    }
    out
}

pub(crate) fn node<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a Node, ConfigError> {
    state.nodes.get(uuid).ok_or_else(|| ConfigError::Unknown {
        kind: "node",
        uuid: uuid.to_string(),
    })
}

pub(crate) fn group<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a NodeGroup, ConfigError> {
    state
        .nodegroups
        .get(uuid)
        .ok_or_else(|| ConfigError::Unknown {
            kind: "node group",
            uuid: uuid.to_string(),
        })
}

pub(crate) fn instance<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a Instance, ConfigError> {
    state
        .instances
        .get(uuid)
        .ok_or_else(|| ConfigError::Unknown {
            kind: "instance",
            uuid: uuid.to_string(),
        })
}

pub(crate) fn check_name(kind: &'static str, name: &str) -> Result<(), ConfigError> {
    validate_hostname(name).map_err(|source| ConfigError::InvalidName { kind, source })
}

pub(crate) fn check_uuid_nonempty(kind: &'static str, uuid: &str) -> Result<(), ConfigError> {
    if uuid.is_empty() {
        Err(ConfigError::EmptyUuid { kind })
    } else {
        Ok(())
    }
}

/// Who uses `uuid` already, if anyone (cluster, groups, nodes, instances, disks, NICs).
pub(crate) fn uuid_user(state: &ConfigData, uuid: &str) -> Option<String> {
    if state.cluster.uuid == uuid {
        return Some("the cluster".into());
    }
    if let Some(g) = state.nodegroups.get(uuid) {
        return Some(format!("node group {}", g.name));
    }
    if let Some(n) = state.nodes.get(uuid) {
        return Some(format!("node {}", n.name));
    }
    if let Some(n) = state.networks.get(uuid) {
        return Some(format!("network {}", n.name));
    }
    if let Some(i) = state.instances.get(uuid) {
        return Some(format!("instance {}", i.name));
    }
    for i in state.instances.values() {
        if any_disk(&i.disks, &mut |d| d.uuid == uuid) {
            return Some(format!("a disk of instance {}", i.name));
        }
        if i.nics.iter().any(|n| n.uuid == uuid) {
            return Some(format!("a NIC of instance {}", i.name));
        }
    }
    None
}

pub(crate) fn check_uuid_free(state: &ConfigData, uuid: &str) -> Result<(), ConfigError> {
    match uuid_user(state, uuid) {
        Some(used_by) => Err(ConfigError::UuidInUse {
            uuid: uuid.to_string(),
            used_by,
        }),
        None => Ok(()),
    }
}

pub(crate) fn check_ip(ip: &str, node: &str) -> Result<(), ConfigError> {
    ip.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| ConfigError::InvalidIp {
            ip: ip.to_string(),
            node: node.to_string(),
        })
}

/// `aa:bb:cc:dd:ee:ff`, lowercase hex.
pub fn is_valid_mac(mac: &str) -> bool {
    is_hex_bytes(mac, 6)
}

pub(crate) fn is_hex_bytes(s: &str, n: usize) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == n
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

pub(crate) fn check_cluster_fields(c: &Cluster) -> Result<(), ConfigError> {
    check_uuid_nonempty("cluster", &c.uuid)?;
    check_name("cluster", &c.cluster_name)?;
    if !c.mac_prefix.is_empty() && !is_hex_bytes(&c.mac_prefix, 3) {
        return Err(ConfigError::Invalid(format!(
            "invalid MAC prefix '{}' (expected three lowercase hex bytes, e.g. aa:00:00)",
            c.mac_prefix
        )));
    }
    if let Some(m) = &c.master_ip {
        m.validate().map_err(ConfigError::Invalid)?;
    }
    Ok(())
}

pub(crate) fn check_group_fields(g: &NodeGroup) -> Result<(), ConfigError> {
    check_uuid_nonempty("node group", &g.uuid)?;
    check_name("node group", &g.name)?;
    Ok(())
}

pub(crate) fn check_group_name_free(state: &ConfigData, g: &NodeGroup) -> Result<(), ConfigError> {
    if state
        .nodegroups
        .values()
        .any(|o| o.name == g.name && o.uuid != g.uuid)
    {
        return Err(ConfigError::NameInUse {
            kind: "node group",
            name: g.name.clone(),
        });
    }
    Ok(())
}

/// Checks of a node that do not look at the rest of the config.
pub(crate) fn check_node_fields(n: &Node) -> Result<(), ConfigError> {
    check_uuid_nonempty("node", &n.uuid)?;
    check_name("node", &n.name)?;
    check_ip(&n.primary_ip, &n.name)?;
    if !n.secondary_ip.is_empty() {
        check_ip(&n.secondary_ip, &n.name)?;
    }
    if !n.room.is_empty() {
        maguey_model::rooms::validate_room(&n.room)
            .map_err(|e| ConfigError::Invalid(format!("node '{}': {e}", n.name)))?;
    }
    let both = |a: &str, b: &str| {
        Err(ConfigError::Invalid(format!(
            "node '{}' cannot be both {a} and {b}",
            n.name
        )))
    };
    if n.offline && n.drained {
        return both("offline", "drained");
    }
    if n.offline && n.master_candidate {
        return both("offline", "a master candidate");
    }
    if n.drained && n.master_candidate {
        return both("drained", "a master candidate");
    }
    Ok(())
}

/// Checks of a node against the other nodes and groups (its own uuid is skipped).
pub(crate) fn check_node_in_config(state: &ConfigData, n: &Node) -> Result<(), ConfigError> {
    let mut ips = vec![n.primary_ip.as_str()];
    if !n.secondary_ip.is_empty() && n.secondary_ip != n.primary_ip {
        ips.push(&n.secondary_ip);
    }
    for other in state.nodes.values().filter(|o| o.uuid != n.uuid) {
        if other.name == n.name {
            return Err(ConfigError::NameInUse {
                kind: "node",
                name: n.name.clone(),
            });
        }
        if let Some(ip) = ips
            .iter()
            .find(|ip| other.primary_ip == **ip || other.secondary_ip == **ip)
        {
            return Err(ConfigError::IpInUse {
                ip: ip.to_string(),
                node: other.name.clone(),
            });
        }
    }
    group(state, &n.group)?;
    Ok(())
}

/// Checks an instance against the config; `adding` is true for AddInstance (the instance's
/// own uuid is skipped when comparing, so this also serves UpdateInstance and [`verify`]).
pub(crate) fn check_instance(
    state: &ConfigData,
    inst: &Instance,
    adding: bool,
) -> Result<(), ConfigError> {
    check_uuid_nonempty("instance", &inst.uuid)?;
    check_name("instance", &inst.name)?;
    if !inst.disk_template.has_disks() && !inst.disks.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "instance '{}' is diskless but has {} disk(s)",
            inst.name,
            inst.disks.len()
        )));
    }
    let primary = node(state, &inst.primary_node)?;
    if adding && primary.offline {
        return Err(ConfigError::NodeOffline(primary.name.clone()));
    }
    if adding {
        // The rest of the uuid check (other instances' disks and NICs) is in the pass below.
        let uuid = inst.uuid.as_str();
        if uuid == state.cluster.uuid
            || state.nodegroups.contains_key(uuid)
            || state.nodes.contains_key(uuid)
            || state.instances.contains_key(uuid)
        {
            return Err(ConfigError::UuidInUse {
                uuid: uuid.to_string(),
                used_by: uuid_user(state, uuid).unwrap_or_default(),
            });
        }
    }

    // uuids of the instance's disks and NICs: non-empty, distinct, and not an object's uuid.
    let disks = all_disks(&inst.disks);
    let mut sub_uuids: Vec<&str> = Vec::with_capacity(disks.len() + inst.nics.len());
    for (kind, uuid) in disks
        .iter()
        .map(|d| ("disk", d.uuid.as_str()))
        .chain(inst.nics.iter().map(|n| ("NIC", n.uuid.as_str())))
    {
        check_uuid_nonempty(kind, uuid)?;
        if uuid == inst.uuid || sub_uuids.contains(&uuid) {
            return Err(ConfigError::UuidInUse {
                uuid: uuid.to_string(),
                used_by: format!("instance {}", inst.name),
            });
        }
        if uuid == state.cluster.uuid
            || state.nodegroups.contains_key(uuid)
            || state.nodes.contains_key(uuid)
            || state.instances.contains_key(uuid)
        {
            return Err(ConfigError::UuidInUse {
                uuid: uuid.to_string(),
                used_by: uuid_user(state, uuid).unwrap_or_default(),
            });
        }
        sub_uuids.push(uuid);
    }
    // uuids that no disk or NIC of another instance may have.
    let mut probe = sub_uuids.clone();
    if adding {
        probe.push(&inst.uuid);
    }
    for d in &disks {
        for n in &d.nodes {
            node(state, n)?;
        }
    }
    let mut macs: Vec<&str> = Vec::with_capacity(inst.nics.len());
    for nic in &inst.nics {
        if !is_valid_mac(&nic.mac) {
            return Err(ConfigError::InvalidMac {
                mac: nic.mac.clone(),
            });
        }
        if macs.contains(&nic.mac.as_str()) {
            return Err(ConfigError::MacInUse {
                mac: nic.mac.clone(),
                instance: inst.name.clone(),
            });
        }
        macs.push(&nic.mac);
    }

    check_drbd(state, inst)?;
    crate::network::check_instance_nics(state, inst)?;

    // One pass over the other instances: name, MACs, disk and NIC uuids.
    for other in state.instances.values().filter(|o| o.uuid != inst.uuid) {
        if other.name == inst.name {
            return Err(ConfigError::NameInUse {
                kind: "instance",
                name: inst.name.clone(),
            });
        }
        for nic in &other.nics {
            if macs.contains(&nic.mac.as_str()) {
                return Err(ConfigError::MacInUse {
                    mac: nic.mac.clone(),
                    instance: other.name.clone(),
                });
            }
            if probe.contains(&nic.uuid.as_str()) {
                return Err(ConfigError::UuidInUse {
                    uuid: nic.uuid.clone(),
                    used_by: format!("a NIC of instance {}", other.name),
                });
            }
        }
        let mut clash = None;
        if any_disk(&other.disks, &mut |d| {
            let hit = probe.contains(&d.uuid.as_str());
            if hit {
                clash = Some(d.uuid.clone());
            }
            hit
        }) {
            return Err(ConfigError::UuidInUse {
                uuid: clash.unwrap_or_default(),
                used_by: format!("a disk of instance {}", other.name),
            });
        }
    }
    Ok(())
}
