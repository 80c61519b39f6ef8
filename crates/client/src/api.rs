//! Wire types of the master API (`/luxi/...`), shared by the daemon that serves them and the
//! client that sends them. Query types are those of `maguey_ops::query`.

use maguey_model::JobStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /luxi/submit`: opcodes (decoded one by one by the master, so that a bad one is
/// named) and the job's priority (-20..=19).
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    pub ops: Vec<Value>,
    #[serde(default)]
    pub priority: i32,
}

/// The query string of `GET /luxi/jobs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub archived: bool,
}

/// `POST /luxi/jobs/{id}/wait`: long-poll until the job's status differs from `status` or it
/// has log entries past `log_serial`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WaitRequest {
    pub status: Option<JobStatus>,
    pub log_serial: u64,
    pub timeout_secs: f64,
}

/// `POST /luxi/archive`: archive finished jobs older than `age_secs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchiveRequest {
    pub age_secs: f64,
}

/// `POST /luxi/join-token`: a one-time token for a new node.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinTokenRequest {
    pub node_name: String,
    pub primary_ip: String,
    #[serde(default)]
    pub secondary_ip: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// The node's room (failure domain).
    #[serde(default)]
    pub room: Option<String>,
    /// The node joins as a witness of the replicated master.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub witness: bool,
}

/// `POST /luxi/readd-token`: a one-time token for a node of the config to join again (Ganeti's
/// `gnt-node add --readd`), e.g. after it was kept offline past its certificate's end. The
/// answer is a [`JoinTokenResponse`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReaddTokenRequest {
    pub node_name: String,
    /// The node's primary IP as the admin expects it (refused when the config differs).
    #[serde(default)]
    pub primary_ip: Option<String>,
}

/// The answer to [`JoinTokenRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    pub token: String,
    pub master_url: String,
    pub expires: f64,
}

/// `POST /luxi/watcher`: `pause` (for `seconds`, or until `continue`), `continue`, `info`,
/// `run` (one pass now). The answer: `{"pause": {...}|null, "lines": [...], "events": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WatcherRequest {
    pub action: String,
    #[serde(default)]
    pub seconds: Option<f64>,
}
