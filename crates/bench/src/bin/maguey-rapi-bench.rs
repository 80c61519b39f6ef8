//! Benchmark of the Remote API against a running lab (not a test):
//!
//! ```sh
//! cargo build --release --workspace --bins
//! target/release/maguey lab up --nodes 3 --node-memory 65536 --dir /tmp/bench
//! eval "$(target/release/maguey lab env --dir /tmp/bench)"
//! target/release/maguey-rapi-bench --instances 1000 --clients 16
//! ```
//!
//! It fills the cluster up to `--instances` diskless `fake` instances through the RAPI itself
//! (POST /2/instances, `--parallel` jobs at a time), then measures the latency of
//! `GET /2/instances?bulk=1` (sequential requests) and the throughput of GETs from
//! `--clients` concurrent clients (each with its own keep-alive connection).

use clap::Parser;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "maguey-rapi-bench",
    about = "Remote API benchmark against a lab"
)]
struct Args {
    #[arg(long, env = "MAGUEY_RAPI_URL")]
    url: String,
    #[arg(long, env = "MAGUEY_RAPI_USER")]
    user: String,
    #[arg(long, env = "MAGUEY_RAPI_PASSWORD")]
    password: String,
    #[arg(long, env = "MAGUEY_RAPI_CA")]
    ca: std::path::PathBuf,
    /// Instances the cluster should hold before measuring.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Creation jobs submitted at once while filling.
    #[arg(long, default_value_t = 40)]
    parallel: usize,
    /// Sequential requests for the bulk latency.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Concurrent clients for the throughput.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn client(ca: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("CA PEM"))
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

struct Api {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn wait(&self, id: &str) -> String {
        loop {
            let j = self
                .call(reqwest::Method::GET, &format!("/2/jobs/{id}"), None)
                .await;
            let s = j["status"].as_str().unwrap_or("").to_string();
            if ["success", "error", "canceled"].contains(&s.as_str()) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn fill(api: &Api, want: usize, parallel: usize) {
    let have: Vec<Value> = api
        .call(reqwest::Method::GET, "/2/instances", None)
        .await
        .as_array()
        .cloned()
        .unwrap_or_default();
    let nodes: Vec<String> = api
        .call(reqwest::Method::GET, "/2/nodes", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str().map(String::from))
        .collect();
    let mut next = have.len();
    if next >= want {
        println!("cluster already holds {next} instances");
        return;
    }
    let t0 = Instant::now();
    println!("creating {} instances ...", want - next);
    while next < want {
        let batch: Vec<usize> = (next..want.min(next + parallel)).collect();
        let mut ids = Vec::new();
        for i in &batch {
            let body = json!({
                "__version__": 1, "mode": "create", "name": format!("bench{i:05}"),
                "disk_template": "diskless", "disks": [], "nics": [{}], "os": "noop",
                "pnode": nodes[i % nodes.len()], "no_install": true, "start": true,
                "beparams": {"maxmem": 32, "minmem": 32, "vcpus": 1},
            });
            let id = api
                .call(reqwest::Method::POST, "/2/instances", Some(body))
                .await;
            ids.push(id.as_str().unwrap().to_string());
        }
        for id in ids {
            let s = api.wait(&id).await;
            assert_eq!(s, "success", "creation job {id} ended {s}");
        }
        next += batch.len();
    }
    println!(
        "created in {:.1} s ({:.0} instances/s through RAPI jobs)",
        t0.elapsed().as_secs_f64(),
        (want - have.len()) as f64 / t0.elapsed().as_secs_f64()
    );
}

async fn throughput(args: &Args, ca: &[u8], paths: Vec<String>, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let api = Api {
            http: client(ca),
            url: args.url.clone(),
            user: args.user.clone(),
            password: args.password.clone(),
        };
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let p = &paths[(c + n) % paths.len()];
                let t = Instant::now();
                api.call(reqwest::Method::GET, p, None).await;
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort();
    println!(
        "{label}: {} clients, {} requests in {} s = {:.0} req/s (latency median {}, p99 {})",
        args.clients,
        all.len(),
        args.seconds,
        all.len() as f64 / args.seconds as f64,
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let ca = std::fs::read(&args.ca).expect("reading the CA file");
    let api = Api {
        http: client(&ca),
        url: args.url.clone(),
        user: args.user.clone(),
        password: args.password.clone(),
    };
    fill(&api, args.instances, args.parallel).await;

    // Latency of the full bulk listing (live state fetched from every node each time).
    let mut lat = Vec::new();
    let mut count = 0;
    for _ in 0..args.samples {
        let t = Instant::now();
        let v = api
            .call(reqwest::Method::GET, "/2/instances?bulk=1", None)
            .await;
        lat.push(t.elapsed());
        count = v.as_array().map(|a| a.len()).unwrap_or(0);
    }
    lat.sort();
    println!(
        "GET /2/instances?bulk=1 with {count} instances, {} sequential requests: min {}, median {}, p95 {}, max {}",
        args.samples,
        ms(lat[0]),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.95)),
        ms(*lat.last().unwrap())
    );

    let names: Vec<String> = api
        .call(reqwest::Method::GET, "/2/instances", None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str().map(|n| format!("/2/instances/{n}")))
        .collect();
    throughput(&args, &ca, vec!["/version".into()], "GET /version").await;
    throughput(&args, &ca, vec!["/2/info".into()], "GET /2/info").await;
    throughput(&args, &ca, names, "GET /2/instances/NAME").await;
    throughput(
        &args,
        &ca,
        vec!["/2/instances?bulk=1".into()],
        "GET /2/instances?bulk=1",
    )
    .await;
}
