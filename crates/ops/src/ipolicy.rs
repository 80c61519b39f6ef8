//! Instance policies in the units: an instance's specs against the policy of a group
//! (Ganeti's `ComputeIPolicyInstanceViolation`), refused unless `--ignore-ipolicy`, and the
//! instances a policy change would put in violation.

use crate::prereq;
use crate::util::filled_beparams;
use maguey_jobs::OpError;
use maguey_model::{ConfigData, IPolicy, Instance, InstanceSpecs};

/// What the policy sees of an instance.
pub fn instance_specs(cfg: &ConfigData, inst: &Instance) -> InstanceSpecs {
    let be = filled_beparams(cfg, inst);
    InstanceSpecs {
        memory: be.maxmem,
        vcpus: be.vcpus as u64,
        disk_sizes: inst.disks.iter().map(|d| d.size).collect(),
        nic_count: inst.nics.len() as u64,
        spindle_use: be.spindle_use as u64,
        template: Some(inst.disk_template),
    }
}

/// The effective policy of the group of a node.
pub fn policy_of_node(cfg: &ConfigData, node_uuid: &str) -> (String, IPolicy) {
    let g = cfg.group_of_node(node_uuid);
    (
        g.map(|g| g.name.clone()).unwrap_or_default(),
        cfg.ipolicy_for_group(g.map(|g| g.uuid.as_str())),
    )
}

/// Checks `inst` (as it will be) against the policy of the group of `node_uuid`: an error
/// naming every violation, or, with `ignore`, the warning to log (None: it complies).
pub fn check(
    cfg: &ConfigData,
    inst: &Instance,
    node_uuid: &str,
    ignore: bool,
) -> Result<Option<String>, OpError> {
    let (group, pol) = policy_of_node(cfg, node_uuid);
    let v = pol.violations(&instance_specs(cfg, inst));
    if v.is_empty() {
        return Ok(None);
    }
    let msg = format!(
        "instance {} does not comply with the instance policy of group {group}: {}",
        inst.name,
        v.join("; ")
    );
    if ignore {
        Ok(Some(format!("warning (--ignore-ipolicy): {msg}")))
    } else {
        Err(prereq(format!("{msg} (use --ignore-ipolicy to go on)")))
    }
}

/// Checks a move of `inst` to `target` (a node uuid): only when the target is in another
/// group than the primary (Ganeti checks the new group's policy then).
pub fn check_move(
    cfg: &ConfigData,
    inst: &Instance,
    target: &str,
    ignore: bool,
) -> Result<Option<String>, OpError> {
    let from = cfg.group_of_node(&inst.primary_node).map(|g| &g.uuid);
    let to = cfg.group_of_node(target).map(|g| &g.uuid);
    if from == to {
        return Ok(None);
    }
    check(cfg, inst, target, ignore)
}

/// Every instance whose primary is in a group for which `policy` gives a policy, and that
/// breaks it: (name, violations).
pub fn violating(
    cfg: &ConfigData,
    policy: impl Fn(&str) -> Option<IPolicy>,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for i in cfg.instances.values() {
        let Some(g) = cfg.group_of_node(&i.primary_node) else {
            continue;
        };
        let Some(p) = policy(&g.uuid) else { continue };
        let v = p.violations(&instance_specs(cfg, i));
        if !v.is_empty() {
            out.push((i.name.clone(), v));
        }
    }
    out
}

/// What cluster verify reports about groups and policies (warnings, as in Ganeti): instances
/// split between groups (EINSTANCESPLITGROUPS) and instances that break the policy of their
/// primary node's group (EINSTANCEPOLICY).
pub fn verify_findings(cfg: &ConfigData) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, groups) in maguey_config::group::split_instances(cfg) {
        out.push((
            "EINSTANCESPLITGROUPS",
            format!(
                "instance {name} has its nodes in different groups: {}",
                groups.join(", ")
            ),
        ));
    }
    for (name, v) in violating(cfg, |g| Some(cfg.ipolicy_for_group(Some(g)))) {
        out.push((
            "EINSTANCEPOLICY",
            format!(
                "instance {name} does not comply with its group's instance policy: {}",
                v.join("; ")
            ),
        ));
    }
    out
}

/// The cluster's policy after `change`, with `templates` enabled: refused when the policy is
/// inconsistent (a min above its max, a ratio not positive, the std spec outside every
/// min/max pair, an allowed disk template not enabled on the cluster: Ganeti's
/// `CheckISpecSyntax` and `CheckIpolicyVsDiskTemplates`). Also answers the instances the
/// new policy would put in violation (Ganeti only warns about those).
pub fn cluster_policy(
    cfg: &ConfigData,
    change: Option<&maguey_model::IPolicyChange>,
    templates: &[maguey_model::DiskTemplate],
) -> Result<(maguey_model::IPolicyOverride, Vec<String>), OpError> {
    let new = match change {
        Some(c) => c.apply_to(&cfg.cluster.ipolicy),
        None => cfg.cluster.ipolicy.clone(),
    };
    if let Some(ts) = &new.disk_templates {
        let off: Vec<&str> = ts
            .iter()
            .filter(|t| !templates.contains(t))
            .map(|t| t.as_str())
            .collect();
        if !off.is_empty() {
            return Err(prereq(format!(
                "the instance policy allows disk templates not enabled on the cluster: {}",
                off.join(", ")
            )));
        }
    }
    let eff = maguey_model::effective_ipolicy(templates, &new, None);
    eff.validate().map_err(prereq)?;
    for k in maguey_model::ISPEC_KEYS {
        let Some(v) = eff.std.get(k) else { continue };
        let inside = eff.minmax.iter().any(|mm| {
            mm.min.get(k).is_none_or(|lo| lo <= v) && mm.max.get(k).is_none_or(|hi| v <= hi)
        });
        if !inside {
            return Err(prereq(format!(
                "the std {k} value {v} is outside every min/max pair of the instance policy"
            )));
        }
    }
    let mut warnings = Vec::new();
    if change.is_some() {
        let before: Vec<String> = violating(cfg, |g| Some(cfg.ipolicy_for_group(Some(g))))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let mut after = cfg.clone();
        after.cluster.ipolicy = new.clone();
        after.cluster.enabled_disk_templates = templates.to_vec();
        let now = violating(&after, |g| Some(after.ipolicy_for_group(Some(g))));
        for (i, v) in now.into_iter().filter(|(i, _)| !before.contains(i)) {
            warnings.push(format!(
                "warning: instance {i} violates the new instance policy: {}",
                v.join("; ")
            ));
        }
    }
    Ok((new, warnings))
}
