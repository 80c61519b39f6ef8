//! HTTP routes of magueyd: the node RPC, the master API (for the CLI) and the join endpoints.
//!
//! Handlers are thin translators: they decode JSON, call the node runtime, the job queue's
//! submission path ([`maguey_jobs::submit`]), the join service ([`crate::join`]), the config
//! store or a query, and encode the answer. Errors are JSON `{"error": "..."}`.

use crate::join::{JoinError, JoinService};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
/// The wire types live in `maguey-client`, shared with the CLI.
pub use maguey_client::api::{
    ArchiveRequest, JoinTokenRequest, JoinTokenResponse, ListQuery, SubmitRequest, WaitRequest,
};
use maguey_jobs::submit::{submit_wire_by, Origin, SubmitError};
use maguey_jobs::JobQueue;
use maguey_node::NodeRuntime;
use maguey_ops::query::{field_list, query, QueryRequest, Resource};
use maguey_ops::Master;
use maguey_rpc::ca::ClusterCa;
use maguey_rpc::join::JoinRequest;
use maguey_rpc::version::{check_protocol, RpcRequest};
use maguey_rpc::{NodeRequest, RpcReply};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::join::JOIN_TOKEN_LIFETIME;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// `POST /rpc`: every node.
/// Only the current master (and the node itself) may call it: see [`crate::auth::NodeAuth`];
/// its stamped term is checked by [`crate::fence::check_term`].
pub fn node_router(
    node: Arc<NodeRuntime>,
    stop: tokio::sync::mpsc::Sender<super::Stop>,
    fence: crate::fence::NodeFence,
) -> Router {
    let auth = fence.auth.clone();
    Router::new()
        .merge(crate::console::node_router(node.clone()))
        .route(
            "/rpc",
            post(move |RpcRequest(req): RpcRequest<NodeRequest>| {
                let node = node.clone();
                let stop = stop.clone();
                async move {
                    let leave = super::is_leave(&req);
                    let reply = node.rpc_reply(req).await;
                    if leave && matches!(reply, RpcReply::Ok(_)) {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            let _ = stop.send(super::Stop::LeftCluster).await;
                        });
                    }
                    Json(reply)
                }
            }),
        )
        // Disk chunks of `instance move` (8 MiB, base64) exceed axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .layer(axum::middleware::from_fn_with_state(
            fence,
            crate::fence::check_term,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::require_master,
        ))
        .layer(axum::middleware::from_fn(check_protocol))
}

/// What the master's handlers share.
#[derive(Clone)]
pub struct MasterState {
    pub master: Arc<Master>,
    pub queue: Arc<JobQueue>,
    pub ca: Arc<ClusterCa>,
    pub listen: SocketAddr,
    pub watcher: Arc<maguey_ops::watcher::Watcher>,
    /// The Remote API's users file, written from the config's users.
    pub users_file: std::path::PathBuf,
    /// The admin certificate `/luxi` admits (the one `admin.pem` holds now).
    pub admin: Arc<maguey_rpc::rotate::CurrentAdmin>,
    /// The state directory (the CA is read from it: a CA roll replaces it).
    pub state_dir: std::path::PathBuf,
}

/// The master API (`/luxi/...`, admin client certificate required: a node's certificate is
/// refused) and the join endpoints.
pub fn master_router(state: MasterState) -> Router {
    let luxi = Router::new()
        .route("/luxi/submit", post(submit))
        .route("/luxi/jobs", get(list_jobs))
        .route("/luxi/jobs/{id}", get(get_job))
        .route("/luxi/jobs/{id}/wait", post(wait_job))
        .route("/luxi/jobs/{id}/cancel", post(cancel_job))
        .route("/luxi/archive", post(archive))
        .route("/luxi/watcher", post(watcher))
        .route("/luxi/queue", get(queue_info).post(queue_drain))
        .route("/luxi/os", get(os_diagnose))
        .route(
            "/luxi/rapi-users",
            get(crate::rapi_users::list).post(crate::rapi_users::add),
        )
        .route("/luxi/rapi-users/remove", post(crate::rapi_users::remove))
        .route("/luxi/query", post(run_query))
        .route("/luxi/fields/{resource}", get(fields))
        .route("/luxi/config", get(export_config))
        .route("/luxi/cluster-description", get(cluster_description))
        .route("/luxi/join-token", post(join_token))
        .route("/luxi/readd-token", post(readd_token))
        .route(
            "/luxi/instances/{name}/console",
            get(crate::console::master_console),
        )
        .route(
            "/luxi/instances/{name}/console-log",
            get(crate::console::master_console_log),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.admin.clone(),
            maguey_rpc::rotate::require_current_admin,
        ))
        .layer(axum::middleware::from_fn(
            maguey_rpc::server::require_admin_cert,
        ))
        .with_state(state.clone());
    let join = Router::new()
        .route("/join", post(join))
        .with_state(state.clone())
        .merge(maguey_rpc::join::join_ca_router_dir(
            state.state_dir.clone(),
            state.ca.cert_pem.clone(),
        ));
    luxi.merge(join)
        .layer(axum::middleware::from_fn(check_protocol))
}

/// The master API on the Remote API's port, for `maguey --cluster URL`: the same `/luxi/...`
/// routes, authenticated with the RAPI users file (HTTP Basic) instead of a client certificate.
/// Reads (job list and status, queries, field lists) need a user; everything else needs the
/// `write` option. OP_CLUSTER_DESTROY is refused there: it needs the master's own CLI; so are
/// join tokens (`node add` needs the admin certificate: a token mints a node certificate).
pub fn master_router_basic_auth(state: MasterState, rapi: maguey_rapi::Rapi) -> Router {
    let read = Router::new()
        .route("/luxi/jobs", get(list_jobs))
        .route("/luxi/jobs/{id}", get(get_job))
        .route("/luxi/query", post(run_query))
        .route("/luxi/fields/{resource}", get(fields))
        .route("/luxi/cluster-description", get(cluster_description))
        .route(
            "/luxi/instances/{name}/console-log",
            get(crate::console::master_console_log),
        )
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            rapi.clone(),
            basic_auth_read,
        ));
    let write = Router::new()
        .route("/luxi/submit", post(submit_remote))
        .route("/luxi/jobs/{id}/wait", post(wait_job))
        .route("/luxi/jobs/{id}/cancel", post(cancel_job))
        .route("/luxi/archive", post(archive))
        .route("/luxi/watcher", post(watcher))
        .route("/luxi/config", get(export_config_redacted))
        .route(
            "/luxi/instances/{name}/console",
            get(crate::console::master_console),
        )
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(rapi, basic_auth_write));
    read.merge(write)
        .layer(axum::middleware::from_fn(check_protocol))
}

async fn basic_auth(
    rapi: &maguey_rapi::Rapi,
    write: bool,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or("\u{0}invalid"));
    match rapi.authorize_user(header, write).await {
        Ok(user) => {
            let mut req = req;
            req.extensions_mut().insert(RemoteUser(user));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The Remote API user a `maguey --cluster` request authenticated as (`None`: anonymous).
#[derive(Clone)]
struct RemoteUser(Option<String>);

async fn basic_auth_read(
    State(rapi): State<maguey_rapi::Rapi>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    basic_auth(&rapi, false, req, next).await
}

async fn basic_auth_write(
    State(rapi): State<maguey_rapi::Rapi>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    basic_auth(&rapi, true, req, next).await
}

async fn submit_remote(
    State(s): State<MasterState>,
    user: Option<axum::Extension<RemoteUser>>,
    Json(req): Json<SubmitRequest>,
) -> Response {
    // Jobs record who submitted them: `remote-cli:USER`.
    let submitter = match user.and_then(|u| u.0 .0) {
        Some(name) => format!("{}:{name}", Origin::RemoteApi.submitter()),
        None => Origin::RemoteApi.submitter().to_string(),
    };
    submit_from(&s, Origin::RemoteApi, &submitter, req)
}

async fn submit(State(s): State<MasterState>, Json(req): Json<SubmitRequest>) -> Response {
    submit_from(&s, Origin::MasterApi, Origin::MasterApi.submitter(), req)
}

/// `/luxi/submit`: through the queue's one submission path (shared with the Remote API and
/// the join service).
fn submit_from(s: &MasterState, origin: Origin, submitter: &str, req: SubmitRequest) -> Response {
    match submit_wire_by(&s.queue, origin, req.ops, req.priority, submitter) {
        Ok(id) => Json(json!({"job_id": id})).into_response(),
        Err(e @ SubmitError::Forbidden(_)) => error(StatusCode::FORBIDDEN, e.to_string()),
        Err(e @ SubmitError::Busy(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e @ SubmitError::UserBusy { .. }) => {
            error(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn list_jobs(
    State(s): State<MasterState>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let jobs: Vec<Value> = s
        .queue
        .list(q.archived)
        .into_iter()
        .map(|j| {
            json!({"id": j.id, "status": j.status, "summary": j.summary, "priority": j.priority,
                   "received_ts": j.received_ts, "start_ts": j.start_ts, "end_ts": j.end_ts})
        })
        .collect();
    Json(jobs).into_response()
}

async fn get_job(State(s): State<MasterState>, Path(id): Path<u64>) -> Response {
    match s.queue.get(id) {
        Some(j) => Json(j).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("job {id} not found")),
    }
}

/// `POST /luxi/watcher`: pause, continue, info, run.
async fn watcher(
    State(s): State<MasterState>,
    Json(req): Json<maguey_client::api::WatcherRequest>,
) -> Response {
    let w = &s.watcher;
    let mut lines = Vec::new();
    let mut events = Vec::new();
    match req.action.as_str() {
        "pause" => {
            let d = match req.seconds {
                Some(x) if !(x.is_finite() && x > 0.0) => {
                    return error(StatusCode::BAD_REQUEST, "the pause must be positive")
                }
                x => x.map(Duration::from_secs_f64),
            };
            if let Err(e) = w.pause(d).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
        }
        "continue" => {
            if let Err(e) = w.resume().await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
        }
        "info" => {}
        "run" => {
            let report = w.run_once().await;
            lines = report.lines();
            events = report.events;
        }
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown watcher action '{other}' (known: pause, continue, info, run)"),
            )
        }
    }
    Json(json!({"pause": w.pause_info(), "lines": lines, "events": events})).into_response()
}

async fn wait_job(
    State(s): State<MasterState>,
    Path(id): Path<u64>,
    Json(w): Json<WaitRequest>,
) -> Response {
    if s.queue.get(id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("job {id} not found"));
    }
    let timeout = Duration::from_secs_f64(w.timeout_secs.clamp(0.0, 60.0));
    let job = s
        .queue
        .wait_for_change(id, w.status, w.log_serial, timeout)
        .await;
    Json(json!({"job": job})).into_response()
}

async fn cancel_job(State(s): State<MasterState>, Path(id): Path<u64>) -> Response {
    match s.queue.cancel(id) {
        Ok(outcome) => {
            Json(json!({"canceled": true, "message": format!("{outcome:?}")})).into_response()
        }
        Err(e) => Json(json!({"canceled": false, "message": e.to_string()})).into_response(),
    }
}

async fn archive(State(s): State<MasterState>, Json(a): Json<ArchiveRequest>) -> Response {
    // A huge, infinite or NaN age must not panic the handler: it archives nothing old enough.
    let age = Duration::try_from_secs_f64(a.age_secs.max(0.0)).unwrap_or(Duration::MAX);
    let n = s.queue.archive_older_than(age);
    Json(json!({"archived": n})).into_response()
}

/// `maguey os list|info|diagnose`: every OS definition as the nodes report it.
async fn os_diagnose(State(s): State<MasterState>) -> Response {
    match maguey_ops::os_diagnose::diagnose(&s.master).await {
        Ok(oses) => Json(oses).into_response(),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("cannot get the OS list: {e}"),
        ),
    }
}

/// `cluster queue info`: the drain flag and the jobs by status.
async fn queue_info(State(s): State<MasterState>) -> Response {
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    for j in s.queue.list(false) {
        *by_status.entry(j.status.as_str().to_string()).or_default() += 1;
    }
    Json(json!({"drained": s.queue.is_drained(), "jobs": by_status})).into_response()
}

/// `cluster queue drain|undrain`: `{"drained": bool}`.
async fn queue_drain(State(s): State<MasterState>, Json(v): Json<Value>) -> Response {
    let Some(on) = v.get("drained").and_then(Value::as_bool) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {\"drained\": true|false}",
        );
    };
    match s.queue.set_drained(on) {
        Ok(()) => queue_info(State(s)).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn run_query(State(s): State<MasterState>, Json(q): Json<QueryRequest>) -> Response {
    match query(&s.master, &q).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn fields(Path(resource): Path<String>) -> Response {
    let what = match resource.as_str() {
        "instance" => Resource::Instance,
        "node" => Resource::Node,
        "group" => Resource::Group,
        "network" => Resource::Network,
        other => return error(StatusCode::NOT_FOUND, format!("unknown resource '{other}'")),
    };
    Json(
        field_list(what)
            .iter()
            .map(|(n, d)| json!([n, d]))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

/// The live cluster as the cluster part of an iallocator message (nodes with live memory and
/// disk, groups, instances): what `maguey plan` works on without `--text`.
async fn cluster_description(State(s): State<MasterState>) -> Response {
    let cfg = s.master.config.snapshot();
    use maguey_model::DiskTemplate;
    let templates = &cfg.cluster.enabled_disk_templates;
    let template = if templates.contains(&DiskTemplate::File) {
        DiskTemplate::File
    } else {
        templates.first().copied().unwrap_or(DiskTemplate::Diskless)
    };
    Json(maguey_ops::iallocator::cluster_request(&s.master, &cfg, template).await).into_response()
}

async fn export_config(State(s): State<MasterState>) -> Response {
    Json(&*s.master.config.snapshot()).into_response()
}

/// `/luxi/config` for RAPI users: DRBD secrets replaced by `<redacted>` (only the admin
/// certificate reads them).
async fn export_config_redacted(State(s): State<MasterState>) -> Response {
    let mut cfg = (*s.master.config.snapshot()).clone();
    fn redact(disks: &mut [maguey_model::Disk]) {
        for d in disks {
            if let maguey_model::LogicalId::Drbd { secret, .. } = &mut d.logical_id {
                *secret = "<redacted>".to_string();
            }
            redact(&mut d.children);
        }
    }
    for inst in cfg.instances.values_mut() {
        redact(&mut inst.disks);
    }
    Json(cfg).into_response()
}

/// `POST /luxi/join-token`: see [`JoinService::issue_token`].
async fn join_token(State(s): State<MasterState>, Json(r): Json<JoinTokenRequest>) -> Response {
    match JoinService::from(&s).issue_token(&r).await {
        Ok(t) => Json(t).into_response(),
        Err(e) => join_error(e),
    }
}

/// `POST /luxi/readd-token`: see [`JoinService::issue_readd_token`].
async fn readd_token(
    State(s): State<MasterState>,
    Json(r): Json<maguey_client::api::ReaddTokenRequest>,
) -> Response {
    match JoinService::from(&s).issue_readd_token(&r).await {
        Ok(t) => Json(t).into_response(),
        Err(e) => join_error(e),
    }
}

/// `POST /join`: a new node presents its token and CSR; the master signs the CSR and queues
/// OP_NODE_ADD, which finishes once the node's daemon answers over mutual TLS.
async fn join(State(s): State<MasterState>, Json(r): Json<JoinRequest>) -> Response {
    match JoinService::from(&s).join(&r).await {
        Ok(j) => Json(j).into_response(),
        Err(e) => join_error(e),
    }
}

fn join_error(e: JoinError) -> Response {
    let status = match e {
        JoinError::InvalidToken => StatusCode::FORBIDDEN,
        JoinError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        JoinError::BadNodeName(_)
        | JoinError::BadIp(_)
        | JoinError::NodeExists(_)
        | JoinError::NoSuchNode(_)
        | JoinError::Readd(_)
        | JoinError::IpInUse { .. }
        | JoinError::NoSuchGroup(_)
        | JoinError::BadRoom(_)
        | JoinError::TokenNotStored(_)
        | JoinError::BadCsr(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}
