//! OP_NETWORK_CONNECT and OP_NETWORK_DISCONNECT: a network joined to a node group with the
//! NIC mode and link its NICs get there (Ganeti's LUNetworkConnect, LUNetworkDisconnect).
//! Disconnecting is refused while an instance of the group has a NIC in the network.

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, NetConnection, NicMode, NodeGroup};
use serde_json::Value;

fn find(cfg: &ConfigData, group: &str, net: &str) -> Result<(NodeGroup, String), OpError> {
    let g = cfg
        .group_by_name(group)
        .ok_or_else(|| prereq(format!("node group '{group}' is not known to the cluster")))?;
    let n = cfg
        .network_by_name(net)
        .ok_or_else(|| prereq(format!("network '{net}' is not known to the cluster")))?;
    Ok((g.clone(), n.uuid.clone()))
}

/// Both opcodes; `connect` is None for a disconnection.
pub struct NetworkConnection {
    group: String,
    network: String,
    connect: Option<(NetConnection, bool)>,
}

impl NetworkConnection {
    fn connecting(op: &maguey_model::OpNetworkConnect, _: &ConfigData) -> Result<Self, OpError> {
        if op.network_link.is_empty() && op.network_mode != NicMode::Openvswitch {
            return Err(prereq(
                "a network link is needed (the bridge or routing table)",
            ));
        }
        Ok(NetworkConnection {
            group: op.group_name.clone(),
            network: op.network_name.clone(),
            connect: Some((
                NetConnection {
                    mode: op.network_mode,
                    link: op.network_link.clone(),
                    vlan: op.network_vlan.clone(),
                },
                op.conflicts_check,
            )),
        })
    }
    fn disconnecting(
        op: &maguey_model::OpNetworkDisconnect,
        _: &ConfigData,
    ) -> Result<Self, OpError> {
        Ok(NetworkConnection {
            group: op.group_name.clone(),
            network: op.network_name.clone(),
            connect: None,
        })
    }
}

impl LogicalUnit for NetworkConnection {
    type Op = maguey_model::OpNetworkConnect;
    type Checked = Option<NodeGroup>;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        Self::connecting(op, cfg)
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::network_changed(&self.network, Some(&self.group))
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Option<NodeGroup>, OpError> {
        let (mut g, net) = find(cfg, &self.group, &self.network)?;
        match &self.connect {
            Some((conn, conflicts_check)) => {
                if g.networks.get(&net) == Some(conn) {
                    return Ok(None);
                }
                if *conflicts_check {
                    // Addresses of the group's instances, outside any network, that fall into
                    // this network's subnet (Ganeti's conflicts check).
                    let subnet = cfg.networks[&net].subnet().map_err(prereq)?;
                    let clash: Vec<String> = cfg
                        .instances
                        .values()
                        .filter(|i| {
                            cfg.group_of_node(&i.primary_node).map(|x| &x.uuid) == Some(&g.uuid)
                                && i.nics.iter().any(|n| {
                                    n.network.is_none()
                                        && n.ip
                                            .as_deref()
                                            .and_then(|ip| ip.parse().ok())
                                            .is_some_and(|a| subnet.contains(a))
                                })
                        })
                        .map(|i| i.name.clone())
                        .collect();
                    if !clash.is_empty() {
                        return Err(prereq(format!(
                            "instance(s) {} of group {} have addresses in network {}",
                            clash.join(", "),
                            g.name,
                            self.network
                        )));
                    }
                }
                g.networks.insert(net, conn.clone());
            }
            None => {
                if !g.networks.contains_key(&net) {
                    return Ok(None);
                }
                let users = maguey_config::network::users_in_group(cfg, &net, &g.uuid);
                if !users.is_empty() {
                    return Err(prereq(format!(
                        "network {} is in use by instance(s) {} of group {}",
                        self.network,
                        users.join(", "),
                        g.name
                    )));
                }
                g.networks.remove(&net);
            }
        }
        Ok(Some(g))
    }

    async fn exec(&mut self, env: &Env<'_>, g: Option<NodeGroup>) -> Result<Value, OpError> {
        let verb = if self.connect.is_some() {
            "connected to"
        } else {
            "disconnected from"
        };
        let Some(g) = g else {
            env.log(format!(
                "network {} is already {verb} group {}",
                self.network, self.group
            ));
            return Ok(Value::Null);
        };
        env.apply(Command::UpdateGroup { group: g }).await?;
        env.log(format!(
            "network {} {verb} group {}",
            self.network, self.group
        ));
        Ok(Value::Null)
    }
}

crate::unit_alias!(
    /// OP_NETWORK_DISCONNECT: the phases of [`NetworkConnection`].
    NetworkDisconnect,
    maguey_model::OpNetworkDisconnect,
    NetworkConnection,
    NetworkConnection::disconnecting
);
