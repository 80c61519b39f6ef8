//! `maguey job` (gnt-job).

use crate::args::ListOpts;
use crate::input::usage;
use crate::master::client;
use crate::output::{fields, print_rows};
use crate::CliResult;
use clap::Subcommand;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Lists jobs.
    List {
        #[arg(long)]
        archived: bool,
        /// Fields: id, status, summary, priority, received_ts, start_ts, end_ts.
        #[command(flatten)]
        list: ListOpts,
    },
    /// Shows jobs in detail.
    Info {
        ids: Vec<u64>,
        #[arg(long, value_enum, default_value_t = crate::args::Format::Table)]
        output: crate::args::Format,
    },
    /// Follows a job's log until it ends.
    Watch { id: u64 },
    /// Cancels a queued or waiting job.
    Cancel { id: u64 },
    /// Archives finished jobs older than AGE seconds.
    Archive {
        #[arg(long, default_value_t = 0.0)]
        age: f64,
    },
}

pub async fn run(dir: &Path, cmd: JobCmd) -> CliResult<u8> {
    let c = client(dir)?;
    match cmd {
        JobCmd::List { archived, list: l } => {
            let jobs = c.jobs(archived).await?;
            let fields = fields(&l.fields, &["id", "status", "summary"]);
            const KNOWN: &[&str] = &[
                "id",
                "status",
                "summary",
                "priority",
                "received_ts",
                "start_ts",
                "end_ts",
            ];
            if let Some(f) = fields.iter().find(|f| !KNOWN.contains(&f.as_str())) {
                return Err(usage(format!(
                    "unknown job field '{f}' (known: {})",
                    KNOWN.join(", ")
                )));
            }
            let rows: Vec<Vec<Value>> = jobs
                .iter()
                .map(|j| {
                    fields
                        .iter()
                        .map(|f| j.get(f).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            print_rows(&fields, &rows, &l);
            Ok(0)
        }
        JobCmd::Info { ids, output } => {
            if output == crate::args::Format::Json {
                let mut all = Vec::new();
                for id in ids {
                    all.push(serde_json::to_value(c.job(id).await?).unwrap_or_default());
                }
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
                return Ok(0);
            }
            for id in ids {
                let j = c.job(id).await?;
                println!("Job ID: {}", j.id);
                println!("  Status: {}", j.status.as_str());
                println!("  Priority: {}", j.priority);
                println!(
                    "  Submitter: {}",
                    if j.submitter.is_empty() {
                        "-"
                    } else {
                        &j.submitter
                    }
                );
                println!(
                    "  Reason: {}",
                    if j.reason.is_empty() { "-" } else { &j.reason }
                );
                println!("  Received: {}", j.received_ts);
                println!(
                    "  Started: {}",
                    j.start_ts
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                println!(
                    "  Ended: {}",
                    j.end_ts
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                println!("  Opcodes:");
                for (i, op) in j.ops.iter().enumerate() {
                    println!(
                        "    - {} [{}]",
                        j.summary
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| op.op_id().into()),
                        j.opstatus.get(i).map(|s| s.as_str()).unwrap_or("?")
                    );
                    println!(
                        "      Result: {}",
                        j.opresult.get(i).cloned().unwrap_or(Value::Null)
                    );
                    for e in j.oplog.get(i).into_iter().flatten() {
                        println!("      {} {}", e.timestamp, e.message);
                    }
                }
            }
            Ok(0)
        }
        JobCmd::Watch { id } => {
            let j = crate::wait::follow(&c, id, false).await?;
            println!("job {id}: {}", j.status.as_str());
            Ok(if j.status == maguey_model::JobStatus::Success {
                0
            } else {
                1
            })
        }
        JobCmd::Cancel { id } => {
            let r = c.cancel(id).await?;
            let ok = r.get("canceled").and_then(Value::as_bool).unwrap_or(false);
            println!("{}", r.get("message").and_then(Value::as_str).unwrap_or(""));
            Ok(if ok { 0 } else { 1 })
        }
        JobCmd::Archive { age } => {
            let r = c
                .archive(std::time::Duration::from_secs_f64(age.max(0.0)))
                .await?;
            println!(
                "archived {} jobs",
                r.get("archived").cloned().unwrap_or(Value::Null)
            );
            Ok(0)
        }
    }
}
