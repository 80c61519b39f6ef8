//! Client of the master API, used by the CLI and the lab.

use crate::api::{JoinTokenRequest, JoinTokenResponse, WaitRequest};
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

/// A connection to the master's API over mutual TLS.
#[derive(Clone)]
pub struct MasterClient {
    rpc: RpcClient,
    base: String,
}

impl MasterClient {
    /// Connects with the identity and ssconf found in a node's state directory.
    pub fn from_state_dir(dir: &Path) -> Result<Self, ClientError> {
        let identity = NodeIdentity::load(dir).map_err(|e| {
            ClientError::Unreachable(format!(
                "no cluster identity in {} ({e}); set MAGUEY_DIR to a node's state directory",
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
        Ok(MasterClient { rpc, base })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn submit(&self, ops: Vec<OpCode>, priority: i32) -> Result<u64, ClientError> {
        let v: Value = self
            .rpc
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
        Ok(self
            .rpc
            .get_json(&self.url(&format!("/luxi/jobs/{id}")))
            .await?)
    }

    pub async fn jobs(&self, archived: bool) -> Result<Vec<Value>, ClientError> {
        Ok(self
            .rpc
            .get_json(&self.url(&format!("/luxi/jobs?archived={archived}")))
            .await?)
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
            .rpc
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
        Ok(self
            .rpc
            .post_json(&self.url(&format!("/luxi/jobs/{id}/cancel")), &json!({}))
            .await?)
    }

    pub async fn archive(&self, age: Duration) -> Result<Value, ClientError> {
        Ok(self
            .rpc
            .post_json(
                &self.url("/luxi/archive"),
                &json!({"age_secs": age.as_secs_f64()}),
            )
            .await?)
    }

    pub async fn query(
        &self,
        what: Resource,
        names: Vec<String>,
        fields: Vec<String>,
    ) -> Result<QueryResult, ClientError> {
        Ok(self
            .rpc
            .post_json(
                &self.url("/luxi/query"),
                &QueryRequest {
                    what,
                    names,
                    fields,
                },
            )
            .await?)
    }

    pub async fn fields(&self, what: &str) -> Result<Vec<(String, String)>, ClientError> {
        Ok(self
            .rpc
            .get_json(&self.url(&format!("/luxi/fields/{what}")))
            .await?)
    }

    pub async fn config(&self) -> Result<ConfigData, ClientError> {
        Ok(self.rpc.get_json(&self.url("/luxi/config")).await?)
    }

    pub async fn join_token(
        &self,
        req: &JoinTokenRequest,
    ) -> Result<JoinTokenResponse, ClientError> {
        Ok(self
            .rpc
            .post_json(&self.url("/luxi/join-token"), req)
            .await?)
    }
}
