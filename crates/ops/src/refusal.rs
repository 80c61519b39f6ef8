//! Allocator refusals summarised for a human: one line per reason, with how many nodes and
//! instances it hit and the limit that bit, instead of the engine's per-node text repeated
//! for every instance (htools' `Node X failed: FailCPU;` lists, kept as they are on the
//! iallocator wire for Ganeti).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// At most this many lines in a summary (the header included).
pub const MAX_LINES: usize = 10;

/// htools' failure names, in its order.
const MODES: [&str; 9] = [
    "FailMem",
    "FailDisk",
    "FailCPU",
    "FailN1",
    "FailTags",
    "FailMig",
    "FailDiskCount",
    "FailSpindles",
    "FailInternal",
];

#[derive(Default)]
struct Reason {
    nodes: BTreeSet<String>,
    instances: BTreeSet<String>,
}

/// The mode named by a word of an engine message (`FailCPU`, `FailCPU;`, `FailCPU:`).
fn mode_of(word: &str) -> Option<&'static str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    MODES.iter().copied().find(|m| *m == w)
}

/// Summarises an evacuation's failures (`(instance, engine message)`) against the request
/// the engine answered (`req`, for the nodes' figures and the policies): at most
/// [`MAX_LINES`] - 1 lines, leaving one for the caller's header.
pub fn summarize(req: &Value, failed: &[(String, String)]) -> Vec<String> {
    let mut reasons: BTreeMap<&'static str, Reason> = BTreeMap::new();
    let mut other: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (inst, msg) in failed {
        let mut found = false;
        for part in msg.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let Some(k) = words.iter().position(|w| mode_of(w).is_some()) else {
                continue;
            };
            let Some(mode) = mode_of(words[k]) else {
                continue;
            };
            found = true;
            let r = reasons.entry(mode).or_default();
            r.instances.insert(inst.clone());
            // "Node NAME failed: MODE"
            if let Some(p) = words.iter().position(|w| *w == "Node") {
                if let Some(n) = words.get(p + 1) {
                    r.nodes.insert(n.to_string());
                }
            }
        }
        if !found {
            let text: String = msg.chars().take(160).collect();
            other.entry(text).or_default().insert(inst.clone());
        }
    }
    let mut all: Vec<String> = Vec::new();
    for mode in MODES {
        let Some(r) = reasons.get(mode) else {
            continue;
        };
        let insts: Vec<String> = r.instances.iter().cloned().collect();
        let nodes: Vec<String> = r.nodes.iter().cloned().collect();
        let on = if nodes.is_empty() {
            String::new()
        } else {
            format!(" on {}", plural(nodes.len(), "node"))
        };
        all.push(format!(
            "  {mode}{on} for {} ({}): {}",
            plural(insts.len(), "instance"),
            names(&insts),
            limit(req, mode, &nodes, &insts)
        ));
    }
    for (text, insts) in &other {
        let insts: Vec<String> = insts.iter().cloned().collect();
        all.push(format!(
            "  {} ({}): {text}",
            plural(insts.len(), "instance"),
            names(&insts)
        ));
    }
    let room = MAX_LINES - 1;
    if all.len() > room {
        let more = all.len() - (room - 1);
        all.truncate(room - 1);
        all.push(format!("  ... and {more} more reasons"));
    }
    all
}

/// The summary of an allocation's refusal (`No valid allocation solutions, failure reasons:
/// FailCPU: 50, ...`): the engine's line, then one line per reason with the limit over the
/// request's online nodes.
pub fn summarize_alloc(req: &Value, why: &str, instance: &str) -> String {
    let mut lines = vec![why.to_string()];
    let words: Vec<&str> = why.split_whitespace().collect();
    for (k, w) in words.iter().enumerate() {
        let Some(mode) = mode_of(w) else { continue };
        let count = words
            .get(k + 1)
            .map(|c| c.trim_matches(|c: char| !c.is_ascii_digit()))
            .unwrap_or("");
        let nodes: Vec<String> = online_nodes(req);
        lines.push(format!(
            "  {mode} for {count} placements: {}",
            limit(req, mode, &nodes, &[instance.to_string()])
        ));
        if lines.len() >= MAX_LINES {
            break;
        }
    }
    lines.join("\n")
}

fn online_nodes(req: &Value) -> Vec<String> {
    req["nodes"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| !n["offline"].as_bool().unwrap_or(false))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The first few names, then how many more.
fn names(v: &[String]) -> String {
    let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 3 {
        s.push_str(&format!(", ... {} more", v.len() - 3));
    }
    s
}

/// `lo` or `lo to hi`, one decimal.
fn range(v: &[f64], unit: &str) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "unknown".to_string()
    } else if (hi - lo).abs() < 0.05 {
        format!("{lo:.1}{unit}")
    } else {
        format!("{lo:.1} to {hi:.1}{unit}")
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// What bit for `mode`, in the figures of the request.
fn limit(req: &Value, mode: &str, nodes: &[String], insts: &[String]) -> String {
    let node = |n: &String| &req["nodes"][n.as_str()];
    let inst_max = |key: &str| -> f64 {
        insts
            .iter()
            .map(|i| num(&req["instances"][i.as_str()][key]))
            .chain(std::iter::once(num(&req["request"][key])))
            .fold(0.0, f64::max)
    };
    match mode {
        "FailCPU" => {
            let ratios: Vec<f64> = nodes
                .iter()
                .filter_map(|n| {
                    let total = num(&node(n)["total_cpus"]);
                    (total > 0.0).then(|| vcpus_on(req, n) / total)
                })
                .collect();
            let policies: Vec<f64> = nodes
                .iter()
                .map(|n| policy_ratio(req, node(n)["group"].as_str().unwrap_or("")))
                .collect();
            format!(
                "vCPU ratio {} over the policy's {} (the instances need up to {} vCPUs more)",
                range(&ratios, ""),
                range(&policies, ""),
                inst_max("vcpus")
            )
        }
        "FailMem" | "FailN1" => {
            let free: Vec<f64> = nodes.iter().map(|n| num(&node(n)["free_memory"])).collect();
            let extra = if mode == "FailN1" {
                ", short of the reserve to take over a failed peer's instances (N+1)"
            } else {
                ""
            };
            format!(
                "free memory {}, the instances need up to {} MiB{extra}",
                range(&free, " MiB"),
                inst_max("memory")
            )
        }
        "FailDisk" | "FailDiskCount" | "FailSpindles" => {
            let free: Vec<f64> = nodes.iter().map(|n| num(&node(n)["free_disk"])).collect();
            format!(
                "free disk {}, the instances need up to {} MiB",
                range(&free, " MiB"),
                inst_max("disk_space_total")
            )
        }
        "FailTags" => "exclusion tags (rooms, instance exclusion tags) already there".to_string(),
        "FailMig" => "cannot migrate there (hypervisor or its parameters differ)".to_string(),
        _ => "internal error in the allocator".to_string(),
    }
}

/// vCPUs of the instances whose primary is `node`.
fn vcpus_on(req: &Value, node: &str) -> f64 {
    req["instances"]
        .as_object()
        .map(|m| {
            m.values()
                .filter(|i| i["nodes"][0].as_str() == Some(node))
                .map(|i| num(&i["vcpus"]))
                .sum()
        })
        .unwrap_or(0.0)
}

/// The vCPU ratio of a group's policy (the cluster's when the group has none).
fn policy_ratio(req: &Value, group: &str) -> f64 {
    let of = |p: &Value| {
        p["vcpu-ratio"]
            .as_f64()
            .or_else(|| p["vcpu_ratio"].as_f64())
    };
    of(&req["nodegroups"][group]["ipolicy"])
        .or_else(|| of(&req["ipolicy"]))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req() -> Value {
        let mut nodes = serde_json::Map::new();
        let mut insts = serde_json::Map::new();
        for k in 1..=50 {
            nodes.insert(
                format!("n{k}"),
                json!({"total_cpus": 4, "free_memory": 1000, "free_disk": 5000, "group": "g"}),
            );
            insts.insert(
                format!("big{k}"),
                json!({"vcpus": 20, "nodes": [format!("n{k}")]}),
            );
        }
        json!({"nodes": nodes, "instances": insts,
               "nodegroups": {"g": {"ipolicy": {"vcpu-ratio": 4.0}}}})
    }

    #[test]
    fn one_line_per_reason_with_counts_and_the_ratio() {
        let r = req();
        let failed: Vec<(String, String)> = (0..20)
            .map(|i| {
                let mut m = "Can't find any good node:".to_string();
                for k in 1..=50 {
                    m.push_str(&format!(" Node n{k} failed: FailCPU;"));
                }
                (format!("inst{i}"), m)
            })
            .chain(std::iter::once((
                "odd".to_string(),
                "Can't relocate/evacuate non-mirrored instances".to_string(),
            )))
            .collect();
        let lines = summarize(&r, &failed);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("FailCPU on 50 nodes for 20 instances"),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("vCPU ratio 5.0 over the policy's 4.0"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("1 instance (odd): Can't relocate"),
            "{lines:?}"
        );
    }

    #[test]
    fn many_reasons_stay_within_ten_lines() {
        let failed: Vec<(String, String)> = (0..30)
            .map(|i| (format!("i{i}"), format!("strange failure number {i}")))
            .collect();
        let lines = summarize(&req(), &failed);
        assert_eq!(lines.len(), MAX_LINES - 1, "{lines:?}");
        assert!(lines[8].contains("22 more reasons"), "{lines:?}");
    }

    #[test]
    fn allocation_refusal_names_the_limit() {
        let mut r = req();
        r["request"] = json!({"vcpus": 2});
        let s = summarize_alloc(
            &r,
            "No valid allocation solutions, failure reasons: FailCPU: 50",
            "new",
        );
        assert!(s.lines().count() <= MAX_LINES);
        assert!(s.contains("FailCPU for 50 placements: vCPU ratio 5.0 over the policy's 4.0"));
    }
}
