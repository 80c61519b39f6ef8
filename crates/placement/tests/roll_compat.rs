//! `maguey plan roll` against Debian's hroller 3.0.2: the committed outputs
//! in tests/data/hroller (see cases.txt and tests/data/README.md) must be
//! reproduced byte for byte (groups, order, and with `--print-moves` the
//! moves of each group, including `--full-evacuation`).

use clap::Parser;
use maguey_placement::cli::{run, PlanCommand};
use maguey_placement::model::LoadOptions;
use maguey_placement::roll::{plan, RollOptions};
use maguey_placement::text::load_text;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: PlanCommand,
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{}", env!("CARGO_MANIFEST_DIR"), name)
}

fn roll(file: &str, args: &str) -> String {
    let path = data(file);
    let mut v = vec!["plan", "roll", "-t", path.as_str()];
    v.extend(args.split_whitespace());
    let a = Args::try_parse_from(v).expect("args");
    let mut out = Vec::new();
    match run(a.cmd, &mut out) {
        Ok(code) => {
            assert_eq!(code, 0);
            String::from_utf8(out).expect("utf8")
        }
        Err(e) => format!("Error: {e}\n"),
    }
}

#[test]
fn roll_output_equals_hroller() {
    let cases = std::fs::read_to_string(data("hroller/cases.txt")).expect("cases");
    let mut n = 0;
    let mut with_moves = 0;
    for line in cases
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 3, "{line}");
        let expected = std::fs::read_to_string(data(&format!("hroller/{}", f[2]))).expect("exp");
        let got = roll(f[0], f[1]);
        assert_eq!(got, expected, "hroller -t {} {}", f[0], f[1]);
        if f[1].contains("--full-evacuation") && expected.lines().count() > 20 {
            with_moves += 1;
        }
        n += 1;
    }
    assert!(
        n >= 10 && with_moves >= 6,
        "{n} cases, {with_moves} with evacuations"
    );
}

/// Replaying the moves of each full-evacuation group on the original
/// cluster leaves no instance (primary or secondary) on the group's nodes.
#[test]
fn full_evacuation_groups_are_emptied_by_their_moves() {
    for file in ["c20s1.data", "c60s7.data", "c80s11.data"] {
        let c = load_text(
            &std::fs::read_to_string(data(file)).expect("read"),
            &LoadOptions::default(),
        )
        .expect("load");
        let opts = RollOptions {
            full_evacuation: true,
            ..Default::default()
        };
        let groups = plan(&c, &opts).expect("plan");
        let online = c.nodes.iter().filter(|n| !n.offline).count();
        assert_eq!(groups.iter().map(|g| g.nodes.len()).sum::<usize>(), online);
        for g in &groups {
            for (i, inst) in c.instances.iter().enumerate() {
                let (p, s) = match g.moves.iter().find(|m| m.instance == i) {
                    Some(m) => (m.pnode, m.snode),
                    // not moved (or only swapped: still on the same nodes)
                    None => (inst.pnode, inst.snode),
                };
                let swapped = g.moves.iter().all(|m| m.instance != i)
                    && inst
                        .snode
                        .is_some_and(|s0| g.nodes.contains(&inst.pnode) || g.nodes.contains(&s0));
                assert!(
                    !swapped,
                    "{file}: {} stays on the group {:?}",
                    inst.name, g.nodes
                );
                assert!(
                    !g.nodes.contains(&p),
                    "{file}: {} primary in group",
                    inst.name
                );
                assert!(
                    s.is_none_or(|s| !g.nodes.contains(&s)),
                    "{file}: {} secondary in group",
                    inst.name
                );
            }
        }
    }
}
