//! Client of the master API, used by the CLI and the lab.

use crate::api::{
    ArchiveRequest, JoinTokenRequest, JoinTokenResponse, ReaddTokenRequest, WaitRequest,
};
use maguey_model::{ConfigData, Job, JobStatus, OpCode, Ssconf};
use maguey_ops::query::{QueryRequest, QueryResult, Resource};
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::client::RpcClient;
use maguey_rpc::RpcError;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Why a call to the master failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master cannot be reached (exit code 3).
    #[error("cannot reach the master: {0}")]
    Unreachable(String),
    /// The master refused the request (bad input; exit code 2).
    #[error("{0}")]
    Refused(String),
}

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Unreachable(m) => ClientError::Unreachable(m),
            other => ClientError::Refused(other.to_string()),
        }
    }
}

/// A connection to the master's API: over mutual TLS with a node certificate, or through the
/// Remote API's port with a RAPI user (`maguey --cluster URL`).
#[derive(Clone)]
pub struct MasterClient {
    transport: Transport,
    base: String,
}

#[derive(Clone)]
enum Transport {
    Mtls(RpcClient),
    Basic {
        http: reqwest::Client,
        user: String,
        password: String,
    },
}

/// Environment variables of the remote mode.
pub const ENV_CLUSTER: &str = "MAGUEY_CLUSTER";
pub const ENV_RAPI_URL: &str = "MAGUEY_RAPI_URL";
pub const ENV_RAPI_USER: &str = "MAGUEY_RAPI_USER";
pub const ENV_RAPI_PASSWORD: &str = "MAGUEY_RAPI_PASSWORD";
pub const ENV_RAPI_CA: &str = "MAGUEY_RAPI_CA";
/// A file whose first non-comment line is `user password` (instead of the two variables).
pub const ENV_RAPI_CREDENTIALS: &str = "MAGUEY_RAPI_CREDENTIALS";

/// HTTP Basic credentials travel only over TLS: a remote URL must be `https://`.
pub fn require_https(url: &str) -> Result<(), String> {
    if url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    {
        Ok(())
    } else {
        Err(format!(
            "refusing to send credentials to '{url}': the cluster URL must be https://"
        ))
    }
}

impl MasterClient {
    /// Connects with the admin certificate (`admin.pem`, `admin.key`, `ca.pem`) and the
    /// ssconf found in a directory: the master's state directory, or wherever the admin put
    /// them. A node's own certificate is not an admin's: the master refuses it.
    pub fn from_state_dir(dir: &Path) -> Result<Self, ClientError> {
        let identity = NodeIdentity::load_admin(dir).map_err(|e| {
            ClientError::Unreachable(format!(
                "no admin certificate in {} ({e}); set MAGUEY_DIR to the master's state \
                 directory (or a directory holding admin.pem, admin.key, ca.pem, ssconf.json)",
                dir.display()
            ))
        })?;
        let ssconf: Ssconf = std::fs::read(dir.join("ssconf.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ClientError::Unreachable(format!("no readable ssconf.json in {}", dir.display()))
            })?;
        let base = format!("https://{}:{}", ssconf.master_ip, ssconf.rpc_port);
        Self::new(&identity, base)
    }

    pub fn new(identity: &NodeIdentity, base: String) -> Result<Self, ClientError> {
        let rpc = RpcClient::new(identity, Duration::from_secs(90))
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(Self::with_rpc(rpc, base))
    }

    /// A client of the master API at `base` over `rpc` (e.g. one speaking another protocol).
    pub fn with_rpc(rpc: RpcClient, base: String) -> Self {
        MasterClient {
            transport: Transport::Mtls(rpc),
            base,
        }
    }

    /// A client of a remote master's API through its Remote API (`https://MASTER:5080`),
    /// authenticated as a RAPI user. `ca_pem`: trust only this CA (the cluster CA, or the CA of
    /// a configured `--rapi-cert`); `None`: the built-in public roots.
    pub fn remote(
        url: &str,
        user: &str,
        password: &str,
        ca_pem: Option<&str>,
    ) -> Result<Self, ClientError> {
        require_https(url).map_err(ClientError::Refused)?;
        let mut b = reqwest::Client::builder()
            .default_headers(maguey_rpc::version::request_headers(
                maguey_rpc::version::PROTOCOL_VERSION,
            ))
            .timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| ClientError::Refused(format!("invalid CA certificate: {e}")))?;
            b = b.add_root_certificate(cert).tls_built_in_root_certs(false);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
        Ok(MasterClient {
            transport: Transport::Basic {
                http,
                user: user.to_string(),
                password: password.to_string(),
            },
            base: url.trim_end_matches('/').to_string(),
        })
    }

    /// The remote client described by the environment, if `MAGUEY_CLUSTER` (the URL; with
    /// `maguey --cluster URL` the CLI sets it) is set: credentials from `MAGUEY_RAPI_USER` and
    /// `MAGUEY_RAPI_PASSWORD` or the file `MAGUEY_RAPI_CREDENTIALS`, CA from `MAGUEY_RAPI_CA`.
    pub fn from_env() -> Option<Result<Self, ClientError>> {
        let url = std::env::var(ENV_CLUSTER).ok().filter(|u| !u.is_empty())?;
        Some(Self::remote_from_env(&url))
    }

    /// A remote client of the master at `url`, credentials and CA from the environment (see
    /// [`MasterClient::from_env`]).
    pub fn remote_from_env(url: &str) -> Result<Self, ClientError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (user, password) = match (var(ENV_RAPI_USER), var(ENV_RAPI_PASSWORD)) {
            (Some(u), Some(p)) => (u, p),
            _ => {
                let Some(file) = var(ENV_RAPI_CREDENTIALS) else {
                    return Err(ClientError::Refused(format!(
                        "remote mode needs credentials: set {ENV_RAPI_USER} and \
                         {ENV_RAPI_PASSWORD}, or {ENV_RAPI_CREDENTIALS} to a file 'user password'"
                    )));
                };
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| ClientError::Refused(format!("reading {file}: {e}")))?;
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .unwrap_or("");
                match line.split_once(char::is_whitespace) {
                    Some((u, p)) => (u.to_string(), p.trim().to_string()),
                    None => {
                        return Err(ClientError::Refused(format!(
                            "{file}: expected a line 'user password'"
                        )))
                    }
                }
            }
        };
        let ca = match var(ENV_RAPI_CA) {
            Some(f) => Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| ClientError::Refused(format!("reading {f}: {e}")))?,
            ),
            None => None,
        };
        Self::remote(url, &user, &password, ca.as_deref())
    }

    /// The remote client if `MAGUEY_CLUSTER` is set, else the local one of `dir`.
    pub fn from_env_or_state_dir(dir: &Path) -> Result<Self, ClientError> {
        Self::from_env().unwrap_or_else(|| Self::from_state_dir(dir))
    }

    async fn post_json<B: serde::Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        match &self.transport {
            Transport::Mtls(rpc) => Ok(rpc.post_json(url, body).await?),
            Transport::Basic {
                http,
                user,
                password,
            } => {
                let r = http
                    .post(url)
                    .basic_auth(user, Some(password))
                    .json(body)
                    .send()
                    .await;
                decode_remote(url, r).await
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        match &self.transport {
            Transport::Mtls(rpc) => Ok(rpc.get_json(url).await?),
            Transport::Basic {
                http,
                user,
                password,
            } => {
                let r = http.get(url).basic_auth(user, Some(password)).send().await;
                decode_remote(url, r).await
            }
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn submit(&self, ops: Vec<OpCode>, priority: i32) -> Result<u64, ClientError> {
        let v: Value = self
            .post_json(
                &self.url("/luxi/submit"),
                &json!({"ops": ops, "priority": priority}),
            )
            .await?;
        v.get("job_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| ClientError::Refused(format!("unexpected answer {v}")))
    }

    pub async fn job(&self, id: u64) -> Result<Job, ClientError> {
        self.get_json(&self.url(&format!("/luxi/jobs/{id}"))).await
    }

    pub async fn jobs(&self, archived: bool) -> Result<Vec<Value>, ClientError> {
        self.get_json(&self.url(&format!("/luxi/jobs?archived={archived}")))
            .await
    }

    /// Long-polls for a change of the job (status or new log entries).
    pub async fn wait(
        &self,
        id: u64,
        status: Option<JobStatus>,
        log_serial: u64,
        timeout: Duration,
    ) -> Result<Option<Job>, ClientError> {
        let v: Value = self
            .post_json(
                &self.url(&format!("/luxi/jobs/{id}/wait")),
                &WaitRequest {
                    status,
                    log_serial,
                    timeout_secs: timeout.as_secs_f64(),
                },
            )
            .await?;
        serde_json::from_value(v.get("job").cloned().unwrap_or(Value::Null))
            .map_err(|e| ClientError::Refused(e.to_string()))
    }

    pub async fn cancel(&self, id: u64) -> Result<Value, ClientError> {
        self.post_json(&self.url(&format!("/luxi/jobs/{id}/cancel")), &json!({}))
            .await
    }

    /// The watcher: `pause` (for `seconds`), `continue`, `info` or `run`.
    pub async fn watcher(&self, action: &str, seconds: Option<f64>) -> Result<Value, ClientError> {
        self.post_json(
            &self.url("/luxi/watcher"),
            &crate::api::WatcherRequest {
                action: action.to_string(),
                seconds,
            },
        )
        .await
    }

    pub async fn archive(&self, age: Duration) -> Result<Value, ClientError> {
        self.post_json(
            &self.url("/luxi/archive"),
            &ArchiveRequest {
                age_secs: age.as_secs_f64(),
            },
        )
        .await
    }

    /// Every OS definition as the nodes report it (`maguey os`).
    pub async fn os_diagnose(&self) -> Result<Value, ClientError> {
        self.get_json(&self.url("/luxi/os")).await
    }

    /// The Remote API users (names and access).
    pub async fn rapi_users(&self) -> Result<Value, ClientError> {
        self.get_json(&self.url("/luxi/rapi-users")).await
    }

    /// Adds or replaces a Remote API user; the master hashes the password.
    pub async fn add_rapi_user(
        &self,
        name: &str,
        password: &str,
        write: bool,
    ) -> Result<Value, ClientError> {
        self.post_json(
            &self.url("/luxi/rapi-users"),
            &json!({"name": name, "password": password, "write": write}),
        )
        .await
    }

    pub async fn remove_rapi_user(&self, name: &str) -> Result<Value, ClientError> {
        self.post_json(
            &self.url("/luxi/rapi-users/remove"),
            &json!({ "name": name }),
        )
        .await
    }

    /// The queue's drain flag and jobs by status (`cluster queue info`).
    pub async fn queue_info(&self) -> Result<Value, ClientError> {
        self.get_json(&self.url("/luxi/queue")).await
    }

    /// Sets or clears the queue's drain flag.
    pub async fn set_queue_drained(&self, drained: bool) -> Result<Value, ClientError> {
        self.post_json(&self.url("/luxi/queue"), &json!({ "drained": drained }))
            .await
    }

    pub async fn query(
        &self,
        what: Resource,
        names: Vec<String>,
        fields: Vec<String>,
    ) -> Result<QueryResult, ClientError> {
        self.post_json(
            &self.url("/luxi/query"),
            &QueryRequest {
                what,
                names,
                fields,
            },
        )
        .await
    }

    /// [`MasterClient::query`], answered by the node asked even when it is not the master
    /// (`--stale-ok`): then `stale` says why the answer may be stale.
    pub async fn query_stale_ok(
        &self,
        what: Resource,
        names: Vec<String>,
        fields: Vec<String>,
    ) -> Result<QueryResult, ClientError> {
        self.post_json(
            &self.url("/luxi/query?stale-ok=1"),
            &QueryRequest {
                what,
                names,
                fields,
            },
        )
        .await
    }

    pub async fn fields(&self, what: &str) -> Result<Vec<(String, String)>, ClientError> {
        self.get_json(&self.url(&format!("/luxi/fields/{what}")))
            .await
    }

    /// The live cluster in the iallocator message's cluster shape (for the planner).
    pub async fn cluster_description(&self) -> Result<Value, ClientError> {
        self.get_json(&self.url("/luxi/cluster-description")).await
    }

    /// A replicated master's Raft view: term, voters and their lag (`cluster info`); an
    /// error from a single master.
    pub async fn replication(&self) -> Result<Value, ClientError> {
        self.get_json(&self.url("/luxi/replication")).await
    }

    /// `cluster force-single`: this node alone goes on (`confirm_off`: instead, a node cut
    /// off earlier is confirmed off).
    pub async fn force_single(&self, confirm_off: Option<&str>) -> Result<Value, ClientError> {
        self.post_json(
            &self.url("/luxi/force-single"),
            &json!({ "confirm_off": confirm_off }),
        )
        .await
    }

    /// `cluster master-failover`: the master steps down; another candidate (`to`) leads.
    pub async fn master_failover(&self, to: Option<&str>) -> Result<Value, ClientError> {
        self.post_json(&self.url("/luxi/master-failover"), &json!({ "to": to }))
            .await
    }

    pub async fn config(&self) -> Result<ConfigData, ClientError> {
        self.get_json(&self.url("/luxi/config")).await
    }

    /// Polls until the master answers (a job list), or fails with the last error after
    /// `timeout`.
    pub async fn wait_for_master(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.jobs(false).await {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn join_token(
        &self,
        req: &JoinTokenRequest,
    ) -> Result<JoinTokenResponse, ClientError> {
        self.post_json(&self.url("/luxi/join-token"), req).await
    }

    /// A token for a node of the config to join again (`node add --readd`).
    pub async fn readd_token(
        &self,
        req: &ReaddTokenRequest,
    ) -> Result<JoinTokenResponse, ClientError> {
        self.post_json(&self.url("/luxi/readd-token"), req).await
    }
}

/// Decodes an answer of the Remote API's port: errors are `{"error"}` (master API) or Ganeti's
/// `{"code", "message", "explain"}` (authentication).
async fn decode_remote<T: serde::de::DeserializeOwned>(
    url: &str,
    r: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ClientError> {
    let resp = r.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        ClientError::Unreachable(format!("{url}: {msg}"))
    })?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| ClientError::Unreachable(format!("{url}: {e}")))?;
    if !status.is_success() {
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let msg = v
            .get("error")
            .or_else(|| v.get("explain"))
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {status}: {body}"));
        return Err(ClientError::Refused(format!(
            "{msg} (HTTP {})",
            status.as_u16()
        )));
    }
    serde_json::from_str(&body)
        .map_err(|e| ClientError::Refused(format!("{url}: invalid answer: {e}")))
}

#[cfg(test)]
mod https_tests {
    #[test]
    fn credentials_need_https() {
        assert!(super::require_https("https://m:5080").is_ok());
        assert!(super::require_https("HTTPS://m:5080").is_ok());
        for bad in ["http://m:5080", "m:5080", "", "ftp://x"] {
            let e = super::require_https(bad).unwrap_err();
            assert!(e.contains("must be https://"), "{e}");
            assert!(super::MasterClient::remote(bad, "u", "p", None).is_err());
        }
    }
}
