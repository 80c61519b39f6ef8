//! Instance policies (Ganeti's `ipolicy`): bounds on an instance's specs, the allowed disk
//! templates and the node over-commit ratios, at cluster level with group overrides.
//!
//! Both levels store an [`IPolicyOverride`] (every field optional); the effective policy of a
//! group is Ganeti's defaults, then the cluster's values, then the group's
//! ([`effective_ipolicy`]). `std` is cluster-level only.

use crate::vocab::DiskTemplate;
use serde::{Deserialize, Serialize};

/// One spec (Ganeti's ispec): a value per key; a missing key is not bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ISpec {
    #[serde(
        rename = "memory-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_size: Option<u64>,
    #[serde(rename = "cpu-count", default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u64>,
    #[serde(
        rename = "disk-count",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_count: Option<u64>,
    /// Each disk, MiB.
    #[serde(rename = "disk-size", default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    #[serde(rename = "nic-count", default, skip_serializing_if = "Option::is_none")]
    pub nic_count: Option<u64>,
    #[serde(
        rename = "spindle-use",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spindle_use: Option<u64>,
}

/// Ganeti's spec keys, in its order.
pub const ISPEC_KEYS: &[&str] = &[
    "memory-size",
    "cpu-count",
    "disk-count",
    "disk-size",
    "nic-count",
    "spindle-use",
];

impl ISpec {
    pub fn get(&self, key: &str) -> Option<u64> {
        match key {
            "memory-size" => self.memory_size,
            "cpu-count" => self.cpu_count,
            "disk-count" => self.disk_count,
            "disk-size" => self.disk_size,
            "nic-count" => self.nic_count,
            "spindle-use" => self.spindle_use,
            _ => None,
        }
    }
    /// Sets `key`; false if the key is unknown.
    pub fn set(&mut self, key: &str, v: Option<u64>) -> bool {
        let slot = match key {
            "memory-size" => &mut self.memory_size,
            "cpu-count" => &mut self.cpu_count,
            "disk-count" => &mut self.disk_count,
            "disk-size" => &mut self.disk_size,
            "nic-count" => &mut self.nic_count,
            "spindle-use" => &mut self.spindle_use,
            _ => return false,
        };
        *slot = v;
        true
    }
    fn full(m: u64, c: u64, dc: u64, ds: u64, n: u64, s: u64) -> Self {
        ISpec {
            memory_size: Some(m),
            cpu_count: Some(c),
            disk_count: Some(dc),
            disk_size: Some(ds),
            nic_count: Some(n),
            spindle_use: Some(s),
        }
    }
}

/// A pair of bounds; an instance must fit one pair of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinMax {
    pub min: ISpec,
    pub max: ISpec,
}

/// A complete policy (what checks and the iallocator use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IPolicy {
    pub minmax: Vec<MinMax>,
    pub std: ISpec,
    #[serde(rename = "disk-templates")]
    pub disk_templates: Vec<DiskTemplate>,
    #[serde(rename = "vcpu-ratio")]
    pub vcpu_ratio: f64,
    #[serde(rename = "spindle-ratio")]
    pub spindle_ratio: f64,
}

/// A partial policy: what the cluster or a group sets; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IPolicyOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minmax: Option<Vec<MinMax>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<ISpec>,
    #[serde(
        rename = "disk-templates",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_templates: Option<Vec<DiskTemplate>>,
    #[serde(
        rename = "vcpu-ratio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vcpu_ratio: Option<f64>,
    #[serde(
        rename = "spindle-ratio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spindle_ratio: Option<f64>,
}

impl IPolicyOverride {
    pub fn is_empty(&self) -> bool {
        *self == IPolicyOverride::default()
    }
    /// Applies `other`'s set fields over this one's.
    pub fn merged(&self, other: &IPolicyOverride) -> IPolicyOverride {
        IPolicyOverride {
            minmax: other.minmax.clone().or_else(|| self.minmax.clone()),
            std: other.std.clone().or_else(|| self.std.clone()),
            disk_templates: other
                .disk_templates
                .clone()
                .or_else(|| self.disk_templates.clone()),
            vcpu_ratio: other.vcpu_ratio.or(self.vcpu_ratio),
            spindle_ratio: other.spindle_ratio.or(self.spindle_ratio),
        }
    }
}

/// Ganeti's default policy, but for the lower bounds of memory, disks and NICs (Maguey: no
/// minimum memory, 0 disks of any size and 0 NICs are allowed; Ganeti asks for 128 MiB, one
/// 1 GiB disk and one NIC, too much for small test guests); `templates` are the cluster's
/// enabled templates.
pub fn default_ipolicy(templates: &[DiskTemplate]) -> IPolicy {
    IPolicy {
        minmax: vec![MinMax {
            min: ISpec::full(0, 1, 0, 0, 0, 1),
            max: ISpec::full(32768, 8, 16, 1024 * 1024, 8, 12),
        }],
        std: ISpec::full(128, 1, 1, 1024, 1, 1),
        disk_templates: templates.to_vec(),
        vcpu_ratio: 4.0,
        spindle_ratio: 32.0,
    }
}

/// Defaults, then the cluster's values, then the group's (its `std` is ignored).
pub fn effective_ipolicy(
    templates: &[DiskTemplate],
    cluster: &IPolicyOverride,
    group: Option<&IPolicyOverride>,
) -> IPolicy {
    let mut o = cluster.clone();
    if let Some(g) = group {
        let g = IPolicyOverride {
            std: None,
            ..g.clone()
        };
        o = o.merged(&g);
    }
    let d = default_ipolicy(templates);
    IPolicy {
        minmax: o.minmax.unwrap_or(d.minmax),
        std: o.std.unwrap_or(d.std),
        disk_templates: o.disk_templates.unwrap_or(d.disk_templates),
        vcpu_ratio: o.vcpu_ratio.unwrap_or(d.vcpu_ratio),
        spindle_ratio: o.spindle_ratio.unwrap_or(d.spindle_ratio),
    }
}

/// What an instance asks for, as the policy sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceSpecs {
    pub memory: u64,
    pub vcpus: u64,
    pub disk_sizes: Vec<u64>,
    pub nic_count: u64,
    pub spindle_use: u64,
    pub template: Option<DiskTemplate>,
}

impl IPolicy {
    /// Checks a policy's own consistency: min ≤ max in each pair, std inside the first pair
    /// (Ganeti's rule), positive ratios.
    pub fn validate(&self) -> Result<(), String> {
        if self.minmax.is_empty() {
            return Err("the ipolicy needs at least one min/max pair".into());
        }
        for (i, mm) in self.minmax.iter().enumerate() {
            for k in ISPEC_KEYS {
                if let (Some(lo), Some(hi)) = (mm.min.get(k), mm.max.get(k)) {
                    if lo > hi {
                        return Err(format!(
                            "ipolicy min/max pair {i}: min {k} {lo} is above max {hi}"
                        ));
                    }
                }
            }
        }
        let positive = |r: f64| r.is_finite() && r > 0.0;
        if !positive(self.vcpu_ratio) || !positive(self.spindle_ratio) {
            return Err("ipolicy ratios must be positive".into());
        }
        Ok(())
    }

    /// Every way `s` breaks the policy (empty: it complies). Ganeti's
    /// `ComputeIPolicyInstanceSpecViolation`: the instance must fit one min/max pair (the
    /// violations reported are those of the pair it misses least) and use an allowed template.
    pub fn violations(&self, s: &InstanceSpecs) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = s.template {
            if !self.disk_templates.contains(&t) {
                out.push(format!(
                    "disk template {t} is not allowed (allowed: {})",
                    self.disk_templates
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let mut best: Option<Vec<String>> = None;
        for mm in &self.minmax {
            let v = pair_violations(mm, s);
            if best.as_ref().is_none_or(|b| v.len() < b.len()) {
                best = Some(v);
            }
        }
        out.extend(best.unwrap_or_default());
        out
    }
}

fn pair_violations(mm: &MinMax, s: &InstanceSpecs) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, what: &str, v: u64| {
        if let Some(lo) = mm.min.get(key) {
            if v < lo {
                out.push(format!(
                    "{what} value {v} is below the minimum {lo} ({key})"
                ));
            }
        }
        if let Some(hi) = mm.max.get(key) {
            if v > hi {
                out.push(format!(
                    "{what} value {v} is above the maximum {hi} ({key})"
                ));
            }
        }
    };
    check("memory-size", "memory", s.memory);
    check("cpu-count", "cpu count", s.vcpus);
    // Diskless instances are not counted against the disk bounds (Ganeti).
    if s.template != Some(DiskTemplate::Diskless) {
        check("disk-count", "disk count", s.disk_sizes.len() as u64);
        for (i, d) in s.disk_sizes.iter().enumerate() {
            check("disk-size", &format!("disk/{i} size"), *d);
        }
    }
    check("nic-count", "NIC count", s.nic_count);
    check("spindle-use", "spindle use", s.spindle_use);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_overrides_cluster_overrides_defaults() {
        let mut bounds = MinMax::default();
        bounds.min.set("memory-size", Some(128));
        bounds.max.set("disk-size", Some(1024));
        let cl = IPolicyOverride {
            vcpu_ratio: Some(2.0),
            minmax: Some(vec![bounds]),
            ..Default::default()
        };
        let g = IPolicyOverride {
            disk_templates: Some(vec![DiskTemplate::File]),
            std: Some(ISpec::default()),
            ..Default::default()
        };
        let p = effective_ipolicy(&[DiskTemplate::File, DiskTemplate::Drbd], &cl, Some(&g));
        assert_eq!(p.vcpu_ratio, 2.0);
        assert_eq!(p.disk_templates, vec![DiskTemplate::File]);
        assert_eq!(p.std.memory_size, Some(128));
        let s = InstanceSpecs {
            memory: 64,
            vcpus: 1,
            disk_sizes: vec![2048],
            nic_count: 1,
            spindle_use: 1,
            template: Some(DiskTemplate::Drbd),
        };
        let v = p.violations(&s);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("disk template drbd"));
        assert!(v[1].contains("memory value 64 is below the minimum 128"));
        assert!(v[2].contains("disk/0 size value 2048 is above the maximum 1024"));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["minmax"][0]["max"]["disk-size"], 1024);
        let d = effective_ipolicy(&[DiskTemplate::File], &Default::default(), None);
        assert_eq!(
            serde_json::to_value(&d).unwrap()["minmax"][0]["max"]["memory-size"],
            32768
        );
        assert_eq!(json["vcpu-ratio"], 2.0);
    }
}

/// A value, or the word `default` that removes an override (Ganeti's `VALUE_DEFAULT`).
#[derive(Debug, Clone, PartialEq)]
pub enum OrDefault<T> {
    Default,
    Value(T),
}

impl<T: Serialize> Serialize for OrDefault<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OrDefault::Default => s.serialize_str("default"),
            OrDefault::Value(v) => v.serialize(s),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OrDefault<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if v.as_str() == Some("default") {
            return Ok(OrDefault::Default);
        }
        serde_json::from_value(v)
            .map(OrDefault::Value)
            .map_err(serde::de::Error::custom)
    }
}

/// A change of a cluster or group policy: each field set to a value, reset to `default`
/// (inherit), or left as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IPolicyChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minmax: Option<OrDefault<Vec<MinMax>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<OrDefault<ISpec>>,
    #[serde(
        rename = "disk-templates",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_templates: Option<OrDefault<Vec<DiskTemplate>>>,
    #[serde(
        rename = "vcpu-ratio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vcpu_ratio: Option<OrDefault<f64>>,
    #[serde(
        rename = "spindle-ratio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spindle_ratio: Option<OrDefault<f64>>,
}

impl IPolicyChange {
    pub fn is_empty(&self) -> bool {
        *self == IPolicyChange::default()
    }
    /// `base` with this change applied.
    pub fn apply_to(&self, base: &IPolicyOverride) -> IPolicyOverride {
        fn set<T: Clone>(slot: &mut Option<T>, c: &Option<OrDefault<T>>) {
            match c {
                None => {}
                Some(OrDefault::Default) => *slot = None,
                Some(OrDefault::Value(v)) => *slot = Some(v.clone()),
            }
        }
        let mut o = base.clone();
        set(&mut o.minmax, &self.minmax);
        set(&mut o.std, &self.std);
        set(&mut o.disk_templates, &self.disk_templates);
        set(&mut o.vcpu_ratio, &self.vcpu_ratio);
        set(&mut o.spindle_ratio, &self.spindle_ratio);
        o
    }
}
