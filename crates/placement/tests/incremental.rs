//! The incremental scorer against the from-scratch score: after sequences
//! of random moves (fixed seeds), the running statistics, the score a move
//! is predicted to have and the cluster's full two-pass score agree; and
//! the bound used to prune pair searches holds.

use maguey_placement::model::Cluster;
use maguey_placement::score::{self, node_vals, ChangeBounds, Stats};
use maguey_placement::text::load_text;
use maguey_placement::types::{IMove, MirrorType};
use maguey_placement::LoadOptions;

fn cluster(name: &str) -> Cluster {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let txt = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {p}: {e}"));
    load_text(&txt, &LoadOptions::default()).expect("load")
}

/// xorshift64*, fixed seed: the same sequence on every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

fn random_move(c: &Cluster, rng: &mut Rng) -> Option<maguey_placement::moves::MoveOutcome> {
    for _ in 0..200 {
        let i = rng.below(c.instances.len());
        let t = rng.below(c.nodes.len());
        let inst = &c.instances[i];
        let mv = match (inst.mirror_type(), rng.below(5)) {
            (MirrorType::Internal, 0) => IMove::Failover,
            (MirrorType::Internal, 1) => IMove::ReplaceSecondary(t),
            (MirrorType::Internal, 2) => IMove::ReplaceAndFailover(t),
            (MirrorType::Internal, 3) => IMove::ReplacePrimary(t),
            (MirrorType::Internal, _) => IMove::FailoverAndReplace(t),
            _ => continue,
        };
        if mv != IMove::Failover && (t == inst.pnode || Some(t) == inst.snode) {
            continue;
        }
        // soft errors ignored half of the time: N+1 failures etc. appear too
        if let Ok(out) = c.eval_move(i, mv, rng.below(2) == 0) {
            return Some(out);
        }
    }
    None
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn incremental_score_equals_full_score_after_random_moves() {
    for (file, seed) in [
        ("c20s42.data", 42u64),
        ("c60s7.data", 7),
        ("c150s3.data", 3),
        ("g30s5.data", 5),
    ] {
        let mut c = cluster(file);
        let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ seed);
        let mut stats = Stats::new(c.nodes.iter());
        assert!(
            close(stats.score(), score::score(&c.nodes)),
            "{file}: initial"
        );
        let mut applied = 0;
        for step in 0..300 {
            let Some(out) = random_move(&c, &mut rng) else {
                break;
            };
            let predicted = c.score_outcome(&stats, &out);
            c.commit_move(out, Some(&mut stats));
            applied += 1;
            let full = score::score(&c.nodes);
            assert!(
                close(predicted, full),
                "{file} step {step}: predicted {predicted}, full {full}"
            );
            assert!(
                close(stats.score(), full),
                "{file} step {step}: running {}, full {full}",
                stats.score()
            );
        }
        assert!(applied > 100, "{file}: only {applied} moves applied");
        // a fresh accumulator agrees with the one that followed the moves
        assert!(close(Stats::new(c.nodes.iter()).score(), stats.score()));
    }
}

/// `Stats::pair_bound`: the effect of changing one node on top of other
/// changes differs from its effect on the base by at most the bound.
#[test]
fn pair_bound_holds_for_random_node_pairs() {
    let mut c = cluster("c150s3.data");
    let mut rng = Rng(0x5EED);
    let mut checked = 0;
    for _ in 0..40 {
        let stats = Stats::new(c.nodes.iter());
        let base = stats.acc();
        let g0 = stats.score_changes(&base, &[]);
        // "own" change: one random move's nodes; "target" changes: another
        // move's nodes that the first does not touch
        let (Some(a), Some(b)) = (random_move(&c, &mut rng), random_move(&c, &mut rng)) else {
            continue;
        };
        let mut ap = base;
        for (n, d) in &a.nodes {
            let node = &c.nodes[*n];
            stats.acc_apply(&mut ap, &node_vals(node, &node.d), &node_vals(node, d));
        }
        let gp = stats.score_changes(&ap, &[]);
        let singles: Vec<_> = b
            .nodes
            .iter()
            .filter(|(n, _)| a.nodes.iter().all(|(m, _)| m != n))
            .map(|(n, d)| {
                let node = &c.nodes[*n];
                (node_vals(node, &node.d), node_vals(node, d))
            })
            .collect();
        let mut cb = ChangeBounds::default();
        for (o, nw) in &singles {
            cb.widen(&stats, &base, o, nw);
        }
        let bound = stats.pair_bound(&base, &ap, &cb);
        for (o, nw) in &singles {
            let on_base = stats.score_changes(&base, &[(o, nw)]) - g0;
            let on_p = stats.score_changes(&ap, &[(o, nw)]) - gp;
            assert!(
                (on_p - on_base).abs() <= bound + 1e-9,
                "interaction {} above bound {bound}",
                (on_p - on_base).abs()
            );
            checked += 1;
        }
        c.commit_move(a, None);
    }
    assert!(checked > 20, "only {checked} pairs checked");
}
