//! Named lock policies: one function per kind of operation, so that units that do the same
//! kind of thing lock the same way. Units take locks only through these (no lock levels or
//! modes written in a unit).
//!
//! The rule for node resources (`NodeRes`): a unit that checks or reserves memory or storage
//! on nodes takes their resource locks exclusively (creation, migration, failover, move, disk
//! growth and replacement, parameter changes), so that two such checks never both pass on
//! the same free memory.

use crate::LockRequest;
use maguey_jobs::{LockLevel, LockMode, LockNames};

/// Node names to lock: some, or every node (when an allocator chooses them later).
pub fn nodes(names: impl IntoIterator<Item = String>) -> LockNames {
    let mut v: Vec<String> = Vec::new();
    for n in names {
        if !v.contains(&n) {
            v.push(n);
        }
    }
    LockNames::Names(v)
}

/// Every node.
pub fn all_nodes() -> LockNames {
    LockNames::All
}

fn one(name: &str) -> LockNames {
    LockNames::Names(vec![name.to_string()])
}

/// The cluster goes away: everything, exclusively (cluster destroy).
pub fn whole_cluster_exclusive() -> Vec<LockRequest> {
    vec![
        (LockLevel::Cluster, LockNames::All, LockMode::Exclusive),
        (LockLevel::Instance, LockNames::All, LockMode::Exclusive),
        (LockLevel::Node, LockNames::All, LockMode::Exclusive),
    ]
}

/// Reads every instance and node (cluster verify, verify-disks).
pub fn whole_cluster_read() -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, LockNames::All, LockMode::Shared),
        (LockLevel::Node, LockNames::All, LockMode::Shared),
    ]
}

/// The cluster's settings change (cluster modify): the cluster exclusively, every instance
/// and node shared, so that no instance is created or changed against the old settings
/// meanwhile.
pub fn cluster_settings() -> Vec<LockRequest> {
    vec![
        (LockLevel::Cluster, one("cluster"), LockMode::Exclusive),
        (LockLevel::Instance, LockNames::All, LockMode::Shared),
        (LockLevel::Node, LockNames::All, LockMode::Shared),
    ]
}

/// The floating master IP up or down: the cluster exclusively (against a concurrent
/// `cluster modify` changing it).
pub fn master_ip() -> Vec<LockRequest> {
    vec![(LockLevel::Cluster, one("cluster"), LockMode::Exclusive)]
}

/// Answers from a config snapshot, locking nothing (queries).
pub fn snapshot_read() -> Vec<LockRequest> {
    Vec::new()
}

/// An instance placed on nodes where memory or storage is checked and reserved: the
/// instance exclusively, the nodes shared, the resources of `res` exclusively (creation,
/// migration, failover, move; grow-disk, replace-disks and parameter changes on the
/// instance's own nodes).
pub fn instance_on_nodes_moving(
    instance: &str,
    nodes: LockNames,
    res: LockNames,
) -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, one(instance), LockMode::Exclusive),
        (LockLevel::Node, nodes, LockMode::Shared),
        (LockLevel::NodeRes, res, LockMode::Exclusive),
    ]
}

/// An instance working on its nodes without reserving anything (start, stop, reboot,
/// removal): the instance exclusively, its nodes and their resources shared.
pub fn instance_on_its_nodes(instance: &str, nodes: LockNames) -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, one(instance), LockMode::Exclusive),
        (LockLevel::Node, nodes.clone(), LockMode::Shared),
        (LockLevel::NodeRes, nodes, LockMode::Shared),
    ]
}

/// An instance's disks brought up or down, or its OS run, on its nodes (activate and
/// deactivate disks, reinstall, rename: `instances` are the old and new names).
pub fn instance_disks(instances: &[&str], nodes: LockNames) -> Vec<LockRequest> {
    let names = instances.iter().map(|s| s.to_string()).collect();
    vec![
        (
            LockLevel::Instance,
            LockNames::Names(names),
            LockMode::Exclusive,
        ),
        (LockLevel::Node, nodes, LockMode::Shared),
    ]
}

/// An instance's storage rebuilt on nodes (recreate-disks, template conversion): the nodes
/// and their resources exclusively.
pub fn instance_storage_rebuilt(instance: &str, nodes: LockNames) -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, one(instance), LockMode::Exclusive),
        (LockLevel::Node, nodes.clone(), LockMode::Exclusive),
        (LockLevel::NodeRes, nodes, LockMode::Exclusive),
    ]
}

/// A node joins: the groups read, the new node exclusively (node add).
pub fn node_joining(node: &str) -> Vec<LockRequest> {
    vec![
        (LockLevel::NodeGroup, LockNames::All, LockMode::Shared),
        (LockLevel::Node, one(node), LockMode::Exclusive),
    ]
}

/// A node leaves: every instance read (none may use it), the node and its resources
/// exclusively (node remove).
pub fn node_leaving(node: &str) -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, LockNames::All, LockMode::Shared),
        (LockLevel::Node, one(node), LockMode::Exclusive),
        (LockLevel::NodeRes, one(node), LockMode::Exclusive),
    ]
}

/// A node's own flags change (node modify).
pub fn node_changed(node: &str) -> Vec<LockRequest> {
    vec![(LockLevel::Node, one(node), LockMode::Exclusive)]
}

/// A node is read while a plan for it is made (node evacuate/migrate); released with
/// [`release_planning`] before the planned jobs run.
pub fn node_planning(node: &str) -> Vec<LockRequest> {
    vec![(LockLevel::Node, one(node), LockMode::Shared)]
}

/// A room's nodes are read while the moves out of it (or back) are planned (room
/// evacuate/return/failover); released with [`release_planning`] before the moves run.
pub fn room_planning(nodes: Vec<String>) -> Vec<LockRequest> {
    vec![(LockLevel::Node, self::nodes(nodes), LockMode::Shared)]
}

/// Releases what [`node_planning`] and [`room_planning`] took.
pub fn release_planning(ctx: &maguey_jobs::OpContext) {
    ctx.release(LockLevel::Node);
}

/// Gives back the node-resource locks once what they protect is settled: instance creation
/// after its disks exist (Ganeti releases them at the same point), so that the OS
/// installations of instances on one node run side by side.
pub fn release_node_resources(ctx: &maguey_jobs::OpContext) {
    ctx.release(LockLevel::NodeRes);
}

/// Nodes held exclusively for a while (test delay).
pub fn nodes_exclusive(nodes: LockNames) -> Vec<LockRequest> {
    vec![(LockLevel::Node, nodes, LockMode::Exclusive)]
}

/// The object tags are changed on.
pub enum TagTarget<'a> {
    Cluster,
    Node(&'a str),
    Instance(&'a str),
    NodeGroup(&'a str),
    Network(&'a str),
}

/// Tags of one object change: that object exclusively.
pub fn tagged_object(target: TagTarget<'_>) -> Vec<LockRequest> {
    let (level, name) = match target {
        TagTarget::Cluster => (LockLevel::Cluster, "cluster"),
        TagTarget::Node(n) => (LockLevel::Node, n),
        TagTarget::Instance(n) => (LockLevel::Instance, n),
        TagTarget::NodeGroup(n) => (LockLevel::NodeGroup, n),
        TagTarget::Network(n) => (LockLevel::Network, n),
    };
    vec![(level, one(name), LockMode::Exclusive)]
}

/// The locks of an opcode that moves an instance from its primary to a target node: the
/// instance exclusively; both nodes shared (several instances may leave a node at once);
/// the target's resources exclusively, so that memory checks and ports on one target never
/// race. Without a target every node is locked, as the target is chosen under the locks.
pub fn instance_moving(instance: &str, primary: &str, target: Option<&str>) -> Vec<LockRequest> {
    use {all_nodes, nodes};
    match target {
        Some(t) => instance_on_nodes_moving(
            instance,
            nodes([primary.to_string(), t.to_string()]),
            nodes([t.to_string()]),
        ),
        None => instance_on_nodes_moving(instance, all_nodes(), all_nodes()),
    }
}

/// A node group's own fields change, or it is added, renamed or removed (group add, modify,
/// rename, remove): the group exclusively, every instance read (their policies and
/// networks are checked).
pub fn group_changed(groups: &[&str]) -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, LockNames::All, LockMode::Shared),
        (
            LockLevel::NodeGroup,
            LockNames::Names(groups.iter().map(|s| s.to_string()).collect()),
            LockMode::Exclusive,
        ),
    ]
}

/// Nodes change group (group assign-nodes): every instance read (none may be split), every
/// group and the nodes exclusively.
pub fn nodes_regrouped(nodes: LockNames) -> Vec<LockRequest> {
    vec![
        (LockLevel::Instance, LockNames::All, LockMode::Shared),
        (LockLevel::NodeGroup, LockNames::All, LockMode::Exclusive),
        (LockLevel::Node, nodes, LockMode::Exclusive),
    ]
}

/// A network changes, or is connected to or disconnected from a group (network add,
/// modify, rename, remove, connect, disconnect): every instance read (their addresses are
/// checked), the group (if any) and the network exclusively.
pub fn network_changed(network: &str, group: Option<&str>) -> Vec<LockRequest> {
    let mut v = vec![(LockLevel::Instance, LockNames::All, LockMode::Shared)];
    if let Some(g) = group {
        v.push((LockLevel::NodeGroup, one(g), LockMode::Exclusive));
    }
    v.push((LockLevel::Network, one(network), LockMode::Exclusive));
    v
}

/// Instances leave their node group (group evacuate, instance change-group): the groups and
/// every node read while the placement engine plans; released with
/// [`release_group_planning`] before the moves run as child jobs (each with its own locks).
pub fn group_planning() -> Vec<LockRequest> {
    vec![
        (LockLevel::NodeGroup, LockNames::All, LockMode::Shared),
        (LockLevel::Node, LockNames::All, LockMode::Shared),
    ]
}

/// Releases what [`group_planning`] took.
pub fn release_group_planning(ctx: &maguey_jobs::OpContext) {
    ctx.release(LockLevel::Node);
    ctx.release(LockLevel::NodeGroup);
}
