//! The join token of a node that joins again (`maguey node add NAME --readd`): the node is in
//! the config, and the token carries the addresses and group the config holds for it.

use crate::ConfigError;
use maguey_model::{ConfigData, JoinToken};

/// Refuses a re-add token that does not match a node of the config (other than the master).
pub(crate) fn validate(state: &ConfigData, token: &JoinToken) -> Result<(), ConfigError> {
    let node = state.node_by_name(&token.node_name).ok_or_else(|| {
        ConfigError::Invalid(format!("node '{}' is not in the cluster", token.node_name))
    })?;
    if node.uuid == state.cluster.master_node {
        return Err(ConfigError::Invalid(format!(
            "node '{}' is the master: it cannot be re-added",
            node.name
        )));
    }
    if node.primary_ip != token.primary_ip
        || node.secondary_ip != token.secondary_ip
        || node.group != token.group
        || node.witness != token.witness
    {
        return Err(ConfigError::Invalid(format!(
            "the re-add token of node '{}' does not match its addresses, group or role in the \
             config",
            node.name
        )));
    }
    Ok(())
}
