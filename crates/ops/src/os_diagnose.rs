//! OS diagnosis across nodes (what Ganeti's OpOsDiagnose computes): every OS definition found
//! on the online vm-capable nodes, valid only if it is valid on all of them.

use crate::util::node_addr;
use crate::Master;
use futures::future::join_all;
use maguey_model::Node;
use maguey_rpc::{NodeRequest, OsInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One OS as seen across the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsDiagnosis {
    pub name: String,
    /// Present and valid on every online vm-capable node.
    pub valid: bool,
    /// Variants common to every node.
    pub variants: Vec<String>,
    /// `(name, description)` pairs.
    pub parameters: Vec<(String, String)>,
    pub api_versions: Vec<u32>,
    pub blacklisted: bool,
    pub hidden: bool,
    pub trusted: bool,
    /// Per node: why the OS is not valid there (empty when valid).
    pub node_status: BTreeMap<String, String>,
}

/// Asks every online vm-capable node for its OS definitions. Fails only if no node answered.
pub async fn diagnose(master: &Master) -> Result<Vec<OsDiagnosis>, String> {
    let cfg = master.config.snapshot();
    let nodes: Vec<&Node> = cfg
        .nodes
        .values()
        .filter(|n| !n.offline && n.vm_capable)
        .collect();
    let futs = nodes.iter().map(|n| {
        let addr = node_addr(&cfg, n);
        async move {
            (
                n.name.clone(),
                master
                    .rpc
                    .call::<Vec<OsInfo>>(&addr, &NodeRequest::OsDiagnose)
                    .await,
            )
        }
    });
    let answers: Vec<(String, Vec<OsInfo>)> = join_all(futs)
        .await
        .into_iter()
        .filter_map(|(n, r)| match r {
            Ok(v) => Some((n, v)),
            Err(e) => {
                tracing::warn!("OS diagnose on node {n}: {e}");
                None
            }
        })
        .collect();
    if answers.is_empty() && !nodes.is_empty() {
        return Err("no node answered the OS diagnosis".into());
    }
    let mut all: BTreeMap<String, OsDiagnosis> = BTreeMap::new();
    for (node, list) in &answers {
        for os in list {
            let e = all.entry(os.name.clone()).or_insert_with(|| OsDiagnosis {
                name: os.name.clone(),
                valid: true,
                variants: os.variants.clone(),
                parameters: os.parameters.clone(),
                api_versions: os.api_versions.clone(),
                blacklisted: false,
                hidden: false,
                trusted: true,
                node_status: BTreeMap::new(),
            });
            if os.valid {
                e.variants.retain(|v| os.variants.contains(v));
                e.node_status.insert(node.clone(), String::new());
            } else {
                e.valid = false;
                e.node_status.insert(node.clone(), os.status.clone());
            }
        }
    }
    for (node, _) in &answers {
        for e in all.values_mut() {
            if !e.node_status.contains_key(node) {
                e.valid = false;
                e.node_status
                    .insert(node.clone(), "OS not found on this node".into());
            }
        }
    }
    Ok(all.into_values().collect())
}
