//! Group allocation policy, offline/drained nodes and restrict-to-nodes in
//! allocation requests (variants of a committed hail request).

use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc;
use serde_json::Value;

fn request() -> Value {
    let p = format!(
        "{}/tests/data/ialloc/g20.alloc-drbd.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

fn answer(v: &Value) -> Value {
    serde_json::from_str(&ialloc::answer(&v.to_string(), &AllocOptions::default()).expect("answer"))
        .expect("json")
}

fn set_policy(v: &mut Value, group: &str, pol: &str) {
    if let Some(groups) = v["nodegroups"].as_object_mut() {
        for g in groups.values_mut() {
            if g["name"] == group {
                g["alloc_policy"] = Value::from(pol);
            }
        }
    }
}

fn nodes(a: &Value) -> Vec<String> {
    a["result"]
        .as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_str().expect("str").to_string())
        .collect()
}

#[test]
fn preferred_group_wins_over_better_scored_last_resort() {
    // hail puts this instance into group-02 (better score)
    let base = answer(&request());
    assert!(nodes(&base).iter().all(|n| n.starts_with("node-02-")));
    for pol in ["last_resort", "unallocable"] {
        let mut v = request();
        set_policy(&mut v, "group-02", pol);
        let a = answer(&v);
        assert_eq!(a["success"], true);
        let ns = nodes(&a);
        assert_eq!(ns.len(), 2);
        assert!(
            ns.iter().all(|n| n.starts_with("node-01-")),
            "{pol}: {ns:?}"
        );
    }
    let mut v = request();
    set_policy(&mut v, "group-01", "unallocable");
    set_policy(&mut v, "group-02", "unallocable");
    assert_eq!(answer(&v)["success"], false);
}

#[test]
fn offline_and_drained_nodes_are_never_targets() {
    let base = answer(&request());
    let chosen = nodes(&base);
    for flag in ["offline", "drained"] {
        let mut v = request();
        for n in &chosen {
            v["nodes"][n][flag] = Value::from(true);
        }
        let a = answer(&v);
        assert_eq!(a["success"], true);
        for n in nodes(&a) {
            assert!(!chosen.contains(&n), "{flag} node {n} chosen");
        }
    }
}

#[test]
fn restrict_to_nodes_is_honoured() {
    let mut v = request();
    v["request"]["restrict-to-nodes"] =
        serde_json::json!(["node-01-0001", "node-01-0002", "node-01-0003"]);
    let a = answer(&v);
    assert_eq!(a["success"], true);
    for n in nodes(&a) {
        assert!(
            ["node-01-0001", "node-01-0002", "node-01-0003"].contains(&n.as_str()),
            "{n}"
        );
    }
}
