//! Interactive serial consoles (`maguey instance console NAME`), through the master and the
//! instance's primary node, over upgraded HTTP/1.1 connections (see `maguey_rpc::console`).
//!
//! * Node: `GET /console/{name}?hypervisor=kvm` (only the master's certificate): upgrades the
//!   connection and pipes it to the instance's serial console socket. QEMU serves one client
//!   at a time, so a second console of the same instance is refused (409) instead of hanging.
//! * Master: `GET /luxi/instances/{name}/console`: finds the instance's primary node, opens the
//!   node's console with the master's certificate and splices the two upgraded connections.
//!   `GET /luxi/instances/{name}/console-log?max_bytes=N`: the last output of the console,
//!   without attaching (`{"node", "output"}`), also after the instance stopped.

use crate::api::MasterState;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maguey_model::AdminState;
use maguey_node::NodeRuntime;
use maguey_rpc::console as wire;
use maguey_rpc::{NodeRequest, PeerIdentity, RpcError};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long the node waits for QEMU's console socket to accept.
const SOCKET_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default and maximum of `max_bytes` of the console log.
pub const DEFAULT_LOG_BYTES: u64 = 64 * 1024;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// The node's console endpoint; merged into the node router (which requires a cluster
/// certificate).
pub fn node_router(node: Arc<NodeRuntime>) -> Router {
    Router::new()
        .route("/console/{name}", get(node_console))
        .with_state(node)
}

#[derive(Debug, Deserialize)]
struct NodeConsoleQuery {
    #[serde(default = "default_hypervisor")]
    hypervisor: String,
}

fn default_hypervisor() -> String {
    "kvm".to_string()
}

/// Serial console sockets with a client attached on this node.
fn attached() -> &'static Mutex<HashSet<PathBuf>> {
    static ATTACHED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    ATTACHED.get_or_init(Default::default)
}

/// One attached console; released when dropped.
struct Attached(PathBuf);

impl Attached {
    fn claim(socket: PathBuf) -> Option<Attached> {
        let mut set = attached().lock().unwrap_or_else(|e| e.into_inner());
        // A refused claim must not create (and so drop) a guard: its drop takes the lock.
        if set.insert(socket.clone()) {
            Some(Attached(socket))
        } else {
            None
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        attached()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

async fn node_console(
    State(node): State<Arc<NodeRuntime>>,
    PeerIdentity(peer): PeerIdentity,
    Path(name): Path<String>,
    Query(q): Query<NodeConsoleQuery>,
    mut req: Request,
) -> Response {
    // Only the master opens consoles on nodes; clients go through it.
    let master = maguey_node::read_ssconf(&node.config().state_dir).map(|s| s.master_node);
    let peer_name = peer.map(|p| p.common_name).unwrap_or_default();
    if master.as_deref() != Some(peer_name.as_str()) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "only the master opens consoles on node {} (client certificate of '{peer_name}')",
                node.config().node_name
            ),
        );
    }
    if !wire::wants_upgrade(req.headers()) {
        return wire::upgrade_required();
    }
    if let Err(e) = node.hypervisor(&q.hypervisor) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let socket = match node.serial_socket(&name, &q.hypervisor) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::CONFLICT, e.to_string()),
    };
    let Some(slot) = Attached::claim(socket.clone()) else {
        return error(
            StatusCode::CONFLICT,
            format!("the console of instance {name} is in use by another client (one at a time)"),
        );
    };
    let unix = match tokio::time::timeout(
        SOCKET_CONNECT_TIMEOUT,
        tokio::net::UnixStream::connect(&socket),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "cannot open the console of instance {name} on node {}: {e}",
                    node.config().node_name
                ),
            )
        }
        Err(_) => {
            return error(
                StatusCode::CONFLICT,
                format!("the console socket of instance {name} does not answer"),
            )
        }
    };
    let upgrade = wire::take_upgrade(&mut req);
    tokio::spawn(async move {
        let _slot = slot;
        match upgrade.await {
            Ok(up) => wire::splice(up, unix).await,
            Err(e) => tracing::debug!("console of {name}: {e}"),
        }
    });
    wire::switching_protocols()
}

/// The instance, its primary node's name and address, or why not (status, message).
fn locate(
    s: &MasterState,
    name: &str,
) -> Result<(maguey_model::Instance, String, String), (StatusCode, String)> {
    let cfg = s.master.config.snapshot();
    let Some(inst) = cfg.instance_by_name(name) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("instance {name} does not exist"),
        ));
    };
    let Some(node) = cfg.nodes.get(&inst.primary_node) else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the primary node of instance {name} is not in the configuration"),
        ));
    };
    let addr = format!("{}:{}", node.primary_ip, cfg.cluster.rpc_port);
    Ok((inst.clone(), node.name.clone(), addr))
}

/// `GET /luxi/instances/{name}/console` (upgrade): the instance's serial console.
pub async fn master_console(
    State(s): State<MasterState>,
    Path(name): Path<String>,
    mut req: Request,
) -> Response {
    if !wire::wants_upgrade(req.headers()) {
        return wire::upgrade_required();
    }
    let (inst, node_name, addr) = match locate(&s, &name) {
        Ok(x) => x,
        Err((status, msg)) => return error(status, msg),
    };
    if inst.admin_state != AdminState::Up {
        return error(
            StatusCode::CONFLICT,
            format!(
                "instance {name} is not running (administratively {})",
                inst.admin_state.as_str()
            ),
        );
    }
    let url = format!(
        "https://{addr}/console/{name}?hypervisor={}",
        inst.hypervisor
    );
    let node_stream = match wire::connect(&s.master.rpc.http_now(), &url).await {
        Ok(n) => n,
        Err(wire::ConsoleError::Refused { status, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            // The node refused: its reasons are the client's (busy, not running, ...).
            let status = if status.is_client_error() && status != StatusCode::FORBIDDEN {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            return error(status, format!("node {node_name}: {message}"));
        }
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach node {node_name}: {e}"),
            )
        }
    };
    let upgrade = wire::take_upgrade(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => wire::splice(up, node_stream).await,
            Err(e) => tracing::debug!("console of {name}: {e}"),
        }
    });
    wire::switching_protocols()
}

#[derive(Debug, Deserialize)]
pub struct ConsoleLogQuery {
    #[serde(default)]
    max_bytes: Option<u64>,
}

/// `GET /luxi/instances/{name}/console-log?max_bytes=N`: the last console output.
pub async fn master_console_log(
    State(s): State<MasterState>,
    Path(name): Path<String>,
    Query(q): Query<ConsoleLogQuery>,
) -> Response {
    let (inst, node_name, addr) = match locate(&s, &name) {
        Ok(x) => x,
        Err((status, msg)) => return error(status, msg),
    };
    let req = NodeRequest::InstanceConsole {
        name: inst.name.clone(),
        hypervisor: inst.hypervisor.to_string(),
        max_bytes: q
            .max_bytes
            .unwrap_or(DEFAULT_LOG_BYTES)
            .min(maguey_node::MAX_CONSOLE_BYTES),
    };
    match s.master.rpc.call::<String>(&addr, &req).await {
        Ok(output) => Json(json!({"node": node_name, "output": output})).into_response(),
        Err(RpcError::Remote(e)) => error(StatusCode::CONFLICT, format!("node {node_name}: {e}")),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("cannot reach node {node_name}: {e}"),
        ),
    }
}
