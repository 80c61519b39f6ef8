//! Fuzz of what peers send, beside the Remote API's (crates/rapi/tests/rapi_fuzz.rs): node
//! `/rpc` requests with the master's certificate and the current fencing stamp, and
//! `/luxi/submit` opcode JSON with the admin certificate, generated from real requests by
//! mutations (junk bytes, cut JSON, deep nesting, unknown procedures and opcodes, values of
//! the wrong type, hostile strings and numbers). Every request must be answered, never with a
//! 5xx but 501 (an unknown procedure); the daemons must not die; the config serial, the node's ssconf and its stored term must
//! not change. Bounded in count; the seed is printed (RPC_FUZZ_SEED replays it, RPC_FUZZ_COUNT
//! changes the count).

mod common;
use common::*;
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::client::RpcClient;
use maguey_rpc::fence::FenceStamp;
use serde_json::{json, Value};
use std::time::Duration;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn junk(&mut self, max: usize) -> String {
        const CH: &[u8] = b"abcXYZ019 -_.~!*'();:@&=+$,/?%#[]{}\"\\<>|^`\t\n\x01\x7f";
        let n = self.below(max + 1);
        (0..n).map(|_| CH[self.below(CH.len())] as char).collect()
    }
}

const HOSTILE_STRINGS: &[&str] = &[
    "",
    "../../../../etc/passwd",
    "/etc/shadow",
    "a,b=c",
    "x;reboot",
    "$(reboot)",
    "`id`",
    "\u{0}",
    "fuzz-none\n",
    "-rf",
    "kvm,if=none",
];

fn hostile_number(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(-1),
        1 => json!(u64::MAX),
        2 => json!(1e308),
        3 => json!(-1e308),
        4 => json!(i64::MIN),
        _ => json!(0.5),
    }
}

/// One leaf of `v` replaced: by a value of another type, a hostile string or number.
fn mutate_leaf(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.below(4) != 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            if let Some(x) = m.get_mut(k) {
                mutate_leaf(rng, x);
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(a.len());
            mutate_leaf(rng, &mut a[i]);
        }
        Value::String(_) => {
            *v = if rng.below(2) == 0 {
                json!(HOSTILE_STRINGS[rng.below(HOSTILE_STRINGS.len())])
            } else {
                json!({"\u{1}": [null]})
            }
        }
        Value::Number(_) => {
            *v = if rng.below(2) == 0 {
                hostile_number(rng)
            } else {
                json!("12abc")
            }
        }
        _ => *v = json!([[{"x": []}]]),
    }
}

/// A request body made from `template` by one mutation.
fn mutate(rng: &mut Rng, template: &Value, kind_key: &str) -> Vec<u8> {
    let text = template.to_string();
    match rng.below(8) {
        0 => rng.junk(200).into_bytes(),
        1 => {
            let cut = rng.below(text.len().max(1));
            text.as_bytes()[..cut].to_vec()
        }
        2 => {
            let depth = 1 + rng.below(5000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        3 => {
            let mut v = template.clone();
            v[kind_key] = json!(format!("fuzz_{}", rng.junk(8)));
            v.to_string().into_bytes()
        }
        4 => {
            let mut v = template.clone();
            v[kind_key] = json!([1, {"a": null}]);
            v.to_string().into_bytes()
        }
        _ => {
            let mut v = template.clone();
            mutate_leaf(rng, &mut v);
            v.to_string().into_bytes()
        }
    }
}

/// Node requests that change nothing on a node without instances, whatever their values.
fn node_templates() -> Vec<Value> {
    vec![
        json!({"procedure": "version"}),
        json!({"procedure": "node_info", "args": {"file_storage_dir": "", "hypervisor": "fake"}}),
        json!({"procedure": "node_volumes"}),
        json!({"procedure": "file_storage_list", "args": {"file_storage_dir": ""}}),
        json!({"procedure": "instance_list", "args": {"hypervisor": "fake"}}),
        json!({"procedure": "instance_info", "args": {"name": "fuzz-none", "hypervisor": "fake"}}),
        json!({"procedure": "all_instances_info", "args": {"hypervisor": "fake"}}),
        json!({"procedure": "instance_shutdown",
               "args": {"name": "fuzz-none", "hypervisor": "fake", "timeout": 0}}),
        json!({"procedure": "instance_migration_progress",
               "args": {"name": "fuzz-none", "hypervisor": "fake"}}),
        json!({"procedure": "drbd_status", "args": {"disks": []}}),
        json!({"procedure": "test_delay", "args": {"duration": 0.0}}),
    ]
}

/// Opcodes that change nothing on a cluster without instances, whatever their values.
fn opcode_templates() -> Vec<Value> {
    vec![
        json!({"OP_ID": "OP_TEST_DELAY", "duration": 0.0}),
        json!({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "fuzz-none"}),
        json!({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "fuzz-none", "timeout": 0}),
        json!({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "fuzz-none"}),
        json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "fuzz-none", "mode": "live"}),
        json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "fuzz-none",
               "beparams": {"maxmem": 256}, "hvparams": {"kernel_path": "/boot/x"}}),
        json!({"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "fuzz-none"}),
        json!({"OP_ID": "OP_NODE_EVACUATE", "node_name": "fuzz-none", "mode": "all"}),
        json!({"OP_ID": "OP_CLUSTER_VERIFY_DISKS"}),
    ]
}

fn seed() -> u64 {
    std::env::var("RPC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

#[test]
fn node_rpc_and_opcode_fuzz() {
    let lab = lab(2);
    let count: usize = std::env::var("RPC_FUZZ_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let seed = seed();
    println!("RPC_FUZZ_SEED={seed} RPC_FUZZ_COUNT={count}");
    let mut rng = Rng(seed);
    let t = Duration::from_secs(20);
    let master = RpcClient::new(&NodeIdentity::load(&lab.master_dir()).unwrap(), t).unwrap();
    let admin = RpcClient::new(&NodeIdentity::load_admin(&lab.master_dir()).unwrap(), t).unwrap();
    let port = maguey_model::DEFAULT_RPC_PORT;
    let node_url = format!("https://{}:{port}/rpc", lab.node_ip(2));
    let submit_url = format!("https://{}:{port}/luxi/submit", lab.node_ip(1));
    let read = |f: &str| std::fs::read(lab.node_dir(2).join(f)).unwrap_or_default();
    // node2's ssconf arrives after the node-add job ended: wait for the one of the current
    // config, or "unchanged" would compare against a file still on its way (seen in CI).
    let serial = lab.serial();
    let current = || {
        serde_json::from_slice::<Value>(&read("ssconf.json"))
            .is_ok_and(|v| v["config_serial"].as_u64() == Some(serial))
    };
    assert!(
        wait_until(Duration::from_secs(30), current),
        "node2 never got the ssconf of config serial {serial}"
    );
    let ssconf = read("ssconf.json");
    let term = read("master-term.json");
    let stored: Value = serde_json::from_slice(&term).expect("node2 stored a master term");
    let stamp = FenceStamp {
        cluster: stored["cluster"].as_str().unwrap_or_default().to_string(),
        term: stored["term"].as_u64().unwrap_or_default(),
    };
    let jobs_before = lab.maguey(&["job", "list", "--output", "json"]).ok().json();
    let (pid1, pid2) = (lab.pid(1), lab.pid(2));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (nodes, ops) = (node_templates(), opcode_templates());
    let (mut accepted_jobs, mut node_answers) = (0, 0);
    rt.block_on(async {
        for i in 0..count {
            // Node RPC with the master's certificate and the current stamp.
            let k = rng.below(nodes.len());
            let body = mutate(&mut rng, &nodes[k], "procedure");
            let mut headers = reqwest::header::HeaderMap::new();
            stamp.insert_into(&mut headers);
            let r = master
                .http()
                .post(&node_url)
                .headers(headers)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{i}: node2 dropped {:?}: {e}", lossy(&body)));
            let status = r.status();
            if status.is_success() {
                node_answers += 1;
            }
            let text = r.text().await.unwrap_or_default();
            assert!(
                !status.is_server_error() || status == reqwest::StatusCode::NOT_IMPLEMENTED,
                "{i}: node2 answered {status} to {:?}: {text}",
                lossy(&body)
            );

            // An opcode list with the admin certificate.
            let k = rng.below(ops.len());
            let op = mutate(&mut rng, &ops[k], "OP_ID");
            let body = match rng.below(4) {
                0 => op,
                1 => format!(r#"{{"ops": "{}", "priority": 0}}"#, rng.junk(10)).into_bytes(),
                2 => format!(
                    r#"{{"ops": [{}], "priority": {}}}"#,
                    lossy(&op),
                    hostile_number(&mut rng)
                )
                .into_bytes(),
                _ => format!(r#"{{"ops": [{}], "priority": 0}}"#, lossy(&op)).into_bytes(),
            };
            let r = admin
                .http()
                .post(&submit_url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{i}: the master dropped {:?}: {e}", lossy(&body)));
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            assert!(
                !status.is_server_error() || status == reqwest::StatusCode::NOT_IMPLEMENTED,
                "{i}: the master answered {status} to {:?}: {text}",
                lossy(&body)
            );
            if status.is_success() {
                accepted_jobs += 1;
            }
        }
    });
    println!("{accepted_jobs} of {count} mutated opcode lists were valid jobs");
    // The certificate and the stamp were right: mutated requests that still decode reached
    // the node's handlers (and were answered with their errors).
    println!("{node_answers} of {count} mutated node requests decoded");
    assert!(
        node_answers > 0,
        "no node request got past the node's checks"
    );
    assert_eq!((lab.pid(1), lab.pid(2)), (pid1, pid2), "a daemon died");
    // Jobs that were valid after all ran and failed or did nothing: wait for them, then check
    // that nothing changed.
    assert!(wait_until(Duration::from_secs(120), || {
        let jobs = lab.maguey(&["job", "list", "--output", "json"]).ok().json();
        jobs.as_array().is_some_and(|a| {
            a.iter().all(|j| {
                !["queued", "waiting", "running"].contains(&j["status"].as_str().unwrap_or(""))
            })
        })
    }));
    let jobs_after = lab.maguey(&["job", "list", "--output", "json"]).ok().json();
    assert_eq!(
        jobs_after.as_array().map(|a| a.len()),
        jobs_before.as_array().map(|a| a.len() + accepted_jobs),
        "only the accepted submissions made jobs"
    );
    assert_eq!(lab.serial(), serial, "the config changed");
    assert_eq!(read("ssconf.json"), ssconf, "node2's ssconf changed");
    assert_eq!(
        read("master-term.json"),
        term,
        "node2's stored term changed"
    );
    // Both still answer.
    lab.maguey(&["node", "list"]).ok();
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(300).collect()
}
