//! Cluster opcodes.

use serde::{Deserialize, Serialize};

/// Verifies the configuration and every node (Ganeti's OpClusterVerify).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpClusterVerify {
    #[serde(default)]
    pub skip_checks: Vec<String>,
}

/// Tears down the cluster on every node; only allowed without instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpClusterDestroy {}

/// Finds instances whose disks should be active but are not (Ganeti's
/// OpClusterVerifyDisks); the result lists them for activate-disks jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpClusterVerifyDisks {
    #[serde(default)]
    pub group_name: Option<String>,
}

/// Brings the floating master IP up on the master node (Ganeti's
/// OpClusterActivateMasterIp).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpClusterActivateMasterIp {}

/// Takes the floating master IP down from the master node (Ganeti's
/// OpClusterDeactivateMasterIp).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpClusterDeactivateMasterIp {}
