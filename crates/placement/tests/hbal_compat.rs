//! Compare with values produced by Debian's ganeti-htools 3.0.2 (see
//! tests/data/README.md).

use maguey_placement::balance::{balance, BalanceOptions, SearchMode};
use maguey_placement::score;
use maguey_placement::text::load_text;
use maguey_placement::LoadOptions;

fn data(name: &str) -> String {
    let p = format!("{}/tests/data/{}", env!("CARGO_MANIFEST_DIR"), name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {p}: {e}"))
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    ((a - b) / b.abs().max(1e-12)).abs() <= tol
}

#[test]
fn initial_scores_match_hbal() {
    let exp = data("expected_scores.txt");
    let mut n = 0;
    for line in exp.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (file, group, want): (&str, &str, f64) = (f[0], f[1], f[2].parse().expect("number"));
        let c = load_text(&data(file), &LoadOptions::default()).expect("load");
        let g = c.group_by_name(group).expect("group");
        let got = score::score_nodes(c.nodes.iter().filter(|n| n.group == g)).total;
        // hbal prints 8 decimals
        assert!(
            rel_close(got, want, 1e-6) && (got - want).abs() < 1e-7,
            "{file} {group}: got {got}, hbal {want}"
        );
        n += 1;
    }
    assert_eq!(n, 7);
}

#[test]
fn exact_balancer_follows_hbal_path() {
    let exp = data("expected_hbal_moves.txt");
    let paths = data("expected_hbal_paths.txt");
    for line in exp.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (file, len, want): (&str, usize, f64) = (
            f[0],
            f[1].parse().expect("len"),
            f[2].parse().expect("score"),
        );
        let c = load_text(&data(file), &LoadOptions::default()).expect("load");
        let opts = BalanceOptions {
            max_moves: Some(len),
            mode: SearchMode::Exact,
            ..Default::default()
        };
        let r = balance(&c, &opts);
        let expected: Vec<Vec<&str>> = paths
            .lines()
            .filter(|l| l.starts_with(&format!("{file} ")))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(r.moves.len(), expected.len(), "{file}: number of moves");
        for (m, e) in r.moves.iter().zip(expected.iter()) {
            let inst = &r.cluster.instances[m.instance].name;
            let nodes = match m.new_s {
                Some(s) => format!(
                    "{}:{}",
                    r.cluster.nodes[m.new_p].name, r.cluster.nodes[s].name
                ),
                None => r.cluster.nodes[m.new_p].name.clone(),
            };
            assert_eq!(
                (inst.as_str(), nodes.as_str()),
                (e[1], e[2]),
                "{file}: move differs"
            );
            let ws: f64 = e[3].parse().expect("score");
            assert!(
                (m.score - ws).abs() < 1e-7,
                "{file}: step score {} vs {}",
                m.score,
                ws
            );
        }
        assert!(
            (r.final_score - want).abs() < 1e-7,
            "{file}: final {} vs hbal {}",
            r.final_score,
            want
        );
    }
}

#[test]
fn written_state_rescores_like_hbal() {
    // `maguey-plan balance -t c20s42.data -l 10 -S out.data`; `hbal -t out.data -l 0`
    // printed "Initial score: 13.33428151" (and hail accepted out.data with -t).
    let c = load_text(&data("c20s42.data"), &LoadOptions::default()).expect("load");
    let r = balance(
        &c,
        &BalanceOptions {
            max_moves: Some(10),
            mode: SearchMode::Exact,
            ..Default::default()
        },
    );
    let txt = maguey_placement::text::write_text(&r.cluster);
    let again = load_text(&txt, &LoadOptions::default()).expect("reload");
    let s = score::score(&again.nodes);
    assert!((s - 13.33428151).abs() < 1e-7, "{s}");
    assert_eq!(
        txt.lines().filter(|l| l.is_empty()).count(),
        4,
        "five sections"
    );
}
