//! OP_GROUP_ASSIGN_NODES: moves nodes into a group (Ganeti's LUGroupAssignNodes). A DRBD
//! instance keeps both nodes in one group: a move that would split one is refused unless
//! `force`; instances that were split already and stay split are reported.

use crate::util::node_by_name;
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, Instance};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct GroupAssignNodes {
    group: String,
    nodes: Vec<String>,
    force: bool,
}

pub struct Plan {
    group_uuid: String,
    node_uuids: Vec<String>,
    /// Instances split by this move (allowed by `force`) and instances still split.
    new_split: Vec<String>,
    still_split: Vec<String>,
}

/// Whether the instance's nodes are in more than one group, with `moved` (node → group)
/// applied.
fn is_split(cfg: &ConfigData, i: &Instance, moved: &BTreeMap<String, String>) -> bool {
    let group = |n: &str| {
        moved
            .get(n)
            .cloned()
            .or_else(|| cfg.nodes.get(n).map(|n| n.group.clone()))
    };
    let pg = group(&i.primary_node);
    i.secondary_nodes().iter().any(|s| group(s) != pg)
}

impl LogicalUnit for GroupAssignNodes {
    type Op = maguey_model::OpGroupAssignNodes;
    type Checked = Plan;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        if op.nodes.is_empty() {
            return Err(prereq("no nodes given"));
        }
        for n in &op.nodes {
            node_by_name(cfg, n)?;
        }
        Ok(GroupAssignNodes {
            group: op.group_name.clone(),
            nodes: op.nodes.clone(),
            force: op.force,
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::nodes_regrouped(crate::locks::nodes(self.nodes.iter().cloned()))
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Plan, OpError> {
        let g = cfg.group_by_name(&self.group).ok_or_else(|| {
            prereq(format!(
                "node group '{}' is not known to the cluster",
                self.group
            ))
        })?;
        let mut moved = BTreeMap::new();
        for n in &self.nodes {
            let node = node_by_name(cfg, n)?;
            moved.insert(node.uuid.clone(), g.uuid.clone());
        }
        let none = BTreeMap::new();
        let mut new_split = Vec::new();
        let mut still_split = Vec::new();
        for i in cfg.instances.values() {
            let touched = std::iter::once(i.primary_node.as_str())
                .chain(i.secondary_nodes())
                .any(|n| moved.contains_key(n));
            if !touched {
                continue;
            }
            match (is_split(cfg, i, &none), is_split(cfg, i, &moved)) {
                (false, true) => new_split.push(i.name.clone()),
                (true, true) => still_split.push(i.name.clone()),
                _ => {}
            }
        }
        if !new_split.is_empty() && !self.force {
            return Err(prereq(format!(
                "moving node(s) {} to group {} would split instance(s) {} between groups \
                 (use --force to do it anyway)",
                self.nodes.join(", "),
                g.name,
                new_split.join(", ")
            )));
        }
        Ok(Plan {
            group_uuid: g.uuid.clone(),
            node_uuids: moved.into_keys().collect(),
            new_split,
            still_split,
        })
    }

    async fn exec(&mut self, env: &Env<'_>, plan: Plan) -> Result<Value, OpError> {
        env.apply(Command::AssignNodes {
            group: plan.group_uuid,
            nodes: plan.node_uuids,
        })
        .await?;
        if !plan.new_split.is_empty() {
            env.log(format!(
                "warning: instance(s) now split between groups (--force): {}",
                plan.new_split.join(", ")
            ));
        }
        if !plan.still_split.is_empty() {
            env.log(format!(
                "warning: instance(s) still split between groups: {}",
                plan.still_split.join(", ")
            ));
        }
        env.log(format!(
            "node(s) {} assigned to group {}",
            self.nodes.join(", "),
            self.group
        ));
        Ok(json!({"split": plan.new_split}))
    }
}
