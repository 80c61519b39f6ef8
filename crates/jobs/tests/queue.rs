//! Behaviour of the job queue with a scripted executor.
//!
//! Each test job is made of `OP_TEST_DELAY` opcodes whose `on_nodes` field holds a small script
//! (one step per string) that the executor below interprets: take locks, wait for a gate the
//! test opens, log, mark an event, fail, run forever. No assertion depends on timing: tests wait
//! for conditions with a deadline.

use maguey_jobs::*;
use maguey_model::OpCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

mod common;
use common::{until, DEADLINE};

#[derive(Default)]
struct Script {
    gates: Mutex<HashSet<String>>,
    gate_tx: Mutex<Option<watch::Sender<u64>>>,
    events: Mutex<Vec<String>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

impl Script {
    fn new() -> Arc<Script> {
        let s = Script::default();
        *s.gate_tx.lock().unwrap() = Some(watch::Sender::new(0));
        Arc::new(s)
    }
    fn open(&self, gate: &str) {
        self.gates.lock().unwrap().insert(gate.to_string());
        self.gate_tx
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .send_modify(|v| *v += 1);
    }
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    async fn wait_gate(&self, gate: &str) {
        let mut rx = self.gate_tx.lock().unwrap().as_ref().unwrap().subscribe();
        loop {
            if self.gates.lock().unwrap().contains(gate) {
                return;
            }
            let _ = rx.changed().await;
        }
    }

    async fn run(&self, op: &OpCode, ctx: &OpContext) -> Result<Value, OpError> {
        let OpCode::TestDelay(maguey_model::OpTestDelay { on_nodes, .. }) = op else {
            return Err(OpError::Prereq("unsupported opcode".into()));
        };
        let mut result = json!(format!("{}/{}", ctx.job_id(), ctx.op_index()));
        for step in on_nodes {
            let (cmd, arg) = step.split_once(' ').unwrap_or((step.as_str(), ""));
            match cmd {
                "lock" => {
                    // lock <level> <s|x> <names,comma,separated|*>
                    let parts: Vec<&str> = arg.split(' ').collect();
                    let level = level(parts[0]);
                    let mode = if parts[1] == "x" {
                        LockMode::Exclusive
                    } else {
                        LockMode::Shared
                    };
                    let names = if parts[2] == "*" {
                        LockNames::All
                    } else {
                        LockNames::names(parts[2].split(','))
                    };
                    ctx.acquire(level, names, mode).await?;
                }
                "trylock" => {
                    // trylock <level> <name>: exclusive, give up after 20 ms
                    let (l, name) = arg.split_once(' ').unwrap();
                    let acquire =
                        ctx.acquire(level(l), LockNames::names([name]), LockMode::Exclusive);
                    match tokio::time::timeout(Duration::from_millis(20), acquire).await {
                        Ok(r) => r?,
                        Err(_) => self.events.lock().unwrap().push("gave up".into()),
                    }
                }
                "release" => ctx.release(level(arg)),
                "gate" => self.wait_gate(arg).await,
                "log" => ctx.log(arg),
                "mark" => self.events.lock().unwrap().push(arg.to_string()),
                "fail" => return Err(OpError::Exec(arg.to_string())),
                "prereq" => return Err(OpError::Prereq(arg.to_string())),
                "panic" => panic!("scripted panic"),
                "forever" => std::future::pending::<()>().await,
                "result" => result = serde_json::from_str(arg).unwrap(),
                "owned" => result = json!(ctx.owned(level(arg))),
                "children" => {
                    // Submits N child jobs and waits for them (like node evacuation).
                    let n: usize = arg.parse().unwrap();
                    let ids =
                        ctx.submit_jobs((0..n).map(|_| vec![self::op(&["mark child"])]).collect())?;
                    for id in ids {
                        let job = ctx.wait_job(id).await?.expect("child exists");
                        if job.status != JobStatus::Success {
                            return Err(OpError::Exec(format!("child {id} failed")));
                        }
                    }
                }
                other => panic!("unknown step {other}"),
            }
        }
        Ok(result)
    }
}

fn level(s: &str) -> LockLevel {
    match s {
        "cluster" => LockLevel::Cluster,
        "instance" => LockLevel::Instance,
        "nodegroup" => LockLevel::NodeGroup,
        "node" => LockLevel::Node,
        "node-res" => LockLevel::NodeRes,
        "network" => LockLevel::Network,
        _ => panic!("bad level {s}"),
    }
}

struct Exec(Arc<Script>);

impl OpExecutor for Exec {
    fn execute<'a>(
        &'a self,
        op: &'a OpCode,
        ctx: &'a OpContext,
    ) -> Pin<Box<dyn Future<Output = Result<Value, OpError>> + Send + 'a>> {
        Box::pin(async move {
            let n = self.0.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.max_active.fetch_max(n, Ordering::SeqCst);
            struct Dec<'a>(&'a AtomicUsize);
            impl Drop for Dec<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _dec = Dec(&self.0.active);
            self.0.run(op, ctx).await
        })
    }
}

/// An opcode running a script.
fn op(steps: &[&str]) -> OpCode {
    OpCode::TestDelay(maguey_model::OpTestDelay {
        duration: 0.0,
        on_master: true,
        on_nodes: steps.iter().map(|s| s.to_string()).collect(),
        repeat: 0,
        fail: false,
    })
}

fn open(dir: &Path, max_running: usize) -> Arc<JobQueue> {
    JobQueue::open(&dir.join("queue.redb"), max_running).unwrap()
}

fn started(dir: &Path, max_running: usize) -> (Arc<JobQueue>, Arc<Script>) {
    let q = open(dir, max_running);
    let s = Script::new();
    q.start(Arc::new(Exec(s.clone())));
    (q, s)
}

async fn finished(q: &JobQueue, id: u64) -> Job {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let job = q.get(id).expect("job exists");
        if job.status.is_finalized() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never finished"
        );
        let serial = job.all_log().map(|e| e.serial).max().unwrap_or(0);
        q.wait_for_change(id, Some(job.status), serial, Duration::from_secs(1))
            .await;
    }
}

fn status(q: &JobQueue, id: u64) -> JobStatus {
    q.get(id).unwrap().status
}

fn holds(q: &JobQueue, id: u64, name: &str) -> bool {
    q.locks()
        .iter()
        .any(|l| l.name == name && l.owners.contains(&id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opcodes_run_in_order_and_results_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let id = q
        .submit(
            vec![
                op(&["mark one", "log first", "log second"]),
                op(&["mark two", "log third", r#"result {"x":1}"#]),
                op(&["mark three"]),
            ],
            0,
        )
        .unwrap();
    let job = finished(&q, id).await;
    assert_eq!(job.status, JobStatus::Success);
    assert_eq!(job.opstatus, vec![JobStatus::Success; 3]);
    assert_eq!(
        job.opresult,
        vec![
            json!(format!("{id}/0")),
            json!({"x": 1}),
            json!(format!("{id}/2"))
        ]
    );
    assert_eq!(s.events(), vec!["one", "two", "three"]);
    let log: Vec<(u64, &str)> = job
        .all_log()
        .map(|e| (e.serial, e.message.as_str()))
        .collect();
    assert_eq!(log, vec![(1, "first"), (2, "second"), (3, "third")]);
    assert_eq!(job.oplog[0].len(), 2);
    assert_eq!(job.oplog[1][0].log_type, "message");
    assert!(job.oplog[1][0].timestamp >= job.oplog[0][1].timestamp);
    let (start, end) = (job.start_ts.unwrap(), job.end_ts.unwrap());
    assert!(job.received_ts <= start && start <= end);
    assert_eq!(q.running_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_failure_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let id = q
        .submit(
            vec![
                op(&["mark a"]),
                op(&["fail boom"]),
                op(&["mark c"]),
                op(&[]),
            ],
            0,
        )
        .unwrap();
    let job = finished(&q, id).await;
    assert_eq!(job.status, JobStatus::Error);
    assert_eq!(
        job.opstatus,
        vec![
            JobStatus::Success,
            JobStatus::Error,
            JobStatus::Error,
            JobStatus::Error
        ]
    );
    assert_eq!(job.opresult[1], json!("boom"));
    for r in &job.opresult[2..] {
        assert!(r.as_str().unwrap().contains("earlier opcode failed"), "{r}");
    }
    assert_eq!(s.events(), vec!["a"]);

    let id = q.submit(vec![op(&["prereq no such instance"])], 0).unwrap();
    let job = finished(&q, id).await;
    assert_eq!(job.status, JobStatus::Error);
    assert_eq!(job.opresult[0], json!("no such instance"));

    let id = q.submit(vec![op(&["panic"])], 0).unwrap();
    let job = finished(&q, id).await;
    assert_eq!(job.status, JobStatus::Error);
    assert!(job.opresult[0].as_str().unwrap().contains("panicked"));
    assert_eq!(q.running_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_validation_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), 20);
    assert_eq!(q.submit(vec![], 0), Err(JobError::EmptyJob));
    assert_eq!(
        q.submit_many(vec![(vec![op(&[])], 0), (vec![], 0)]),
        Err(JobError::EmptyJob)
    );
    assert!(q.list(true).is_empty());
    let ids = q
        .submit_many(vec![(vec![op(&[])], 0), (vec![op(&[]), op(&[])], 5)])
        .unwrap();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(q.submit(vec![op(&[])], 0).unwrap(), 3);
    let job = q.get(2).unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.priority, 5);
    assert_eq!(job.opstatus, vec![JobStatus::Queued; 2]);
    assert_eq!(
        q.list(false).iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(q.get(99).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_pick_lower_values_first() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), 1);
    for (name, prio) in [
        ("p10", 10),
        ("p0a", 0),
        ("m5", -5),
        ("p0b", 0),
        ("m20", -20),
    ] {
        q.submit(vec![op(&[&format!("mark {name}")])], prio)
            .unwrap();
    }
    let s = Script::new();
    q.start(Arc::new(Exec(s.clone())));
    for id in 1..=5 {
        finished(&q, id).await;
    }
    assert_eq!(s.events(), vec!["m20", "m5", "p0a", "p0b", "p10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 3);
    let ids: Vec<u64> = (0..8)
        .map(|_| q.submit(vec![op(&["gate go"])], 0).unwrap())
        .collect();
    until("three jobs running", || {
        s.active.load(Ordering::SeqCst) == 3 && q.running_count() == 3
    })
    .await;
    let queued = ids
        .iter()
        .filter(|id| status(&q, **id) == JobStatus::Queued)
        .count();
    assert_eq!(queued, 5);
    s.open("go");
    for id in &ids {
        assert_eq!(finished(&q, *id).await.status, JobStatus::Success);
    }
    assert_eq!(s.max_active.load(Ordering::SeqCst), 3);
    assert_eq!(q.running_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_locks_serialize_and_independent_ones_run_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let a1 = q
        .submit(
            vec![op(&[
                "lock cluster s BGL",
                "lock instance x inst-a",
                "mark a1",
                "gate a1",
            ])],
            0,
        )
        .unwrap();
    until("a1 holds inst-a", || holds(&q, a1, "inst-a")).await;
    let a2 = q
        .submit(
            vec![op(&[
                "lock cluster s BGL",
                "lock instance x inst-a",
                "mark a2",
            ])],
            0,
        )
        .unwrap();
    let b = q
        .submit(
            vec![op(&[
                "lock cluster s BGL",
                "lock instance x inst-b",
                "mark b",
                "gate b",
            ])],
            0,
        )
        .unwrap();
    // b runs alongside a1; a2 waits for a1
    until("b holds inst-b", || holds(&q, b, "inst-b")).await;
    until("a2 waiting", || status(&q, a2) == JobStatus::Waiting).await;
    assert_eq!(q.get(a2).unwrap().opstatus[0], JobStatus::Waiting);
    assert_eq!(status(&q, a1), JobStatus::Running);
    assert_eq!(status(&q, b), JobStatus::Running);
    let inst_a = q.locks().into_iter().find(|l| l.name == "inst-a").unwrap();
    assert_eq!(inst_a.level, LockLevel::Instance);
    assert_eq!(inst_a.owners, vec![a1]);
    assert_eq!(inst_a.mode, Some(LockMode::Exclusive));
    assert_eq!(inst_a.pending, vec![(a2, LockMode::Exclusive)]);
    let bgl = q.locks().into_iter().find(|l| l.name == "BGL").unwrap();
    assert_eq!(bgl.owners.len(), 3);

    s.open("a1");
    assert_eq!(finished(&q, a1).await.status, JobStatus::Success);
    assert_eq!(finished(&q, a2).await.status, JobStatus::Success);
    assert_eq!(status(&q, b), JobStatus::Running);
    let ev = s.events();
    assert!(ev.iter().position(|e| e == "a1") < ev.iter().position(|e| e == "a2"));
    s.open("b");
    finished(&q, b).await;
    until("no locks left", || q.locks().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_locks_coexist_and_exclusive_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let r1 = q
        .submit(vec![op(&["lock node s n1,n2", "gate readers"])], 0)
        .unwrap();
    let r2 = q
        .submit(vec![op(&["lock node s n2", "gate readers"])], 0)
        .unwrap();
    until("both readers hold n2", || {
        holds(&q, r1, "n2") && holds(&q, r2, "n2")
    })
    .await;
    let w = q
        .submit(vec![op(&["lock node x n2", "mark writer"])], 0)
        .unwrap();
    until("writer waits", || status(&q, w) == JobStatus::Waiting).await;
    // a reader arriving after the waiting writer queues behind it
    let r3 = q
        .submit(vec![op(&["lock node s n2", "mark r3"])], 0)
        .unwrap();
    until("r3 waits", || status(&q, r3) == JobStatus::Waiting).await;
    assert!(s.events().is_empty());
    s.open("readers");
    finished(&q, w).await;
    finished(&q, r3).await;
    assert_eq!(s.events(), vec!["writer", "r3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_level_locks_conflict_with_names() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let all_s = q
        .submit(vec![op(&["lock instance s *", "gate all-s"])], 0)
        .unwrap();
    until("all shared held", || holds(&q, all_s, LOCKSET_NAME)).await;
    let name_s = q
        .submit(vec![op(&["lock instance s i1", "gate name-s"])], 0)
        .unwrap();
    until("shared name next to shared all", || holds(&q, name_s, "i1")).await;
    let name_x = q
        .submit(vec![op(&["lock instance x i2", "mark name-x"])], 0)
        .unwrap();
    until("exclusive name waits", || {
        status(&q, name_x) == JobStatus::Waiting
    })
    .await;
    s.open("all-s");
    finished(&q, name_x).await;
    // All exclusive waits for the shared name
    let all_x = q
        .submit(
            vec![op(&["lock instance x *", "mark all-x", "gate all-x"])],
            0,
        )
        .unwrap();
    until("all exclusive waits", || {
        status(&q, all_x) == JobStatus::Waiting
    })
    .await;
    s.open("name-s");
    until("all exclusive held", || holds(&q, all_x, LOCKSET_NAME)).await;
    // and any name waits for it, shared too
    let other = q
        .submit(vec![op(&["lock instance s i9", "mark other"])], 0)
        .unwrap();
    until("shared name waits", || {
        status(&q, other) == JobStatus::Waiting
    })
    .await;
    // other levels are unaffected
    let node = q.submit(vec![op(&["lock node x i9"])], 0).unwrap();
    assert_eq!(finished(&q, node).await.status, JobStatus::Success);
    s.open("all-x");
    finished(&q, other).await;
    assert_eq!(s.events(), vec!["name-x", "all-x", "other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_must_be_taken_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _s) = started(dir.path(), 20);
    let bad = q
        .submit(vec![op(&["lock node x n1", "lock instance x i1"])], 0)
        .unwrap();
    let job = finished(&q, bad).await;
    assert_eq!(job.status, JobStatus::Error);
    assert!(job.opresult[0].as_str().unwrap().contains("in order"));
    let same = q
        .submit(vec![op(&["lock node x n1", "lock node x n2"])], 0)
        .unwrap();
    assert_eq!(finished(&q, same).await.status, JobStatus::Error);
    // all levels in order; early release; each opcode starts afresh
    let good = q
        .submit(
            vec![
                op(&[
                    "lock cluster s BGL",
                    "lock instance x i1",
                    "lock nodegroup s g1",
                    "lock node x n1,n2",
                    "lock node-res x n1",
                    "lock network s net1",
                    "release network",
                    "owned node",
                ]),
                op(&["lock instance x i1", "owned instance"]),
            ],
            0,
        )
        .unwrap();
    let job = finished(&q, good).await;
    assert_eq!(job.status, JobStatus::Success, "{:?}", job.opresult);
    assert_eq!(job.opresult, vec![json!(["n1", "n2"]), json!(["i1"])]);
    until("no locks left", || q.locks().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_running_and_finished_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 1);
    let running = q.submit(vec![op(&["mark r", "gate go"])], 0).unwrap();
    let queued = q
        .submit(vec![op(&["mark never"]), op(&["mark never"])], 0)
        .unwrap();
    until("first job runs", || s.events() == ["r"]).await;
    assert_eq!(q.cancel(queued), Ok(CancelOutcome::Canceled));
    let job = q.get(queued).unwrap();
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.opstatus, vec![JobStatus::Canceled; 2]);
    assert!(job.end_ts.is_some());
    match q.cancel(running) {
        Err(JobError::NotCancelable { id, reason }) => {
            assert_eq!(id, running);
            assert_eq!(reason, "job is running and cannot be canceled");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.cancel(12345), Err(JobError::NotFound(12345)));
    s.open("go");
    finished(&q, running).await;
    assert!(matches!(
        q.cancel(running),
        Err(JobError::NotCancelable { .. })
    ));
    assert!(matches!(
        q.cancel(queued),
        Err(JobError::NotCancelable { .. })
    ));
    // the canceled job never ran
    let last = q.submit(vec![op(&["mark last"])], 0).unwrap();
    finished(&q, last).await;
    assert_eq!(s.events(), vec!["r", "last"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_job_waiting_for_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let holder = q
        .submit(vec![op(&["lock instance x i1", "gate go"])], 0)
        .unwrap();
    until("holder has i1", || holds(&q, holder, "i1")).await;
    let waiter = q
        .submit(
            vec![
                op(&["lock cluster s BGL", "lock instance x i1", "mark got-it"]),
                op(&["mark second"]),
            ],
            0,
        )
        .unwrap();
    until("waiter waits", || status(&q, waiter) == JobStatus::Waiting).await;
    assert!(holds(&q, waiter, "BGL"));
    assert_eq!(q.cancel(waiter), Ok(CancelOutcome::Canceled));
    let job = q.get(waiter).unwrap();
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.opstatus, vec![JobStatus::Canceled; 2]);
    assert_eq!(job.opresult[0], json!(CANCELED_MESSAGE));
    // its locks go away and it frees its slot
    assert_eq!(q.running_count(), 1);
    until("waiter's locks released", || !holds(&q, waiter, "BGL")).await;
    assert!(q.locks().iter().all(|l| l.pending.is_empty()));
    s.open("go");
    finished(&q, holder).await;
    let next = q
        .submit(vec![op(&["lock instance x i1", "mark next"])], 0)
        .unwrap();
    assert_eq!(finished(&q, next).await.status, JobStatus::Success);
    assert_eq!(s.events(), vec!["next"]);
    assert_eq!(q.get(waiter).unwrap().status, JobStatus::Canceled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_lock_request_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let holder = q
        .submit(vec![op(&["lock node x n1", "gate go"])], 0)
        .unwrap();
    until("holder has n1", || holds(&q, holder, "n1")).await;
    let quitter = q
        .submit(
            vec![op(&["trylock node n1", "mark after", "gate after"])],
            0,
        )
        .unwrap();
    until("quitter gave up", || s.events() == ["gave up", "after"]).await;
    assert_eq!(status(&q, quitter), JobStatus::Running);
    assert!(q.locks().iter().all(|l| l.pending.is_empty()));
    assert!(!holds(&q, quitter, "n1"));
    s.open("go");
    s.open("after");
    finished(&q, holder).await;
    assert_eq!(finished(&q, quitter).await.status, JobStatus::Success);
    until("no locks left", || q.locks().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_change_reports_status_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let t = Duration::from_secs(20);
    let id = q
        .submit(
            vec![op(&["gate one", "log hello", "gate two", "log world"])],
            0,
        )
        .unwrap();
    // unknown status: at once
    let job = q.wait_for_change(id, None, 0, t).await.unwrap();
    until("running", || status(&q, id) == JobStatus::Running).await;
    // nothing changes: timeout
    assert!(q
        .wait_for_change(id, Some(JobStatus::Running), 0, Duration::from_millis(30))
        .await
        .is_none());
    let _ = job;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.wait_for_change(id, Some(JobStatus::Running), 0, t).await })
    };
    s.open("one");
    let job = waiter.await.unwrap().unwrap();
    assert_eq!(job.all_log().last().unwrap().message, "hello");
    assert_eq!(job.all_log().last().unwrap().serial, 1);
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.wait_for_change(id, Some(JobStatus::Running), 1, t).await })
    };
    s.open("two");
    let job = waiter.await.unwrap().unwrap();
    assert!(job.all_log().any(|e| e.serial == 2 && e.message == "world"));
    let done = finished(&q, id).await;
    // finalized jobs return at once, whatever is known
    let again = q
        .wait_for_change(id, Some(done.status), 99, t)
        .await
        .unwrap();
    assert_eq!(again.status, JobStatus::Success);
    assert!(q.wait_for_change(999, None, 0, t).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_moves_finished_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let ids;
    {
        let (q, s) = started(dir.path(), 20);
        ids = q
            .submit_many(vec![
                (vec![op(&["log a"])], 0),
                (vec![op(&["fail x"])], 0),
                (vec![op(&["gate never"])], 0),
            ])
            .unwrap();
        finished(&q, ids[0]).await;
        finished(&q, ids[1]).await;
        assert_eq!(q.archive_older_than(Duration::from_secs(3600)), 0);
        assert_eq!(q.archive_older_than(Duration::ZERO), 2);
        assert_eq!(
            q.list(false).iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[2]]
        );
        let all = q.list(true);
        assert_eq!(all.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
        assert!(all[0].archived && all[1].archived && !all[2].archived);
        let a = q.get(ids[0]).unwrap();
        assert!(a.archived);
        assert_eq!(a.oplog[0][0].message, "a");
        assert_eq!(q.get(ids[1]).unwrap().status, JobStatus::Error);
        assert_eq!(q.archive_older_than(Duration::ZERO), 0);
        assert!(matches!(
            q.cancel(ids[0]),
            Err(JobError::NotCancelable { .. })
        ));
        s.open("never");
        finished(&q, ids[2]).await;
        assert_eq!(q.running_count(), 0);
    }
    // archived jobs survive a restart, and their ids are not reused
    until_reopened(dir.path()).await;
    let q = open(dir.path(), 20);
    assert!(q.get(ids[0]).unwrap().archived);
    assert_eq!(q.list(true).len(), 3);
    assert_eq!(q.list(false).len(), 1);
    let new = q.submit(vec![op(&[])], 0).unwrap();
    assert_eq!(new, ids[2] + 1);
}

/// The queue is dropped once its last job task ended; wait until the file can be opened again.
async fn until_reopened(dir: &Path) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match JobQueue::open(&dir.join("queue.redb"), 1) {
            Ok(q) => {
                drop(q);
                return;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "cannot reopen: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

#[test]
fn restart_finishes_interrupted_jobs_and_runs_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (done, half, running, waiting, queued) = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let q = open(&path, 4);
        let s = Script::new();
        let ids = rt.block_on(async {
            q.start(Arc::new(Exec(s.clone())));
            let done = q.submit(vec![op(&["log done"])], 0).unwrap();
            finished(&q, done).await;
            let half = q
                .submit(vec![op(&["mark half"]), op(&["forever"]), op(&[])], 0)
                .unwrap();
            let running = q
                .submit(
                    vec![op(&["lock instance x i1", "log working", "forever"])],
                    0,
                )
                .unwrap();
            until("running holds i1", || holds(&q, running, "i1")).await;
            let waiting = q.submit(vec![op(&["lock instance x i1"])], 0).unwrap();
            until("waiting waits", || {
                status(&q, waiting) == JobStatus::Waiting
            })
            .await;
            until("half is in its second opcode", || {
                q.get(half).unwrap().opstatus[1] == JobStatus::Running
            })
            .await;
            // four slots: the last job stays queued
            let filler = q.submit(vec![op(&["forever"])], 0).unwrap();
            until("filler runs", || status(&q, filler) == JobStatus::Running).await;
            let queued = q.submit(vec![op(&["log after restart"])], 5).unwrap();
            assert_eq!(status(&q, queued), JobStatus::Queued);
            (done, half, running, waiting, queued)
        });
        // "crash": the runtime and its tasks go away without finishing anything
        drop(q);
        drop(rt);
        ids
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let q = open(&path, 4);
        assert_eq!(status(&q, done), JobStatus::Success);
        for id in [running, waiting] {
            let job = q.get(id).unwrap();
            assert_eq!(job.status, JobStatus::Error);
            assert_eq!(job.opstatus, vec![JobStatus::Error]);
            assert_eq!(job.opresult[0], json!(MASTER_STOPPED_MESSAGE));
            assert!(job.end_ts.is_some());
        }
        assert_eq!(q.get(running).unwrap().oplog[0][0].message, "working");
        let job = q.get(half).unwrap();
        assert_eq!(
            job.opstatus,
            vec![JobStatus::Success, JobStatus::Error, JobStatus::Error]
        );
        assert_eq!(job.opresult[2], json!(MASTER_STOPPED_MESSAGE));
        assert_eq!(status(&q, queued), JobStatus::Queued);
        // the queued job runs once the queue is started
        let s = Script::new();
        q.start(Arc::new(Exec(s)));
        let job = finished(&q, queued).await;
        assert_eq!(job.status, JobStatus::Success);
        assert_eq!(job.oplog[0][0].message, "after restart");
        assert!(q.locks().is_empty());
        let next = q.submit(vec![op(&[])], 0).unwrap();
        assert_eq!(next, queued + 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_run_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _s) = started(dir.path(), DEFAULT_MAX_RUNNING);
    let begin = std::time::Instant::now();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let name = format!("i{}", i % 50);
        let lock = format!("lock instance x {name}");
        ids.push(
            q.submit(
                vec![op(&[
                    "lock cluster s BGL",
                    &lock,
                    "log one",
                    "log two",
                    "log three",
                ])],
                i % 3,
            )
            .unwrap(),
        );
    }
    for id in &ids {
        let job = finished(&q, *id).await;
        assert_eq!(job.status, JobStatus::Success);
        assert_eq!(job.oplog[0].len(), 3);
    }
    // How fast is a benchmark's business (maguey-bench); a timed assertion here only made the
    // suite flaky on a loaded machine. What must hold: every lock was given back.
    eprintln!("1000 jobs in {:?}", begin.elapsed());
    assert!(q.locks().is_empty());
}

/// Parents waiting for their children lend their running slot: 20 parents on a queue of 20
/// slots, each with children, all complete (they would wait forever otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_waiting_for_children_do_not_starve_them() {
    let dir = tempfile::tempdir().unwrap();
    let (q, s) = started(dir.path(), 20);
    let parents: Vec<u64> = (0..20)
        .map(|_| {
            q.submit(vec![op(&["children 2", "mark parent"])], 0)
                .unwrap()
        })
        .collect();
    for id in &parents {
        assert_eq!(finished(&q, *id).await.status, JobStatus::Success);
    }
    let ev = s.events();
    assert_eq!(ev.iter().filter(|e| *e == "child").count(), 40);
    assert_eq!(ev.iter().filter(|e| *e == "parent").count(), 20);
    // Every slot is given back.
    until("no job counted as running", || q.running_count() == 0).await;
}
