//! Opcodes: the unit of work of a job. Names (`OP_ID`) and fields follow Ganeti's.

use crate::params::Params;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn yes() -> bool {
    true
}
fn default_shutdown_timeout() -> u64 {
    120
}
fn default_reboot_type() -> String {
    "soft".to_string()
}
fn default_mode() -> String {
    "create".to_string()
}
fn default_repeat() -> u32 {
    0
}
fn default_evac_mode() -> String {
    "all".to_string()
}
fn default_max_parallel() -> u32 {
    4
}

/// A disk of a new instance (`--disk N:size=SIZE,mode=rw`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Size in MiB.
    pub size: u64,
    #[serde(default)]
    pub mode: Option<String>,
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
    pub mode: Option<String>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Every opcode Maguey executes. Serialized with Ganeti's `OP_ID` tag.
// Opcodes are built once per job and moved rarely; boxing the big variant would only make
// the enum harder to construct and match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "OP_ID")]
pub enum OpCode {
    /// Verifies the configuration and every node (Ganeti's OpClusterVerify).
    #[serde(rename = "OP_CLUSTER_VERIFY")]
    ClusterVerify {
        #[serde(default)]
        skip_checks: Vec<String>,
    },
    /// Tears down the cluster on every node; only allowed without instances.
    #[serde(rename = "OP_CLUSTER_DESTROY")]
    ClusterDestroy {},
    #[serde(rename = "OP_NODE_ADD")]
    NodeAdd {
        node_name: String,
        primary_ip: String,
        #[serde(default)]
        secondary_ip: Option<String>,
        #[serde(default)]
        group: Option<String>,
        #[serde(default)]
        master_capable: Option<bool>,
        #[serde(default)]
        vm_capable: Option<bool>,
    },
    #[serde(rename = "OP_NODE_REMOVE")]
    NodeRemove { node_name: String },
    #[serde(rename = "OP_NODE_SET_PARAMS")]
    NodeSetParams {
        node_name: String,
        #[serde(default)]
        offline: Option<bool>,
        #[serde(default)]
        drained: Option<bool>,
        #[serde(default)]
        master_candidate: Option<bool>,
        #[serde(default)]
        master_capable: Option<bool>,
        #[serde(default)]
        vm_capable: Option<bool>,
        #[serde(default)]
        force: bool,
    },
    #[serde(rename = "OP_INSTANCE_CREATE")]
    InstanceCreate {
        instance_name: String,
        #[serde(default = "default_mode")]
        mode: String,
        disk_template: String,
        #[serde(default)]
        disks: Vec<DiskSpec>,
        #[serde(default)]
        nics: Vec<NicSpec>,
        #[serde(default)]
        pnode: Option<String>,
        #[serde(default)]
        snode: Option<String>,
        #[serde(default)]
        os_type: Option<String>,
        #[serde(default)]
        osparams: Params,
        #[serde(default)]
        no_install: bool,
        #[serde(default = "yes")]
        start: bool,
        #[serde(default)]
        hypervisor: Option<String>,
        #[serde(default)]
        hvparams: Params,
        #[serde(default)]
        beparams: Params,
        #[serde(default)]
        iallocator: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        /// `drbd`: wait until the initial resync is done (Ganeti's `wait_for_sync`).
        #[serde(default = "yes")]
        wait_for_sync: bool,
    },
    #[serde(rename = "OP_INSTANCE_REMOVE")]
    InstanceRemove {
        instance_name: String,
        #[serde(default)]
        ignore_failures: bool,
        #[serde(default = "default_shutdown_timeout")]
        shutdown_timeout: u64,
    },
    #[serde(rename = "OP_INSTANCE_STARTUP")]
    InstanceStartup {
        instance_name: String,
        #[serde(default)]
        force: bool,
        #[serde(default)]
        beparams: Params,
        #[serde(default)]
        hvparams: Params,
        #[serde(default)]
        no_remember: bool,
    },
    #[serde(rename = "OP_INSTANCE_SHUTDOWN")]
    InstanceShutdown {
        instance_name: String,
        #[serde(default = "default_shutdown_timeout")]
        timeout: u64,
        #[serde(default)]
        no_remember: bool,
    },
    #[serde(rename = "OP_INSTANCE_REBOOT")]
    InstanceReboot {
        instance_name: String,
        /// `soft`, `hard` or `full`.
        #[serde(default = "default_reboot_type")]
        reboot_type: String,
        #[serde(default = "default_shutdown_timeout")]
        shutdown_timeout: u64,
    },
    #[serde(rename = "OP_INSTANCE_SET_PARAMS")]
    InstanceSetParams {
        instance_name: String,
        #[serde(default)]
        beparams: Params,
        #[serde(default)]
        hvparams: Params,
        #[serde(default)]
        osparams: Params,
        #[serde(default)]
        offline: Option<bool>,
        /// Memory (MiB) of the running instance, changed now through the balloon
        /// (Ganeti's `runtime_mem`, `modify -m`).
        #[serde(default)]
        runtime_mem: Option<u64>,
        #[serde(default)]
        force: bool,
        /// Converts the disks to this template (`plain` <-> `drbd`); the instance is stopped.
        #[serde(default)]
        disk_template: Option<String>,
        /// The secondary node of a conversion to `drbd`.
        #[serde(default)]
        remote_node: Option<String>,
        #[serde(default = "yes")]
        wait_for_sync: bool,
    },
    /// Moves a running instance to another node without stopping it (Ganeti's
    /// OpInstanceMigrate). `sharedfile` disks stay where they are; `file` disks move with the
    /// instance (mirrored live over NBD). A stopped instance is failed over instead.
    #[serde(rename = "OP_INSTANCE_MIGRATE")]
    InstanceMigrate {
        instance_name: String,
        /// `live` (default) or `non-live` (paused while its memory moves).
        #[serde(default)]
        mode: Option<String>,
        /// Ganeti's deprecated flag: `false` means `non-live`.
        #[serde(default)]
        live: Option<bool>,
        #[serde(default)]
        target_node: Option<String>,
        /// Repairs the state after a failed migration instead of migrating.
        #[serde(default)]
        cleanup: bool,
        #[serde(default = "yes")]
        allow_failover: bool,
        #[serde(default)]
        iallocator: Option<String>,
        #[serde(default)]
        ignore_ipolicy: bool,
        #[serde(default = "yes")]
        allow_runtime_changes: bool,
    },
    /// Stops an instance and starts it on another node (Ganeti's OpInstanceFailover); for
    /// disks every node sees (`sharedfile`) or replicates (`drbd`).
    #[serde(rename = "OP_INSTANCE_FAILOVER")]
    InstanceFailover {
        instance_name: String,
        #[serde(default = "default_shutdown_timeout")]
        shutdown_timeout: u64,
        /// Go on although the primary node cannot be reached (it is down).
        #[serde(default)]
        ignore_consistency: bool,
        #[serde(default)]
        target_node: Option<String>,
        #[serde(default)]
        iallocator: Option<String>,
        #[serde(default)]
        ignore_ipolicy: bool,
    },
    /// Copies a stopped instance's disks to another node and makes it the primary (Ganeti's
    /// OpInstanceMove).
    #[serde(rename = "OP_INSTANCE_MOVE")]
    InstanceMove {
        instance_name: String,
        target_node: String,
        #[serde(default = "default_shutdown_timeout")]
        shutdown_timeout: u64,
        #[serde(default)]
        ignore_consistency: bool,
        #[serde(default)]
        ignore_ipolicy: bool,
    },
    /// Reinstalls an instance's OS (Ganeti's OpInstanceReinstall); the instance must be
    /// stopped.
    #[serde(rename = "OP_INSTANCE_REINSTALL")]
    InstanceReinstall {
        instance_name: String,
        #[serde(default)]
        os_type: Option<String>,
        #[serde(default)]
        osparams: Option<Params>,
    },
    /// Renames an instance (Ganeti's OpInstanceRename); the instance must be stopped.
    #[serde(rename = "OP_INSTANCE_RENAME")]
    InstanceRename {
        instance_name: String,
        new_name: String,
        #[serde(default)]
        ip_check: bool,
        #[serde(default)]
        name_check: bool,
    },
    /// Live-migrates every primary instance off a node, each as its own job (Ganeti's
    /// OpNodeMigrate).
    #[serde(rename = "OP_NODE_MIGRATE")]
    NodeMigrate {
        node_name: String,
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        live: Option<bool>,
        #[serde(default)]
        target_node: Option<String>,
        #[serde(default)]
        iallocator: Option<String>,
        #[serde(default)]
        ignore_ipolicy: bool,
        #[serde(default = "yes")]
        allow_runtime_changes: bool,
        /// Maguey: at most this many of the jobs run at once.
        #[serde(default = "default_max_parallel")]
        max_parallel: u32,
    },
    /// Empties a node (Ganeti's OpNodeEvacuate): the placement engine plans where each
    /// instance goes; each move runs as its own job.
    #[serde(rename = "OP_NODE_EVACUATE")]
    NodeEvacuate {
        node_name: String,
        /// `primary-only`, `secondary-only` or `all`.
        #[serde(default = "default_evac_mode")]
        mode: String,
        #[serde(default)]
        remote_node: Option<String>,
        #[serde(default)]
        iallocator: Option<String>,
        #[serde(default)]
        early_release: bool,
        /// Maguey: at most this many of the jobs run at once.
        #[serde(default = "default_max_parallel")]
        max_parallel: u32,
    },
    /// Brings an instance's disks up on its nodes without starting it (Ganeti's
    /// OpInstanceActivateDisks); DRBD disks connect and the primary side is promoted.
    #[serde(rename = "OP_INSTANCE_ACTIVATE_DISKS")]
    InstanceActivateDisks {
        instance_name: String,
        #[serde(default)]
        ignore_size: bool,
        #[serde(default)]
        wait_for_sync: bool,
        /// Maguey: a DRBD split brain is resolved in favour of the configured primary (the
        /// secondary's diverging writes are discarded, then it resyncs).
        #[serde(default)]
        resolve_split_brain: bool,
    },
    /// Shuts an instance's disks down on its nodes (Ganeti's OpInstanceDeactivateDisks).
    #[serde(rename = "OP_INSTANCE_DEACTIVATE_DISKS")]
    InstanceDeactivateDisks {
        instance_name: String,
        #[serde(default)]
        force: bool,
    },
    /// Grows one disk (Ganeti's OpInstanceGrowDisk): storage on every node of the disk, DRBD,
    /// then the running guest.
    #[serde(rename = "OP_INSTANCE_GROW_DISK")]
    InstanceGrowDisk {
        instance_name: String,
        /// Disk index.
        disk: usize,
        /// MiB to add, or the new size with `absolute`.
        amount: u64,
        #[serde(default)]
        absolute: bool,
        #[serde(default = "yes")]
        wait_for_sync: bool,
    },
    /// Replaces the storage under an instance's DRBD disks (Ganeti's OpInstanceReplaceDisks):
    /// `replace_on_primary`, `replace_on_secondary`, `replace_new_secondary` (with
    /// `remote_node` or `iallocator`) or `replace_auto`.
    #[serde(rename = "OP_INSTANCE_REPLACE_DISKS")]
    InstanceReplaceDisks {
        instance_name: String,
        mode: String,
        /// Disk indices; empty: all (for `replace_new_secondary` and `replace_auto`, always all).
        #[serde(default)]
        disks: Vec<usize>,
        #[serde(default)]
        remote_node: Option<String>,
        #[serde(default)]
        iallocator: Option<String>,
        #[serde(default)]
        early_release: bool,
        #[serde(default)]
        ignore_ipolicy: bool,
    },
    /// Creates an instance's missing disks again, empty, optionally on other nodes (Ganeti's
    /// OpInstanceRecreateDisks).
    #[serde(rename = "OP_INSTANCE_RECREATE_DISKS")]
    InstanceRecreateDisks {
        instance_name: String,
        /// Disk indices; empty: all.
        #[serde(default)]
        disks: Vec<usize>,
        /// New nodes (primary first), or empty to keep the current ones.
        #[serde(default)]
        nodes: Vec<String>,
        #[serde(default)]
        iallocator: Option<String>,
    },
    /// Finds instances whose disks should be active but are not (Ganeti's
    /// OpClusterVerifyDisks); the result lists them for activate-disks jobs.
    #[serde(rename = "OP_CLUSTER_VERIFY_DISKS")]
    ClusterVerifyDisks {
        #[serde(default)]
        group_name: Option<String>,
    },
    /// Adds tags to the cluster (`kind` = `cluster`, no name) or to a node, instance or node
    /// group (Ganeti's OpTagsSet).
    #[serde(rename = "OP_TAGS_SET")]
    TagsSet {
        kind: String,
        #[serde(default)]
        name: Option<String>,
        tags: Vec<String>,
    },
    /// Removes tags (Ganeti's OpTagsDel); every tag must be present.
    #[serde(rename = "OP_TAGS_DEL")]
    TagsDel {
        kind: String,
        #[serde(default)]
        name: Option<String>,
        tags: Vec<String>,
    },
    /// Detailed configuration and runtime data of instances (Ganeti's OpInstanceQueryData).
    #[serde(rename = "OP_INSTANCE_QUERY_DATA")]
    InstanceQueryData {
        #[serde(default)]
        instances: Vec<String>,
        /// Only the configuration, no live data from the nodes.
        #[serde(default, rename = "static")]
        static_only: bool,
        #[serde(default)]
        use_locking: bool,
    },
    /// Sleeps on the master and/or nodes; used to test the job queue.
    #[serde(rename = "OP_TEST_DELAY")]
    TestDelay {
        duration: f64,
        #[serde(default = "yes")]
        on_master: bool,
        #[serde(default)]
        on_nodes: Vec<String>,
        #[serde(default = "default_repeat")]
        repeat: u32,
        /// When set, the opcode fails after sleeping (Ganeti's `fail`).
        #[serde(default)]
        fail: bool,
    },
}

impl OpCode {
    /// Ganeti's `OP_ID`.
    pub fn op_id(&self) -> &'static str {
        match self {
            OpCode::ClusterVerify { .. } => "OP_CLUSTER_VERIFY",
            OpCode::ClusterDestroy {} => "OP_CLUSTER_DESTROY",
            OpCode::NodeAdd { .. } => "OP_NODE_ADD",
            OpCode::NodeRemove { .. } => "OP_NODE_REMOVE",
            OpCode::NodeSetParams { .. } => "OP_NODE_SET_PARAMS",
            OpCode::InstanceCreate { .. } => "OP_INSTANCE_CREATE",
            OpCode::InstanceRemove { .. } => "OP_INSTANCE_REMOVE",
            OpCode::InstanceStartup { .. } => "OP_INSTANCE_STARTUP",
            OpCode::InstanceShutdown { .. } => "OP_INSTANCE_SHUTDOWN",
            OpCode::InstanceReboot { .. } => "OP_INSTANCE_REBOOT",
            OpCode::InstanceSetParams { .. } => "OP_INSTANCE_SET_PARAMS",
            OpCode::InstanceMigrate { .. } => "OP_INSTANCE_MIGRATE",
            OpCode::InstanceFailover { .. } => "OP_INSTANCE_FAILOVER",
            OpCode::InstanceMove { .. } => "OP_INSTANCE_MOVE",
            OpCode::InstanceReinstall { .. } => "OP_INSTANCE_REINSTALL",
            OpCode::InstanceRename { .. } => "OP_INSTANCE_RENAME",
            OpCode::NodeMigrate { .. } => "OP_NODE_MIGRATE",
            OpCode::NodeEvacuate { .. } => "OP_NODE_EVACUATE",
            OpCode::InstanceActivateDisks { .. } => "OP_INSTANCE_ACTIVATE_DISKS",
            OpCode::InstanceDeactivateDisks { .. } => "OP_INSTANCE_DEACTIVATE_DISKS",
            OpCode::InstanceGrowDisk { .. } => "OP_INSTANCE_GROW_DISK",
            OpCode::InstanceReplaceDisks { .. } => "OP_INSTANCE_REPLACE_DISKS",
            OpCode::InstanceRecreateDisks { .. } => "OP_INSTANCE_RECREATE_DISKS",
            OpCode::ClusterVerifyDisks { .. } => "OP_CLUSTER_VERIFY_DISKS",
            OpCode::TestDelay { .. } => "OP_TEST_DELAY",
            OpCode::TagsSet { .. } => "OP_TAGS_SET",
            OpCode::TagsDel { .. } => "OP_TAGS_DEL",
            OpCode::InstanceQueryData { .. } => "OP_INSTANCE_QUERY_DATA",
        }
    }

    /// Ganeti's job summary: the OP_ID without `OP_`, and the main object's name.
    pub fn summary(&self) -> String {
        let id = self.op_id().trim_start_matches("OP_");
        let obj = match self {
            OpCode::NodeAdd { node_name, .. }
            | OpCode::NodeRemove { node_name }
            | OpCode::NodeSetParams { node_name, .. }
            | OpCode::NodeMigrate { node_name, .. }
            | OpCode::NodeEvacuate { node_name, .. } => Some(node_name.clone()),
            OpCode::InstanceCreate { instance_name, .. }
            | OpCode::InstanceRemove { instance_name, .. }
            | OpCode::InstanceStartup { instance_name, .. }
            | OpCode::InstanceShutdown { instance_name, .. }
            | OpCode::InstanceReboot { instance_name, .. }
            | OpCode::InstanceSetParams { instance_name, .. }
            | OpCode::InstanceMigrate { instance_name, .. }
            | OpCode::InstanceFailover { instance_name, .. }
            | OpCode::InstanceMove { instance_name, .. }
            | OpCode::InstanceReinstall { instance_name, .. }
            | OpCode::InstanceRename { instance_name, .. }
            | OpCode::InstanceActivateDisks { instance_name, .. }
            | OpCode::InstanceDeactivateDisks { instance_name, .. }
            | OpCode::InstanceGrowDisk { instance_name, .. }
            | OpCode::InstanceReplaceDisks { instance_name, .. }
            | OpCode::InstanceRecreateDisks { instance_name, .. } => Some(instance_name.clone()),
            OpCode::TestDelay { duration, .. } => Some(format!("{duration}")),
            OpCode::TagsSet { kind, name, .. } | OpCode::TagsDel { kind, name, .. } => {
                Some(name.clone().unwrap_or_else(|| kind.clone()))
            }
            OpCode::InstanceQueryData { instances, .. } => Some(instances.join(",")),
            _ => None,
        };
        match obj {
            Some(o) => format!("{id}({o})"),
            None => id.to_string(),
        }
    }
}

/// Extra fields Ganeti accepts on every opcode; kept so that payloads round-trip.
pub type OpExtra = BTreeMap<String, serde_json::Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_json_uses_ganeti_names() {
        let op: OpCode = serde_json::from_str(
            r#"{"OP_ID":"OP_INSTANCE_CREATE","instance_name":"i1","disk_template":"file",
                "disks":[{"size":64}],"pnode":"n1","os_type":"noop"}"#,
        )
        .unwrap();
        match &op {
            OpCode::InstanceCreate { start, mode, .. } => {
                assert!(*start);
                assert_eq!(mode, "create");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(op.summary(), "INSTANCE_CREATE(i1)");
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(v["OP_ID"], "OP_INSTANCE_CREATE");
        let d: OpCode = serde_json::from_str(r#"{"OP_ID":"OP_TEST_DELAY","duration":0}"#).unwrap();
        assert_eq!(d.op_id(), "OP_TEST_DELAY");
        assert!(serde_json::from_str::<OpCode>(r#"{"OP_ID":"OP_NOPE"}"#).is_err());
    }
}
