//! A replicated master's queue ([`JobQueue::open_replicated`]): which writes go through the
//! replication, and together with what. The replication here records every batch it is given
//! (as the Raft log would hold them). No assertion depends on timing: waits have deadlines.

use maguey_jobs::*;
use maguey_model::{Job, JobStatus, OpCode};
use serde_json::{json, Value};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

mod common;
use common::{until, DEADLINE};

/// Records every replicated batch; while `held`, a batch waits (its commit does not come).
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Vec<JobWrite>>>,
    held: Mutex<bool>,
    /// Batches waiting while held.
    waiting: Mutex<usize>,
    released: std::sync::Condvar,
}

impl JobReplication for Recorder {
    fn replicate(&self, batch: Vec<JobWrite>) -> Result<(), String> {
        let mut held = self.held.lock().unwrap();
        if *held {
            *self.waiting.lock().unwrap() += 1;
            while *held {
                held = self.released.wait(held).unwrap();
            }
        }
        drop(held);
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

impl Recorder {
    /// Every replicated record of job `id`, oldest first, with the batch it was in.
    fn records(&self, id: u64) -> Vec<(usize, Job)> {
        let batches = self.batches.lock().unwrap();
        let mut out = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            for w in b.iter().filter(|w| w.id == id) {
                out.push((i, serde_json::from_str(&w.json).unwrap()));
            }
        }
        out
    }
}

/// Each opcode logs the lines in its `on_nodes`, then waits for the gate when its
/// `on_master` is false.
struct Exec {
    gate: Arc<Notify>,
}

impl OpExecutor for Exec {
    fn execute<'a>(
        &'a self,
        op: &'a OpCode,
        ctx: &'a OpContext,
    ) -> Pin<Box<dyn Future<Output = Result<Value, OpError>> + Send + 'a>> {
        Box::pin(async move {
            let OpCode::TestDelay(d) = op else {
                return Err(OpError::Prereq("unsupported opcode".into()));
            };
            for line in &d.on_nodes {
                ctx.log(line.clone());
            }
            if !d.on_master {
                self.gate.notified().await;
            }
            Ok(json!("done"))
        })
    }
}

fn op(lines: &[&str], gated: bool) -> OpCode {
    OpCode::TestDelay(maguey_model::OpTestDelay {
        duration: 0.0,
        on_master: !gated,
        on_nodes: lines.iter().map(|s| s.to_string()).collect(),
        repeat: 0,
        fail: false,
    })
}

fn started(dir: &Path, max_running: usize) -> (Arc<JobQueue>, Arc<Recorder>, Arc<Notify>) {
    let recorder = Arc::new(Recorder::default());
    let q = JobQueue::open_replicated(
        &dir.join("queue.redb"),
        max_running,
        Vec::new(),
        recorder.clone(),
    )
    .unwrap();
    let gate = Arc::new(Notify::new());
    q.start(Arc::new(Exec { gate: gate.clone() }));
    (q, recorder, gate)
}

fn log_lines(job: &Job) -> Vec<String> {
    job.all_log().map(|e| e.message.clone()).collect()
}

/// A job that runs at once is replicated twice: its submit together with its opcode's start,
/// then its end, which carries its log lines (they are not replicated on their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_at_once_is_two_replicated_writes_and_its_log_goes_with_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (q, rec, gate) = started(dir.path(), 4);
    // Log lines are never replicated alone within this test.
    q.set_carry_max(Duration::from_secs(3600));
    // Gated: the job cannot end (and replicate its end) before its first record is read.
    let id = q
        .submit(vec![op(&["one", "two", "three"], true)], 0)
        .unwrap();
    // Acknowledged: its first record is replicated, and it is the opcode's start.
    let first = rec.records(id);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1.status, JobStatus::Running);
    assert_eq!(first[0].1.opstatus, vec![JobStatus::Running]);
    assert!(first[0].1.start_ts.is_some());
    gate.notify_one();

    until("the job's end replicated", || {
        rec.records(id)
            .last()
            .is_some_and(|(_, j)| j.status.is_finalized())
    })
    .await;
    let records = rec.records(id);
    assert_eq!(records.len(), 2, "submit+start, end: {records:?}");
    let end = &records[1].1;
    assert_eq!(end.status, JobStatus::Success);
    assert_eq!(log_lines(end), ["one", "two", "three"]);
    assert_eq!(q.get(id).unwrap().status, JobStatus::Success);
}

/// Log lines of a job that runs on are replicated alone once they have waited the carry
/// time, never held back until the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_log_lines_are_replicated_alone_after_the_carry_time() {
    let dir = tempfile::tempdir().unwrap();
    let (q, rec, gate) = started(dir.path(), 4);
    q.set_carry_max(Duration::from_millis(20));
    let id = q.submit(vec![op(&["waiting"], true)], 0).unwrap();
    until("the log line replicated while the job runs", || {
        rec.records(id)
            .iter()
            .any(|(_, j)| j.status == JobStatus::Running && log_lines(j) == ["waiting"])
    })
    .await;
    assert!(!q.get(id).unwrap().status.is_finalized());
    gate.notify_one();
    until("the job's end replicated", || {
        rec.records(id)
            .last()
            .is_some_and(|(_, j)| j.status == JobStatus::Success)
    })
    .await;
}

/// A job submitted while every slot is taken is replicated as queued, and its opcode's start
/// is a write of its own once it is picked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_must_wait_for_a_slot_is_submitted_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (q, rec, gate) = started(dir.path(), 1);
    q.set_carry_max(Duration::from_secs(3600));
    let a = q.submit(vec![op(&[], true)], 0).unwrap();
    let b = q.submit(vec![op(&[], false)], 0).unwrap();
    let first = rec.records(b);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1.status, JobStatus::Queued);
    assert_eq!(q.get(b).unwrap().status, JobStatus::Queued);
    gate.notify_one();
    until("both ends replicated", || {
        [a, b].iter().all(|id| {
            rec.records(*id)
                .last()
                .is_some_and(|(_, j)| j.status == JobStatus::Success)
        })
    })
    .await;
    let statuses: Vec<JobStatus> = rec.records(b).iter().map(|(_, j)| j.status).collect();
    assert_eq!(
        statuses,
        [JobStatus::Queued, JobStatus::Running, JobStatus::Success]
    );
}

/// A job's end is told to waiters only once it is committed: while its write waits for the
/// replication, `wait_for_change` does not report the job finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_is_reported_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (q, rec, gate) = started(dir.path(), 4);
    q.set_carry_max(Duration::from_secs(3600));
    let id = q.submit(vec![op(&[], true)], 0).unwrap();
    *rec.held.lock().unwrap() = true;
    gate.notify_one();
    until("the end's write waiting for its commit", || {
        *rec.waiting.lock().unwrap() > 0
    })
    .await;
    // Not committed: a waiter sees no end (it times out), whatever wakes it.
    let seen = q
        .wait_for_change(id, Some(JobStatus::Running), 0, Duration::from_millis(300))
        .await;
    // Released before asserting: a writer left waiting would hang the queue's drop.
    *rec.held.lock().unwrap() = false;
    rec.released.notify_all();
    assert!(seen.is_none(), "end reported before its commit: {seen:?}");
    let seen = q
        .wait_for_change(id, Some(JobStatus::Running), 0, DEADLINE)
        .await
        .expect("the end, once committed");
    assert_eq!(seen.status, JobStatus::Success);
    assert!(rec
        .records(id)
        .last()
        .is_some_and(|(_, j)| j.status == JobStatus::Success));
}
