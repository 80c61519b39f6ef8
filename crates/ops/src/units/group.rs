//! OP_GROUP_ADD, OP_GROUP_SET_PARAMS, OP_GROUP_RENAME and OP_GROUP_REMOVE: a node group's own
//! fields (Ganeti's LUGroupAdd, LUGroupSetParams, LUGroupRename, LUGroupRemove). They share
//! one shape: resolve the group, build its new version, apply one config command.

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::{
    names::validate_hostname, new_uuid, ConfigData, DiskTemplate, IPolicyChange, NodeGroup,
    ParamKind, Params,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Group ipolicy changes may not set `std` (Ganeti: cluster level only).
fn check_group_ipolicy(c: &IPolicyChange) -> Result<(), OpError> {
    if c.std.is_some() {
        return Err(prereq(
            "the std spec of an instance policy can only be set at cluster level",
        ));
    }
    Ok(())
}

/// `ndparams` with `default` values removed from `base` (Ganeti's `VALUE_DEFAULT`).
fn update_params(base: &Params, change: &Params) -> Params {
    let mut out = base.clone();
    for (k, v) in change {
        if v.as_str() == Some("default") {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn check_diskparams(d: &BTreeMap<String, Params>) -> Result<(), OpError> {
    for k in d.keys() {
        k.parse::<DiskTemplate>()
            .map_err(|e| prereq(format!("diskparams: {e}")))?;
    }
    Ok(())
}

/// The instances a new policy of `group` would put in violation, as warnings (Ganeti only
/// warns when a policy changes).
fn policy_warnings(cfg: &ConfigData, group: &NodeGroup) -> Vec<String> {
    let pol = maguey_model::effective_ipolicy(
        &cfg.cluster.enabled_disk_templates,
        &cfg.cluster.ipolicy,
        Some(&group.ipolicy),
    );
    crate::ipolicy::violating(cfg, |g| (g == group.uuid).then(|| pol.clone()))
        .into_iter()
        .map(|(i, v)| {
            format!(
                "warning: instance {i} violates the new instance policy of group {}: {}",
                group.name,
                v.join("; ")
            )
        })
        .collect()
}

pub struct GroupAdd {
    op: maguey_model::OpGroupAdd,
}

impl LogicalUnit for GroupAdd {
    type Op = maguey_model::OpGroupAdd;
    type Checked = NodeGroup;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        validate_hostname(&op.group_name)
            .map_err(|e| prereq(format!("invalid group name: {e}")))?;
        check_group_ipolicy(&op.ipolicy)?;
        check_diskparams(&op.diskparams)?;
        for t in &op.tags {
            crate::tags::validate_tag(t).map_err(prereq)?;
        }
        Ok(GroupAdd { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::group_changed(&[&self.op.group_name])
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<NodeGroup, OpError> {
        if cfg.group_by_name(&self.op.group_name).is_some() {
            return Err(prereq(format!(
                "node group '{}' already exists",
                self.op.group_name
            )));
        }
        let ndparams = ParamKind::Nd.validate(&self.op.ndparams).map_err(prereq)?;
        let g = NodeGroup {
            uuid: new_uuid(),
            name: self.op.group_name.clone(),
            alloc_policy: self.op.alloc_policy.unwrap_or_default(),
            ndparams,
            ipolicy: self.op.ipolicy.apply_to(&Default::default()),
            diskparams: self.op.diskparams.clone(),
            tags: self.op.tags.clone(),
            ..Default::default()
        };
        Ok(g)
    }

    async fn exec(&mut self, env: &Env<'_>, g: NodeGroup) -> Result<Value, OpError> {
        env.apply(Command::AddGroup { group: g.clone() }).await?;
        env.log(format!(
            "node group {} added (allocation policy {})",
            g.name, g.alloc_policy
        ));
        Ok(json!({"uuid": g.uuid}))
    }
}

pub struct GroupSetParams {
    op: maguey_model::OpGroupSetParams,
}

impl LogicalUnit for GroupSetParams {
    type Op = maguey_model::OpGroupSetParams;
    type Checked = NodeGroup;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        if op.alloc_policy.is_none()
            && op.ndparams.is_none()
            && op.diskparams.is_none()
            && op.ipolicy.as_ref().is_none_or(|p| p.is_empty())
        {
            return Err(prereq("no changes requested"));
        }
        if let Some(p) = &op.ipolicy {
            check_group_ipolicy(p)?;
        }
        if let Some(d) = &op.diskparams {
            check_diskparams(d)?;
        }
        Ok(GroupSetParams { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::group_changed(&[&self.op.group_name])
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<NodeGroup, OpError> {
        let mut g = group_by_name(cfg, &self.op.group_name)?.clone();
        if let Some(p) = self.op.alloc_policy {
            g.alloc_policy = p;
        }
        if let Some(nd) = &self.op.ndparams {
            g.ndparams = ParamKind::Nd
                .validate(&update_params(&g.ndparams, nd))
                .map_err(prereq)?;
        }
        if let Some(d) = &self.op.diskparams {
            for (t, p) in d {
                let cur = g.diskparams.get(t).cloned().unwrap_or_default();
                let new = update_params(&cur, p);
                if new.is_empty() {
                    g.diskparams.remove(t);
                } else {
                    g.diskparams.insert(t.clone(), new);
                }
            }
        }
        if let Some(p) = &self.op.ipolicy {
            g.ipolicy = p.apply_to(&g.ipolicy);
            maguey_model::effective_ipolicy(
                &cfg.cluster.enabled_disk_templates,
                &cfg.cluster.ipolicy,
                Some(&g.ipolicy),
            )
            .validate()
            .map_err(prereq)?;
        }
        Ok(g)
    }

    async fn exec(&mut self, env: &Env<'_>, g: NodeGroup) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let warnings = if self.op.ipolicy.is_some() {
            policy_warnings(&cfg, &g)
        } else {
            Vec::new()
        };
        env.apply(Command::UpdateGroup { group: g.clone() }).await?;
        let mut changes = Vec::new();
        if let Some(p) = self.op.alloc_policy {
            changes.push(json!(["alloc_policy", p]));
        }
        if self.op.ndparams.is_some() {
            changes.push(json!(["ndparams", g.ndparams]));
        }
        if self.op.diskparams.is_some() {
            changes.push(json!(["diskparams", g.diskparams]));
        }
        if self.op.ipolicy.is_some() {
            changes.push(json!(["ipolicy", g.ipolicy]));
        }
        for w in &warnings {
            env.log(w.clone());
        }
        env.log(format!("node group {} modified", g.name));
        Ok(Value::from(changes))
    }
}

pub struct GroupRename {
    op: maguey_model::OpGroupRename,
}

impl LogicalUnit for GroupRename {
    type Op = maguey_model::OpGroupRename;
    type Checked = NodeGroup;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        validate_hostname(&op.new_name).map_err(|e| prereq(format!("invalid group name: {e}")))?;
        Ok(GroupRename { op: op.clone() })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::group_changed(&[&self.op.group_name, &self.op.new_name])
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<NodeGroup, OpError> {
        let mut g = group_by_name(cfg, &self.op.group_name)?.clone();
        if cfg.group_by_name(&self.op.new_name).is_some() {
            return Err(prereq(format!(
                "node group '{}' already exists",
                self.op.new_name
            )));
        }
        g.name = self.op.new_name.clone();
        Ok(g)
    }

    async fn exec(&mut self, env: &Env<'_>, g: NodeGroup) -> Result<Value, OpError> {
        env.apply(Command::UpdateGroup { group: g.clone() }).await?;
        env.log(format!(
            "node group {} renamed to {}",
            self.op.group_name, g.name
        ));
        Ok(json!(g.name))
    }
}

pub struct GroupRemove {
    name: String,
}

impl LogicalUnit for GroupRemove {
    type Op = maguey_model::OpGroupRemove;
    type Checked = String;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        Ok(GroupRemove {
            name: op.group_name.clone(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::group_changed(&[&self.name])
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<String, OpError> {
        let g = group_by_name(cfg, &self.name)?;
        let nodes: Vec<&str> = cfg
            .nodes
            .values()
            .filter(|n| n.group == g.uuid)
            .map(|n| n.name.as_str())
            .collect();
        if !nodes.is_empty() {
            return Err(prereq(format!(
                "node group {} is not empty: it has node(s) {}",
                g.name,
                nodes.join(", ")
            )));
        }
        if cfg.nodegroups.len() == 1 {
            return Err(prereq("the last node group cannot be removed"));
        }
        if g.name == maguey_config::commands::DEFAULT_GROUP {
            return Err(prereq("the default node group cannot be removed"));
        }
        Ok(g.uuid.clone())
    }

    async fn exec(&mut self, env: &Env<'_>, uuid: String) -> Result<Value, OpError> {
        env.apply(Command::RemoveGroup { uuid }).await?;
        env.log(format!("node group {} removed", self.name));
        Ok(Value::Null)
    }
}

pub(crate) fn group_by_name<'a>(cfg: &'a ConfigData, name: &str) -> Result<&'a NodeGroup, OpError> {
    cfg.group_by_name(name)
        .ok_or_else(|| prereq(format!("node group '{name}' is not known to the cluster")))
}
