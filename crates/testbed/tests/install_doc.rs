//! docs/install.md: every shell block is marked to run in the deploy test or skipped with a
//! reason (crates/testbed/src/install_doc.rs); prints the skipped ones.

use maguey_testbed::install_doc::{blocks, Marker, On};

#[test]
fn every_shell_block_of_the_install_guide_runs_or_is_skipped_with_a_reason() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/install.md");
    let text = std::fs::read_to_string(path).expect("docs/install.md");
    let blocks = match blocks(&text) {
        Ok(b) => b,
        Err(errors) => {
            let list: Vec<String> = errors
                .iter()
                .map(|e| format!("docs/install.md {e}"))
                .collect();
            panic!("{}", list.join("\n"));
        }
    };
    let run = |on: On| {
        blocks
            .iter()
            .filter(|b| b.marker == Marker::Run(on))
            .count()
    };
    // The guide's path: prepare every node, init on the master, join the others.
    assert!(run(On::All) >= 3, "{blocks:#?}");
    assert!(run(On::Master) >= 2);
    assert!(run(On::Nodes) >= 1);
    let init = blocks
        .iter()
        .position(|b| b.script.contains("maguey cluster init"))
        .expect("a cluster init block");
    let join = blocks
        .iter()
        .position(|b| b.script.contains("magueyd --join"))
        .expect("a join block");
    assert!(init < join);
    assert_eq!(blocks[init].marker, Marker::Run(On::Master));
    assert_eq!(blocks[join].marker, Marker::Run(On::Nodes));
    for b in &blocks {
        if let Marker::Skip { reason } = &b.marker {
            println!("skipped: docs/install.md line {}: {reason}", b.line);
        }
    }
}
