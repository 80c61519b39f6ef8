//! OP_CLUSTER_SET_PARAMS: the cluster's configuration (Ganeti's OpClusterSetParams).

use crate::params::Params;
use crate::vocab::{DiskTemplate, Hypervisor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Changes cluster-level settings; every field left out (`None`) stays as it is. Parameter
/// dictionaries are merged key by key into the cluster's (`hvparams` per hypervisor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpClusterSetParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_hypervisors: Option<Vec<Hypervisor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_disk_templates: Option<Vec<DiskTemplate>>,
    /// Hypervisor parameters by hypervisor name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hvparams: Option<BTreeMap<String, Params>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beparams: Option<Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nicparams: Option<Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndparams: Option<Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_pool_size: Option<u32>,
    /// Ganeti's name for the DRBD usermode helper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drbd_helper: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_file_storage_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_lvs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_iallocator: Option<String>,
    /// The cluster's instance policy: each field set, reset to `default` or left as it is
    /// (Ganeti's key names: `minmax`, `std`, `disk-templates`, `vcpu-ratio`, `spindle-ratio`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipolicy: Option<crate::ipolicy::IPolicyChange>,
    /// The floating master IP; empty: none (docs/master-ip.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_ip: Option<String>,
    /// The master node's network device the floating IP goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_netdev: Option<String>,
    /// The floating IP's prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_netmask: Option<u8>,
}
