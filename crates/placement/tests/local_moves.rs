//! Maguey's local-disk moves (`AllocOptions::local_storage_migrates`): a `plain` instance is
//! relocated by node evacuation like a `file` one, and only to a node whose free disk (the
//! volume group) holds its disks; hail's answer (no relocation) stays the default.

use maguey_placement::alloc::AllocOptions;
use maguey_placement::ialloc;
use serde_json::{json, Value};

fn request() -> Value {
    let p = format!(
        "{}/tests/data/ialloc/c20s42.evac.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).expect("request file")).expect("json")
}

/// The first `plain` instance of the request, its primary node and its disk size (MiB).
fn plain_instance(req: &Value) -> (String, String, u64) {
    let (name, i) = req["instances"]
        .as_object()
        .expect("instances")
        .iter()
        .find(|(_, i)| i["disk_template"] == "plain")
        .expect("a plain instance");
    let node = i["nodes"][0].as_str().expect("primary").to_string();
    (
        name.clone(),
        node,
        i["disk_space_total"].as_u64().expect("size"),
    )
}

fn evacuate(req: &mut Value, name: &str, migrates: bool) -> Value {
    req["request"] =
        json!({"type": "node-evacuate", "instances": [name], "evac_mode": "primary-only"});
    let opts = AllocOptions {
        local_storage_migrates: migrates,
        ..Default::default()
    };
    let out = ialloc::answer(&req.to_string(), &opts).expect("an answer");
    serde_json::from_str(&out).expect("answer json")
}

/// The node the answer moves `name` to, if it moved.
fn moved_to(answer: &Value, name: &str) -> Option<String> {
    let moved = answer["result"][0].as_array()?;
    moved
        .iter()
        .find(|m| m[0] == name)
        .and_then(|m| m[2][0].as_str().map(str::to_string))
}

#[test]
fn plain_instances_move_only_where_their_disks_fit() {
    let mut req = request();
    let (name, primary, size) = plain_instance(&req);

    // hail's behaviour by default: a plain instance cannot be relocated.
    let a = evacuate(&mut req, &name, false);
    assert_eq!(moved_to(&a, &name), None, "{a}");
    assert!(a.to_string().contains("cannot be relocated"), "{a}");

    // With local moves it goes somewhere else.
    let a = evacuate(&mut req, &name, true);
    let first = moved_to(&a, &name).unwrap_or_else(|| panic!("not moved: {a}"));
    assert_ne!(first, primary);

    // Every other node's volume group too small but one's: it goes there.
    let nodes: Vec<String> = req["nodes"]
        .as_object()
        .expect("nodes")
        .keys()
        .cloned()
        .collect();
    let roomy = nodes
        .iter()
        .find(|n| **n != primary && **n != first)
        .expect("a third node")
        .clone();
    for n in &nodes {
        if *n != primary && *n != roomy {
            req["nodes"][n]["free_disk"] = json!(size / 2);
        }
    }
    let a = evacuate(&mut req, &name, true);
    assert_eq!(moved_to(&a, &name).as_deref(), Some(roomy.as_str()), "{a}");

    // No volume group can hold it: refused, not placed on a full node.
    req["nodes"][&roomy]["free_disk"] = json!(size / 2);
    let a = evacuate(&mut req, &name, true);
    assert_eq!(moved_to(&a, &name), None, "{a}");
}
