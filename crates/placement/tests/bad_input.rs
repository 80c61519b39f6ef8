//! Malformed inputs give clear errors, never panics.

use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc;
use maguey_placement::model::LoadOptions;
use maguey_placement::text::load_text;

const GOOD: &str = "g1|uuid-1|preferred||\n\nn1|65536|4096|61440|1000000|1000000|16|M|uuid-1|2||N|0|1|1.0\nn2|65536|4096|61440|1000000|1000000|16|N|uuid-1|2||N|0|1|1.0\n\ni1|1024|10368|1|running|Y|n1|n2|drbd||1|-|N\n\n\n";

fn err(txt: &str) -> String {
    match load_text(txt, &LoadOptions::default()) {
        Ok(_) => panic!("accepted bad input: {txt:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_input_loads() {
    let c = load_text(GOOD, &LoadOptions::default()).expect("load");
    assert_eq!((c.nodes.len(), c.instances.len()), (2, 1));
    assert_eq!(c.nodes[1].d.peers, vec![(0, 1024)]);
}

#[test]
fn text_errors_are_clear() {
    assert!(err("").contains("sections"));
    assert!(err("g1|uuid-1|preferred||\n\nn1|x|1|1|1|1|1|N|uuid-1\n\n\n").contains("n1"));
    assert!(err(&GOOD.replace("|n1|n2|", "|n1|n9|")).contains("unknown node 'n9'"));
    assert!(err(&GOOD.replace("|n1|n2|", "|n1|n1|")).contains("same primary and secondary"));
    assert!(
        err(&GOOD.replace("|uuid-1|2||N|0|1|1.0\nn2", "|uuid-7|2||N|0|1|1.0\nn2"))
            .contains("uuid-7")
    );
    assert!(err(&GOOD.replace("|running|", "|sleeping|")).contains("sleeping"));
    assert!(err(&GOOD.replace("|drbd|", "|floppy|")).contains("floppy"));
    assert!(err(&GOOD.replace("|Y|n1", "|maybe|n1")).contains("auto_balance"));
    assert!(err(&format!(
        "{GOOD}x|1,1,1,1,1,1|1,1,1,1,1,1;2,2,2,2,2,2|drbd|4.0|32.0\n"
    ))
    .contains("'x'"));
    assert!(err(&format!(
        "{GOOD}|1,1,1|1,1,1,1,1,1;2,2,2,2,2,2|drbd|4.0|32.0\n"
    ))
    .contains("ispec"));
    assert!(err(&format!("{GOOD}|1,1,1,1,1,1|1,1,1,1,1,1|drbd|4.0|32.0\n")).contains("odd number"));
}

#[test]
fn offline_marker_makes_node_offline() {
    let c = load_text(&GOOD.replace("n2|65536|", "n2|?|"), &LoadOptions::default()).expect("load");
    assert!(c.nodes[1].offline);
}

#[test]
fn ialloc_errors_are_clear() {
    let o = AllocOptions::default();
    assert!(ialloc::answer("[]", &o)
        .expect_err("array")
        .to_string()
        .contains("object"));
    let e = ialloc::answer(r#"{"request": {}, "nodegroups": {}, "nodes": {}, "instances": {}, "cluster_tags": [], "enabled_hypervisors": []}"#, &o)
        .expect_err("no type");
    assert!(e.to_string().contains("type"), "{e}");
    let e = ialloc::answer(
        r#"{"request": {"type": "node-evacuate", "instances": ["nope"], "evac_mode": "all"}, "nodegroups": {}, "nodes": {}, "instances": {}, "cluster_tags": [], "enabled_hypervisors": []}"#,
        &o,
    )
    .expect_err("unknown instance");
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn impossible_allocation_is_an_answer_not_an_error() {
    // an instance bigger than any node: success=false with the failure reasons
    let p = format!(
        "{}/tests/data/ialloc/c20s42.alloc-plain.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read_to_string(p).expect("read").replace(
        "\"memory\":4096,\"name\":\"new-plain-1\"",
        "\"memory\":4194304,\"name\":\"new-plain-1\"",
    );
    assert!(body.contains("4194304"));
    let out = ialloc::answer(&body, &AllocOptions::default()).expect("answer");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["success"], false);
    assert!(
        v["info"].as_str().expect("info").contains("FailMem"),
        "{out}"
    );
}
