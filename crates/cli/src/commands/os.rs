//! `maguey os list|info|diagnose` (gnt-os): the OS definitions the nodes report.

use crate::input::usage;
use crate::master::client;
use crate::CliResult;
use clap::Subcommand;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum OsCmd {
    /// The OSes valid on every node (with their variants, as NAME+VARIANT).
    List,
    /// Details of OSes (all, or the ones named).
    Info { names: Vec<String> },
    /// Each OS's status on each node.
    Diagnose,
}

fn words(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|y| {
                    y.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| y.to_string())
                })
                .collect::<Vec<_>>()
                .join(": "),
            other => other.to_string(),
        })
        .collect()
}

pub async fn run(dir: &Path, cmd: OsCmd) -> CliResult<u8> {
    let oses = client(dir)?.os_diagnose().await?;
    let oses = oses.as_array().cloned().unwrap_or_default();
    match cmd {
        OsCmd::List => {
            println!("Name");
            for o in oses
                .iter()
                .filter(|o| o["valid"] == true && o["hidden"] != true)
            {
                let name = o["name"].as_str().unwrap_or("?");
                let variants = words(&o["variants"]);
                if variants.is_empty() {
                    println!("{name}");
                }
                for v in variants {
                    println!("{name}+{v}");
                }
            }
        }
        OsCmd::Info { names } => {
            for n in &names {
                if !oses.iter().any(|o| o["name"] == n.as_str()) {
                    return Err(usage(format!("OS '{n}' is not known to any node")));
                }
            }
            for o in oses
                .iter()
                .filter(|o| names.is_empty() || names.iter().any(|n| o["name"] == n.as_str()))
            {
                println!("{}:", o["name"].as_str().unwrap_or("?"));
                for k in ["valid", "hidden", "blacklisted", "trusted"] {
                    println!("  - {k}: {}", o[k].as_bool().unwrap_or(false));
                }
                println!("  - API versions: {}", words(&o["api_versions"]).join(", "));
                println!("  - variants: {}", words(&o["variants"]).join(", "));
                println!("  - parameters:");
                for p in words(&o["parameters"]) {
                    println!("    - {p}");
                }
            }
        }
        OsCmd::Diagnose => {
            for o in &oses {
                let valid = o["valid"] == true;
                println!(
                    "OS: {} [global status: {}]",
                    o["name"].as_str().unwrap_or("?"),
                    if valid { "valid" } else { "invalid" }
                );
                for (node, why) in o["node_status"].as_object().into_iter().flatten() {
                    let why = why.as_str().unwrap_or("");
                    println!(
                        "  Node: {node}, status: {}",
                        if why.is_empty() { "valid" } else { why }
                    );
                }
            }
        }
    }
    Ok(0)
}
