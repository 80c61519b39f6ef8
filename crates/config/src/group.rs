//! Node groups: the checks and changes of `AssignNodes` and of a group's own fields
//! (policy, networks) beyond the name checks in [`crate::commands`].

use crate::error::ConfigError;
use maguey_model::{ConfigData, NodeGroup};

/// Checks a new or changed group: its policy is consistent, its networks exist, and a network
/// is not disconnected while an instance of the group uses it.
pub(crate) fn check_group(state: &ConfigData, g: &NodeGroup) -> Result<(), ConfigError> {
    let pol = maguey_model::effective_ipolicy(
        &state.cluster.enabled_disk_templates,
        &state.cluster.ipolicy,
        Some(&g.ipolicy),
    );
    pol.validate()
        .map_err(|e| ConfigError::Invalid(format!("node group {}: {e}", g.name)))?;
    for net in g.networks.keys() {
        if !state.networks.contains_key(net) {
            return Err(ConfigError::Unknown {
                kind: "network",
                uuid: net.clone(),
            });
        }
    }
    if let Some(old) = state.nodegroups.get(&g.uuid) {
        for net in old.networks.keys().filter(|n| !g.networks.contains_key(*n)) {
            let users = crate::network::users_in_group(state, net, &g.uuid);
            if !users.is_empty() {
                let name = state.networks.get(net).map(|n| n.name.as_str());
                return Err(ConfigError::Invalid(format!(
                    "network {} is used by instances of group {}: {}",
                    name.unwrap_or(net),
                    g.name,
                    users.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// `AssignNodes`: the group and every node exist.
pub(crate) fn check_assign(
    state: &ConfigData,
    group: &str,
    nodes: &[String],
) -> Result<(), ConfigError> {
    if !state.nodegroups.contains_key(group) {
        return Err(ConfigError::Unknown {
            kind: "node group",
            uuid: group.to_string(),
        });
    }
    if nodes.is_empty() {
        return Err(ConfigError::Invalid("no nodes to assign".into()));
    }
    for n in nodes {
        if !state.nodes.contains_key(n) {
            return Err(ConfigError::Unknown {
                kind: "node",
                uuid: n.clone(),
            });
        }
    }
    Ok(())
}

/// Moves the nodes into the group (one change, every node's serial raised).
pub(crate) fn assign(state: &mut ConfigData, group: &str, nodes: &[String], ts: f64) {
    for uuid in nodes {
        if let Some(n) = state.nodes.get_mut(uuid) {
            if n.group != group {
                n.group = group.to_string();
                n.serial_no += 1;
                n.mtime = ts;
            }
        }
    }
    if let Some(g) = state.nodegroups.get_mut(group) {
        g.serial_no += 1;
        g.mtime = ts;
    }
}

/// Names of the instances whose nodes are in more than one group (Ganeti's split
/// instances), with the groups.
pub fn split_instances(state: &ConfigData) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for i in state.instances.values() {
        let mut groups: Vec<String> = Vec::new();
        for n in std::iter::once(i.primary_node.as_str()).chain(i.secondary_nodes()) {
            if let Some(g) = state.group_of_node(n) {
                if !groups.contains(&g.name) {
                    groups.push(g.name.clone());
                }
            }
        }
        if groups.len() > 1 {
            out.push((i.name.clone(), groups));
        }
    }
    out
}
