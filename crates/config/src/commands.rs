//! The typed commands that change the config, and the pure function that applies them.
//!
//! [`apply`] is deterministic: the same state, timestamp and command always give the same
//! result, so a log of [`Entry`]s replayed from the same snapshot rebuilds the same config on
//! every replica. It first validates the command against the state ([`validate`]) and only then
//! changes it, so on `Err` the state is untouched.

use maguey_model::names::validate_hostname;
use maguey_model::{
    AdminState, AllocPolicy, Cluster, ConfigData, Instance, JoinToken, Node, NodeGroup,
    CONFIG_VERSION,
};
use serde::{Deserialize, Serialize};

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
        Command::AddJoinToken { token } if token.readd => crate::readd::validate(state, token),
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

pub use crate::checks::is_valid_mac;
pub use crate::checks::verify;
pub(crate) use crate::checks::*;
