//! Parameter dictionaries and their inheritance (cluster → group → instance).
//!
//! Parameters are stored as partial JSON dictionaries at each level, exactly as Ganeti keeps
//! them (`beparams`, `hvparams`, `nicparams`, `ndparams`, `osparams`). A level only holds the
//! keys it overrides; [`fill`] merges the levels over the built-in defaults of a [`ParamKind`].
//! Values given as strings (from the CLI: `-B maxmem=512M`) are checked and converted by
//! [`ParamKind::validate`] before they reach the config.

pub use crate::vocab::Hypervisor;
use crate::vocab::{MigrationMode, NicMode};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A partial or filled parameter dictionary.
pub type Params = BTreeMap<String, Value>;

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A size in MiB; accepts `512`, `512M`, `2G`.
    Size,
    Int,
    Bool,
    String,
    /// A string from a fixed set.
    Enum(&'static [&'static str]),
    /// A colon-separated list of names from a fixed set (Ganeti's `migration_caps`); empty: none.
    Flags(&'static [&'static str]),
}

/// One parameter of a kind: name, type and default.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: DefaultValue,
}

#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    Int(i64),
    Bool(bool),
    Str(&'static str),
}

impl DefaultValue {
    fn to_value(self) -> Value {
        match self {
            DefaultValue::Int(i) => Value::from(i),
            DefaultValue::Bool(b) => Value::from(b),
            DefaultValue::Str(s) => Value::from(s),
        }
    }
}

const fn p(name: &'static str, ty: ParamType, default: DefaultValue) -> ParamSpec {
    ParamSpec { name, ty, default }
}

pub const NIC_MODES: &[&str] = NicMode::NAMES;

/// Backend parameters (Ganeti's `beparams`).
pub const BE_PARAMS: &[ParamSpec] = &[
    p("maxmem", ParamType::Size, DefaultValue::Int(128)),
    p("minmem", ParamType::Size, DefaultValue::Int(128)),
    p("vcpus", ParamType::Int, DefaultValue::Int(1)),
    p("auto_balance", ParamType::Bool, DefaultValue::Bool(true)),
    p(
        "always_failover",
        ParamType::Bool,
        DefaultValue::Bool(false),
    ),
    p("spindle_use", ParamType::Int, DefaultValue::Int(1)),
];

/// NIC parameters (Ganeti's `nicparams`).
pub const NIC_PARAMS: &[ParamSpec] = &[
    p(
        "mode",
        ParamType::Enum(NIC_MODES),
        DefaultValue::Str("bridged"),
    ),
    p("link", ParamType::String, DefaultValue::Str("br0")),
    p("vlan", ParamType::String, DefaultValue::Str("")),
];

/// Node parameters (Ganeti's `ndparams`).
pub const ND_PARAMS: &[ParamSpec] = &[
    p("oob_program", ParamType::String, DefaultValue::Str("")),
    p("spindle_count", ParamType::Int, DefaultValue::Int(1)),
    p(
        "exclusive_storage",
        ParamType::Bool,
        DefaultValue::Bool(false),
    ),
    p("ssh_port", ParamType::Int, DefaultValue::Int(22)),
];

/// Parameters of the `fake` hypervisor: `migration_mode`; `accel`, which a running fake
/// instance keeps for life, as QEMU does; `user_shutdown`, as kvm's.
pub const HV_FAKE_PARAMS: &[ParamSpec] = &[
    p(
        "migration_mode",
        ParamType::Enum(MigrationMode::NAMES),
        DefaultValue::Str("live"),
    ),
    p(
        "accel",
        ParamType::Enum(KVM_ACCELS),
        DefaultValue::Str("auto"),
    ),
    // As kvm's: a guest that powers itself off is kept, and marked stopped by the user.
    p("user_shutdown", ParamType::Bool, DefaultValue::Bool(false)),
];

pub const KVM_ACCELS: &[&str] = &["auto", "kvm", "tcg"];
pub const KVM_DISK_CACHES: &[&str] = &["default", "none", "writethrough", "writeback"];
pub const KVM_DISK_AIOS: &[&str] = &["threads", "native", "io_uring"];
/// QEMU migration capabilities `migration_caps` may switch on (the source sets them; the
/// target needs nothing). `auto-converge` throttles a guest that dirties memory faster than
/// the link sends it, so that a busy guest's migration ends instead of timing out.
pub const KVM_MIGRATION_CAPS: &[&str] = &["auto-converge", "xbzrle"];
pub const KVM_DISK_TYPES: &[&str] = &["paravirtual", "ide", "scsi", "sd", "mtd", "pflash"];
pub const KVM_NIC_TYPES: &[&str] = &[
    "paravirtual",
    "e1000",
    "rtl8139",
    "i82551",
    "i82557b",
    "i82559er",
    "pcnet",
    "ne2k_pci",
    "ne2k_isa",
];
pub const KVM_BOOT_ORDERS: &[&str] = &["disk", "cdrom", "floppy", "network"];

/// Parameters of the `kvm` hypervisor: Ganeti's names and defaults (`hvcDefaults`), plus
/// Maguey's `accel` (`kvm`, `tcg`, or `auto`: KVM when it can really run a guest here).
pub const HV_KVM_PARAMS: &[ParamSpec] = &[
    p(
        "kvm_path",
        ParamType::String,
        DefaultValue::Str("/usr/bin/kvm"),
    ),
    p(
        "accel",
        ParamType::Enum(KVM_ACCELS),
        DefaultValue::Str("auto"),
    ),
    p(
        "kernel_path",
        ParamType::String,
        DefaultValue::Str("/boot/vmlinuz-3-kvmU"),
    ),
    p("initrd_path", ParamType::String, DefaultValue::Str("")),
    p("kernel_args", ParamType::String, DefaultValue::Str("ro")),
    p(
        "root_path",
        ParamType::String,
        DefaultValue::Str("/dev/vda1"),
    ),
    p("acpi", ParamType::Bool, DefaultValue::Bool(true)),
    p(
        "boot_order",
        ParamType::Enum(KVM_BOOT_ORDERS),
        DefaultValue::Str("disk"),
    ),
    p("cpu_type", ParamType::String, DefaultValue::Str("")),
    p("machine_version", ParamType::String, DefaultValue::Str("")),
    p(
        "disk_cache",
        ParamType::Enum(KVM_DISK_CACHES),
        DefaultValue::Str("default"),
    ),
    p(
        "disk_aio",
        ParamType::Enum(KVM_DISK_AIOS),
        DefaultValue::Str("threads"),
    ),
    p(
        "disk_type",
        ParamType::Enum(KVM_DISK_TYPES),
        DefaultValue::Str("paravirtual"),
    ),
    p(
        "nic_type",
        ParamType::Enum(KVM_NIC_TYPES),
        DefaultValue::Str("paravirtual"),
    ),
    p("serial_console", ParamType::Bool, DefaultValue::Bool(true)),
    p("serial_speed", ParamType::Int, DefaultValue::Int(38400)),
    p("vnc_bind_address", ParamType::String, DefaultValue::Str("")),
    p("migration_port", ParamType::Int, DefaultValue::Int(8102)),
    p("migration_bandwidth", ParamType::Int, DefaultValue::Int(32)),
    p("migration_downtime", ParamType::Int, DefaultValue::Int(30)),
    p(
        "migration_caps",
        ParamType::Flags(KVM_MIGRATION_CAPS),
        DefaultValue::Str("auto-converge"),
    ),
    p(
        "migration_mode",
        ParamType::Enum(MigrationMode::NAMES),
        DefaultValue::Str("live"),
    ),
    p(
        "reboot_behavior",
        ParamType::Enum(&["reboot", "exit"]),
        DefaultValue::Str("reboot"),
    ),
    p("use_localtime", ParamType::Bool, DefaultValue::Bool(false)),
    p("user_shutdown", ParamType::Bool, DefaultValue::Bool(false)),
    p("kvm_extra", ParamType::String, DefaultValue::Str("")),
    p("cdrom_image_path", ParamType::String, DefaultValue::Str("")),
    p(
        "cdrom_disk_type",
        ParamType::Enum(&["", "ide", "scsi", "paravirtual"]),
        DefaultValue::Str(""),
    ),
    p("vhost_net", ParamType::Bool, DefaultValue::Bool(false)),
    // Ganeti's: `user` runs QEMU as `security_domain` (`-run-with user=`); `pool` (a uid
    // per instance) is not supported yet.
    p(
        "security_model",
        ParamType::Enum(&["none", "user", "pool"]),
        DefaultValue::Str("none"),
    ),
    p("security_domain", ParamType::String, DefaultValue::Str("")),
    // A file on the node holding the VNC password (Ganeti's); without one, a VNC server
    // (`vnc_bind_address`) accepts no connection at all.
    p(
        "vnc_password_file",
        ParamType::String,
        DefaultValue::Str(""),
    ),
];

/// The kinds of parameter dictionaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Be,
    Nic,
    Nd,
    /// Hypervisor parameters of the named hypervisor.
    Hv(Hypervisor),
}

impl ParamKind {
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Be => "beparams",
            ParamKind::Nic => "nicparams",
            ParamKind::Nd => "ndparams",
            ParamKind::Hv(_) => "hvparams",
        }
    }

    /// The specs of this kind; `None` means free-form (unknown keys accepted as strings).
    pub fn specs(self) -> Option<&'static [ParamSpec]> {
        match self {
            ParamKind::Be => Some(BE_PARAMS),
            ParamKind::Nic => Some(NIC_PARAMS),
            ParamKind::Nd => Some(ND_PARAMS),
            ParamKind::Hv(Hypervisor::Fake) => Some(HV_FAKE_PARAMS),
            ParamKind::Hv(Hypervisor::Kvm) => Some(HV_KVM_PARAMS),
        }
    }

    /// The built-in defaults of this kind.
    pub fn defaults(self) -> Params {
        self.specs()
            .unwrap_or(&[])
            .iter()
            .map(|s| (s.name.to_string(), s.default.to_value()))
            .collect()
    }

    /// Checks a partial dictionary and converts string values to their types.
    /// Unknown keys and badly typed values are refused with a message naming them.
    pub fn validate(self, params: &Params) -> Result<Params, String> {
        let Some(specs) = self.specs() else {
            return Ok(params.clone());
        };
        let mut out = Params::new();
        // Ganeti's `memory` (BE_MEMORY, what `-B memory=512M` sets): maxmem and minmem both,
        // unless one of them is given beside it.
        let expanded;
        let params = match params.get("memory") {
            Some(m) if self == ParamKind::Be => {
                let mut p = params.clone();
                p.remove("memory");
                for k in ["maxmem", "minmem"] {
                    p.entry(k.to_string()).or_insert_with(|| m.clone());
                }
                expanded = p;
                &expanded
            }
            _ => params,
        };
        for (key, value) in params {
            let spec = specs.iter().find(|s| s.name == key).ok_or_else(|| {
                let known: Vec<_> = specs.iter().map(|s| s.name).collect();
                format!(
                    "unknown {} key '{key}' (known: {})",
                    self.name(),
                    known.join(", ")
                )
            })?;
            out.insert(key.clone(), convert(self, spec, value)?);
        }
        if self == ParamKind::Be {
            let filled = fill_over(self.defaults(), &[&out]);
            let (min, max) = (
                filled.get("minmem").and_then(Value::as_u64).unwrap_or(0),
                filled.get("maxmem").and_then(Value::as_u64).unwrap_or(0),
            );
            // Only check when both are given at this level: inheritance may still fix it.
            if out.contains_key("minmem") && out.contains_key("maxmem") && min > max {
                return Err(format!("minmem ({min}) cannot exceed maxmem ({max})"));
            }
        }
        Ok(out)
    }
}

fn convert(kind: ParamKind, spec: &ParamSpec, value: &Value) -> Result<Value, String> {
    let bad = |what: &str| {
        format!(
            "invalid value {value} for {} key '{}': expected {what}",
            kind.name(),
            spec.name
        )
    };
    match spec.ty {
        ParamType::Size => match value {
            Value::Number(n) => n.as_u64().map(Value::from).ok_or_else(|| bad("a size")),
            Value::String(s) => crate::units::parse_size_mib(s)
                .map(Value::from)
                .map_err(|e| bad(&format!("a size ({e})"))),
            _ => Err(bad("a size")),
        },
        ParamType::Int => match value {
            Value::Number(n) => n.as_i64().map(Value::from).ok_or_else(|| bad("an integer")),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| bad("an integer")),
            _ => Err(bad("an integer")),
        },
        ParamType::Bool => match value {
            Value::Bool(b) => Ok(Value::from(*b)),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(Value::from(true)),
                "false" | "no" | "0" | "off" => Ok(Value::from(false)),
                _ => Err(bad("a boolean")),
            },
            _ => Err(bad("a boolean")),
        },
        ParamType::String => match value {
            Value::String(s) => Ok(Value::from(s.clone())),
            Value::Number(n) => Ok(Value::from(n.to_string())),
            _ => Err(bad("a string")),
        },
        ParamType::Enum(choices) => match value {
            Value::String(s) if choices.contains(&s.as_str()) => Ok(Value::from(s.clone())),
            _ => Err(bad(&format!("one of {}", choices.join(", ")))),
        },
        ParamType::Flags(choices) => match value {
            Value::String(s)
                if s.split(':')
                    .filter(|f| !f.is_empty())
                    .all(|f| choices.contains(&f)) =>
            {
                Ok(Value::from(s.clone()))
            }
            _ => Err(bad(&format!(
                "a colon-separated list of {}",
                choices.join(", ")
            ))),
        },
    }
}

fn fill_over(mut base: Params, levels: &[&Params]) -> Params {
    for level in levels {
        for (k, v) in level.iter() {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

/// Fills a parameter dictionary: built-in defaults, then cluster, group and object levels.
/// This is the one inheritance function for every kind.
pub fn fill(kind: ParamKind, cluster: &Params, group: &Params, object: &Params) -> Params {
    fill_over(kind.defaults(), &[cluster, group, object])
}

/// Filled backend parameters, typed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BeParams {
    pub maxmem: u64,
    pub minmem: u64,
    pub vcpus: u32,
    pub auto_balance: bool,
    pub always_failover: bool,
    pub spindle_use: u32,
}

impl BeParams {
    /// Reads a filled `beparams` dictionary (see [`fill`]).
    pub fn from_filled(p: &Params) -> Self {
        let u = |k: &str, d: u64| p.get(k).and_then(Value::as_u64).unwrap_or(d);
        let b = |k: &str, d: bool| p.get(k).and_then(Value::as_bool).unwrap_or(d);
        BeParams {
            maxmem: u("maxmem", 128),
            minmem: u("minmem", 128),
            vcpus: u("vcpus", 1) as u32,
            auto_balance: b("auto_balance", true),
            always_failover: b("always_failover", false),
            spindle_use: u("spindle_use", 1) as u32,
        }
    }
}

/// Parses Ganeti's `k=v,k=v` option syntax into a string dictionary.
/// `no_k` sets a boolean to false and a bare `k` sets it to true, as Ganeti does.
pub fn parse_kv_list(s: &str) -> Result<Params, String> {
    let mut out = Params::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in '{s}'"));
        }
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Value::from(v.trim())),
            None => match item.strip_prefix("no_") {
                Some(k) => (k, Value::from("false")),
                None => (item, Value::from("true")),
            },
        };
        if k.is_empty() {
            return Err(format!("missing key in '{item}'"));
        }
        if out.insert(k.to_string(), v).is_some() {
            return Err(format!("key '{k}' given twice"));
        }
    }
    Ok(out)
}

/// Converts a dictionary to a JSON object (for payloads).
pub fn to_object(p: &Params) -> Map<String, Value> {
    p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Hypervisor parameters only the cluster level may set (`cluster modify -H`): an instance's
/// or a RAPI user's own value would run any program or add any QEMU option as root.
pub const CLUSTER_ONLY_HVPARAMS: &[&str] = &["kvm_extra"];

/// Refuses instance-level hvparams that only the cluster level may set
/// ([`CLUSTER_ONLY_HVPARAMS`]), and host paths with `..` or that are not absolute (the node
/// checks them again against its allowlist: docs/security.md).
pub fn check_instance_hvparams(params: &Params) -> Result<(), String> {
    for key in CLUSTER_ONLY_HVPARAMS {
        match params.get(*key) {
            None => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(_) => {
                return Err(format!(
                    "hypervisor parameter {key} can only be set for the whole cluster by an \
                     admin (maguey cluster modify -H), not per instance"
                ))
            }
        }
    }
    for key in ["kvm_path", "kernel_path", "initrd_path", "cdrom_image_path"] {
        let Some(Value::String(path)) = params.get(key) else {
            continue;
        };
        if path.is_empty() {
            continue;
        }
        let p = std::path::Path::new(path);
        if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
            return Err(format!(
                "hypervisor parameter {key} '{path}' must be an absolute path without '..'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pairs: &[(&str, Value)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn fill_inherits_in_order() {
        let cluster = d(&[("maxmem", 256.into()), ("vcpus", 2.into())]);
        let group = d(&[("vcpus", 4.into())]);
        let inst = d(&[("maxmem", 1024.into())]);
        let be = BeParams::from_filled(&fill(ParamKind::Be, &cluster, &group, &inst));
        assert_eq!(be.maxmem, 1024);
        assert_eq!(be.vcpus, 4);
        assert_eq!(be.minmem, 128);
        assert!(be.auto_balance);
    }

    #[test]
    fn validate_converts_and_refuses() {
        let p = parse_kv_list("maxmem=512M,vcpus=2,no_auto_balance").unwrap();
        let v = ParamKind::Be.validate(&p).unwrap();
        assert_eq!(v["maxmem"], Value::from(512));
        assert_eq!(v["vcpus"], Value::from(2));
        assert_eq!(v["auto_balance"], Value::from(false));
        let m = ParamKind::Be
            .validate(&parse_kv_list("memory=1G").unwrap())
            .unwrap();
        assert_eq!(
            (m["maxmem"].clone(), m["minmem"].clone()),
            (1024.into(), 1024.into())
        );
        let m = ParamKind::Be
            .validate(&parse_kv_list("memory=1G,minmem=512").unwrap())
            .unwrap();
        assert_eq!(
            (m["maxmem"].clone(), m["minmem"].clone()),
            (1024.into(), 512.into())
        );
        assert!(ParamKind::Be
            .validate(&parse_kv_list("memory=lots").unwrap())
            .unwrap_err()
            .contains("invalid value"));
        assert!(ParamKind::Be
            .validate(&parse_kv_list("memroy=1").unwrap())
            .unwrap_err()
            .contains("unknown beparams key 'memroy'"));
        assert!(ParamKind::Be
            .validate(&parse_kv_list("vcpus=many").unwrap())
            .is_err());
        assert!(ParamKind::Be
            .validate(&parse_kv_list("minmem=1G,maxmem=512").unwrap())
            .is_err());
        assert!(ParamKind::Nic
            .validate(&parse_kv_list("mode=bogus").unwrap())
            .is_err());
        assert!(parse_kv_list("a=1,a=2").is_err());
    }

    #[test]
    fn kvm_params_have_ganeti_defaults() {
        let kvm = ParamKind::Hv(Hypervisor::Kvm);
        let d = kvm.defaults();
        assert_eq!(d["kernel_args"], Value::from("ro"));
        assert_eq!(d["root_path"], Value::from("/dev/vda1"));
        assert_eq!(d["migration_bandwidth"], Value::from(32));
        assert_eq!(d["migration_downtime"], Value::from(30));
        assert_eq!(d["disk_cache"], Value::from("default"));
        assert_eq!(d["accel"], Value::from("auto"));
        let v = kvm
            .validate(
                &parse_kv_list("accel=tcg,migration_bandwidth=100,serial_console=no").unwrap(),
            )
            .unwrap();
        assert_eq!(v["migration_bandwidth"], Value::from(100));
        assert_eq!(v["serial_console"], Value::from(false));
        assert!(kvm.validate(&parse_kv_list("accel=xen").unwrap()).is_err());
        assert!(kvm.validate(&parse_kv_list("bogus=1").unwrap()).is_err());
        // migration_caps: a colon-separated subset of the known capabilities.
        assert_eq!(d["migration_caps"], Value::from("auto-converge"));
        for ok in ["", "xbzrle", "auto-converge:xbzrle"] {
            let p = Params::from([("migration_caps".to_string(), Value::from(ok))]);
            assert_eq!(kvm.validate(&p).unwrap()["migration_caps"], Value::from(ok));
        }
        for bad in [
            "postcopy-ram",
            "auto-converge:x-rdma-pin-all",
            "auto-converge;xbzrle",
        ] {
            let p = Params::from([("migration_caps".to_string(), Value::from(bad))]);
            let e = kvm.validate(&p).unwrap_err();
            assert!(
                e.contains("migration_caps") && e.contains("auto-converge, xbzrle"),
                "{e}"
            );
        }
    }
}
