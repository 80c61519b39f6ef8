//! OP_NODE_SET_PARAMS: node flags (offline, drained, master_candidate, ...).

use crate::util::node_by_name;
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Node};
use serde_json::{json, Value};

pub struct NodeSetParams {
    name: String,
    offline: Option<bool>,
    drained: Option<bool>,
    master_candidate: Option<bool>,
    master_capable: Option<bool>,
    vm_capable: Option<bool>,
    force: bool,
    room: Option<String>,
    changes: Vec<(String, bool)>,
    /// The room change (old, new), if any.
    room_change: Option<(String, String)>,
}

impl LogicalUnit for NodeSetParams {
    type Op = maguey_model::OpNodeSetParams;
    type Checked = Node;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let maguey_model::OpNodeSetParams {
            node_name,
            offline,
            drained,
            master_candidate,
            master_capable,
            vm_capable,
            force,
            room,
        } = op;
        node_by_name(cfg, node_name)?;
        if let Some(r) = room.as_deref().filter(|r| !r.is_empty()) {
            maguey_model::rooms::validate_room(r).map_err(|e| prereq(e.to_string()))?;
        }
        let set = [offline, drained, master_candidate]
            .iter()
            .filter(|f| matches!(f, Some(true)))
            .count();
        if set > 1 {
            return Err(prereq(
                "only one of --offline, --drained and --master-candidate can be set to yes",
            ));
        }
        if [
            offline,
            drained,
            master_candidate,
            master_capable,
            vm_capable,
        ]
        .iter()
        .all(|f| f.is_none())
            && room.is_none()
        {
            return Err(prereq("no changes requested"));
        }
        Ok(NodeSetParams {
            name: node_name.clone(),
            offline: *offline,
            drained: *drained,
            master_candidate: *master_candidate,
            master_capable: *master_capable,
            vm_capable: *vm_capable,
            force: *force,
            room: room.clone(),
            changes: Vec::new(),
            room_change: None,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::node_changed(&self.name)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let node = node_by_name(cfg, &self.name)?;
        let is_master = node.uuid == cfg.cluster.master_node;
        let mut n = node.clone();
        let mut changes = Vec::new();
        let mut set = |field: &str, target: &mut bool, value: Option<bool>| {
            if let Some(v) = value {
                if *target != v {
                    *target = v;
                    changes.push((field.to_string(), v));
                }
            }
        };
        set("offline", &mut n.offline, self.offline);
        set("drained", &mut n.drained, self.drained);
        set(
            "master_candidate",
            &mut n.master_candidate,
            self.master_candidate,
        );
        set("master_capable", &mut n.master_capable, self.master_capable);
        set("vm_capable", &mut n.vm_capable, self.vm_capable);
        if is_master && (n.offline || n.drained || !n.master_candidate || !n.master_capable) {
            return Err(prereq(format!(
                "node {} is the master: it cannot be offline, drained or lose its master role",
                node.name
            )));
        }
        // Setting one role flag clears the others, as in Ganeti.
        if self.offline == Some(true) || self.drained == Some(true) {
            if n.master_candidate {
                n.master_candidate = false;
                changes.push(("master_candidate".into(), false));
            }
            if self.offline == Some(true) && n.drained {
                n.drained = false;
                changes.push(("drained".into(), false));
            }
            if self.drained == Some(true) && n.offline {
                n.offline = false;
                changes.push(("offline".into(), false));
            }
        }
        if self.master_candidate == Some(true) {
            if !n.master_capable {
                return Err(prereq(format!("node {} is not master_capable", node.name)));
            }
            n.offline = false;
            n.drained = false;
        }
        if self.offline == Some(true) && !self.force {
            let running: Vec<&str> = cfg
                .instances
                .values()
                .filter(|i| i.primary_node == node.uuid && i.admin_state == AdminState::Up)
                .map(|i| i.name.as_str())
                .collect();
            if !running.is_empty() {
                return Err(prereq(format!(
                    "node {} has instances that should be running: {} (use --force)",
                    node.name,
                    running.join(", ")
                )));
            }
        }
        self.changes = changes;
        self.room_change = None;
        if let Some(r) = self.room.as_ref().filter(|r| **r != n.room) {
            self.room_change = Some((n.room.clone(), r.clone()));
            n.room = r.clone();
        }
        Ok(n)
    }

    async fn exec(&mut self, env: &Env<'_>, n: Self::Checked) -> Result<Value, OpError> {
        if self.changes.is_empty() && self.room_change.is_none() {
            env.log("nothing to change");
            return Ok(json!([]));
        }
        let node_uuid = n.uuid.clone();
        env.apply(Command::UpdateNode { node: n }).await?;
        for (f, v) in &self.changes {
            env.log(format!("node {}: {f} = {v}", self.name));
        }
        if let Some((old, new)) = &self.room_change {
            env.log(format!("node {}: room '{old}' → '{new}'", self.name));
            for w in crate::rooms::same_room_pairs(&env.cfg(), Some(&node_uuid)) {
                env.log(format!("warning: {w}"));
            }
        }
        for (name, e) in env.master.distribute_ssconf().await {
            env.log(format!(
                "warning: could not update ssconf on node {name}: {e}"
            ));
        }
        let mut out: Vec<Value> = self.changes.iter().map(|(f, v)| json!([f, v])).collect();
        if let Some((_, new)) = &self.room_change {
            out.push(json!(["room", new]));
        }
        Ok(Value::from(out))
    }
}
