//! Opcodes: the unit of work of a job. Names (`OP_ID`) and fields follow Ganeti's.
//!
//! Each opcode's fields are a struct named after Ganeti's opcode class (`OpInstanceCreate`),
//! kept in the file of its noun; [`OpCode`] is the tagged union the job queue stores. The
//! wire form is Ganeti's: one JSON object with the fields and `OP_ID`.

mod cluster;
mod cluster_crypto;
mod cluster_params;
mod group;
mod group_moves;
mod instance;
mod instance_disks;
mod instance_moves;
mod misc;
mod network;
mod node;
mod room;

pub use cluster::*;
pub use cluster_crypto::*;
pub use cluster_params::*;
pub use group::*;
pub use group_moves::*;
pub use instance::*;
pub use instance_disks::*;
pub use instance_moves::*;
pub use misc::*;
pub use network::*;
pub use node::*;
pub use room::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) fn yes() -> bool {
    true
}
pub(crate) fn default_shutdown_timeout() -> u64 {
    120
}
pub(crate) fn default_max_parallel() -> u32 {
    4
}

macro_rules! opcodes {
    ($( $(#[$meta:meta])* $var:ident($ty:ident) = $id:literal ),+ $(,)?) => {
        /// Every opcode Maguey executes. Serialized with Ganeti's `OP_ID` tag.
        // Opcodes are built once per job and moved rarely; boxing the big variant would only
        // make the enum harder to construct and match.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "OP_ID")]
        pub enum OpCode {
            $( $(#[$meta])* #[serde(rename = $id)] $var($ty), )+
        }

        impl OpCode {
            /// Ganeti's `OP_ID`.
            pub fn op_id(&self) -> &'static str {
                match self {
                    $( OpCode::$var(_) => $id, )+
                }
            }
        }

        $(
            impl From<$ty> for OpCode {
                fn from(op: $ty) -> OpCode {
                    OpCode::$var(op)
                }
            }
        )+
    };
}

opcodes! {
    ClusterVerify(OpClusterVerify) = "OP_CLUSTER_VERIFY",
    ClusterDestroy(OpClusterDestroy) = "OP_CLUSTER_DESTROY",
    NodeAdd(OpNodeAdd) = "OP_NODE_ADD",
    NodeRemove(OpNodeRemove) = "OP_NODE_REMOVE",
    NodeSetParams(OpNodeSetParams) = "OP_NODE_SET_PARAMS",
    InstanceCreate(OpInstanceCreate) = "OP_INSTANCE_CREATE",
    InstanceRemove(OpInstanceRemove) = "OP_INSTANCE_REMOVE",
    InstanceStartup(OpInstanceStartup) = "OP_INSTANCE_STARTUP",
    InstanceShutdown(OpInstanceShutdown) = "OP_INSTANCE_SHUTDOWN",
    InstanceReboot(OpInstanceReboot) = "OP_INSTANCE_REBOOT",
    InstanceSetParams(OpInstanceSetParams) = "OP_INSTANCE_SET_PARAMS",
    InstanceMigrate(OpInstanceMigrate) = "OP_INSTANCE_MIGRATE",
    InstanceFailover(OpInstanceFailover) = "OP_INSTANCE_FAILOVER",
    InstanceMove(OpInstanceMove) = "OP_INSTANCE_MOVE",
    InstanceReinstall(OpInstanceReinstall) = "OP_INSTANCE_REINSTALL",
    InstanceRename(OpInstanceRename) = "OP_INSTANCE_RENAME",
    NodeMigrate(OpNodeMigrate) = "OP_NODE_MIGRATE",
    NodeEvacuate(OpNodeEvacuate) = "OP_NODE_EVACUATE",
    InstanceActivateDisks(OpInstanceActivateDisks) = "OP_INSTANCE_ACTIVATE_DISKS",
    InstanceDeactivateDisks(OpInstanceDeactivateDisks) = "OP_INSTANCE_DEACTIVATE_DISKS",
    InstanceGrowDisk(OpInstanceGrowDisk) = "OP_INSTANCE_GROW_DISK",
    InstanceReplaceDisks(OpInstanceReplaceDisks) = "OP_INSTANCE_REPLACE_DISKS",
    InstanceRecreateDisks(OpInstanceRecreateDisks) = "OP_INSTANCE_RECREATE_DISKS",
    ClusterVerifyDisks(OpClusterVerifyDisks) = "OP_CLUSTER_VERIFY_DISKS",
    TagsSet(OpTagsSet) = "OP_TAGS_SET",
    TagsDel(OpTagsDel) = "OP_TAGS_DEL",
    InstanceQueryData(OpInstanceQueryData) = "OP_INSTANCE_QUERY_DATA",
    TestDelay(OpTestDelay) = "OP_TEST_DELAY",
    RoomEvacuate(OpRoomEvacuate) = "OP_ROOM_EVACUATE",
    RoomReturn(OpRoomReturn) = "OP_ROOM_RETURN",
    RoomFailover(OpRoomFailover) = "OP_ROOM_FAILOVER",
    ClusterSetParams(OpClusterSetParams) = "OP_CLUSTER_SET_PARAMS",
    GroupAdd(OpGroupAdd) = "OP_GROUP_ADD",
    GroupSetParams(OpGroupSetParams) = "OP_GROUP_SET_PARAMS",
    GroupRemove(OpGroupRemove) = "OP_GROUP_REMOVE",
    GroupRename(OpGroupRename) = "OP_GROUP_RENAME",
    GroupAssignNodes(OpGroupAssignNodes) = "OP_GROUP_ASSIGN_NODES",
    NetworkAdd(OpNetworkAdd) = "OP_NETWORK_ADD",
    NetworkRemove(OpNetworkRemove) = "OP_NETWORK_REMOVE",
    NetworkSetParams(OpNetworkSetParams) = "OP_NETWORK_SET_PARAMS",
    NetworkRename(OpNetworkRename) = "OP_NETWORK_RENAME",
    NetworkConnect(OpNetworkConnect) = "OP_NETWORK_CONNECT",
    NetworkDisconnect(OpNetworkDisconnect) = "OP_NETWORK_DISCONNECT",
    InstanceChangeGroup(OpInstanceChangeGroup) = "OP_INSTANCE_CHANGE_GROUP",
    GroupEvacuate(OpGroupEvacuate) = "OP_GROUP_EVACUATE",
    ClusterActivateMasterIp(OpClusterActivateMasterIp) = "OP_CLUSTER_ACTIVATE_MASTER_IP",
    ClusterDeactivateMasterIp(OpClusterDeactivateMasterIp) = "OP_CLUSTER_DEACTIVATE_MASTER_IP",
    ClusterRenewCrypto(OpClusterRenewCrypto) = "OP_CLUSTER_RENEW_CRYPTO",
}

impl OpCode {
    /// The name of the instance the opcode works on, if it works on one.
    pub fn instance_name(&self) -> Option<&str> {
        Some(match self {
            OpCode::InstanceCreate(o) => &o.instance_name,
            OpCode::InstanceRemove(o) => &o.instance_name,
            OpCode::InstanceStartup(o) => &o.instance_name,
            OpCode::InstanceShutdown(o) => &o.instance_name,
            OpCode::InstanceReboot(o) => &o.instance_name,
            OpCode::InstanceSetParams(o) => &o.instance_name,
            OpCode::InstanceMigrate(o) => &o.instance_name,
            OpCode::InstanceFailover(o) => &o.instance_name,
            OpCode::InstanceMove(o) => &o.instance_name,
            OpCode::InstanceReinstall(o) => &o.instance_name,
            OpCode::InstanceRename(o) => &o.instance_name,
            OpCode::InstanceActivateDisks(o) => &o.instance_name,
            OpCode::InstanceDeactivateDisks(o) => &o.instance_name,
            OpCode::InstanceGrowDisk(o) => &o.instance_name,
            OpCode::InstanceReplaceDisks(o) => &o.instance_name,
            OpCode::InstanceRecreateDisks(o) => &o.instance_name,
            OpCode::InstanceChangeGroup(o) => &o.instance_name,
            _ => return None,
        })
    }

    /// The name of the node the opcode works on, if it works on one.
    pub fn node_name(&self) -> Option<&str> {
        Some(match self {
            OpCode::NodeAdd(o) => &o.node_name,
            OpCode::NodeRemove(o) => &o.node_name,
            OpCode::NodeSetParams(o) => &o.node_name,
            OpCode::NodeMigrate(o) => &o.node_name,
            OpCode::NodeEvacuate(o) => &o.node_name,
            _ => return None,
        })
    }

    /// Ganeti's job summary: the OP_ID without `OP_`, and the main object's name.
    pub fn summary(&self) -> String {
        let id = self.op_id().trim_start_matches("OP_");
        let obj = match self {
            OpCode::TestDelay(o) => Some(format!("{}", o.duration)),
            OpCode::TagsSet(OpTagsSet { kind, name, .. })
            | OpCode::TagsDel(OpTagsDel { kind, name, .. }) => {
                Some(name.clone().unwrap_or_else(|| kind.to_string()))
            }
            OpCode::InstanceQueryData(o) => Some(o.instances.join(",")),
            OpCode::RoomEvacuate(o) => Some(o.room.clone()),
            OpCode::RoomReturn(o) => Some(o.room.clone()),
            OpCode::RoomFailover(o) => Some(o.room.clone()),
            OpCode::GroupAdd(o) => Some(o.group_name.clone()),
            OpCode::GroupSetParams(o) => Some(o.group_name.clone()),
            OpCode::GroupRemove(o) => Some(o.group_name.clone()),
            OpCode::GroupRename(o) => Some(o.group_name.clone()),
            OpCode::GroupAssignNodes(o) => Some(o.group_name.clone()),
            OpCode::GroupEvacuate(o) => Some(o.group_name.clone()),
            OpCode::NetworkAdd(o) => Some(o.network_name.clone()),
            OpCode::NetworkRemove(o) => Some(o.network_name.clone()),
            OpCode::NetworkSetParams(o) => Some(o.network_name.clone()),
            OpCode::NetworkRename(o) => Some(o.network_name.clone()),
            OpCode::NetworkConnect(o) => Some(o.network_name.clone()),
            OpCode::NetworkDisconnect(o) => Some(o.network_name.clone()),
            _ => self
                .instance_name()
                .or_else(|| self.node_name())
                .map(str::to_string),
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
    use crate::vocab::{DiskTemplate, InstanceCreateMode};

    #[test]
    fn opcode_json_uses_ganeti_names() {
        let op: OpCode = serde_json::from_str(
            r#"{"OP_ID":"OP_INSTANCE_CREATE","instance_name":"i1","disk_template":"file",
                "disks":[{"size":64}],"pnode":"n1","os_type":"noop"}"#,
        )
        .unwrap();
        match &op {
            OpCode::InstanceCreate(c) => {
                assert!(c.start);
                assert_eq!(c.mode, InstanceCreateMode::Create);
                assert_eq!(c.disk_template, DiskTemplate::File);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(op.summary(), "INSTANCE_CREATE(i1)");
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(v["OP_ID"], "OP_INSTANCE_CREATE");
        assert_eq!(v["mode"], "create");
        assert_eq!(v["disk_template"], "file");
        let d: OpCode = serde_json::from_str(r#"{"OP_ID":"OP_TEST_DELAY","duration":0}"#).unwrap();
        assert_eq!(d.op_id(), "OP_TEST_DELAY");
        assert!(serde_json::from_str::<OpCode>(r#"{"OP_ID":"OP_NOPE"}"#).is_err());
        let v = serde_json::to_value(OpCode::from(OpClusterDestroy {})).unwrap();
        assert_eq!(v, serde_json::json!({"OP_ID": "OP_CLUSTER_DESTROY"}));
    }

    #[test]
    fn a_bad_word_is_refused_with_the_vocabulary_message() {
        let e = serde_json::from_value::<OpCode>(serde_json::json!({
            "OP_ID": "OP_INSTANCE_CREATE", "instance_name": "i1", "disk_template": "floppy"
        }))
        .unwrap_err();
        assert!(
            e.to_string().contains(
                "unknown disk template 'floppy' (known: diskless, file, sharedfile, plain, drbd)"
            ),
            "{e}"
        );
        let e = serde_json::from_str::<OpCode>(
            r#"{"OP_ID":"OP_NODE_EVACUATE","node_name":"n1","mode":"sideways"}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unknown evacuation mode 'sideways'"),
            "{e}"
        );
    }
}
