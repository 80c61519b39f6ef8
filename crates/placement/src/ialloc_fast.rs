//! Fast path of the iallocator reader: the request is deserialized
//! straight into typed structs (no intermediate `serde_json::Value` tree
//! for the cluster part, which used to cost most of a small request's run
//! time: building and dropping ~10^5 map entries).
//!
//! It accepts exactly the inputs that the `Value`-based reader in
//! `ialloc.rs` accepts with the same meaning, or gives up: on anything
//! unusual (a missing or mistyped key, `null` where a list is required,
//! duplicate names, an unknown group...) it returns `None` and the caller
//! runs the `Value`-based reader, which then produces its usual result or
//! error message.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::model::*;
use crate::types::*;

/// An integer as the `Value` reader's `get_i64` takes it: an integer, or a
/// float without fractional part.
#[derive(Debug, Clone, Copy)]
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Int, E> {
                Ok(Int(i64::try_from(v).unwrap_or(v as f64 as i64)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Int, E> {
                if v.fract() == 0.0 {
                    Ok(Int(v as i64))
                } else {
                    Err(E::custom("not an integer"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON number as f64 (`as_f64`).
#[derive(Debug, Clone, Copy)]
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Num, E> {
                Ok(Num(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A key that may be missing, `null` or present.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Missing,
    Null,
    Val(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Field::Null,
            Some(v) => Field::Val(v),
        })
    }
}

/// A JSON object kept in document order.
#[derive(Debug)]
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered<T>, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some((k, x)) = m.next_entry::<String, T>()? {
                    v.push((k, x));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RSpec {
    #[serde(rename = "memory-size")]
    mem: Int,
    #[serde(rename = "cpu-count")]
    cpu: Int,
    #[serde(rename = "disk-size")]
    disk: Int,
    #[serde(rename = "disk-count")]
    disk_count: Int,
    #[serde(rename = "nic-count")]
    nic_count: Int,
    #[serde(rename = "spindle-use")]
    spindle_use: Int,
}

impl RSpec {
    fn get(&self) -> ISpec {
        ISpec {
            mem: self.mem.0,
            cpu: self.cpu.0,
            disk: self.disk.0,
            disk_count: self.disk_count.0,
            nic_count: self.nic_count.0,
            spindle_use: self.spindle_use.0,
        }
    }
}

#[derive(Deserialize)]
struct RMinMax {
    min: RSpec,
    max: RSpec,
}

#[derive(Deserialize)]
struct RPolicy {
    minmax: Vec<RMinMax>,
    std: RSpec,
    #[serde(rename = "disk-templates")]
    disk_templates: Vec<String>,
    #[serde(rename = "vcpu-ratio")]
    vcpu_ratio: Num,
    #[serde(rename = "spindle-ratio")]
    spindle_ratio: Num,
}

#[derive(Deserialize)]
struct RGroup {
    name: String,
    alloc_policy: String,
    tags: Vec<String>,
    networks: Vec<String>,
    ipolicy: RPolicy,
}

#[derive(Deserialize)]
struct RNdParams {
    exclusive_storage: bool,
    spindle_count: Option<Int>,
}

#[derive(Deserialize)]
struct RNode {
    offline: bool,
    drained: bool,
    group: String,
    vm_capable: Option<bool>,
    ndparams: RNdParams,
    total_memory: Option<Num>,
    reserved_memory: Option<Int>,
    free_memory: Option<Int>,
    total_disk: Option<Num>,
    free_disk: Option<Int>,
    total_cpus: Option<Num>,
    reserved_cpus: Option<Int>,
    free_spindles: Option<Int>,
    total_spindles: Option<Int>,
    #[serde(default)]
    tags: Field<Vec<String>>,
    /// [`crate::ialloc::RESERVED_MEMORY_LIVE`]: anything but `true` means no.
    #[serde(default)]
    reserved_memory_live: Option<Value>,
}

#[derive(Deserialize)]
struct RDisk {
    size: Int,
    spindles: Option<i64>,
}

#[derive(Deserialize)]
struct RNic {
    mac: Option<String>,
    ip: Option<String>,
    mode: Option<String>,
    link: Option<String>,
    network: Option<String>,
}

#[derive(Deserialize)]
struct RInst {
    memory: Int,
    vcpus: Int,
    disk_template: String,
    disks: Vec<RDisk>,
    disk_space_total: Int,
    spindle_use: Int,
    tags: Vec<String>,
    #[serde(default)]
    nics: Field<Vec<RNic>>,
    nodes: Vec<String>,
    admin_state: Option<String>,
    forthcoming: Option<bool>,
}

#[derive(Deserialize)]
struct RTop {
    request: Option<Value>,
    nodegroups: Ordered<RGroup>,
    enabled_hypervisors: Vec<String>,
    nodes: Ordered<RNode>,
    instances: Ordered<RInst>,
    cluster_tags: Vec<String>,
}

fn instance(name: &str, r: RInst) -> Option<Instance> {
    let status = match r.admin_state.as_deref() {
        None | Some("up") => InstanceStatus::Running,
        Some("down") => InstanceStatus::AdminDown,
        Some("offline") => InstanceStatus::AdminOffline,
        Some(_) => return None,
    };
    let nics = match r.nics {
        Field::Missing => return None,
        Field::Null => vec![],
        Field::Val(v) => v
            .into_iter()
            .map(|n| Nic {
                mac: n.mac,
                ip: n.ip,
                mode: n.mode,
                link: n.link,
                network: n.network,
            })
            .collect(),
    };
    let mut inst = Instance::new(
        name,
        r.memory.0,
        r.disk_space_total.0,
        r.disks
            .iter()
            .map(|d| Disk {
                size: d.size.0,
                spindles: d.spindles,
            })
            .collect(),
        r.vcpus.0,
        status,
        r.tags,
        true,
        DiskTemplate::from_raw(&r.disk_template).ok()?,
        r.spindle_use.0,
        r.forthcoming.unwrap_or(false),
    );
    inst.nics = nics;
    Some(inst)
}

fn cluster(top: RTop) -> Option<Cluster> {
    let mut groups: Vec<Group> = Vec::with_capacity(top.nodegroups.0.len());
    for (uuid, g) in top.nodegroups.0 {
        if groups.iter().any(|x| x.uuid == uuid) {
            return None;
        }
        let p = g.ipolicy;
        groups.push(Group {
            name: g.name,
            uuid,
            alloc_policy: AllocPolicy::from_raw(&g.alloc_policy).ok()?,
            tags: g.tags,
            networks: g.networks,
            ipolicy: IPolicy {
                minmax: p
                    .minmax
                    .iter()
                    .map(|m| MinMax {
                        min: m.min.get(),
                        max: m.max.get(),
                    })
                    .collect(),
                std: p.std.get(),
                disk_templates: p
                    .disk_templates
                    .iter()
                    .map(|d| DiskTemplate::from_raw(d))
                    .collect::<Result<Vec<_>>>()
                    .ok()?,
                vcpu_ratio: p.vcpu_ratio.0,
                spindle_ratio: p.spindle_ratio.0,
            },
        });
    }
    let kvm = top.enabled_hypervisors.first().is_some_and(|h| h == "kvm");
    let mut node_idx: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(top.nodes.0.len());
    let mut nodes: Vec<Node> = Vec::with_capacity(top.nodes.0.len());
    for (name, r) in top.nodes.0 {
        let gdx = groups.iter().position(|g| g.uuid == r.group)?;
        let live = !r.offline && r.vm_capable.unwrap_or(true);
        let li = |v: Option<Int>| -> Option<i64> {
            if live {
                v.map(|x| x.0)
            } else {
                Some(0)
            }
        };
        let lf = |v: Option<Num>| -> Option<f64> {
            if live {
                v.map(|x| x.0)
            } else {
                Some(0.0)
            }
        };
        let excl = r.ndparams.exclusive_storage;
        let sptotal = if excl {
            li(r.total_spindles)?
        } else {
            r.ndparams.spindle_count?.0
        };
        let mut n = Node::new(
            &name,
            lf(r.total_memory)?,
            li(r.reserved_memory)?,
            li(r.free_memory)?,
            lf(r.total_disk)?,
            li(r.free_disk)?,
            lf(r.total_cpus)?,
            li(r.reserved_cpus)?,
            !live || r.drained,
            sptotal,
            li(r.free_spindles)?,
            gdx,
            excl,
        );
        n.drained = r.drained;
        n.kvm = kvm && r.reserved_memory_live != Some(Value::Bool(true));
        n.tags = match r.tags {
            Field::Missing => vec![],
            Field::Null => return None,
            Field::Val(v) => v,
        };
        if node_idx.insert(name, nodes.len()).is_some() {
            return None;
        }
        nodes.push(n);
    }
    let mut inst_names: std::collections::HashSet<String> =
        std::collections::HashSet::with_capacity(top.instances.0.len());
    let mut instances = Vec::with_capacity(top.instances.0.len());
    for (name, r) in top.instances.0 {
        let mut ns = r.nodes.iter();
        let p = *node_idx.get(ns.next()?.as_str())?;
        let s = match ns.next() {
            Some(s) => Some(*node_idx.get(s.as_str())?),
            None => None,
        };
        let mut inst = instance(&name, r)?;
        inst.pnode = p;
        inst.snode = s;
        if !inst_names.insert(name) {
            return None;
        }
        instances.push(inst);
    }
    let mut c = Cluster {
        groups,
        nodes,
        instances,
        tags: top.cluster_tags,
        ipolicy: IPolicy::default(),
    };
    c.finalize(&LoadOptions {
        static_kvm_node_mem: 4096,
        ..Default::default()
    })
    .ok()?;
    Some(c)
}

/// The cluster part and the `request` object of an iallocator message, or
/// `None` if the `Value`-based reader must decide.
pub(crate) fn parse(body: &str) -> Option<(Cluster, Option<serde_json::Map<String, Value>>)> {
    let mut top: RTop = serde_json::from_str(body).ok()?;
    let request = match top.request.take() {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return None,
    };
    Some((cluster(top)?, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<(String, String)> {
        let dir = format!("{}/tests/data/ialloc", env!("CARGO_MANIFEST_DIR"));
        let mut v = vec![];
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".json") && !name.contains(".hail") {
                v.push((name, std::fs::read_to_string(e.path()).expect("read")));
            }
        }
        assert!(v.len() >= 10);
        v
    }

    /// The typed reader builds exactly the cluster of the `Value` reader.
    #[test]
    fn fast_reader_builds_the_same_cluster() {
        for (name, body) in requests() {
            let (fast, req) = parse(&body).unwrap_or_else(|| panic!("{name}: fast path refused"));
            assert!(req.is_some(), "{name}");
            let slow = crate::ialloc::parse_cluster_slow(&body).expect("slow");
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{name}");
        }
    }

    /// Unusual inputs: the fast path either agrees or gives up, and the
    /// public reader then answers exactly like the `Value` reader.
    #[test]
    fn unusual_inputs_fall_back_to_the_value_reader() {
        let (_, body) = requests()
            .into_iter()
            .find(|(n, _)| n == "c20s42.alloc-plain.json")
            .expect("request");
        let variants = [
            // ints written as floats, a null nic list, null optional keys
            body.replacen("\"memory\":4096", "\"memory\":4096.0", 1),
            body.replacen("\"nics\":[", "\"nics\":null,\"x\":[", 1),
            body.replacen("\"vm_capable\":true", "\"vm_capable\":null", 1),
            // errors: missing or mistyped keys, null tags, a fractional int
            body.replacen("\"memory\":4096", "\"memory\":4096.5", 1),
            body.replacen("\"tags\":[]", "\"tags\":null", 1),
            body.replacen(
                "\"disk_template\":\"drbd\"",
                "\"disk_template\":\"floppy\"",
                1,
            ),
            body.replacen("\"offline\":false", "\"offline\":0", 1),
            body.replacen("\"nodes\":[\"", "\"nodes\":[\"nowhere\",\"", 1),
            body.replacen("\"admin_state\":\"up\"", "\"admin_state\":7", 1),
        ];
        let mut changed = 0;
        for v in variants.iter() {
            if *v != body {
                changed += 1;
            }
            let slow = crate::ialloc::parse_cluster_slow(v).map(|c| format!("{c:?}"));
            let public = crate::ialloc::parse_cluster(v).map(|c| format!("{c:?}"));
            match (&slow, &public) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                _ => panic!("slow {:?} vs public {:?}", slow.is_ok(), public.is_ok()),
            }
            if let Some((c, _)) = parse(v) {
                assert_eq!(Ok(format!("{c:?}")), slow.map_err(|e| e.to_string()));
            }
        }
        assert!(
            changed >= 7,
            "only {changed} variants differ from the input"
        );
    }

    /// A kvm node counts hail's static 4096 MiB of node memory unless the request marks its
    /// `reserved_memory` as measured (Maguey's requests); both readers agree.
    #[test]
    fn live_node_memory_replaces_the_static_kvm_memory() {
        let (_, body) = requests()
            .into_iter()
            .find(|(n, _)| n == "c20s42.alloc-plain.json")
            .expect("request");
        // nodes that report 512 MiB of their own
        let body = body.replace("\"reserved_memory\":4096", "\"reserved_memory\":512");
        let marked = body.replace(
            "\"drained\":false,",
            "\"drained\":false,\"reserved_memory_live\":true,",
        );
        assert_ne!(marked, body);
        let v: Value = serde_json::from_str(&body).expect("json");
        for (text, live) in [(&body, false), (&marked, true)] {
            let fast = parse(text).expect("fast path").0;
            let slow = crate::ialloc::parse_cluster_slow(text).expect("slow");
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            for n in fast.nodes.iter().filter(|n| !n.offline) {
                assert_eq!(v["nodes"][&n.name]["reserved_memory"], 512, "{}", n.name);
                assert_eq!(n.kvm, !live, "{}", n.name);
                assert_eq!(n.n_mem, if live { 512 } else { 4096 }, "{}", n.name);
            }
        }
    }
}
