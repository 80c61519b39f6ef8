//! OP_TAGS_SET and OP_TAGS_DEL: tags of the cluster, a node, an instance or a node group.
//!
//! Tags follow Ganeti's rules: at most 128 characters of `[A-Za-z0-9_.+*/:@-]`, at most 4096
//! tags per object. Adding a present tag is a no-op; removing an absent one is refused.

use crate::util::{instance_by_name, node_by_name};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::ConfigData;
use serde_json::Value;

/// Longest tag Ganeti accepts.
pub const MAX_TAG_LEN: usize = 128;
/// Most tags one object may carry.
pub const MAX_TAGS_PER_OBJ: usize = 4096;

/// Ganeti's tag kinds (the model's vocabulary; re-exported for callers of this module).
pub use maguey_model::TagKind;

/// Checks one tag against Ganeti's rules.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("tags cannot be empty".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "tag too long (>{MAX_TAG_LEN} characters): '{}...'",
            tag.chars().take(32).collect::<String>()
        ));
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.+*/:@-".contains(c))
    {
        return Err(format!("invalid characters in tag '{tag}'"));
    }
    Ok(())
}

/// The current tags of an object; an error names what is missing.
pub fn object_tags(
    cfg: &ConfigData,
    kind: TagKind,
    name: Option<&str>,
) -> Result<Vec<String>, String> {
    let need = || name.ok_or_else(|| "a name is needed for this tag kind".to_string());
    Ok(match kind {
        TagKind::Cluster => cfg.cluster.tags.clone(),
        TagKind::Node => {
            let n = need()?;
            cfg.node_by_name(n)
                .ok_or_else(|| format!("node '{n}' is not known to the cluster"))?
                .tags
                .clone()
        }
        TagKind::Instance => {
            let n = need()?;
            cfg.instance_by_name(n)
                .ok_or_else(|| format!("instance '{n}' is not known to the cluster"))?
                .tags
                .clone()
        }
        TagKind::NodeGroup => {
            let n = need()?;
            cfg.group_by_name(n)
                .ok_or_else(|| format!("node group '{n}' is not known to the cluster"))?
                .tags
                .clone()
        }
        TagKind::Network => {
            let n = need()?;
            cfg.network_by_name(n)
                .ok_or_else(|| format!("network '{n}' is not known to the cluster"))?
                .tags
                .clone()
        }
    })
}

/// Both opcodes: `add` tells which.
pub struct Tags {
    add: bool,
    kind: TagKind,
    name: Option<String>,
    tags: Vec<String>,
}

/// OP_TAGS_SET.
pub type TagsSet = Tags;

crate::unit_alias!(
    /// OP_TAGS_DEL: the phases of [`Tags`], removing.
    TagsDel,
    maguey_model::OpTagsDel,
    Tags,
    Tags::del
);

impl Tags {
    fn del(op: &maguey_model::OpTagsDel, cfg: &ConfigData) -> Result<Self, OpError> {
        Self::new(false, op.kind, &op.name, &op.tags, cfg)
    }

    fn new(
        add: bool,
        kind: TagKind,
        name: &Option<String>,
        tags: &[String],
        cfg: &ConfigData,
    ) -> Result<Self, OpError> {
        let kind = &kind;
        let k = *kind;
        let name = match k {
            TagKind::Cluster => None,
            _ => Some(
                name.clone()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| prereq(format!("a {kind} name is needed")))?,
            ),
        };
        if tags.is_empty() {
            return Err(prereq("no tags given"));
        }
        for t in tags {
            validate_tag(t).map_err(prereq)?;
        }
        object_tags(cfg, k, name.as_deref()).map_err(prereq)?;
        Ok(Tags {
            add,
            kind: k,
            name,
            tags: tags.to_vec(),
        })
    }
}

impl LogicalUnit for Tags {
    type Op = maguey_model::OpTagsSet;
    type Checked = ();

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        Self::new(true, op.kind, &op.name, &op.tags, cfg)
    }

    fn locks(&self) -> Vec<LockRequest> {
        use crate::locks::TagTarget;
        let name = self.name.as_deref().unwrap_or_default();
        crate::locks::tagged_object(match self.kind {
            TagKind::Cluster => TagTarget::Cluster,
            TagKind::Node => TagTarget::Node(name),
            TagKind::Instance => TagTarget::Instance(name),
            TagKind::NodeGroup => TagTarget::NodeGroup(name),
            TagKind::Network => TagTarget::Network(name),
        })
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let current = object_tags(cfg, self.kind, self.name.as_deref()).map_err(prereq)?;
        if self.add {
            let mut all = current.clone();
            for t in &self.tags {
                if !all.contains(t) {
                    all.push(t.clone());
                }
            }
            if all.len() > MAX_TAGS_PER_OBJ {
                return Err(prereq(format!(
                    "too many tags (at most {MAX_TAGS_PER_OBJ} per object)"
                )));
            }
        } else {
            let missing: Vec<&String> = self.tags.iter().filter(|t| !current.contains(t)).collect();
            if !missing.is_empty() {
                return Err(prereq(format!(
                    "tag(s) {} not found",
                    missing
                        .iter()
                        .map(|t| format!("'{t}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        let cfg = env.cfg();
        let change = |tags: &mut Vec<String>| {
            if self.add {
                for t in &self.tags {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                tags.sort();
            } else {
                tags.retain(|t| !self.tags.contains(t));
            }
        };
        let name = self.name.clone().unwrap_or_default();
        let cmd = match self.kind {
            TagKind::Cluster => {
                let mut c = cfg.cluster.clone();
                change(&mut c.tags);
                Command::UpdateCluster { cluster: c }
            }
            TagKind::Node => {
                let mut n = node_by_name(&cfg, &name)?.clone();
                change(&mut n.tags);
                Command::UpdateNode { node: n }
            }
            TagKind::Instance => {
                let mut i = instance_by_name(&cfg, &name)?.clone();
                change(&mut i.tags);
                Command::UpdateInstance { instance: i }
            }
            TagKind::NodeGroup => {
                let mut g = cfg
                    .group_by_name(&name)
                    .ok_or_else(|| prereq(format!("node group '{name}' is not known")))?
                    .clone();
                change(&mut g.tags);
                Command::UpdateGroup { group: g }
            }
            TagKind::Network => {
                let mut n = cfg
                    .network_by_name(&name)
                    .ok_or_else(|| prereq(format!("network '{name}' is not known")))?
                    .clone();
                change(&mut n.tags);
                Command::UpdateNetwork { network: n }
            }
        };
        env.apply(cmd).await?;
        env.log(format!(
            "{} tag(s) {}",
            if self.add { "added" } else { "removed" },
            self.tags.join(", ")
        ));
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ganeti_tag_rules() {
        for ok in [
            "web",
            "billing:42",
            "a.b+c*d/e:f@g-h_i",
            &"x".repeat(MAX_TAG_LEN),
        ] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "with space",
            "semi;colon",
            "é",
            &"x".repeat(MAX_TAG_LEN + 1),
        ] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
        assert_eq!(TagKind::parse("nodegroup"), Some(TagKind::NodeGroup));
        assert_eq!(TagKind::parse("network"), Some(TagKind::Network));
        assert_eq!(TagKind::parse("disk"), None);
    }

    #[test]
    fn object_tags_need_known_objects() {
        let cfg = ConfigData::default();
        assert_eq!(
            object_tags(&cfg, TagKind::Cluster, None).unwrap(),
            Vec::<String>::new()
        );
        assert!(object_tags(&cfg, TagKind::Node, Some("n1")).is_err());
        assert!(object_tags(&cfg, TagKind::Instance, None).is_err());
    }
}
