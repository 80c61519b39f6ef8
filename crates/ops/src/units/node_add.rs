//! OP_NODE_ADD: adds a node that has joined with its token (and so holds a certificate).
//! With `readd` (Ganeti's `gnt-node add --readd`), the node is in the config already: it
//! comes back online with the certificate of its new join (the old one is revoked), its
//! instances untouched.
//!
//! The node daemon may still be starting when the job runs: the version handshake is retried
//! for a while. The node must present the name it is added under.

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{names::validate_hostname, new_uuid, ConfigData, Node, PROTOCOL_VERSION};
use maguey_rpc::{NodeInfo, NodeRequest, VersionInfo};
use serde_json::{json, Value};
use std::time::Duration;

/// How long to wait for a new node's daemon to answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NodeAdd {
    name: String,
    primary_ip: String,
    secondary_ip: String,
    group: Option<String>,
    master_capable: bool,
    vm_capable: bool,
    room: String,
    certificate_fingerprint: String,
    witness: bool,
    readd: bool,
}

impl LogicalUnit for NodeAdd {
    type Op = maguey_model::OpNodeAdd;
    type Checked = Node;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpNodeAdd {
            node_name,
            primary_ip,
            secondary_ip,
            group,
            master_capable,
            vm_capable,
            room,
            certificate_fingerprint,
            witness,
            readd,
        } = op;
        if *readd && certificate_fingerprint.is_none() {
            return Err(prereq(
                "a node is re-added through a new join: `maguey node add NAME --readd`",
            ));
        }
        if let Some(r) = room {
            maguey_model::rooms::validate_room(r).map_err(|e| prereq(e.to_string()))?;
        }
        validate_hostname(node_name).map_err(|e| prereq(format!("invalid node name: {e}")))?;
        for ip in std::iter::once(primary_ip).chain(secondary_ip.iter()) {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| prereq(format!("invalid IP address '{ip}'")))?;
        }
        Ok(NodeAdd {
            name: node_name.clone(),
            primary_ip: primary_ip.clone(),
            secondary_ip: secondary_ip.clone().unwrap_or_else(|| primary_ip.clone()),
            group: group.clone(),
            master_capable: master_capable.unwrap_or(true),
            vm_capable: vm_capable.unwrap_or(true),
            room: room.clone().unwrap_or_default(),
            certificate_fingerprint: certificate_fingerprint.clone().unwrap_or_default(),
            witness: *witness,
            readd: *readd,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::node_joining(&self.name)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        if self.readd {
            return self.readd_prereq(cfg);
        }
        if cfg.node_by_name(&self.name).is_some() {
            return Err(prereq(format!(
                "node '{}' is already in the cluster",
                self.name
            )));
        }
        if let Some(other) = cfg.nodes.values().find(|n| n.primary_ip == self.primary_ip) {
            return Err(prereq(format!(
                "IP address {} is already used by node {}",
                self.primary_ip, other.name
            )));
        }
        let group = match &self.group {
            Some(g) => cfg
                .group_by_name(g)
                .ok_or_else(|| prereq(format!("node group '{g}' does not exist")))?,
            None => cfg
                .group_by_name("default")
                .or_else(|| cfg.nodegroups.values().next())
                .ok_or_else(|| prereq("the cluster has no node group"))?,
        };
        if self.witness && !cfg.cluster.replicated {
            return Err(prereq(
                "a witness votes for the master of a replicated cluster; this cluster is not \
                 replicated (cluster init --replicated)",
            ));
        }
        let candidates = cfg.nodes.values().filter(|n| n.master_candidate).count() as u32;
        // Master candidates spread over rooms: the first node of a room is one even when
        // the pool is full, so that no room holds every copy of the config.
        let room_lacks_candidate = !self.room.is_empty()
            && !cfg
                .nodes
                .values()
                .any(|n| n.master_candidate && n.room == self.room);
        let now = maguey_model::now();
        Ok(Node {
            uuid: new_uuid(),
            name: self.name.clone(),
            primary_ip: self.primary_ip.clone(),
            secondary_ip: self.secondary_ip.clone(),
            group: group.uuid.clone(),
            // A witness always votes, and holds no instances.
            master_candidate: self.witness
                || (self.master_capable
                    && (candidates < cfg.cluster.candidate_pool_size || room_lacks_candidate)),
            master_capable: self.master_capable,
            vm_capable: self.vm_capable && !self.witness,
            drained: false,
            offline: false,
            ndparams: Default::default(),
            tags: Vec::new(),
            serial_no: 0,
            ctime: now,
            mtime: now,
            room: self.room.clone(),
            certificate_fingerprint: self.certificate_fingerprint.clone(),
            witness: self.witness,
        })
    }

    async fn exec(&mut self, env: &Env<'_>, node: Self::Checked) -> Result<Value, OpError> {
        env.log(format!(
            "contacting node {} at {}",
            node.name, node.primary_ip
        ));
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let version: VersionInfo = loop {
            match env.rpc::<VersionInfo>(&node, NodeRequest::Version).await {
                Ok(v) => break v,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(OpError::Exec(format!(
                        "node {} did not answer within {}s: {e}",
                        node.name,
                        HANDSHAKE_TIMEOUT.as_secs()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if !maguey_rpc::version::compatible(version.protocol) {
            return Err(prereq(format!(
                "node {} speaks protocol {}, the master {} (which works with {} to {})",
                node.name,
                version.protocol,
                PROTOCOL_VERSION,
                maguey_rpc::version::OLDEST,
                maguey_rpc::version::NEWEST
            )));
        }
        if version.node_name != node.name {
            return Err(prereq(format!(
                "the daemon at {} says it is '{}', not '{}'",
                node.primary_ip, version.node_name, node.name
            )));
        }
        let cfg = env.cfg();
        let info: NodeInfo = env
            .rpc(
                &node,
                NodeRequest::NodeInfo {
                    file_storage_dir: cfg.cluster.file_storage_dir.clone(),
                    hypervisor: cfg
                        .cluster
                        .enabled_hypervisors
                        .first()
                        .map(|h| h.to_string())
                        .unwrap_or_default(),
                },
            )
            .await?;
        env.log(format!(
            "node {} runs Maguey {}: {} CPUs, {} MiB memory",
            node.name, version.version, info.cpu_count, info.memory_total
        ));
        if self.readd {
            env.apply(Command::UpdateNode { node: node.clone() })
                .await?;
        } else {
            env.apply(Command::AddNode { node: node.clone() }).await?;
        }
        for (name, e) in env.master.distribute_ssconf().await {
            env.log(format!(
                "warning: could not update ssconf on node {name}: {e}"
            ));
        }
        env.log(format!(
            "node {} {} the cluster",
            node.name,
            if self.readd {
                "re-added to"
            } else {
                "added to"
            }
        ));
        Ok(json!({"node_name": node.name, "uuid": node.uuid}))
    }
}

impl NodeAdd {
    /// The node as the config holds it, back online (not drained) with its new certificate;
    /// its instances, group and flags otherwise kept.
    fn readd_prereq(&self, cfg: &ConfigData) -> Result<Node, OpError> {
        let node = cfg
            .node_by_name(&self.name)
            .ok_or_else(|| prereq(format!("node '{}' is not in the cluster", self.name)))?;
        if cfg.master_node().is_some_and(|m| m.uuid == node.uuid) {
            return Err(prereq(format!(
                "node '{}' is the master: it cannot be re-added",
                self.name
            )));
        }
        if node.primary_ip != self.primary_ip {
            return Err(prereq(format!(
                "node '{}' has primary IP {}, not {}",
                self.name, node.primary_ip, self.primary_ip
            )));
        }
        let mut node = node.clone();
        node.certificate_fingerprint = self.certificate_fingerprint.clone();
        node.offline = false;
        node.drained = false;
        node.mtime = maguey_model::now();
        Ok(node)
    }
}
