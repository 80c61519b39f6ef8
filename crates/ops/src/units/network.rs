//! OP_NETWORK_ADD, OP_NETWORK_SET_PARAMS, OP_NETWORK_RENAME and OP_NETWORK_REMOVE (Ganeti's
//! LUNetworkAdd, LUNetworkSetParams, LUNetworkRename, LUNetworkRemove): one config command
//! each; a network in use or connected to a group is not removed.

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{names::validate_hostname, new_uuid, ConfigData, Network};
use serde_json::{json, Value};

pub(crate) fn network_by_name<'a>(cfg: &'a ConfigData, name: &str) -> Result<&'a Network, OpError> {
    cfg.network_by_name(name)
        .ok_or_else(|| prereq(format!("network '{name}' is not known to the cluster")))
}

/// `none` or an empty value clears an optional field.
fn optional(v: &str) -> Option<String> {
    (!v.is_empty() && v != "none").then(|| v.to_string())
}

/// Checks the network as the config will (subnet, gateway, reservations, prefixes), so that a
/// bad value is a refusal and not a failed config change.
fn check_network(cfg: &ConfigData, n: &Network, adding: bool) -> Result<(), OpError> {
    let cmd = if adding {
        Command::AddNetwork { network: n.clone() }
    } else {
        Command::UpdateNetwork { network: n.clone() }
    };
    maguey_config::validate(cfg, &cmd).map_err(|e| prereq(e.to_string()))
}

pub struct NetworkAdd {
    op: maguey_model::OpNetworkAdd,
}

impl LogicalUnit for NetworkAdd {
    type Op = maguey_model::OpNetworkAdd;
    type Checked = Network;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        validate_hostname(&op.network_name)
            .map_err(|e| prereq(format!("invalid network name: {e}")))?;
        for t in &op.tags {
            crate::tags::validate_tag(t).map_err(prereq)?;
        }
        Ok(NetworkAdd { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::network_changed(&self.op.network_name, None)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Network, OpError> {
        let op = &self.op;
        if cfg.network_by_name(&op.network_name).is_some() {
            return Err(prereq(format!(
                "network '{}' already exists",
                op.network_name
            )));
        }
        let n = Network {
            uuid: new_uuid(),
            name: op.network_name.clone(),
            network: op.network.clone(),
            gateway: op.gateway.as_deref().and_then(optional),
            network6: op.network6.as_deref().and_then(optional),
            gateway6: op.gateway6.as_deref().and_then(optional),
            mac_prefix: op
                .mac_prefix
                .as_deref()
                .and_then(optional)
                .map(|m| m.to_lowercase()),
            ext_reservations: dedup(&op.add_reserved_ips),
            tags: op.tags.clone(),
            ..Default::default()
        };
        check_network(cfg, &n, true)?;
        Ok(n)
    }

    async fn exec(&mut self, env: &Env<'_>, n: Network) -> Result<Value, OpError> {
        env.apply(Command::AddNetwork { network: n.clone() })
            .await?;
        env.log(format!("network {} ({}) added", n.name, n.network));
        Ok(json!({"uuid": n.uuid}))
    }
}

fn dedup(ips: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ip in ips {
        if !out.contains(ip) {
            out.push(ip.clone());
        }
    }
    out
}

pub struct NetworkSetParams {
    op: maguey_model::OpNetworkSetParams,
}

impl LogicalUnit for NetworkSetParams {
    type Op = maguey_model::OpNetworkSetParams;
    type Checked = Network;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        if op.gateway.is_none()
            && op.network6.is_none()
            && op.gateway6.is_none()
            && op.mac_prefix.is_none()
            && op.add_reserved_ips.is_empty()
            && op.remove_reserved_ips.is_empty()
        {
            return Err(prereq("no changes requested"));
        }
        Ok(NetworkSetParams { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::network_changed(&self.op.network_name, None)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Network, OpError> {
        let op = &self.op;
        let mut n = network_by_name(cfg, &op.network_name)?.clone();
        if let Some(g) = &op.gateway {
            n.gateway = optional(g);
        }
        if let Some(v) = &op.network6 {
            n.network6 = optional(v);
        }
        if let Some(v) = &op.gateway6 {
            n.gateway6 = optional(v);
        }
        if let Some(v) = &op.mac_prefix {
            n.mac_prefix = optional(v).map(|m| m.to_lowercase());
        }
        for ip in &op.remove_reserved_ips {
            if !n.ext_reservations.contains(ip) {
                return Err(prereq(format!(
                    "address {ip} is not an external reservation of network {}",
                    n.name
                )));
            }
        }
        n.ext_reservations
            .retain(|ip| !op.remove_reserved_ips.contains(ip));
        for ip in &op.add_reserved_ips {
            if !n.ext_reservations.contains(ip) {
                n.ext_reservations.push(ip.clone());
            }
        }
        check_network(cfg, &n, false)?;
        Ok(n)
    }

    async fn exec(&mut self, env: &Env<'_>, n: Network) -> Result<Value, OpError> {
        env.apply(Command::UpdateNetwork { network: n.clone() })
            .await?;
        env.log(format!("network {} modified", n.name));
        Ok(Value::Null)
    }
}

pub struct NetworkRename {
    op: maguey_model::OpNetworkRename,
}

impl LogicalUnit for NetworkRename {
    type Op = maguey_model::OpNetworkRename;
    type Checked = Network;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        validate_hostname(&op.new_name)
            .map_err(|e| prereq(format!("invalid network name: {e}")))?;
        Ok(NetworkRename { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::network_changed(&self.op.network_name, None)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Network, OpError> {
        let mut n = network_by_name(cfg, &self.op.network_name)?.clone();
        if cfg.network_by_name(&self.op.new_name).is_some() {
            return Err(prereq(format!(
                "network '{}' already exists",
                self.op.new_name
            )));
        }
        n.name = self.op.new_name.clone();
        Ok(n)
    }

    async fn exec(&mut self, env: &Env<'_>, n: Network) -> Result<Value, OpError> {
        env.apply(Command::UpdateNetwork { network: n.clone() })
            .await?;
        env.log(format!(
            "network {} renamed to {}",
            self.op.network_name, n.name
        ));
        Ok(json!(n.name))
    }
}

pub struct NetworkRemove {
    name: String,
}

impl LogicalUnit for NetworkRemove {
    type Op = maguey_model::OpNetworkRemove;
    type Checked = String;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        Ok(NetworkRemove {
            name: op.network_name.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::network_changed(&self.name, None)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<String, OpError> {
        let n = network_by_name(cfg, &self.name)?;
        let users = maguey_config::network::users(cfg, &n.uuid);
        if !users.is_empty() {
            return Err(prereq(format!(
                "network {} is in use by instance(s) {}",
                n.name,
                users.join(", ")
            )));
        }
        let groups: Vec<&str> = cfg
            .nodegroups
            .values()
            .filter(|g| g.networks.contains_key(&n.uuid))
            .map(|g| g.name.as_str())
            .collect();
        if !groups.is_empty() {
            return Err(prereq(format!(
                "network {} is still connected to group(s) {} (disconnect it first)",
                n.name,
                groups.join(", ")
            )));
        }
        Ok(n.uuid.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, uuid: String) -> Result<Value, OpError> {
        env.apply(Command::RemoveNetwork { uuid }).await?;
        env.log(format!("network {} removed", self.name));
        Ok(Value::Null)
    }
}
