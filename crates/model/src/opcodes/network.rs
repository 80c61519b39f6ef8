//! Network opcodes (Ganeti's OpNetwork*).

use crate::vocab::NicMode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNetworkAdd {
    pub network_name: String,
    /// IPv4 subnet, `a.b.c.d/len`.
    pub network: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub network6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    #[serde(default)]
    pub mac_prefix: Option<String>,
    #[serde(default)]
    pub add_reserved_ips: Vec<String>,
    #[serde(default)]
    pub conflicts_check: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNetworkRemove {
    pub network_name: String,
    #[serde(default)]
    pub force: bool,
}

/// `none` clears the gateway, IPv6 fields or MAC prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNetworkSetParams {
    pub network_name: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub network6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    #[serde(default)]
    pub mac_prefix: Option<String>,
    #[serde(default)]
    pub add_reserved_ips: Vec<String>,
    #[serde(default)]
    pub remove_reserved_ips: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNetworkRename {
    pub network_name: String,
    pub new_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNetworkConnect {
    pub group_name: String,
    pub network_name: String,
    pub network_mode: NicMode,
    pub network_link: String,
    #[serde(default)]
    pub network_vlan: String,
    #[serde(default)]
    pub conflicts_check: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpNetworkDisconnect {
    pub group_name: String,
    pub network_name: String,
}
