//! OP_CLUSTER_SET_PARAMS: the cluster's configuration (`maguey cluster modify`).
//!
//! Every value is checked before anything changes: parameter dictionaries against their
//! kind's keys and types, names and paths against their rules, and the new settings against
//! the instances (no hypervisor or disk template disabled while an instance uses it, no
//! storage directory moved from under existing disks). Parameters are merged key by key into
//! the cluster's; instances started afterwards get them (an instance's own values still win).

use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_config::Command;
use maguey_jobs::OpError;
use maguey_model::names::{validate_mac_prefix, validate_vg_name};
use maguey_model::{
    fill, BeParams, Cluster, ConfigData, DiskTemplate, Hypervisor, MasterIp, OpClusterSetParams,
    ParamKind, Params,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct ClusterSetParams {
    op: OpClusterSetParams,
    /// The validated hvparams, by hypervisor.
    hvparams: BTreeMap<Hypervisor, Params>,
    beparams: Option<Params>,
    nicparams: Option<Params>,
    ndparams: Option<Params>,
    changes: Vec<String>,
    /// Instances the new instance policy puts in violation (logged, never refused).
    policy_warnings: Vec<String>,
}

fn no_dups<T: PartialEq + std::fmt::Display>(what: &str, v: &[T]) -> Result<(), OpError> {
    for (i, x) in v.iter().enumerate() {
        if v[..i].contains(x) {
            return Err(prereq(format!("{what} '{x}' given twice")));
        }
    }
    Ok(())
}

fn check_path(what: &str, p: &str, absolute: bool) -> Result<(), OpError> {
    if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(prereq(format!("invalid {what} '{p}'")));
    }
    if absolute && !p.starts_with('/') {
        return Err(prereq(format!(
            "{what} must be an absolute path, not '{p}'"
        )));
    }
    Ok(())
}

fn validated(kind: ParamKind, p: &Option<Params>) -> Result<Option<Params>, OpError> {
    p.as_ref()
        .map(|p| kind.validate(p).map_err(prereq))
        .transpose()
}

fn merge(base: &mut Params, new: &Params) {
    for (k, v) in new {
        base.insert(k.clone(), v.clone());
    }
}

impl LogicalUnit for ClusterSetParams {
    type Op = OpClusterSetParams;
    type Checked = Cluster;

    fn expand(op: &Self::Op, _cfg: &ConfigData) -> Result<Self, OpError> {
        if *op == OpClusterSetParams::default() {
            return Err(prereq("no parameters to change"));
        }
        if let Some(vg) = &op.vg_name {
            validate_vg_name(vg).map_err(prereq)?;
        }
        if let Some(hvs) = &op.enabled_hypervisors {
            if hvs.is_empty() {
                return Err(prereq("at least one hypervisor must be enabled"));
            }
            no_dups("hypervisor", hvs)?;
        }
        if let Some(t) = &op.enabled_disk_templates {
            if t.is_empty() {
                return Err(prereq("at least one disk template must be enabled"));
            }
            no_dups("disk template", t)?;
        }
        let mut hvparams = BTreeMap::new();
        for (name, p) in op.hvparams.iter().flatten() {
            let hv: Hypervisor = name.parse().map_err(|e| prereq(format!("{e}")))?;
            hvparams.insert(hv, ParamKind::Hv(hv).validate(p).map_err(prereq)?);
        }
        if op.candidate_pool_size == Some(0) {
            return Err(prereq("the candidate pool size must be at least 1"));
        }
        if let Some(h) = &op.drbd_helper {
            check_path("DRBD usermode helper", h, true)?;
        }
        if let Some(m) = &op.mac_prefix {
            validate_mac_prefix(m).map_err(prereq)?;
        }
        if let Some(d) = &op.file_storage_dir {
            check_path("file storage dir", d, false)?;
        }
        if let Some(d) = &op.shared_file_storage_dir {
            check_path("shared file storage dir", d, true)?;
        }
        for lv in op.reserved_lvs.iter().flatten() {
            if lv.is_empty() || lv.chars().any(char::is_whitespace) {
                return Err(prereq(format!("invalid reserved LV '{lv}'")));
            }
        }
        Ok(ClusterSetParams {
            beparams: validated(ParamKind::Be, &op.beparams)?,
            nicparams: validated(ParamKind::Nic, &op.nicparams)?,
            ndparams: validated(ParamKind::Nd, &op.ndparams)?,
            op: op.clone(),
            hvparams,
            changes: Vec::new(),
            policy_warnings: Vec::new(),
        })
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::cluster_settings()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        let old = &cfg.cluster;
        let mut c = old.clone();
        let op = &self.op;
        let users = |pred: &dyn Fn(&maguey_model::Instance) -> bool| -> Vec<&str> {
            cfg.instances
                .values()
                .filter(|i| pred(i))
                .map(|i| i.name.as_str())
                .collect()
        };
        if let Some(hvs) = &op.enabled_hypervisors {
            for hv in old.enabled_hypervisors.iter().filter(|h| !hvs.contains(h)) {
                let used = users(&|i| i.hypervisor == *hv);
                if !used.is_empty() {
                    return Err(prereq(format!(
                        "hypervisor {hv} cannot be disabled: instances use it: {}",
                        used.join(", ")
                    )));
                }
            }
            c.enabled_hypervisors = hvs.clone();
        }
        if let Some(ts) = &op.enabled_disk_templates {
            for t in old
                .enabled_disk_templates
                .iter()
                .filter(|t| !ts.contains(t))
            {
                let used = users(&|i| i.disk_template == *t);
                if !used.is_empty() {
                    return Err(prereq(format!(
                        "disk template {t} cannot be disabled: instances use it: {}",
                        used.join(", ")
                    )));
                }
            }
            c.enabled_disk_templates = ts.clone();
        }
        let moved = |dir: &Option<String>, cur: &str, t: DiskTemplate| -> Result<(), OpError> {
            let Some(d) = dir.as_deref().filter(|d| *d != cur) else {
                return Ok(());
            };
            let used = users(&|i| i.disk_template == t && !i.disks.is_empty());
            if used.is_empty() {
                Ok(())
            } else {
                Err(prereq(format!(
                    "the {t} storage directory cannot move to '{d}' while instances have \
                     disks there: {}",
                    used.join(", ")
                )))
            }
        };
        moved(
            &op.file_storage_dir,
            &old.file_storage_dir,
            DiskTemplate::File,
        )?;
        moved(
            &op.shared_file_storage_dir,
            &old.shared_file_storage_dir,
            DiskTemplate::Sharedfile,
        )?;
        for (hv, p) in &self.hvparams {
            merge(c.hvparams.entry(hv.as_str().to_string()).or_default(), p);
        }
        if let Some(p) = &self.beparams {
            merge(c.beparams.entry("default".into()).or_default(), p);
            let filled = fill(
                ParamKind::Be,
                &c.beparams_default(),
                &Params::new(),
                &Params::new(),
            );
            let be = BeParams::from_filled(&filled);
            if be.minmem > be.maxmem {
                return Err(prereq(format!(
                    "minmem ({}) cannot exceed maxmem ({})",
                    be.minmem, be.maxmem
                )));
            }
        }
        if let Some(p) = &self.nicparams {
            merge(c.nicparams.entry("default".into()).or_default(), p);
        }
        if let Some(p) = &self.ndparams {
            merge(&mut c.ndparams, p);
        }
        let set = |target: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *target = v.clone();
            }
        };
        set(&mut c.vg_name, &op.vg_name);
        set(&mut c.drbd_usermode_helper, &op.drbd_helper);
        if let Some(m) = &op.mac_prefix {
            c.mac_prefix = m.to_ascii_lowercase();
        }
        set(&mut c.file_storage_dir, &op.file_storage_dir);
        set(&mut c.shared_file_storage_dir, &op.shared_file_storage_dir);
        set(&mut c.default_iallocator, &op.default_iallocator);
        if let Some(n) = op.candidate_pool_size {
            c.candidate_pool_size = n;
        }
        if let Some(r) = &op.reserved_lvs {
            c.reserved_lvs = r.clone();
        }
        c.master_ip = master_ip(old.master_ip.as_ref(), op)?;
        let (ipolicy, warnings) =
            crate::ipolicy::cluster_policy(cfg, op.ipolicy.as_ref(), &c.enabled_disk_templates)?;
        c.ipolicy = ipolicy;
        self.policy_warnings = warnings;
        self.changes = changes(old, &c);
        Ok(c)
    }

    async fn exec(&mut self, env: &Env<'_>, c: Self::Checked) -> Result<Value, OpError> {
        if self.changes.is_empty() {
            env.log("nothing to change");
            return Ok(json!([]));
        }
        let old_ip = env.cfg().cluster.master_ip.clone();
        let new_ip = c.master_ip.clone();
        if old_ip != new_ip {
            move_master_ip(env, old_ip.as_ref(), new_ip.as_ref()).await?;
        }
        if let Err(e) = env.apply(Command::UpdateCluster { cluster: c }).await {
            // The config still names the old address: the new one goes down again.
            if old_ip != new_ip {
                undo_master_ip(env, old_ip.as_ref(), new_ip.as_ref()).await;
            }
            return Err(e);
        }
        if let Some(o) = old_ip.filter(|o| new_ip.as_ref().is_none_or(|n| n.ip != o.ip)) {
            if let Err(e) = crate::master_ip::deactivate(env.master, &env.cfg(), &o).await {
                env.log(format!(
                    "warning: the old master IP {} stays up: {e}",
                    o.cidr()
                ));
            }
        }
        for ch in &self.changes {
            env.log(format!("cluster: {ch}"));
        }
        for w in &self.policy_warnings {
            env.log(w.clone());
        }
        Ok(json!(self.changes))
    }
}

/// The floating master IP after `op`: `master_ip` set (empty or `none`: removed), or the
/// device or netmask of the current one changed.
fn master_ip(old: Option<&MasterIp>, op: &OpClusterSetParams) -> Result<Option<MasterIp>, OpError> {
    if op.master_ip.is_none() && op.master_netdev.is_none() && op.master_netmask.is_none() {
        return Ok(old.cloned());
    }
    let ip = match op.master_ip.as_deref().map(str::trim) {
        Some("" | "none") => {
            if op.master_netdev.is_some() || op.master_netmask.is_some() {
                return Err(prereq(
                    "a master netdev or netmask needs a master IP, not its removal",
                ));
            }
            return Ok(None);
        }
        Some(s) => s
            .parse::<std::net::IpAddr>()
            .map_err(|_| prereq(format!("invalid master IP '{s}'")))?,
        None => match old {
            Some(o) => o.ip,
            None => {
                return Err(prereq(
                    "the cluster has no master IP: give one with --master-ip",
                ))
            }
        },
    };
    let netdev = match (&op.master_netdev, old) {
        (Some(d), _) => d.clone(),
        (None, Some(o)) => o.netdev.clone(),
        (None, None) => return Err(prereq("a master IP needs --master-netdev")),
    };
    let netmask = op
        .master_netmask
        .or_else(|| {
            old.filter(|o| o.ip.is_ipv4() == ip.is_ipv4())
                .map(|o| o.netmask)
        })
        .unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
    let m = MasterIp {
        ip,
        netmask,
        netdev,
    };
    m.validate().map_err(prereq)?;
    Ok(Some(m))
}

/// Brings the new master IP up before the config names it (a device missing on the master
/// fails the job with nothing changed); the same address on another device or netmask is
/// taken down first and restored if the new one fails.
async fn move_master_ip(
    env: &Env<'_>,
    old: Option<&MasterIp>,
    new: Option<&MasterIp>,
) -> Result<(), OpError> {
    let Some(n) = new else { return Ok(()) };
    let cfg = env.cfg();
    let same_ip = old.filter(|o| o.ip == n.ip);
    if let Some(o) = same_ip {
        crate::master_ip::deactivate(env.master, &cfg, o)
            .await
            .map_err(OpError::Exec)?;
    }
    if let Err(e) = crate::master_ip::activate(env.master, &cfg, n).await {
        if let Some(o) = same_ip {
            if let Err(e) = crate::master_ip::activate(env.master, &cfg, o).await {
                env.log(format!("warning: the master IP could not be restored: {e}"));
            }
        }
        return Err(OpError::Exec(format!(
            "the master IP {} could not be brought up: {e}",
            n.cidr()
        )));
    }
    env.log(format!("master IP {} up on {}", n.cidr(), n.netdev));
    Ok(())
}

/// After a refused config change: the new master IP down, the old one (if it was the same
/// address) up again. Failures are warnings.
async fn undo_master_ip(env: &Env<'_>, old: Option<&MasterIp>, new: Option<&MasterIp>) {
    let cfg = env.cfg();
    if let Some(n) = new {
        if let Err(e) = crate::master_ip::deactivate(env.master, &cfg, n).await {
            env.log(format!("warning: the master IP {} stays up: {e}", n.cidr()));
        }
    }
    if let Some(o) = old.filter(|o| new.is_some_and(|n| n.ip == o.ip)) {
        if let Err(e) = crate::master_ip::activate(env.master, &cfg, o).await {
            env.log(format!("warning: the master IP could not be restored: {e}"));
        }
    }
}

/// One line per changed setting, `name: old -> new`.
fn changes(old: &Cluster, new: &Cluster) -> Vec<String> {
    let a = serde_json::to_value(old).unwrap_or_default();
    let b = serde_json::to_value(new).unwrap_or_default();
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {} -> {v}", a.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    // Fields left out when empty (the instance policy back to its defaults).
    out.extend(
        a.iter()
            .filter(|(k, _)| !b.contains_key(*k))
            .map(|(k, v)| format!("{k}: {v} -> null")),
    );
    out
}
