//! Shared helpers of the RAPI integration tests: a lab cluster started with the workspace's
//! `maguey` binary (built by `cargo build --workspace --bins`, as `./scripts/test` does) and an
//! HTTPS client that trusts the lab's cluster CA.
#![allow(dead_code)]

pub use maguey_test_infra::TestLab;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `$MAGUEY_BIN`, or `maguey` in the target directory of this test (built by
/// `cargo build --workspace --bins`).
pub fn maguey_bin() -> PathBuf {
    maguey_test_infra::bins::workspace_bin("maguey")
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A lab plus what `maguey lab env` exports for it.
pub struct RapiLab {
    pub lab: TestLab,
    pub env: BTreeMap<String, String>,
    pub http: reqwest::Client,
}

impl RapiLab {
    pub fn up(nodes: usize) -> RapiLab {
        let lab = TestLab::up(&maguey_bin(), nodes);
        let d = lab.dir.path().display().to_string();
        let out = lab.maguey(&["lab", "env", "--dir", &d]).ok().stdout;
        let env: BTreeMap<String, String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for k in [
            "MAGUEY_DIR",
            "MAGUEY_LAB_DIR",
            "MAGUEY_RAPI_URL",
            "MAGUEY_RAPI_USER",
            "MAGUEY_RAPI_PASSWORD",
            "MAGUEY_RAPI_CA",
        ] {
            assert!(env.contains_key(k), "lab env lacks {k}:\n{out}");
        }
        let ca = std::fs::read(&env["MAGUEY_RAPI_CA"]).expect("CA file");
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
            .tls_built_in_root_certs(false)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        RapiLab { lab, env, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.env["MAGUEY_RAPI_URL"])
    }

    pub fn user(&self) -> (&str, &str) {
        (
            &self.env["MAGUEY_RAPI_USER"],
            &self.env["MAGUEY_RAPI_PASSWORD"],
        )
    }

    /// The master's users file.
    pub fn users_file(&self) -> PathBuf {
        self.lab.master_dir().join("rapi/users")
    }

    /// Adds lines to the users file.
    pub fn add_users(&self, lines: &str) {
        let p = self.users_file();
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str(lines);
        std::fs::write(&p, s).unwrap();
    }

    /// A request with the lab's write user; answers status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (u, p) = self.user();
        self.call_as(Some((u, p)), method, path, body).await
    }

    pub async fn call_as(
        &self,
        auth: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, self.url(path));
        if let Some((u, p)) = auth {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request sent and answered");
        let status = r.status();
        let text = r.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, v)
    }

    /// Waits for a job to finish; returns its final object.
    pub async fn wait_job(&self, id: &Value) -> Value {
        let id = id.as_str().expect("job id string").to_string();
        for _ in 0..600 {
            let (s, j) = self.call(Method::GET, &format!("/2/jobs/{id}"), None).await;
            assert_eq!(s, StatusCode::OK, "{j}");
            if ["success", "error", "canceled"].contains(&j["status"].as_str().unwrap_or("")) {
                return j;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("job {id} did not finish");
    }

    /// The config serial.
    pub fn serial(&self) -> u64 {
        self.lab.serial()
    }
}
