//! `force_single` (docs/replication.md, "Two-node clusters"): a voter of a two-voter group
//! left alone goes on as the only voter in a new epoch, with everything its log held; the
//! other one, when it comes back, commits nothing of its own and is brought back by being
//! added again.

mod common;
use common::*;
use maguey_replication::{ReplicationError, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_voter_goes_on_in_a_new_epoch_and_the_other_is_added_again() {
    let mut c = Replicas::start(2).await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();
    for n in 1..=5 {
        c.get(leader).apply(add_group(n)).await.unwrap();
    }
    c.converge(&[1, 2], leader).await;
    let survivor = if leader == 1 { 2 } else { 1 };
    let lost = leader;
    let old_term = c.get(survivor).status().term;
    // Cut off: the survivor refuses writes, naming the voters.
    c.router.cut(lost);
    let err = eventually("no quorum", || async {
        match c.get(survivor).read_config().await {
            Err(e @ ReplicationError::NoQuorum { .. }) => Some(e),
            _ => None,
        }
    })
    .await;
    assert!(err.to_string().contains("of 2 voters"), "{err}");

    let (term, fresh) = c
        .get(survivor)
        .force_single(member(survivor))
        .await
        .unwrap();
    assert!(term > old_term, "{term} <= {old_term}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        term + 5 >= now,
        "the epoch is the Unix time: {term} vs {now}"
    );
    c.router.add(fresh.clone());
    c.replicas.insert(survivor, fresh.clone());
    eventually("the survivor to lead alone", || async {
        let st = fresh.status();
        (st.role == Role::Leader && st.voters.len() == 1).then_some(())
    })
    .await;
    // Everything it had is there, and it commits alone.
    assert_eq!(groups(&fresh).len(), 6);
    fresh.apply(add_group(6)).await.unwrap();
    assert_eq!(groups(&fresh).len(), 7);

    // The other comes back: it cannot commit (it is no member of the new group), and once
    // added again it follows the new epoch.
    c.router.heal(lost);
    let err = c.get(lost).apply(add_group(9)).await.unwrap_err();
    assert!(!matches!(err, ReplicationError::Config(_)), "{err:?}");
    // (Here nothing fences its messages as the daemon's `/raft` route does, refusing a node
    // that is no candidate: its campaigns may unseat the survivor for a moment.)
    eventually("the lost voter to be added again", || async {
        let added = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            fresh.add_voter(lost, member(lost)),
        )
        .await;
        matches!(added, Ok(Ok(()))).then_some(())
    })
    .await;
    c.converge(&[1, 2], survivor).await;
    assert!(!groups(c.get(lost)).contains(&"group9".to_string()));
    assert_eq!(c.get(lost).status().voters.len(), 2);
    let leader = c.leader().await;
    c.get(leader).apply(add_group(7)).await.unwrap();
    c.converge(&[1, 2], leader).await;
}
