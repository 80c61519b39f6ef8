//! The typed commands that change the config, and the pure function that applies them.
//!
//! [`apply`] is deterministic: the same state, timestamp and command always give the same
//! result, so a log of [`Entry`]s replayed from the same snapshot rebuilds the same config on
//! every replica. It first validates the command against the state ([`validate`]) and only then
//! changes it, so on `Err` the state is untouched.

use maguey_model::names::validate_hostname;
use maguey_model::{
    AdminState, AllocPolicy, Cluster, ConfigData, Disk, Instance, JoinToken, LogicalId, Node,
    NodeGroup, CONFIG_VERSION, DRBD_MAX_MINOR, DRBD_PORT_FIRST, DRBD_PORT_LAST,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

pub use crate::error::ConfigError;

/// Name of the node group that always exists and cannot be removed.
pub const DEFAULT_GROUP: &str = "default";
/// Allowed values of `NodeGroup::alloc_policy`.
pub const ALLOC_POLICIES: &[&str] = AllocPolicy::NAMES;

/// One change of the config.
// InitCluster carries three whole objects; commands are rare, boxing would only cost clarity.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Creates the cluster with its first group and its master node.
    InitCluster {
        cluster: Cluster,
        group: NodeGroup,
        master: Node,
    },
    /// Replaces the cluster object (uuid must match).
    UpdateCluster {
        cluster: Cluster,
    },
    AddGroup {
        group: NodeGroup,
    },
    /// Replaces a group by uuid.
    UpdateGroup {
        group: NodeGroup,
    },
    RemoveGroup {
        uuid: String,
    },
    /// Adds a node; also drops any join token for `node.name`.
    AddNode {
        node: Node,
    },
    /// Replaces a node by uuid.
    UpdateNode {
        node: Node,
    },
    RemoveNode {
        uuid: String,
    },
    AddInstance {
        instance: Instance,
    },
    /// Replaces an instance by uuid.
    UpdateInstance {
        instance: Instance,
    },
    SetInstanceAdminState {
        uuid: String,
        admin_state: AdminState,
    },
    RemoveInstance {
        uuid: String,
    },
    /// Adds a join token, replacing an older one for the same node name.
    AddJoinToken {
        token: JoinToken,
    },
    RemoveJoinToken {
        node_name: String,
    },
    /// Moves nodes (uuids) into a group (uuid).
    AssignNodes {
        group: String,
        nodes: Vec<String>,
    },
    AddNetwork {
        network: maguey_model::Network,
    },
    /// Replaces a network by uuid (its subnet cannot change).
    UpdateNetwork {
        network: maguey_model::Network,
    },
    RemoveNetwork {
        uuid: String,
    },
    /// Sets (with `None`: forgets) where a room's evacuated instances came from.
    SetRoomEvacuation {
        room: String,
        record: Option<maguey_model::rooms::RoomEvacuation>,
    },
    /// Adds or replaces a Remote API user (see `rapi_users.rs`).
    SetRapiUser {
        user: maguey_model::RapiUser,
    },
    RemoveRapiUser {
        name: String,
    },
}

impl Command {
    /// Short name of the command (its JSON tag), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "init_cluster",
            Command::UpdateCluster { .. } => "update_cluster",
            Command::AddGroup { .. } => "add_group",
            Command::UpdateGroup { .. } => "update_group",
            Command::RemoveGroup { .. } => "remove_group",
            Command::AddNode { .. } => "add_node",
            Command::UpdateNode { .. } => "update_node",
            Command::RemoveNode { .. } => "remove_node",
            Command::AddInstance { .. } => "add_instance",
            Command::UpdateInstance { .. } => "update_instance",
            Command::SetInstanceAdminState { .. } => "set_instance_admin_state",
            Command::RemoveInstance { .. } => "remove_instance",
            Command::AddJoinToken { .. } => "add_join_token",
            Command::RemoveJoinToken { .. } => "remove_join_token",
            Command::AssignNodes { .. } => "assign_nodes",
            Command::AddNetwork { .. } => "add_network",
            Command::UpdateNetwork { .. } => "update_network",
            Command::RemoveNetwork { .. } => "remove_network",
            Command::SetRoomEvacuation { .. } => "set_room_evacuation",
            Command::SetRapiUser { .. } => "set_rapi_user",
            Command::RemoveRapiUser { .. } => "remove_rapi_user",
        }
    }
}

/// One log entry: what the Raft log will carry later (index assigned by the store, ts by the
/// proposer so replicas agree on mtimes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub ts: f64,
    pub command: Command,
}

/// Pure and deterministic: applies one command to a state; on Err the state is unchanged.
pub fn apply(state: &mut ConfigData, ts: f64, command: &Command) -> Result<(), ConfigError> {
    validate(state, command)?;
    mutate(state, ts, command);
    Ok(())
}

/// Checks that `command` can be applied to `state`, without changing anything.
/// [`apply`] succeeds exactly when this does.
pub fn validate(state: &ConfigData, command: &Command) -> Result<(), ConfigError> {
    let initialised = is_initialised(state);
    match command {
        Command::InitCluster { .. } if initialised => return Err(ConfigError::AlreadyInitialised),
        Command::InitCluster { .. } => {}
        _ if !initialised => return Err(ConfigError::NotInitialised),
        _ => {}
    }
    match command {
        Command::InitCluster {
            cluster,
            group,
            master,
        } => {
            check_cluster_fields(cluster)?;
            if !cluster.master_node.is_empty() && cluster.master_node != master.uuid {
                return Err(ConfigError::Invalid(format!(
                    "cluster master_node '{}' is not the uuid of the master node '{}'",
                    cluster.master_node, master.uuid
                )));
            }
            check_group_fields(group)?;
            check_node_fields(master)?;
            if master.group != group.uuid {
                return Err(ConfigError::Unknown {
                    kind: "node group",
                    uuid: master.group.clone(),
                });
            }
            if master.offline || master.drained {
                return Err(ConfigError::Invalid(format!(
                    "the master node '{}' cannot be offline or drained",
                    master.name
                )));
            }
            let uuids = [
                (&cluster.uuid, "the cluster"),
                (&group.uuid, "the node group"),
                (&master.uuid, "the master node"),
            ];
            for (i, (a, _)) in uuids.iter().enumerate() {
                if let Some((_, used_by)) = uuids[..i].iter().find(|(b, _)| a == b) {
                    return Err(ConfigError::UuidInUse {
                        uuid: a.to_string(),
                        used_by: used_by.to_string(),
                    });
                }
            }
            Ok(())
        }
        Command::UpdateCluster { cluster } => {
            if cluster.uuid != state.cluster.uuid {
                return Err(ConfigError::ClusterUuidMismatch {
                    expected: state.cluster.uuid.clone(),
                    got: cluster.uuid.clone(),
                });
            }
            check_cluster_fields(cluster)?;
            let master = node(state, &cluster.master_node)?;
            if master.offline || master.drained {
                return Err(ConfigError::Invalid(format!(
                    "node '{}' is offline or drained and cannot be the master",
                    master.name
                )));
            }
            Ok(())
        }
        Command::AddGroup { group } => {
            check_group_fields(group)?;
            check_uuid_free(state, &group.uuid)?;
            check_group_name_free(state, group)?;
            crate::group::check_group(state, group)
        }
        Command::UpdateGroup { group } => {
            check_group_fields(group)?;
            self::group(state, &group.uuid)?;
            check_group_name_free(state, group)?;
            crate::group::check_group(state, group)
        }
        Command::RemoveGroup { uuid } => {
            let group = self::group(state, uuid)?;
            if group.name == DEFAULT_GROUP {
                return Err(ConfigError::RemoveDefaultGroup);
            }
            let nodes: Vec<&str> = state
                .nodes
                .values()
                .filter(|n| &n.group == uuid)
                .map(|n| n.name.as_str())
                .collect();
            if !nodes.is_empty() {
                return Err(ConfigError::GroupHasNodes {
                    group: group.name.clone(),
                    nodes: nodes.join(", "),
                });
            }
            if let Some(t) = state.join_tokens.values().find(|t| &t.group == uuid) {
                return Err(ConfigError::GroupHasJoinTokens {
                    group: group.name.clone(),
                    node: t.node_name.clone(),
                });
            }
            Ok(())
        }
        Command::AddNode { node } => {
            check_node_fields(node)?;
            check_uuid_free(state, &node.uuid)?;
            check_node_in_config(state, node)
        }
        Command::UpdateNode { node } => {
            check_node_fields(node)?;
            self::node(state, &node.uuid)?;
            check_node_in_config(state, node)?;
            if node.uuid == state.cluster.master_node && (node.offline || node.drained) {
                return Err(ConfigError::Invalid(format!(
                    "the master node '{}' cannot be set offline or drained",
                    node.name
                )));
            }
            Ok(())
        }
        Command::RemoveNode { uuid } => {
            let node = self::node(state, uuid)?;
            if uuid == &state.cluster.master_node {
                return Err(ConfigError::RemoveMaster);
            }
            let hosted: Vec<&str> = state
                .instances_on_node(uuid)
                .map(|i| i.name.as_str())
                .collect();
            if !hosted.is_empty() {
                return Err(ConfigError::NodeHostsInstances {
                    node: node.name.clone(),
                    instances: hosted.join(", "),
                });
            }
            Ok(())
        }
        Command::AddInstance { instance } => check_instance(state, instance, true),
        Command::UpdateInstance { instance } => {
            self::instance(state, &instance.uuid)?;
            check_instance(state, instance, false)
        }
        Command::SetInstanceAdminState { uuid, .. } | Command::RemoveInstance { uuid } => {
            self::instance(state, uuid).map(|_| ())
        }
        Command::AddJoinToken { token } => {
            validate_hostname(&token.node_name).map_err(|source| ConfigError::InvalidName {
                kind: "node",
                source,
            })?;
            if state.node_by_name(&token.node_name).is_some() {
                return Err(ConfigError::NameInUse {
                    kind: "node",
                    name: token.node_name.clone(),
                });
            }
            group(state, &token.group)?;
            check_ip(&token.primary_ip, &token.node_name)?;
            if !token.secondary_ip.is_empty() {
                check_ip(&token.secondary_ip, &token.node_name)?;
            }
            if let Some(n) = state
                .nodes
                .values()
                .find(|n| n.primary_ip == token.primary_ip || n.secondary_ip == token.primary_ip)
            {
                return Err(ConfigError::IpInUse {
                    ip: token.primary_ip.clone(),
                    node: n.name.clone(),
                });
            }
            Ok(())
        }
        Command::SetRoomEvacuation { room, record } => {
            crate::rooms::validate(state, room, record.as_ref())
        }
        Command::RemoveJoinToken { node_name } => {
            if state.join_tokens.contains_key(node_name) {
                Ok(())
            } else {
                Err(ConfigError::NoJoinToken(node_name.clone()))
            }
        }
        Command::AssignNodes { group, nodes } => crate::group::check_assign(state, group, nodes),
        Command::AddNetwork { network } => crate::network::check_add(state, network),
        Command::UpdateNetwork { network } => crate::network::check_update(state, network),
        Command::RemoveNetwork { uuid } => crate::network::check_remove(state, uuid),
        Command::SetRapiUser { user } => crate::rapi_users::validate_set(user),
        Command::RemoveRapiUser { name } => crate::rapi_users::validate_remove(state, name),
    }
}

/// Applies a validated command. Never fails; must only be called after [`validate`] succeeded
/// on the same state.
pub(crate) fn mutate(state: &mut ConfigData, ts: f64, command: &Command) {
    match command {
        Command::InitCluster {
            cluster,
            group,
            master,
        } => {
            let mut cluster = cluster.clone();
            cluster.master_node = master.uuid.clone();
            stamp_new(
                &mut cluster.serial_no,
                &mut cluster.ctime,
                &mut cluster.mtime,
                ts,
            );
            state.version = CONFIG_VERSION;
            state.cluster = cluster;
            state.ctime = ts;
            insert_group(state, group.clone(), None, ts);
            insert_node(state, master.clone(), None, ts);
        }
        Command::UpdateCluster { cluster } => {
            let old = &state.cluster;
            let mut cluster = cluster.clone();
            cluster.serial_no = old.serial_no + 1;
            cluster.ctime = old.ctime;
            cluster.mtime = ts;
            state.cluster = cluster;
        }
        Command::AddGroup { group } => insert_group(state, group.clone(), None, ts),
        Command::UpdateGroup { group } => {
            let old = state.nodegroups.get(&group.uuid).cloned();
            insert_group(state, group.clone(), old.as_ref(), ts);
        }
        Command::RemoveGroup { uuid } => {
            state.nodegroups.remove(uuid);
        }
        Command::AddNode { node } => {
            state.join_tokens.remove(&node.name);
            insert_node(state, node.clone(), None, ts);
        }
        Command::UpdateNode { node } => {
            let old = state.nodes.get(&node.uuid).cloned();
            insert_node(state, node.clone(), old.as_ref(), ts);
        }
        Command::RemoveNode { uuid } => {
            state.nodes.remove(uuid);
            crate::rooms::forget(state, uuid);
        }
        Command::AddInstance { instance } => {
            let mut instance = instance.clone();
            stamp_new(
                &mut instance.serial_no,
                &mut instance.ctime,
                &mut instance.mtime,
                ts,
            );
            for d in &mut instance.disks {
                stamp_new(&mut d.serial_no, &mut d.ctime, &mut d.mtime, ts);
            }
            state.instances.insert(instance.uuid.clone(), instance);
        }
        Command::UpdateInstance { instance } => {
            let mut instance = instance.clone();
            if let Some(old) = state.instances.get(&instance.uuid) {
                instance.serial_no = old.serial_no + 1;
                instance.ctime = old.ctime;
                instance.mtime = ts;
                for d in &mut instance.disks {
                    match old.disks.iter().find(|o| o.uuid == d.uuid) {
                        Some(o) if same_disk(o, d) => {
                            d.serial_no = o.serial_no;
                            d.ctime = o.ctime;
                            d.mtime = o.mtime;
                        }
                        Some(o) => {
                            d.serial_no = o.serial_no + 1;
                            d.ctime = o.ctime;
                            d.mtime = ts;
                        }
                        None => stamp_new(&mut d.serial_no, &mut d.ctime, &mut d.mtime, ts),
                    }
                }
            }
            state.instances.insert(instance.uuid.clone(), instance);
        }
        Command::SetInstanceAdminState { uuid, admin_state } => {
            if let Some(i) = state.instances.get_mut(uuid) {
                i.admin_state = *admin_state;
                i.serial_no += 1;
                i.mtime = ts;
            }
        }
        Command::RemoveInstance { uuid } => {
            state.instances.remove(uuid);
            crate::rooms::forget(state, uuid);
        }
        Command::AddJoinToken { token } => {
            state
                .join_tokens
                .insert(token.node_name.clone(), token.clone());
        }
        Command::RemoveJoinToken { node_name } => {
            state.join_tokens.remove(node_name);
        }
        Command::AssignNodes { group, nodes } => crate::group::assign(state, group, nodes, ts),
        Command::AddNetwork { network } => {
            let mut n = network.clone();
            stamp_new(&mut n.serial_no, &mut n.ctime, &mut n.mtime, ts);
            state.networks.insert(n.uuid.clone(), n);
        }
        Command::UpdateNetwork { network } => {
            let mut n = network.clone();
            if let Some(o) = state.networks.get(&n.uuid) {
                n.serial_no = o.serial_no + 1;
                n.ctime = o.ctime;
                n.mtime = ts;
            }
            state.networks.insert(n.uuid.clone(), n);
        }
        Command::RemoveNetwork { uuid } => {
            state.networks.remove(uuid);
        }
        Command::SetRoomEvacuation { room, record } => {
            crate::rooms::mutate(state, room, record.as_ref())
        }
        Command::SetRapiUser { user } => {
            state.rapi_users.insert(user.name.clone(), user.clone());
        }
        Command::RemoveRapiUser { name } => {
            state.rapi_users.remove(name);
        }
    }
    state.serial_no += 1;
    state.mtime = ts;
}

/// True once `InitCluster` has been applied.
pub fn is_initialised(state: &ConfigData) -> bool {
    !state.cluster.uuid.is_empty()
}

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

fn stamp_new(serial_no: &mut u64, ctime: &mut f64, mtime: &mut f64, ts: f64) {
    *serial_no = 1;
    *ctime = ts;
    *mtime = ts;
}

fn insert_group(state: &mut ConfigData, mut group: NodeGroup, old: Option<&NodeGroup>, ts: f64) {
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

fn insert_node(state: &mut ConfigData, mut node: Node, old: Option<&Node>, ts: f64) {
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
fn same_disk(a: &Disk, b: &Disk) -> bool {
    let strip = |d: &Disk| Disk {
        serial_no: 0,
        ctime: 0.0,
        mtime: 0.0,
        ..d.clone()
    };
    strip(a) == strip(b)
}

/// True if `f` holds for a disk or one of its children (depth first, no allocation).
fn any_disk(disks: &[Disk], f: &mut impl FnMut(&Disk) -> bool) -> bool {
    disks
        .iter()
        .any(|d| f(d) || (!d.children.is_empty() && any_disk(&d.children, f)))
}

/// DRBD disks: ports in Ganeti's pool, two different known nodes, and each port and each
/// (node, minor) used by one disk of the whole cluster only (Ganeti's `tcpudp_port_pool` and
/// per-node minors).
fn check_drbd(state: &ConfigData, inst: &Instance) -> Result<(), ConfigError> {
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
fn all_disks(disks: &[Disk]) -> Vec<&Disk> {
    let mut out = Vec::new();
    let mut stack: Vec<&Disk> = disks.iter().rev().collect();
    while let Some(d) = stack.pop() {
        out.push(d);
        stack.extend(d.children.iter().rev());
    }
    out
}

fn node<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a Node, ConfigError> {
    state.nodes.get(uuid).ok_or_else(|| ConfigError::Unknown {
        kind: "node",
        uuid: uuid.to_string(),
    })
}

fn group<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a NodeGroup, ConfigError> {
    state
        .nodegroups
        .get(uuid)
        .ok_or_else(|| ConfigError::Unknown {
            kind: "node group",
            uuid: uuid.to_string(),
        })
}

fn instance<'a>(state: &'a ConfigData, uuid: &str) -> Result<&'a Instance, ConfigError> {
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

fn check_uuid_nonempty(kind: &'static str, uuid: &str) -> Result<(), ConfigError> {
    if uuid.is_empty() {
        Err(ConfigError::EmptyUuid { kind })
    } else {
        Ok(())
    }
}

/// Who uses `uuid` already, if anyone (cluster, groups, nodes, instances, disks, NICs).
fn uuid_user(state: &ConfigData, uuid: &str) -> Option<String> {
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

fn check_ip(ip: &str, node: &str) -> Result<(), ConfigError> {
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

fn check_cluster_fields(c: &Cluster) -> Result<(), ConfigError> {
    check_uuid_nonempty("cluster", &c.uuid)?;
    check_name("cluster", &c.cluster_name)?;
    if !c.mac_prefix.is_empty() && !is_hex_bytes(&c.mac_prefix, 3) {
        return Err(ConfigError::Invalid(format!(
            "invalid MAC prefix '{}' (expected three lowercase hex bytes, e.g. aa:00:00)",
            c.mac_prefix
        )));
    }
    Ok(())
}

fn check_group_fields(g: &NodeGroup) -> Result<(), ConfigError> {
    check_uuid_nonempty("node group", &g.uuid)?;
    check_name("node group", &g.name)?;
    Ok(())
}

fn check_group_name_free(state: &ConfigData, g: &NodeGroup) -> Result<(), ConfigError> {
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
fn check_node_fields(n: &Node) -> Result<(), ConfigError> {
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
fn check_node_in_config(state: &ConfigData, n: &Node) -> Result<(), ConfigError> {
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
fn check_instance(state: &ConfigData, inst: &Instance, adding: bool) -> Result<(), ConfigError> {
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
