//! A seeded nemesis in process: random cuts, heals, kills and restarts of the three voters
//! while a client writes uniquely named groups through whichever replica leads. At the end every
//! acknowledged write is present, nothing that was never proposed appears, every replica holds
//! the same config, and each write applied once (the serial counts them).
//! `MAGUEY_NEMESIS_SEED` replays a run; `MAGUEY_NEMESIS_ROUNDS` makes it longer.

mod common;

use common::*;
use maguey_replication::{ReplicaOptions, Role};
use std::collections::BTreeSet;
use std::time::Duration;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The groups a replica has applied (the default group aside).
fn applied(r: &maguey_replication::Replica) -> BTreeSet<String> {
    groups(r).into_iter().filter(|g| g != "default").collect()
}

/// The checker: no acknowledged write lost, none invented, each applied once.
fn check(
    acked: &BTreeSet<String>,
    proposed: &BTreeSet<String>,
    present: &BTreeSet<String>,
    serial_no: u64,
) -> Result<(), String> {
    let lost: Vec<&String> = acked.difference(present).collect();
    if !lost.is_empty() {
        return Err(format!("acknowledged writes lost: {lost:?}"));
    }
    let invented: Vec<&String> = present.difference(proposed).collect();
    if !invented.is_empty() {
        return Err(format!("never proposed: {invented:?}"));
    }
    if serial_no != 1 + present.len() as u64 {
        return Err(format!(
            "serial {serial_no} after {} writes: not each applied once",
            present.len()
        ));
    }
    Ok(())
}

/// With writes acknowledged before they commit, a cut-off leader's acknowledged write is lost
/// on heal, and the checker says so.
#[cfg(feature = "unsafe-ack-before-commit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_writes_acknowledged_before_commit() {
    let c = Replicas::start(3).await;
    // The feature acknowledges early only where this file is beside the store.
    std::fs::write(c.dir.path().join("unsafe-ack-before-commit"), "").unwrap();
    let old = c.leader().await;
    c.get(old).apply(init()).await.unwrap();
    eventually("the init to apply everywhere", || async {
        (1..=3)
            .all(|id| c.get(id).config().serial_no == 1)
            .then_some(())
    })
    .await;
    c.router.cut(old);
    c.get(old).apply(add_group(1)).await.unwrap();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = c.leader_of(&rest).await;
    c.get(new).apply(add_group(2)).await.unwrap();
    eventually("group2 to commit", || async {
        applied(c.get(new)).contains("group2").then_some(())
    })
    .await;
    c.router.heal(old);
    c.converge(&[1, 2, 3], new).await;
    let acked: BTreeSet<String> = ["group1".to_string(), "group2".to_string()].into();
    let present = applied(c.get(new));
    let serial = c.get(new).config().serial_no;
    let err = check(&acked, &acked, &present, serial).unwrap_err();
    assert_eq!(err, r#"acknowledged writes lost: ["group1"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_random_faults() {
    let seed = env_u64("MAGUEY_NEMESIS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    let rounds = env_u64("MAGUEY_NEMESIS_ROUNDS").unwrap_or(8);
    println!("nemesis seed {seed}, {rounds} rounds (MAGUEY_NEMESIS_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let mut c = Replicas::start_with(
        3,
        ReplicaOptions {
            write_timeout: Duration::from_millis(1500),
            ..options()
        },
    )
    .await;
    let leader = c.leader().await;
    c.get(leader).apply(init()).await.unwrap();

    let mut acked = BTreeSet::new();
    let mut proposed = BTreeSet::new();
    let mut dead: Vec<u64> = Vec::new();
    let mut cut: BTreeSet<u64> = BTreeSet::new();
    let mut next = 1u32;
    for round in 0..rounds {
        let node = rng.below(3) + 1;
        match rng.below(4) {
            0 if !dead.contains(&node) && cut.is_empty() => {
                c.router.cut(node);
                cut.insert(node);
            }
            1 if dead.is_empty() && !cut.contains(&node) => {
                c.kill(node).await;
                dead.push(node);
            }
            2 => {
                for n in std::mem::take(&mut cut) {
                    c.router.heal(n);
                }
            }
            _ => {
                if let Some(n) = dead.pop() {
                    c.reopen(n).await;
                }
            }
        }
        println!("round {round}: dead {dead:?}, cut {cut:?}");
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        for _ in 0..2 {
            let live: Vec<u64> = c.replicas.keys().copied().collect();
            let target = live
                .iter()
                .copied()
                .find(|id| c.get(*id).status().role == Role::Leader)
                .unwrap_or(live[rng.below(live.len() as u64) as usize]);
            let n = next;
            next += 1;
            proposed.insert(format!("group{n}"));
            if c.get(target).apply(add_group(n)).await.is_ok() {
                acked.insert(format!("group{n}"));
            }
        }
    }

    for n in cut {
        c.router.heal(n);
    }
    for n in dead {
        c.reopen(n).await;
    }
    let leader = c.leader().await;
    // A last write through the leader: every replica has applied everything before it.
    let n = next;
    c.get(leader).apply(add_group(n)).await.unwrap();
    acked.insert(format!("group{n}"));
    proposed.insert(format!("group{n}"));
    c.converge(&[1, 2, 3], leader).await;

    let present = applied(c.get(leader));
    if let Err(e) = check(
        &acked,
        &proposed,
        &present,
        c.get(leader).config().serial_no,
    ) {
        panic!("seed {seed}: {e}");
    }
    println!(
        "nemesis seed {seed}: {} proposed, {} acknowledged, {} applied",
        proposed.len(),
        acked.len(),
        present.len()
    );
}
