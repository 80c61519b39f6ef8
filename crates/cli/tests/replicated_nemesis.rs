//! The nemesis over real daemons (docs/replication.md, "Nemesis"; the driver and checker are
//! `maguey_test_infra::nemesis`): three master candidates, random kills and restarts (and link
//! cuts) while clients create uniquely named diskless instances through random nodes. Every
//! acknowledged creation must be on every replica, nothing never asked for may appear, no
//! creation may succeed twice, and all replicas must end at one serial with one config.
//!
//! The seed is printed; `MAGUEY_NEMESIS_SEED` replays a run and `MAGUEY_NEMESIS_ROUNDS`
//! lengthens it (`maguey-replication-bench --nemesis ROUNDS` is the long run). A `magueyd`
//! built with `--features maguey-replication/unsafe-ack-before-commit` makes the checker fail
//! (the manual check in docs/replication.md).

mod common;
use common::*;
use maguey_test_infra::nemesis;
use std::time::Duration;

#[test]
fn acknowledged_creations_survive_kills_and_cuts_of_candidates() {
    let seed = nemesis::seed_from_env();
    eprintln!("nemesis seed {seed} (MAGUEY_NEMESIS_SEED={seed} replays it)");
    let rounds = std::env::var("MAGUEY_NEMESIS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let lab = TestLab::up_with(maguey_bin(), 3, &["--replicated"]);
    let log =
        |i: usize| std::fs::read_to_string(lab.node_dir(i).join("magueyd.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let l = log(1);
            l.contains("node2 is a voter") && l.contains("node3 is a voter")
        }),
        "the candidates did not become voters\n{}",
        lab.logs()
    );
    let report = nemesis::run(
        &lab,
        &nemesis::Options {
            seed,
            rounds,
            clients: 2,
            writes_per_round: 3,
            cuts: true,
        },
    );
    eprintln!(
        "nemesis seed {seed}: {rounds} rounds ({}), {} creations asked, {} acknowledged, {} \
         present, serial {}, {:.1} s",
        report.faults.join(", "),
        report.proposed,
        report.acknowledged,
        report.present,
        report.serial,
        report.elapsed.as_secs_f64()
    );
    assert!(
        report.anomalies.is_empty(),
        "seed {seed}: {:#?}\n{}",
        report.anomalies,
        lab.logs()
    );
    // The run checked something: at least the creation after the repairs was acknowledged.
    assert!(report.acknowledged > 0, "seed {seed}: nothing acknowledged");
}
