//! Fuzz: generated malformed paths, query strings, bodies and credentials thrown at a lab's
//! Remote API (loopback only). Every request must be answered (no dropped connection), never
//! with a 5xx other than 501/503, always with Ganeti's JSON error body; the daemon must not
//! panic and the config serial must not change. Bounded in count and time; the seed is
//! printed (set RAPI_FUZZ_SEED to replay, RAPI_FUZZ_COUNT to change the count).

mod common;

use common::RapiLab;
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

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
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn junk(&mut self, max: usize) -> String {
        const CH: &[u8] = b"abcXYZ019 -_.~!*'();:@&=+$,/?%#[]{}\"\\<>|^`\t\x01\x7f";
        let n = self.below(max + 1);
        (0..n).map(|_| CH[self.below(CH.len())] as char).collect()
    }
}

/// Path segments: real resource names mixed with junk (no real instance exists; node
/// names are real, so node mutations only ever get malformed bodies).
const SEGS: &[&str] = &[
    "2",
    "version",
    "info",
    "features",
    "os",
    "tags",
    "jobs",
    "wait",
    "nodes",
    "node1",
    "node2",
    "role",
    "modify",
    "evacuate",
    "migrate",
    "groups",
    "default",
    "instances",
    "inst",
    "info",
    "startup",
    "shutdown",
    "reboot",
    "console",
    "disk",
    "0",
    "grow",
    "query",
    "instance",
    "node",
    "group",
    "fields",
    "openapi.json",
    "1",
    "-1",
    "99999999999999999999999",
    "..",
    ".",
    "%00",
    "%ff",
    "%2F",
    "%zz",
    "%",
    "\u{e9}",
    "a%20b",
    "",
];

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];

const QUERY_KEYS: &[&str] = &[
    "bulk",
    "fields",
    "dry-run",
    "force",
    "reason",
    "tag",
    "static",
    "type",
    "no_remember",
    "auto-promote",
    "x",
    "",
];

/// Bodies that are malformed or of the wrong type for every resource.
fn body(rng: &mut Rng) -> Option<Vec<u8>> {
    let keys = [
        "__version__",
        "name",
        "disk_template",
        "disks",
        "nics",
        "offline",
        "drained",
        "master_candidate",
        "fields",
        "previous_job_info",
        "previous_log_serial",
        "beparams",
        "timeout",
        "mode",
        "os",
        "pnode",
        "unknown_field",
    ];
    // Values that never form a valid request: wrong types and junk strings.
    let vals = [
        "\"junk\"",
        "-1",
        "1e999",
        "[[[]]]",
        "{\"a\":{}}",
        "\"\u{0}\"",
        "18446744073709551616",
        "\"regular \"",
        "[\"status\", 3]",
    ];
    Some(match rng.below(9) {
        0 => return None,
        1 => rng.junk(64).into_bytes(),
        2 => b"{\"__version__\": 1".to_vec(),
        3 => "[".repeat(rng.below(5000) + 1).into_bytes(),
        4 => {
            let n = rng.below(4) + 1;
            let fields: Vec<String> = (0..n)
                .map(|_| format!("\"{}\": {}", rng.pick(&keys), rng.pick(&vals)))
                .collect();
            format!("{{{}}}", fields.join(",")).into_bytes()
        }
        5 => rng.pick(&vals).as_bytes().to_vec(),
        6 => vec![0xff, 0xfe, b'{', 0x80],
        7 => format!("\"{}\"", rng.junk(20).replace(['"', '\\'], "")).into_bytes(),
        _ => b"null".to_vec(),
    })
}

fn path(rng: &mut Rng) -> String {
    let n = rng.below(6);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        if rng.below(5) == 0 {
            p.push_str(&rng.junk(12).replace(
                [
                    '?', '#', ' ', '\t', '\x01', '\x7f', '"', '<', '>', '\\', '^', '`', '{', '}',
                    '|',
                ],
                "x",
            ));
        } else {
            p.push_str(rng.pick(SEGS));
        }
    }
    if p.is_empty() {
        p.push('/');
    }
    if rng.below(3) == 0 {
        let k = rng.below(4);
        let q: Vec<String> = (0..k)
            .map(|_| {
                let key = rng.pick(QUERY_KEYS);
                // Tags with a character Ganeti refuses: never a valid tag request.
                let v = match rng.below(4) {
                    0 => "bad tag!".to_string(),
                    1 => "%zz".to_string(),
                    2 => "yes".to_string(),
                    _ => "x%20y%".to_string(),
                };
                format!("{key}={v}")
            })
            .collect();
        p.push('?');
        p.push_str(&q.join("&"));
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_crash_or_change_the_config() {
    let l = RapiLab::up(2);
    let serial0 = l.serial();
    let seed: u64 = std::env::var("RAPI_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u64>() | 1);
    let count: usize = std::env::var("RAPI_FUZZ_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    println!("RAPI fuzz seed {seed}, {count} requests");
    let mut rng = Rng(seed);
    let (user, pass) = l.user();
    let (user, pass) = (user.to_string(), pass.to_string());
    let base = l.env["MAGUEY_RAPI_URL"].clone();
    assert!(
        base.starts_with("https://127.") || base.starts_with("https://10."),
        "fuzz only the lab (loopback or its private namespaced network): {base}"
    );
    let t0 = Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut sent = 0;
    for i in 0..count {
        if t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        let method = Method::from_bytes(rng.pick(METHODS).as_bytes()).unwrap();
        let p = path(&mut rng);
        let url = format!("{base}{p}");
        let mut rb = l.http.request(method.clone(), &url);
        rb = match rng.below(6) {
            0 => rb,
            // Wrong passwords, mostly of other (unknown) users: the real user's failed logins
            // are throttled after a few (docs/security.md), which would slow the fuzz.
            1 if rng.below(20) == 0 => rb.basic_auth(&user, Some("wrong")),
            1 => rb.basic_auth(format!("{user}{}", rng.below(1_000_000)), Some("wrong")),
            2 => rb.header(
                "Authorization",
                rng.junk(30).replace(['\n', '\r', '\x7f', '\x01', '\t'], ""),
            ),
            _ => rb.basic_auth(&user, Some(&pass)),
        };
        if let Some(b) = body(&mut rng) {
            rb = rb.body(b);
        }
        let r = match rb.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => continue, // not a sendable URL: nothing reached the server
            Err(e) => panic!("request {i} ({method} {p}) got no answer (seed {seed}): {e}"),
        };
        sent += 1;
        let status = r.status();
        *statuses.entry(status.as_u16()).or_default() += 1;
        let text = r.text().await.unwrap_or_default();
        assert!(
            !status.is_server_error()
                || status == StatusCode::NOT_IMPLEMENTED
                || status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::BAD_GATEWAY,
            "request {i} ({method} {p}): {status} {text} (seed {seed})"
        );
        if method != Method::HEAD && !status.is_success() {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("request {i} ({method} {p}): {status}, not JSON ({e}): {text:?}")
            });
            assert_eq!(v["code"].as_u64(), Some(status.as_u16() as u64), "{text}");
        }
    }
    println!(
        "sent {sent} requests in {:?}: statuses {statuses:?}",
        t0.elapsed()
    );
    assert!(sent >= 200, "too few requests reached the server: {sent}");
    // Jobs submitted by chance (e.g. a role change with a malformed body) must have failed
    // without touching the config.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        l.serial(),
        serial0,
        "the fuzz changed the config (seed {seed})"
    );
    let logs = l.lab.logs();
    assert!(
        !logs.contains("panicked"),
        "a daemon panicked (seed {seed}):\n{logs}"
    );
    let (s, v) = l.call(Method::GET, "/2/info", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
