//! Three voters in one process (LocalRouter): election, replication, a dead leader, a cut-off
//! leader, no quorum.

mod common;

use common::*;
use maguey_replication::{ReplicationError, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_elect_a_leader_and_apply_everywhere() {
    let c = Replicas::start(3).await;
    let leader = c.leader().await;
    let l = c.get(leader);
    l.apply(init()).await.unwrap();
    let mut serial = 0;
    for n in 1..=5 {
        serial = l.apply(add_group(n)).await.unwrap();
    }
    assert_eq!(serial, 6, "init and five groups");
    c.converge(&[1, 2, 3], leader).await;
    for id in 1..=3 {
        assert_eq!(
            groups(c.get(id)),
            ["default", "group1", "group2", "group3", "group4", "group5"],
            "replica {id}"
        );
        assert_eq!(c.get(id).config().serial_no, 6);
    }
    // The same deterministic apply as the single-master store: the same mtimes everywhere.
    assert_eq!(c.get(1).config().mtime, c.get(3).config().mtime);
    // A linearizable read on the leader sees every acknowledged write.
    assert_eq!(l.read_config().await.unwrap().serial_no, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_off_the_leader_name_it_and_bad_commands_change_nothing() {
    let c = Replicas::start(3).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let err = c.get(follower).apply(add_group(1)).await.unwrap_err();
    match &err {
        ReplicationError::NotLeader {
            leader: Some((id, m)),
        } => {
            assert_eq!(*id, leader);
            assert_eq!(m.name, format!("node{leader}"));
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("the master is node {leader}")),
        "{err}"
    );
    // Reads through any replica see every acknowledged write (read-index from the leader).
    assert_eq!(c.get(follower).read_config().await.unwrap().serial_no, 1);
    // A command that does not validate is refused before it is logged.
    let err = c.get(leader).apply(add_group(0)).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Config(_)), "{err:?}");
    c.get(leader).apply(add_group(1)).await.unwrap();
    c.converge(&[1, 2, 3], leader).await;
    assert_eq!(c.get(follower).config().serial_no, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_leader_is_replaced_and_no_acknowledged_write_is_lost() {
    let mut c = Replicas::start(3).await;
    let old = c.leader().await;
    c.get(old).apply(init()).await.unwrap();
    for n in 1..=10 {
        c.get(old).apply(add_group(n)).await.unwrap();
    }
    c.kill(old).await;
    let rest: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = c.leader_of(&rest).await;
    assert_ne!(new, old);
    let names = groups(c.get(new));
    for n in 1..=10 {
        assert!(
            names.contains(&format!("group{n}")),
            "group{n} lost: {names:?}"
        );
    }
    // The new leader takes writes; the surviving follower gets them.
    c.get(new).apply(add_group(11)).await.unwrap();
    c.converge(&rest, new).await;
    assert_eq!(c.get(rest[0]).config().serial_no, 12);

    // The old leader comes back from its store and catches up as a follower.
    c.reopen(old).await;
    c.converge(&[1, 2, 3], new).await;
    assert_eq!(c.get(old).status().role, Role::Follower);
    assert_eq!(c.get(old).config().serial_no, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_leader_commits_nothing_and_its_entries_vanish_on_heal() {
    let c = Replicas::start(3).await;
    let old = c.leader().await;
    c.get(old).apply(init()).await.unwrap();
    c.get(old).apply(add_group(1)).await.unwrap();
    c.converge(&[1, 2, 3], old).await;
    let committed = c.get(old).status().last_log_index;

    c.router.cut(old);
    // Proposed at once, while the old leader still believes in its followers: never committed.
    let err = c.get(old).apply(add_group(2)).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::NoQuorum { .. }),
        "expected NoQuorum, got {err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("no quorum: this node sees 1 of 3 voters"),
        "{err}"
    );
    assert!(!groups(c.get(old)).contains(&"group2".to_string()));
    assert!(
        c.get(old).status().last_log_index > committed,
        "the refused write was appended to the old leader's log"
    );

    let rest: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = c.leader_of(&rest).await;
    assert_ne!(new, old);
    c.get(new).apply(add_group(3)).await.unwrap();
    assert!(!groups(c.get(new)).contains(&"group2".to_string()));

    c.router.heal(old);
    c.converge(&[1, 2, 3], new).await;
    for id in 1..=3 {
        assert_eq!(
            groups(c.get(id)),
            ["default", "group1", "group3"],
            "replica {id}"
        );
    }
    assert_eq!(c.leader().await, new, "the old leader follows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_a_write_is_refused_naming_the_voters_seen() {
    let mut c = Replicas::start(3).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &others {
        c.kill(*id).await;
    }
    // Once the followers have been silent for an election timeout, the leader refuses at
    // once, without proposing anything.
    let err = eventually("a refusal without proposal", || async {
        match c.get(leader).apply(add_group(1)).await {
            Err(
                e @ ReplicationError::NoQuorum {
                    unacknowledged: false,
                    ..
                },
            ) => Some(e),
            Err(ReplicationError::NoQuorum { .. }) => None,
            other => panic!("expected NoQuorum, got {other:?}"),
        }
    })
    .await;
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "no quorum: this node sees 1 of 3 voters (node{leader}); missing: node{}, node{}; config changes need 2",
            others[0], others[1]
        )
    );
    assert_eq!(c.get(leader).config().serial_no, 1, "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_follower_catches_up_from_a_snapshot_and_restarts_from_its_store() {
    let mut c = Replicas::start_with(
        3,
        maguey_replication::ReplicaOptions {
            snapshot_every: 6,
            ..options()
        },
    )
    .await;
    let leader = c.leader().await;
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    c.get(leader).apply(init()).await.unwrap();
    c.converge(&[1, 2, 3], leader).await;
    let was = c.get(behind).status().last_log_index;
    c.router.cut(behind);
    for n in 1..=30 {
        c.get(leader).apply(add_group(n)).await.unwrap();
    }
    eventually(
        "the leader to purge what the cut follower lacks",
        || async { (c.get(leader).status().purged_index > was.map(|i| i + 1)).then_some(()) },
    )
    .await;
    c.router.heal(behind);
    c.converge(&[1, 2, 3], leader).await;
    assert_eq!(groups(c.get(behind)).len(), 31);
    assert!(
        c.get(behind).status().snapshot_index.is_some(),
        "the follower holds a snapshot"
    );

    // Restarted, every replica rebuilds the same config from its store (base + recorded
    // commands after it).
    let want = c.get(leader).export_json().unwrap();
    for id in 1..=3 {
        c.kill(id).await;
        let r = c.reopen(id).await;
        assert_eq!(r.export_json().unwrap(), want, "replica {id} after restart");
    }
    let leader = c.leader().await;
    c.get(leader).apply(add_group(31)).await.unwrap();
    c.converge(&[1, 2, 3], leader).await;
}

fn record(id: u64, status: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "status": status, "log": [format!("job {id} {status}")]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_transitions_are_replicated_archived_and_carried_by_snapshots() {
    let mut c = Replicas::start_with(
        3,
        maguey_replication::ReplicaOptions {
            snapshot_every: 6,
            ..options()
        },
    )
    .await;
    let leader = c.leader().await;
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    c.get(leader).apply(init()).await.unwrap();
    c.converge(&[1, 2, 3], leader).await;
    let was = c.get(behind).status().last_log_index;
    c.router.cut(behind);
    for id in 1..=12 {
        c.get(leader)
            .put_job(id, record(id, "queued"))
            .await
            .unwrap();
        c.get(leader)
            .put_job(id, record(id, "success"))
            .await
            .unwrap();
    }
    for id in 1..=4 {
        c.get(leader).archive_job(id).await.unwrap();
    }
    let err = c.get(leader).archive_job(99).await.unwrap_err();
    assert_eq!(err.to_string(), "refused: no job 99 in the queue");
    eventually(
        "the leader to purge what the cut follower lacks",
        || async { (c.get(leader).status().purged_index > was.map(|i| i + 1)).then_some(()) },
    )
    .await;

    c.router.heal(behind);
    let check = |r: &maguey_replication::Replica| {
        (1..=12).all(|id| r.job(id).unwrap() == Some((record(id, "success"), id <= 4)))
            && r.job(13).unwrap().is_none()
    };
    eventually("the jobs to reach the cut follower", || async {
        check(c.get(behind)).then_some(())
    })
    .await;
    c.kill(behind).await;
    let r = c.reopen(behind).await;
    assert!(check(&r), "the job records survive a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_left_alone_refuses_writes_naming_what_it_sees() {
    let mut c = Replicas::start(3).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    let alone = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != alone).unwrap();
    c.converge(&[1, 2, 3], leader).await;
    c.kill(leader).await;
    c.kill(other).await;
    // Once it no longer knows a leader, it answers with the voters it sees.
    let err = eventually("a refusal without a leader", || async {
        match c.get(alone).apply(add_group(1)).await {
            Err(e @ ReplicationError::NoQuorum { .. }) => Some(e),
            Err(ReplicationError::NotLeader { .. }) => None,
            other => panic!("expected NoQuorum, got {other:?}"),
        }
    })
    .await;
    let (a, b) = (leader.min(other), leader.max(other));
    assert_eq!(
        err.to_string(),
        format!(
            "no quorum: this node sees 1 of 3 voters (node{alone}); missing: node{a}, node{b}; config changes need 2"
        )
    );
    assert_eq!(c.get(alone).config().serial_no, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_voter_leaves_the_quorum_count() {
    let mut c = Replicas::start(3).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    let gone = (1..=3).find(|id| *id != leader).unwrap();
    let err = c.get(leader).remove_voter(7).await.unwrap_err();
    assert_eq!(err.to_string(), "refused: node 7 is not a voter");
    c.get(leader).remove_voter(gone).await.unwrap();
    let voters: Vec<u64> = c.get(leader).status().voters.into_keys().collect();
    assert_eq!(voters, (1..=3).filter(|id| *id != gone).collect::<Vec<_>>());
    // Two voters left: the removed node's death does not matter, a write still commits.
    c.kill(gone).await;
    c.get(leader).apply(add_group(1)).await.unwrap();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != gone).collect();
    c.converge(&rest, leader).await;
    let err = c.get(leader).apply(add_group(0)).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Config(_)), "{err:?}");
    let other = rest.iter().copied().find(|id| *id != leader).unwrap();
    c.kill(other).await;
    let err = eventually("a refusal with one of two voters", || async {
        match c.get(leader).apply(add_group(2)).await {
            Err(
                e @ ReplicationError::NoQuorum {
                    unacknowledged: false,
                    ..
                },
            ) => Some(e),
            Err(ReplicationError::NoQuorum { .. }) => None,
            other => panic!("expected NoQuorum, got {other:?}"),
        }
    })
    .await;
    assert!(
        err.to_string()
            .starts_with("no quorum: this node sees 1 of 2 voters"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_reads_its_writes_or_refuses_never_stale() {
    let c = Replicas::start(3).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    for n in 1..=5 {
        let serial = c.get(leader).apply(add_group(n)).await.unwrap();
        // Read your own write through another node, at once.
        let read = c.get(follower).read_config().await.unwrap();
        assert!(
            read.serial_no >= serial,
            "read {} after write {serial}",
            read.serial_no
        );
        assert!(read
            .nodegroups
            .values()
            .any(|g| g.name == format!("group{n}")));
    }
    c.router.cut(follower);
    c.get(leader).apply(add_group(6)).await.unwrap();
    let err = c.get(follower).read_config().await.unwrap_err();
    assert!(matches!(err, ReplicationError::NoQuorum { .. }), "{err:?}");
    assert!(
        !groups(c.get(follower)).contains(&"group6".to_string()),
        "stale, as config() says"
    );
    c.router.heal(follower);
    let read = eventually("the follower to read again", || async {
        c.get(follower).read_config().await.ok()
    })
    .await;
    assert!(read.nodegroups.values().any(|g| g.name == "group6"));
}
