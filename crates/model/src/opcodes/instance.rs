//! Instance opcodes: creation, removal, state, parameters, OS, queries.

use super::{default_shutdown_timeout, yes};
use crate::params::Params;
use crate::vocab::{
    AdminStateSource, DiskMode, DiskTemplate, Hypervisor, InstanceCreateMode, NicMode, RebootType,
};
use serde::{Deserialize, Serialize};

/// A disk of a new instance (`--disk N:size=SIZE,mode=rw`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Size in MiB.
    pub size: u64,
    #[serde(default)]
    pub mode: Option<DiskMode>,
    #[serde(default)]
    pub name: Option<String>,
    /// `plain`/`drbd`: the volume group of this disk's LVs (default: the cluster's).
    #[serde(default)]
    pub vg: Option<String>,
}

/// A NIC of a new instance (`--net N:mac=...,ip=...,mode=...,link=...`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NicSpec {
    /// `auto` or absent: generated from the cluster's MAC prefix.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub mode: Option<NicMode>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceCreate {
    pub instance_name: String,
    #[serde(default)]
    pub mode: InstanceCreateMode,
    pub disk_template: DiskTemplate,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    #[serde(default)]
    pub pnode: Option<String>,
    #[serde(default)]
    pub snode: Option<String>,
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub osparams: Params,
    #[serde(default)]
    pub no_install: bool,
    #[serde(default = "yes")]
    pub start: bool,
    #[serde(default)]
    pub hypervisor: Option<Hypervisor>,
    #[serde(default)]
    pub hvparams: Params,
    #[serde(default)]
    pub beparams: Params,
    #[serde(default)]
    pub iallocator: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `drbd`: wait until the initial resync is done (Ganeti's `wait_for_sync`).
    #[serde(default = "yes")]
    pub wait_for_sync: bool,
    /// The allocator chooses nodes in this group only (`-g`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_ipolicy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceRemove {
    pub instance_name: String,
    #[serde(default)]
    pub ignore_failures: bool,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceStartup {
    pub instance_name: String,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub beparams: Params,
    #[serde(default)]
    pub hvparams: Params,
    #[serde(default)]
    pub no_remember: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceShutdown {
    pub instance_name: String,
    #[serde(default = "default_shutdown_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub no_remember: bool,
    /// Who asks for the stop: `user` records a guest's own power-off (the watcher).
    #[serde(default, skip_serializing_if = "AdminStateSource::is_admin")]
    pub admin_state_source: AdminStateSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceReboot {
    pub instance_name: String,
    #[serde(default)]
    pub reboot_type: RebootType,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceSetParams {
    pub instance_name: String,
    #[serde(default)]
    pub beparams: Params,
    #[serde(default)]
    pub hvparams: Params,
    #[serde(default)]
    pub osparams: Params,
    #[serde(default)]
    pub offline: Option<bool>,
    /// Memory (MiB) of the running instance, changed now through the balloon
    /// (Ganeti's `runtime_mem`, `modify -m`).
    #[serde(default)]
    pub runtime_mem: Option<u64>,
    #[serde(default)]
    pub force: bool,
    /// Converts the disks to this template (`plain` <-> `drbd`); the instance is stopped.
    #[serde(default)]
    pub disk_template: Option<DiskTemplate>,
    /// The secondary node of a conversion to `drbd`.
    #[serde(default)]
    pub remote_node: Option<String>,
    #[serde(default = "yes")]
    pub wait_for_sync: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_ipolicy: bool,
}

/// Reinstalls an instance's OS (Ganeti's OpInstanceReinstall); the instance must be
/// stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceReinstall {
    pub instance_name: String,
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub osparams: Option<Params>,
}

/// Renames an instance (Ganeti's OpInstanceRename); the instance must be stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceRename {
    pub instance_name: String,
    pub new_name: String,
    #[serde(default)]
    pub ip_check: bool,
    #[serde(default)]
    pub name_check: bool,
}

/// Detailed configuration and runtime data of instances (Ganeti's OpInstanceQueryData).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpInstanceQueryData {
    #[serde(default)]
    pub instances: Vec<String>,
    /// Only the configuration, no live data from the nodes.
    #[serde(default, rename = "static")]
    pub static_only: bool,
    #[serde(default)]
    pub use_locking: bool,
}
