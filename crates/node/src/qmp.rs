//! A thin client of QEMU's machine protocol (QMP): line-delimited JSON over a unix socket.
//!
//! The server greets with `{"QMP": ...}`; the client enters command mode with
//! `qmp_capabilities`; each `{"execute": ...}` is answered by `{"return": ...}` or
//! `{"error": {"class", "desc"}}`, with asynchronous `{"event": ...}` lines interleaved
//! anywhere (they are collected, not mistaken for answers).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// How long one command may take before the client gives up.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QmpErrorBody {
    pub class: String,
    pub desc: String,
}

/// One asynchronous event (`SHUTDOWN`, `POWERDOWN`, `RESET`, `MIGRATION`, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatusInfo {
    pub status: String,
    pub running: bool,
}

/// `query-balloon`: the guest's current memory, in bytes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BalloonInfo {
    pub actual: u64,
}

/// `query-migrate` (the fields Maguey reads).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct MigrationInfo {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub ram: Option<MigrationRam>,
    #[serde(rename = "total-time", default)]
    pub total_time: Option<u64>,
    #[serde(default)]
    pub downtime: Option<u64>,
    #[serde(rename = "error-desc", default)]
    pub error_desc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct MigrationRam {
    #[serde(default)]
    pub transferred: u64,
    #[serde(default)]
    pub remaining: u64,
    #[serde(default)]
    pub total: u64,
}

/// One entry of `query-block-jobs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BlockJobInfo {
    pub device: String,
    #[serde(default)]
    pub len: u64,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub status: String,
}

/// `migrate-set-parameters` (only what is set is sent).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MigrationParameters {
    /// Bytes per second.
    #[serde(rename = "max-bandwidth", skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// Milliseconds.
    #[serde(rename = "downtime-limit", skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
    /// The id of a `tls-creds-x509` object; empty: no TLS.
    #[serde(rename = "tls-creds", skip_serializing_if = "Option::is_none")]
    pub tls_creds: Option<String>,
    /// The name the peer's certificate must carry (client side).
    #[serde(rename = "tls-hostname", skip_serializing_if = "Option::is_none")]
    pub tls_hostname: Option<String>,
    /// The id of an authz object admitting the client (server side); empty: none.
    #[serde(rename = "tls-authz", skip_serializing_if = "Option::is_none")]
    pub tls_authz: Option<String>,
}

#[derive(Serialize)]
struct Execute<'a, A: Serialize> {
    execute: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<A>,
}

/// How talking to QEMU's monitor failed (messages as the master has always seen them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    #[error("timeout connecting to QMP socket {0}")]
    ConnectTimeout(String),
    #[error("cannot connect to QMP socket {path}: {reason}")]
    Connect { path: String, reason: String },
    #[error("timeout waiting for QMP")]
    Timeout,
    #[error("QMP connection closed")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("QMP {0}")]
    Io(String),
    /// QEMU said something that is not QMP as expected.
    #[error("{0}")]
    Protocol(String),
    /// QEMU refused a command.
    #[error("QMP {command}: {desc} ({class})")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

/// A QMP session in command mode.
pub struct Qmp<S> {
    reader: BufReader<tokio::io::ReadHalf<S>>,
    writer: tokio::io::WriteHalf<S>,
    /// Events received so far, oldest first.
    pub events: Vec<Event>,
    /// QEMU's version from the greeting (`major.minor.micro`).
    pub version: String,
}

impl Qmp<tokio::net::UnixStream> {
    /// Connects to a QMP unix socket and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<Self, QmpError> {
        let s = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::UnixStream::connect(path),
        )
        .await
        .map_err(|_| QmpError::ConnectTimeout(path.display().to_string()))?
        .map_err(|e| QmpError::Connect {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::handshake(s).await
    }
}

impl<S: AsyncRead + AsyncWrite> Qmp<S> {
    /// Reads the greeting and sends `qmp_capabilities` over any byte stream.
    pub async fn handshake(stream: S) -> Result<Self, QmpError> {
        let (r, w) = tokio::io::split(stream);
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
            events: Vec::new(),
            version: String::new(),
        };
        // Events queued for a previous client (e.g. `STOP` at the end of a migration) may
        // come before the greeting: they are not ours, skip them.
        let mut greeting = q.read_line().await?;
        for _ in 0..64 {
            if greeting.get("event").is_none() {
                break;
            }
            greeting = q.read_line().await?;
        }
        let v = greeting
            .get("QMP")
            .ok_or_else(|| QmpError::Protocol(format!("not a QMP greeting: {greeting}")))?;
        let ver = &v["version"]["qemu"];
        q.version = format!("{}.{}.{}", ver["major"], ver["minor"], ver["micro"]);
        q.execute::<Value, ()>("qmp_capabilities", None).await?;
        Ok(q)
    }

    async fn read_line(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = tokio::time::timeout(COMMAND_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout)?
            .map_err(|e| QmpError::Io(format!("read: {e}")))?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line)
            .map_err(|e| QmpError::Protocol(format!("bad QMP line {line:?}: {e}")))
    }

    /// Sends one command and waits for its answer (events meanwhile go to `events`).
    pub async fn execute<T: DeserializeOwned, A: Serialize>(
        &mut self,
        command: &str,
        arguments: Option<A>,
    ) -> Result<T, QmpError> {
        let mut line = serde_json::to_string(&Execute {
            execute: command,
            arguments,
        })
        .map_err(|e| QmpError::Protocol(e.to_string()))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| QmpError::Io(format!("write: {e}")))?;
        self.writer
            .flush()
            .await
            .map_err(|e| QmpError::Io(format!("write: {e}")))?;
        loop {
            let mut v = self.read_line().await?;
            if v.get("event").is_some() {
                if let Ok(e) = serde_json::from_value(v) {
                    self.events.push(e);
                }
                continue;
            }
            if let Some(e) = v.get("error") {
                let e: QmpErrorBody =
                    serde_json::from_value(e.clone()).unwrap_or_else(|_| QmpErrorBody {
                        class: "Unknown".into(),
                        desc: e.to_string(),
                    });
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: e.class,
                    desc: e.desc,
                });
            }
            if let Some(r) = v.get_mut("return") {
                return serde_json::from_value(r.take()).map_err(|e| {
                    QmpError::Protocol(format!("QMP {command}: unexpected answer: {e}"))
                });
            }
            return Err(QmpError::Protocol(format!(
                "QMP {command}: unexpected line {v}"
            )));
        }
    }

    /// A command whose answer is `{}`.
    pub async fn run(&mut self, command: &str) -> Result<(), QmpError> {
        self.execute::<Value, ()>(command, None).await.map(|_| ())
    }

    pub async fn query_status(&mut self) -> Result<StatusInfo, QmpError> {
        self.execute("query-status", None::<()>).await
    }

    pub async fn query_balloon(&mut self) -> Result<BalloonInfo, QmpError> {
        self.execute("query-balloon", None::<()>).await
    }

    /// Asks the balloon driver for `bytes` of guest memory.
    pub async fn balloon(&mut self, bytes: u64) -> Result<(), QmpError> {
        self.execute::<Value, _>("balloon", Some(serde_json::json!({ "value": bytes })))
            .await
            .map(|_| ())
    }

    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.run("system_powerdown").await
    }

    pub async fn system_reset(&mut self) -> Result<(), QmpError> {
        self.run("system_reset").await
    }

    /// Asks QEMU to exit (the answer may be lost when it exits first).
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.run("quit").await {
            Err(QmpError::Closed) => Ok(()),
            other => other,
        }
    }

    pub async fn cont(&mut self) -> Result<(), QmpError> {
        self.run("cont").await
    }

    pub async fn migrate_set_parameters(
        &mut self,
        p: &MigrationParameters,
    ) -> Result<(), QmpError> {
        self.execute::<Value, _>("migrate-set-parameters", Some(p))
            .await
            .map(|_| ())
    }

    pub async fn migrate(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute::<Value, _>("migrate", Some(serde_json::json!({ "uri": uri })))
            .await
            .map(|_| ())
    }

    pub async fn migrate_incoming(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute::<Value, _>("migrate-incoming", Some(serde_json::json!({ "uri": uri })))
            .await
            .map(|_| ())
    }

    pub async fn query_migrate(&mut self) -> Result<MigrationInfo, QmpError> {
        self.execute("query-migrate", None::<()>).await
    }

    /// Any command with JSON arguments whose answer is ignored.
    pub async fn call(&mut self, command: &str, arguments: Value) -> Result<(), QmpError> {
        self.execute::<Value, _>(command, Some(arguments))
            .await
            .map(|_| ())
    }

    pub async fn query_block_jobs(&mut self) -> Result<Vec<BlockJobInfo>, QmpError> {
        self.execute("query-block-jobs", None::<()>).await
    }

    pub async fn migrate_cancel(&mut self) -> Result<(), QmpError> {
        self.run("migrate_cancel").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Lines recorded from QEMU 10.0.2 (events arrive before and after answers).
    const TRANSCRIPT: &[(&str, &str)] = &[
        (
            "",
            r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}"#,
        ),
        (r#"{"execute":"qmp_capabilities"}"#, r#"{"return": {}}"#),
        (
            r#"{"execute":"query-status"}"#,
            r#"{"return": {"status": "running", "running": true}}"#,
        ),
        (
            r#"{"execute":"system_powerdown"}"#,
            "{\"timestamp\": {\"seconds\": 1795692903, \"microseconds\": 517831}, \"event\": \"POWERDOWN\"}\n{\"return\": {}}",
        ),
        (
            r#"{"execute":"no-such-command"}"#,
            r#"{"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}}"#,
        ),
        (
            r#"{"execute":"query-migrate"}"#,
            r#"{"return": {"status": "completed", "total-time": 812, "downtime": 21, "ram": {"transferred": 1000, "remaining": 0, "total": 134217728}}}"#,
        ),
    ];

    #[tokio::test]
    async fn events_left_before_the_greeting_are_skipped() {
        // Seen when the node connected right as a migration ended (CI: "not a QMP greeting").
        let (client, server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(server);
            let mut r = BufReader::new(r);
            let stop = r#"{"timestamp": {"seconds": 1796616586, "microseconds": 180001}, "event": "STOP"}"#;
            w.write_all(format!("{stop}\n{}\n", TRANSCRIPT[0].1).as_bytes())
                .await
                .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            w.write_all(b"{\"return\": {}}\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest).await;
        });
        let q = Qmp::handshake(client).await.unwrap();
        assert_eq!(q.version, "10.0.2");
        drop(q);
        srv.await.unwrap();
    }

    #[tokio::test]
    async fn against_recorded_transcript() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(server);
            let mut r = BufReader::new(r);
            for (expect, answer) in TRANSCRIPT {
                if !expect.is_empty() {
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    let got: Value = serde_json::from_str(&line).unwrap();
                    let want: Value = serde_json::from_str(expect).unwrap();
                    assert_eq!(got, want);
                }
                w.write_all(answer.as_bytes()).await.unwrap();
                w.write_all(b"\n").await.unwrap();
            }
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest).await;
        });
        let mut q = Qmp::handshake(client).await.unwrap();
        assert_eq!(q.version, "10.0.2");
        let st = q.query_status().await.unwrap();
        assert!(st.running);
        assert_eq!(st.status, "running");
        q.system_powerdown().await.unwrap();
        assert_eq!(q.events[0].event, "POWERDOWN");
        let e = q.run("no-such-command").await.unwrap_err().to_string();
        assert!(e.contains("CommandNotFound"), "{e}");
        let m = q.query_migrate().await.unwrap();
        assert_eq!(m.status.as_deref(), Some("completed"));
        assert_eq!(m.ram.unwrap().total, 134217728);
        drop(q);
        srv.await.unwrap();
    }
}
