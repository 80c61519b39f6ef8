//! `list`, `list-fields` and `info` of the queryable resources (nodes, instances).

use crate::args::ListOpts;
use crate::output::{fields, print_info, print_rows};
use crate::CliResult;
use maguey_client::MasterClient;
use maguey_client::Resource;
use serde_json::Value;

pub async fn list(
    c: &MasterClient,
    what: Resource,
    names: Vec<String>,
    opts: &ListOpts,
    defaults: &[&str],
) -> CliResult<u8> {
    let f = fields(&opts.fields, defaults);
    let r = query(c, what, names, f).await?;
    print_rows(&r.fields, &r.rows, opts);
    Ok(0)
}

/// A query; with `--stale-ok` possibly answered by a replica, and then marked on stderr.
async fn query(
    c: &MasterClient,
    what: Resource,
    names: Vec<String>,
    fields: Vec<String>,
) -> CliResult<maguey_client::QueryResult> {
    if !crate::master::stale_ok() {
        return Ok(c.query(what, names, fields).await?);
    }
    let r = c.query_stale_ok(what, names, fields).await?;
    if let Some(why) = &r.stale {
        eprintln!("warning: possibly stale: {why}");
    }
    Ok(r)
}

pub async fn list_fields(c: &MasterClient, what: &str) -> CliResult<u8> {
    for (name, desc) in c.fields(what).await? {
        println!("{name:<20} {desc}");
    }
    Ok(0)
}

/// `info` of instances, nodes or groups: every field, as text blocks or (`--output json`)
/// one JSON object per object.
pub async fn info(
    c: &MasterClient,
    what: Resource,
    names: Vec<String>,
    output: crate::args::Format,
) -> CliResult<u8> {
    let all: Vec<String> = c
        .fields(match what {
            Resource::Instance => "instance",
            Resource::Node => "node",
            Resource::Group => "group",
            Resource::Network => "network",
        })
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let r = query(c, what, names, all).await?;
    if output == crate::args::Format::Json {
        let objs: Vec<Value> = r
            .rows
            .into_iter()
            .map(|row| Value::Object(r.fields.iter().cloned().zip(row).collect()))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&objs).unwrap_or_default()
        );
        return Ok(0);
    }
    for row in r.rows {
        let obj: serde_json::Map<String, Value> = r.fields.iter().cloned().zip(row).collect();
        let title = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        println!(
            "{}: {title}",
            match what {
                Resource::Instance => "Instance name",
                Resource::Node => "Node name",
                Resource::Group => "Group name",
                Resource::Network => "Network name",
            }
        );
        print_info(&Value::Object(obj), 2);
    }
    Ok(0)
}
