//! `/2/jobs`: the list, one job, cancelling and Ganeti's long-polling wait.

use super::request::{no_dry_run, Body};
use super::unrouted;
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::Method;
use maguey_model::{Job, JobStatus, LogEntry};
use serde_json::{json, Value};
use std::time::Duration;

/// Ganeti's job fields.
const J_FIELDS_BULK: &[&str] = &[
    "id",
    "ops",
    "status",
    "summary",
    "opstatus",
    "received_ts",
    "start_ts",
    "end_ts",
];
const J_FIELDS: &[&str] = &[
    "id",
    "ops",
    "status",
    "summary",
    "opstatus",
    "received_ts",
    "start_ts",
    "end_ts",
    "oplog",
    "opresult",
];
/// Every job field `/2/jobs/ID/wait` accepts.
const J_ALL_FIELDS: &[&str] = &[
    "id",
    "ops",
    "status",
    "summary",
    "opstatus",
    "received_ts",
    "start_ts",
    "end_ts",
    "oplog",
    "opresult",
    "priority",
    "archived",
    "oppriority",
    "opstart",
    "opexec",
    "opend",
];

/// Seconds a `/2/jobs/ID/wait` waits for a change (Ganeti's `_WFJC_TIMEOUT`).
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    match segs {
        [] if m == Method::GET => jobs_list(rapi, req),
        [id] if m == Method::GET => {
            let job = find_job(rapi, id)?;
            Ok(job_fields(&job, J_FIELDS))
        }
        [id] if m == Method::DELETE => {
            let id = parse_job_id(id)?;
            no_dry_run(req)?;
            match rapi.queue()?.cancel(id) {
                Ok(outcome) => Ok(json!([
                    true,
                    format!("job {id}: {outcome:?}").to_lowercase()
                ])),
                Err(maguey_jobs::JobError::NotFound(_)) => {
                    Err(ApiError::not_found(format!("job {id} not found")))
                }
                Err(e) => Ok(json!([false, e.to_string()])),
            }
        }
        [id, "wait"] if m == Method::GET => job_wait(rapi, req, id).await,
        _ => Err(unrouted(req)),
    }
}

fn parse_job_id(id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid job id '{id}'")))
}

fn find_job(rapi: &Rapi, id: &str) -> Result<Job, ApiError> {
    let id = parse_job_id(id)?;
    rapi.queue()?
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))
}

fn jobs_list(rapi: &Rapi, req: &Req) -> ApiResult {
    let jobs = rapi.queue()?.list(false);
    if req.flag("bulk", false)? {
        Ok(Value::Array(
            jobs.iter().map(|j| job_fields(j, J_FIELDS_BULK)).collect(),
        ))
    } else {
        Ok(Value::Array(
            jobs.iter()
                .map(|j| json!({"id": j.id, "uri": format!("/2/jobs/{}", j.id)}))
                .collect(),
        ))
    }
}

/// Ganeti's timestamps are `(seconds, microseconds)`.
fn ts(t: f64) -> Value {
    let secs = t.floor();
    json!([secs as i64, ((t - secs) * 1e6).round() as i64])
}

fn opt_ts(t: Option<f64>) -> Value {
    t.map(ts).unwrap_or(Value::Null)
}

/// Ganeti's log entry tuple: `(serial, timestamp, type, message)`.
fn log_entry(e: &LogEntry) -> Value {
    json!([e.serial, ts(e.timestamp), e.log_type, e.message])
}

fn opresult(job: &Job, i: usize) -> Value {
    let r = job.opresult.get(i).cloned().unwrap_or(Value::Null);
    match (job.opstatus.get(i), &r) {
        // Ganeti encodes a failed opcode's result as (exception class, arguments).
        (Some(JobStatus::Error), Value::String(msg)) => json!(["OpExecError", [msg]]),
        (Some(JobStatus::Canceled), Value::String(msg)) => json!(["JobCanceled", [msg]]),
        _ => r,
    }
}

fn job_field(job: &Job, f: &str) -> Value {
    match f {
        "id" => json!(job.id),
        "ops" => json!(job.ops),
        "status" => json!(job.status),
        "summary" => json!(job.summary),
        "opstatus" => json!(job.opstatus),
        "opresult" => json!((0..job.ops.len())
            .map(|i| opresult(job, i))
            .collect::<Vec<_>>()),
        "oplog" => json!(job
            .oplog
            .iter()
            .map(|l| l.iter().map(log_entry).collect::<Vec<_>>())
            .collect::<Vec<_>>()),
        "received_ts" => ts(job.received_ts),
        "start_ts" => opt_ts(job.start_ts),
        "end_ts" => opt_ts(job.end_ts),
        "priority" => json!(job.priority),
        "archived" => json!(job.archived),
        "oppriority" => json!(job.ops.iter().map(|_| job.priority).collect::<Vec<_>>()),
        "opstart" | "opexec" => json!(job
            .ops
            .iter()
            .map(|_| opt_ts(job.start_ts))
            .collect::<Vec<_>>()),
        "opend" => json!(job
            .ops
            .iter()
            .map(|_| opt_ts(job.end_ts))
            .collect::<Vec<_>>()),
        _ => Value::Null,
    }
}

fn job_fields(job: &Job, fields: &[&str]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| (f.to_string(), job_field(job, f)))
            .collect(),
    )
}

async fn job_wait(rapi: &Rapi, req: &Req, id: &str) -> ApiResult {
    let id = parse_job_id(id)?;
    let b = Body::parse(
        req,
        "job wait",
        &["fields", "previous_job_info", "previous_log_serial"],
        &[],
    )?;
    let fields: Vec<String> = match b.get("fields") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::bad_request("The 'fields' parameter should be a list of strings")
            })?,
        _ => {
            return Err(ApiError::bad_request(
                "The 'fields' parameter should be a list",
            ))
        }
    };
    for f in &fields {
        if !J_ALL_FIELDS.contains(&f.as_str()) {
            return Err(ApiError::bad_request(format!("unknown job field '{f}'")));
        }
    }
    let prev_info = match b.get("previous_job_info") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Array(_)) => Some(v.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The 'previous_job_info' parameter should be a list",
            ))
        }
    };
    let prev_serial = match b.get("previous_log_serial") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request("The 'previous_log_serial' parameter should be a number")
        })?,
    };
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    loop {
        let job = rapi
            .queue()?
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
        let info = Value::Array(fields.iter().map(|f| job_field(&job, f)).collect());
        let logs: Vec<Value> = job
            .all_log()
            .filter(|e| e.serial > prev_serial)
            .map(log_entry)
            .collect();
        if prev_info.as_ref() != Some(&info) || !logs.is_empty() || job.status.is_finalized() {
            return Ok(json!({"job_info": info, "log_entries": logs}));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Value::Null);
        }
        let max_serial = job
            .all_log()
            .map(|e| e.serial)
            .max()
            .unwrap_or(0)
            .max(prev_serial);
        // Returns on any status change or new log entry; re-check the fields then.
        let _ = rapi
            .queue()?
            .wait_for_change(
                id,
                Some(job.status),
                max_serial,
                (deadline - now).min(Duration::from_secs(1)),
            )
            .await;
    }
}
