//! The watcher, pass by pass, against in-process nodes (`fake` hypervisor): instances are
//! killed "behind Maguey's back" through the node runtimes directly, never through a job.

use maguey_config::Command;
use maguey_jobs::JobStatus;
use maguey_model::{OpCode, WatcherPause};
use maguey_ops::watcher::{Event, TestClock, Watcher, WatcherOptions, MAX_TRIES, RETRY_EXPIRY};
use maguey_rpc::NodeRequest;
use maguey_test_infra::inprocess::{InProcessCluster, TestNode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn watcher(c: &InProcessCluster, clock: Arc<TestClock>) -> Watcher {
    Watcher::new(
        c.master.clone(),
        c.queue.clone(),
        clock,
        WatcherOptions {
            job_wait: Duration::from_secs(60),
            ..Default::default()
        },
    )
}

/// Stops an instance on its node without Maguey knowing (a QEMU killed by hand).
async fn kill(node: &TestNode, name: &str) {
    node.runtime
        .handle(NodeRequest::InstanceShutdown {
            name: name.into(),
            hypervisor: "fake".into(),
            timeout: 0,
        })
        .await
        .expect("stopped behind Maguey's back");
}

/// Starts an instance of the config on `node` without Maguey knowing.
async fn start_behind(c: &InProcessCluster, node: &TestNode, name: &str, memory: Option<u64>) {
    let cfg = c.config();
    let mut rt = match cfg.instance_by_name(name) {
        Some(i) => maguey_ops::instance_runtime(&cfg, i),
        None => {
            let i = cfg.instances.values().next().expect("an instance to copy");
            let mut rt = maguey_ops::instance_runtime(&cfg, i);
            rt.name = name.into();
            rt.uuid = maguey_model::new_uuid();
            rt
        }
    };
    if let Some(m) = memory {
        rt.memory = m;
    }
    node.runtime
        .handle(NodeRequest::InstanceStart { instance: rt })
        .await
        .expect("started behind Maguey's back");
}

fn restarts(events: &[Event]) -> Vec<(String, u32, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Restarted {
                instance,
                attempt,
                error,
                ..
            } => Some((instance.clone(), *attempt, error.is_none())),
            _ => None,
        })
        .collect()
}

fn status(c: &InProcessCluster, name: &str) -> Value {
    let inst = c.instance(name).expect("the instance");
    // The default source (admin) is not written in the config.
    let source = inst["admin_state_source"]
        .as_str()
        .unwrap_or("admin")
        .to_string();
    json!([inst["admin_state"], source])
}

fn set_fake_hvparam(c: &InProcessCluster, key: &str, value: Value) {
    let mut cluster = c.config().cluster.clone();
    cluster
        .hvparams
        .entry("fake".into())
        .or_default()
        .insert(key.into(), value);
    c.apply(Command::UpdateCluster { cluster })
        .expect("cluster hvparams set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_restarts_a_killed_instance_at_most_five_times_then_counters_expire() {
    let c = InProcessCluster::new(2).await;
    let clock = Arc::new(TestClock::default());
    let w = watcher(&c, clock.clone());
    c.create_instance("inst1", "file", "node2").await;
    // Nothing to do on a healthy cluster (but the periodic verify-disks).
    let r = w.run_once().await;
    assert!(restarts(&r.events).is_empty(), "{:?}", r.events);
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::VerifyDisks { .. })));

    kill(c.node("node2"), "inst1").await;
    assert!(c.node("node2").running().is_empty());
    let r = w.run_once().await;
    assert_eq!(restarts(&r.events), [("inst1".to_string(), 1, true)]);
    assert_eq!(c.node("node2").running(), ["inst1"]);
    // The job says who and why.
    let job = c
        .jobs()
        .into_iter()
        .find(|j| matches!(j.ops[0], OpCode::InstanceStartup(_)))
        .expect("a startup job");
    assert_eq!(job.submitter, "watcher");
    assert!(job
        .reason
        .starts_with("watcher: instance inst1 down by error"));
    // A pass that sees it running clears its counter.
    assert!(restarts(&w.run_once().await.events).is_empty());

    // Killed again, and now the node has no memory for it: every restart fails.
    kill(c.node("node2"), "inst1").await;
    start_behind(&c, c.node("node2"), "hog", Some(4000)).await;
    // The counters live in the state file: a new watcher (a master restart) in the middle
    // goes on counting.
    let state = tempfile::tempdir().unwrap();
    let persistent = || {
        Watcher::new(
            c.master.clone(),
            c.queue.clone(),
            clock.clone(),
            WatcherOptions {
                job_wait: Duration::from_secs(60),
                state_file: Some(state.path().join("watcher.json")),
                ..Default::default()
            },
        )
    };
    let mut w = persistent();
    for attempt in 1..=MAX_TRIES {
        if attempt == 3 {
            w = persistent();
        }
        let r = w.run_once().await;
        assert_eq!(
            restarts(&r.events),
            [("inst1".to_string(), attempt, false)],
            "{:?}",
            r.events
        );
    }
    let w = persistent();
    let jobs = c.jobs().len();
    let r = w.run_once().await;
    assert!(restarts(&r.events).is_empty());
    assert!(r.events.contains(&Event::GaveUp {
        instance: "inst1".into(),
        tries: MAX_TRIES
    }));
    assert!(r.lines().iter().any(|l| l.contains("giving up after 5")));
    // No restart job was submitted (only the verify-disks one).
    let new: Vec<_> = c.jobs().into_iter().skip(jobs).collect();
    assert!(new
        .iter()
        .all(|j| matches!(j.ops[0], OpCode::ClusterVerifyDisks(_))));

    // 8 hours after the last attempt, the counter is forgotten.
    clock.advance(RETRY_EXPIRY + 1.0);
    kill(c.node("node2"), "hog").await;
    let r = w.run_once().await;
    assert_eq!(restarts(&r.events), [("inst1".to_string(), 1, true)]);
    assert_eq!(c.node("node2").running(), ["inst1"]);
    let r = w.run_once().await;
    assert!(restarts(&r.events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_pause_is_kept_in_the_config_and_expires() {
    let c = InProcessCluster::new(1).await;
    let clock = Arc::new(TestClock::default());
    let w = watcher(&c, clock.clone());
    c.create_instance("inst1", "diskless", "node1").await;
    kill(c.node("node1"), "inst1").await;
    w.pause(None).await.expect("paused");
    let r = w.run_once().await;
    assert_eq!(r.events, [Event::Paused { until: None }]);
    assert!(c.node("node1").running().is_empty());
    // A new watcher on the same config (a master restart) is still paused.
    let w2 = watcher(&c, clock.clone());
    assert!(matches!(
        w2.pause_info(),
        Some(WatcherPause { until: None, .. })
    ));
    w2.resume().await.expect("continued");
    assert_eq!(c.config().cluster.watcher_pause, None);
    // A timed pause ends by itself.
    let p = w2
        .pause(Some(Duration::from_secs(600)))
        .await
        .expect("paused");
    assert!(p.until.is_some());
    assert!(matches!(
        w2.run_once().await.events[..],
        [Event::Paused { .. }]
    ));
    clock.advance(601.0);
    assert_eq!(w2.pause_info(), None);
    let r = w2.run_once().await;
    assert_eq!(restarts(&r.events), [("inst1".to_string(), 1, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_user_shutdown_marks_stopped_by_the_user_else_restarts() {
    let c = InProcessCluster::new(1).await;
    let w = watcher(&c, Arc::new(TestClock::default()));
    c.create_instance("inst1", "diskless", "node1").await;
    let power_off = |c: &InProcessCluster| {
        let path = c.node("node1").dir.join("run/fake/inst1.json");
        let mut rf: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        rf["guest_shutdown"] = json!(true);
        std::fs::write(&path, serde_json::to_vec(&rf).unwrap()).unwrap();
    };
    // user_shutdown off (Ganeti's default): a guest's power-off is a failure to repair.
    power_off(&c);
    let r = w.run_once().await;
    assert_eq!(restarts(&r.events), [("inst1".to_string(), 1, true)]);
    assert_eq!(
        c.node("node1").run_file("inst1").unwrap()["guest_shutdown"],
        Value::Null
    );
    // user_shutdown on: the guest's decision stands.
    set_fake_hvparam(&c, "user_shutdown", json!(true));
    power_off(&c);
    let r = w.run_once().await;
    assert!(restarts(&r.events).is_empty(), "{:?}", r.events);
    assert!(
        r.events.iter().any(
            |e| matches!(e, Event::UserDown { instance, error: None, .. } if instance == "inst1")
        ),
        "{:?}",
        r.events
    );
    assert_eq!(status(&c, "inst1"), json!(["down", "user"]));
    assert!(c.node("node1").running().is_empty());
    let q = maguey_ops::query::query(
        &c.master,
        &maguey_ops::query::QueryRequest {
            what: maguey_ops::query::Resource::Instance,
            names: vec!["inst1".into()],
            fields: vec!["status".into()],
        },
    )
    .await
    .unwrap();
    assert_eq!(q.rows[0][0], json!("USER_down"));
    // It stays down; a start by the admin makes the admin the source again.
    assert!(restarts(&w.run_once().await.events).is_empty());
    c.run(json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "inst1"}))
        .await
        .ok();
    assert_eq!(status(&c, "inst1"), json!(["up", "admin"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_leaves_alone_down_nodes_and_never_starts_on_a_wrong_node() {
    let c = InProcessCluster::new(3).await;
    let w = watcher(&c, Arc::new(TestClock::default()));
    c.create_instance("inst1", "diskless", "node2").await;
    c.create_instance("inst2", "diskless", "node3").await;
    // node2 unreachable: its instance is left alone.
    c.transport.set_reachable(&c.node("node2").addr, false);
    let r = w.run_once().await;
    assert!(r.events.contains(&Event::NodeDown {
        instance: "inst1".into(),
        node: "node2".into(),
        status: "ERROR_nodedown".into()
    }));
    assert!(restarts(&r.events).is_empty());
    c.transport.set_reachable(&c.node("node2").addr, true);
    // node3 offline (its instance was killed): left alone, no job.
    kill(c.node("node3"), "inst2").await;
    let cfg = c.config();
    let mut n3 = cfg.node_by_name("node3").unwrap().clone();
    n3.offline = true;
    n3.master_candidate = false;
    c.apply(Command::UpdateNode { node: n3 }).unwrap();
    // inst1 runs on node1 instead of its primary node2.
    kill(c.node("node2"), "inst1").await;
    start_behind(&c, c.node("node1"), "inst1", None).await;
    let r = w.run_once().await;
    assert!(restarts(&r.events).is_empty(), "{:?}", r.events);
    assert!(r.events.contains(&Event::NodeDown {
        instance: "inst2".into(),
        node: "node3".into(),
        status: "ERROR_nodeoffline".into()
    }));
    assert!(r.events.contains(&Event::WrongNode {
        instance: "inst1".into(),
        primary: "node2".into(),
        running_on: vec!["node1".into()]
    }));
    assert!(r.lines().iter().any(|l| l.contains("ERROR_wrongnode")));
    assert!(c.node("node2").running().is_empty());
    assert!(c.node("node3").running().is_empty());
    assert!(!c
        .jobs()
        .iter()
        .any(|j| j.submitter == "watcher" && !matches!(j.ops[0], OpCode::ClusterVerifyDisks(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_skips_an_instance_a_job_holds() {
    let c = InProcessCluster::new(2).await;
    let w = watcher(&c, Arc::new(TestClock::default()));
    c.create_instance("inst1", "diskless", "node2").await;
    kill(c.node("node2"), "inst1").await;
    // A job holds node2 for a while; a startup of inst1 takes its instance lock, then waits.
    let op = |v: Value| serde_json::from_value::<OpCode>(v).unwrap();
    let delay = c
        .queue
        .submit(
            vec![op(json!({"OP_ID": "OP_TEST_DELAY", "duration": 10.0,
                            "on_master": false, "on_nodes": ["node2"]}))],
            0,
        )
        .unwrap();
    // The startup is submitted only once the delay owns node2's lock: submitted together, the
    // scheduler may run either first.
    for _ in 0..400 {
        if c.queue
            .locks()
            .iter()
            .any(|l| l.name == "node2" && l.owners.contains(&delay))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = c
        .queue
        .submit(
            vec![op(
                json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "inst1"}),
            )],
            0,
        )
        .unwrap();
    // Held for 10 s: on a loaded machine the startup may take seconds to get that far.
    for _ in 0..400 {
        if c.queue.get(start).unwrap().status == JobStatus::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.queue.get(start).unwrap().status, JobStatus::Waiting);
    let r = w.run_once().await;
    assert!(r.events.contains(&Event::Locked {
        instance: "inst1".into()
    }));
    assert!(restarts(&r.events).is_empty());
    assert_eq!(c.wait(delay).await.status, JobStatus::Success);
    assert_eq!(c.wait(start).await.status, JobStatus::Success);
    assert_eq!(c.node("node2").running(), ["inst1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_notices_reboots_and_archives_old_jobs() {
    let c = InProcessCluster::new(2).await;
    let w = Watcher::new(
        c.master.clone(),
        c.queue.clone(),
        Arc::new(TestClock::default()),
        WatcherOptions {
            job_age: Duration::ZERO,
            ..Default::default()
        },
    );
    c.create_instance("inst1", "file", "node2").await;
    let before = c.queue.list(false).len();
    assert!(before > 0);
    let node2 = c.config().node_by_name("node2").unwrap().uuid.clone();
    let r = w.run_once().await;
    assert!(r.events.contains(&Event::Archived { jobs: before }));
    assert!(!r.events.iter().any(|e| matches!(e, Event::Rebooted { .. })));
    // A boot id that differs from the last one seen: node2 rebooted.
    w.set_known_boot_id(&node2, "an-older-boot").await;
    let r = w.run_once().await;
    assert!(r.events.contains(&Event::Rebooted {
        node: "node2".into()
    }));
    // A file instance has no secondary to re-activate.
    assert!(!r
        .events
        .iter()
        .any(|e| matches!(e, Event::DisksActivated { .. })));
    assert!(!w
        .run_once()
        .await
        .events
        .iter()
        .any(|e| matches!(e, Event::Rebooted { .. })));
}
