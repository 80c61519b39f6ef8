//! A job store written by Maguey 0.1 (redb 2, file format v2; see `data/README.md`) is upgraded
//! when it is opened, and holds the jobs the Remote API showed before, with their status, results
//! and logs.

use maguey_jobs::JobQueue;
use maguey_model::{Job, JobStatus};
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

const STORE: &str = "tests/data/jobs-0.1.redb.gz";
const RAPI_JOBS: &str = "tests/data/jobs-0.1-rapi.json";
const LIVE_JOBS: &str = "tests/data/jobs-0.1-list.json";

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Writes the gunzipped fixture to `dest`; returns its bytes.
fn unpack(gz: &str, dest: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(data(gz)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(dest, &bytes).unwrap();
    bytes
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

/// Asserts that `ts` is the Remote API's `[seconds, microseconds]` pair `pair`.
fn assert_ts(ts: f64, pair: &Value, what: &str) {
    let secs = pair[0].as_f64().unwrap();
    let usecs = pair[1].as_f64().unwrap();
    let shown = secs + usecs / 1e6;
    assert!(
        (ts - shown).abs() <= 1e-6,
        "{what}: {ts} stored, {pair} shown"
    );
}

/// Compares a job read from the upgraded store with the Remote API's view of it before.
fn assert_same_job(job: &Job, shown: &Value) {
    let id = job.id;
    assert_eq!(json!(id), shown["id"]);
    assert_eq!(json!(job.status), shown["status"], "job {id}");
    assert_eq!(json!(job.opstatus), shown["opstatus"], "job {id}");
    assert_eq!(json!(job.summary), shown["summary"], "job {id}");
    assert_eq!(json!(job.ops), shown["ops"], "job {id}");
    for (i, result) in job.opresult.iter().enumerate() {
        let shown = &shown["opresult"][i];
        match job.opstatus[i] {
            // The Remote API shows a failure as Ganeti does: (exception class, [message]).
            JobStatus::Error => assert_eq!(&json!(["OpExecError", [result]]), shown, "job {id}"),
            _ => assert_eq!(result, shown, "job {id}"),
        }
    }
    let shown_log = shown["oplog"].as_array().unwrap();
    assert_eq!(job.oplog.len(), shown_log.len(), "job {id}");
    for (log, shown) in job.oplog.iter().zip(shown_log) {
        let shown = shown.as_array().unwrap();
        assert_eq!(log.len(), shown.len(), "job {id}");
        for (entry, shown) in log.iter().zip(shown) {
            assert_eq!(json!(entry.serial), shown[0], "job {id}");
            assert_ts(entry.timestamp, &shown[1], "log entry");
            assert_eq!(json!(entry.log_type), shown[2], "job {id}");
            assert_eq!(json!(entry.message), shown[3], "job {id}");
        }
    }
    assert_ts(job.received_ts, &shown["received_ts"], "received_ts");
    assert_ts(job.start_ts.unwrap(), &shown["start_ts"], "start_ts");
    assert_ts(job.end_ts.unwrap(), &shown["end_ts"], "end_ts");
}

#[test]
fn a_0_1_job_store_is_upgraded_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let original = unpack(STORE, &path);
    assert!(
        matches!(
            redb::Database::create(&path),
            Err(redb::DatabaseError::UpgradeRequired(2))
        ),
        "the fixture is in redb's old file format"
    );

    let queue = JobQueue::open(&path, 1).unwrap();
    let shown = read_json(RAPI_JOBS);
    let shown = shown.as_array().unwrap();
    let jobs = queue.list(true);
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        shown
            .iter()
            .map(|j| j["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    );
    assert_eq!(jobs.len(), 14);
    assert!(jobs.iter().any(|j| j.status == JobStatus::Error));
    for (job, shown) in jobs.iter().zip(shown) {
        assert_same_job(job, shown);
        assert_eq!(queue.get(job.id).as_ref(), Some(job));
    }
    let live: Vec<u64> = read_json(LIVE_JOBS)
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        queue.list(false).iter().map(|j| j.id).collect::<Vec<_>>(),
        live
    );
    for job in &jobs {
        assert_eq!(job.archived, !live.contains(&job.id), "job {}", job.id);
    }
    assert_eq!(
        std::fs::read(maguey_redb::backup_path(&path)).unwrap(),
        original
    );

    // The upgraded store keeps working: the id counter goes on, a new job survives reopening.
    let ops = jobs.last().unwrap().ops.clone();
    let id = queue.submit(ops, 0).unwrap();
    assert_eq!(id, jobs.last().unwrap().id + 1);
    drop(queue);
    let queue = JobQueue::open(&path, 1).unwrap();
    let job = queue.get(id).unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(queue.list(true).len(), 15);
}
