//! Group commit (`batch.rs`): concurrent writes share entries, yet each is answered alone
//! (its own serial, or its own refusal), applied once and in one order on every replica, and
//! a replica that restarts replays the batched commands from its store.

mod common;

use common::*;
use maguey_replication::ReplicationError;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_are_answered_each() {
    let mut c = Replicas::start(3).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    let before = c.get(leader).status().last_log_index.unwrap_or(0);
    // 30 groups, each asked twice at once (one of each pair is refused), and job records.
    let mut tasks = Vec::new();
    for n in 1..=30u32 {
        for _ in 0..2 {
            let r = c.get(leader).clone();
            tasks.push(tokio::spawn(async move { r.apply(add_group(n)).await }));
        }
    }
    let mut jobs = Vec::new();
    for id in 1..=10u64 {
        let r = c.get(leader).clone();
        jobs.push(tokio::spawn(async move {
            r.put_jobs(vec![(id, serde_json::json!({ "id": id }), id % 2 == 0)])
                .await
        }));
    }
    let mut serials = BTreeSet::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(serial) => assert!(serials.insert(serial), "serial {serial} given twice"),
            Err(ReplicationError::Config(_)) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    for j in jobs {
        j.await.unwrap().unwrap();
    }
    assert_eq!(refused, 30, "one of each pair is refused");
    assert_eq!(
        serials,
        (2..=31).collect::<BTreeSet<u64>>(),
        "one serial each"
    );
    let entries = c.get(leader).status().last_log_index.unwrap_or(0) - before;
    eprintln!("40 writes (30 applied) in {entries} log entries");
    c.converge(&[1, 2, 3], leader).await;
    for id in 1..=3 {
        assert_eq!(c.get(id).config().serial_no, 31, "replica {id}");
        assert_eq!(groups(c.get(id)).len(), 31, "replica {id}");
        for job in 1..=10u64 {
            let (record, archived) = c.get(id).job(job).unwrap().expect("the job record");
            assert_eq!(record["id"], job);
            assert_eq!(archived, job % 2 == 0, "job {job} on replica {id}");
        }
    }
    // A follower restarts from its store (batched commands replayed) and stays identical.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.kill(follower).await;
    c.reopen(follower).await;
    c.get(leader).apply(add_group(31)).await.unwrap();
    c.converge(&[1, 2, 3], leader).await;
    assert_eq!(c.get(follower).config().serial_no, 32);
}
