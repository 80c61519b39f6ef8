#![recursion_limit = "256"]
//! Ganeti's Remote API, version 2, served over HTTPS by the master's magueyd.
//!
//! Resources, query arguments, bodies and answers follow Ganeti's `lib/rapi/rlib2.py` and
//! `doc/rapi.rst`. The handlers (`resources`, one module per resource) are thin
//! translators: reads use the same query functions as the CLI's master API; each write parses
//! its request into a typed opcode and submits it through the queue's one submission path
//! (`maguey_jobs::submit`, as `/luxi/submit` does). Mutations answer a job id as a JSON string. Resources of
//! features Maguey does not have yet answer 501 with a message. Errors are Ganeti's JSON
//! `{"code", "message", "explain"}`.
//!
//! Authentication: HTTP Basic against a users file in Ganeti's format ([`auth`]); every
//! request needs a user unless anonymous reads are enabled (then GETs do not); writes need the
//! `write` option.

pub mod auth;
pub mod openapi;
mod resources;

use auth::{parse_authorization, Access, Credentials, UsersFile};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use maguey_jobs::JobQueue;
use maguey_ops::Master;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// Default RAPI port (Ganeti's).
pub const DEFAULT_PORT: u16 = 5080;
/// Largest accepted request body.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// RAPI version answered by `/version`.
pub const RAPI_VERSION: u32 = 2;

/// How the RAPI is set up.
#[derive(Debug, Clone)]
pub struct RapiConfig {
    /// Ganeti-format users file.
    pub users_file: PathBuf,
    /// GET requests without credentials are allowed (Ganeti's default without
    /// `--require-authentication`; Maguey's default is off).
    pub anonymous_reads: bool,
    pub max_body: usize,
}

/// Shared state of the RAPI handlers.
#[derive(Clone)]
pub struct Rapi {
    inner: Arc<Inner>,
}

struct Inner {
    master: Arc<Master>,
    /// `None` on a follower answering stale reads ([`Rapi::read_only`]).
    queue: Option<Arc<JobQueue>>,
    users: UsersFile,
    anonymous_reads: bool,
    max_body: usize,
}

impl Rapi {
    pub fn new(master: Arc<Master>, queue: Arc<JobQueue>, cfg: RapiConfig) -> Self {
        Self::with_queue(master, Some(queue), cfg)
    }

    /// The Remote API of a replica that is not the master, for stale reads
    /// (docs/replication.md): `master`'s config is the replica's; every write and every
    /// request about jobs (the queue runs on the master) answers 503 and changes nothing.
    pub fn read_only(master: Arc<Master>, cfg: RapiConfig) -> Self {
        Self::with_queue(master, None, cfg)
    }

    fn with_queue(master: Arc<Master>, queue: Option<Arc<JobQueue>>, cfg: RapiConfig) -> Self {
        Rapi {
            inner: Arc::new(Inner {
                master,
                queue,
                users: UsersFile::new(cfg.users_file),
                anonymous_reads: cfg.anonymous_reads,
                max_body: cfg.max_body,
            }),
        }
    }

    /// Checks an `Authorization` header against the users file (see [`authorize`]).
    pub async fn authorize(&self, header: Option<&str>, write: bool) -> Result<(), ApiError> {
        authorize(&self.inner.users, self.inner.anonymous_reads, header, write).await
    }

    /// As [`Rapi::authorize`], answering who the credentials name (`None`: an anonymous read).
    pub async fn authorize_user(
        &self,
        header: Option<&str>,
        write: bool,
    ) -> Result<Option<String>, ApiError> {
        authorize_user(&self.inner.users, self.inner.anonymous_reads, header, write).await
    }

    /// The job queue, or why this (read-only) Remote API has none.
    pub(crate) fn queue(&self) -> Result<&Arc<JobQueue>, ApiError> {
        self.inner.queue.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "a stale read is answered from this node's replica of the config; the job \
                 queue is on the master: ask without stale-ok",
            )
        })
    }

    /// The router: every path goes through [`handle`].
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

/// An error answered as Ganeti's JSON error body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub explain: String,
}

impl ApiError {
    pub fn new(status: StatusCode, explain: impl Into<String>) -> Self {
        ApiError {
            status,
            explain: explain.into(),
        }
    }
    pub fn bad_request(explain: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, explain)
    }
    pub fn not_found(explain: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, explain)
    }
    pub fn not_implemented(explain: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, explain)
    }
}

/// How much of a too large body is still read (and dropped) before answering 413, and for how
/// long: a client that sends its whole body before reading the answer then reads the 413
/// instead of a connection reset (the connection is closed after the answer either way).
const LINGER_BYTES: usize = 16 * 1024 * 1024;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a request body of at most `max` bytes.
async fn read_body(mut body: axum::body::Body, max: usize) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let unreadable =
        |e: axum::Error| ApiError::bad_request(format!("cannot read the request body: {e}"));
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else {
            continue;
        };
        if buf.len() + data.len() <= max {
            buf.extend_from_slice(&data);
            continue;
        }
        let mut seen = buf.len() + data.len();
        let drain = async {
            while seen <= LINGER_BYTES {
                match body.frame().await {
                    Some(Ok(f)) => seen += f.into_data().map(|d| d.len()).unwrap_or(0),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.status.as_u16(),
            "message": self.status.canonical_reason().unwrap_or("Error"),
            "explain": self.explain,
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot be reused.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Ganeti Remote API\""),
            );
        }
        r
    }
}

pub type ApiResult = Result<Value, ApiError>;

/// A parsed request.
pub struct Req {
    pub method: Method,
    /// Decoded path segments, without empty ones.
    pub segs: Vec<String>,
    pub query: Vec<(String, String)>,
    /// The JSON body; `Null` when empty.
    pub body: Value,
}

impl Req {
    /// All values of a query argument.
    pub fn query_all(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn query_str(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer query argument as a flag (Ganeti's `_checkIntVariable`): absent → default,
    /// empty → true, otherwise it must be an integer.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.query_str(name) {
            None => Ok(default),
            Some("") => Ok(true),
            Some(v) => v.trim().parse::<i64>().map(|n| n != 0).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value '{v}' for the '{name}' query argument: an integer is expected"
                ))
            }),
        }
    }
}

/// Does this request need the `write` option? Ganeti: every method but GET, and the
/// long-polling job wait.
fn needs_write(method: &Method, segs: &[String]) -> bool {
    if method != Method::GET {
        return true;
    }
    segs.len() == 4 && segs[0] == "2" && segs[1] == "jobs" && segs[3] == "wait"
}

fn split_path(path: &str) -> Result<Vec<String>, ApiError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::bad_request("the path is not valid UTF-8"))
        })
        .collect()
}

/// Checks a request's `Authorization` header: 401 without valid credentials (unless an
/// anonymous read is allowed), 403 when the user lacks the access the request needs.
pub async fn authorize(
    users: &UsersFile,
    anonymous_reads: bool,
    header: Option<&str>,
    write: bool,
) -> Result<(), ApiError> {
    authorize_user(users, anonymous_reads, header, write)
        .await
        .map(|_| ())
}

tokio::task_local! {
    /// The authenticated user of the RAPI request being served (`None`: an anonymous read);
    /// the jobs it submits record `rapi:USER` as their submitter.
    pub static USER: Option<String>;
}

/// [`authorize`], answering who the credentials name (`None` for an anonymous read).
pub async fn authorize_user(
    users: &UsersFile,
    anonymous_reads: bool,
    header: Option<&str>,
    write: bool,
) -> Result<Option<String>, ApiError> {
    let (name, access) = match parse_authorization(header) {
        Credentials::None => (None, None),
        Credentials::Malformed => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication required",
            ))
        }
        Credentials::Basic { user, password } => {
            let a = users.login(&user, &password).await;
            (Some(user), a)
        }
    };
    if name.is_some() && access.is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required",
        ));
    }
    authorize_access(access, anonymous_reads, write).map(|()| name)
}

fn authorize_access(
    access: Option<Access>,
    anonymous_reads: bool,
    write: bool,
) -> Result<(), ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "authentication required");
    match access {
        None if !write && anonymous_reads => Ok(()),
        None => Err(unauthorized()),
        Some(a) if write && !a.write => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this user may not write: the 'write' option is needed",
        )),
        Some(a) if !a.read && !a.write => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this user has no access",
        )),
        Some(_) => Ok(()),
    }
}

/// Every RAPI request.
async fn handle(State(rapi): State<Rapi>, req: Request) -> Response {
    match handle_inner(&rapi, req).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle_inner(rapi: &Rapi, req: Request) -> ApiResult {
    let r = &rapi.inner;
    let segs = split_path(req.uri().path())?;
    let method = req.method().clone();
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or("\u{0}invalid"));
    let user = authorize_user(
        &r.users,
        r.anonymous_reads,
        auth_header,
        needs_write(&method, &segs),
    )
    .await?;
    if r.queue.is_none() && needs_write(&method, &segs) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "a stale replica changes nothing: writes go to the master (without stale-ok)",
        ));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let bytes = read_body(req.into_body(), r.max_body).await?;
    let body = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    let req = Req {
        method,
        segs,
        query,
        body,
    };
    USER.scope(user, resources::dispatch(rapi, &req)).await
}

/// Where the users file lives by default: `STATE_DIR/rapi/users` (Ganeti:
/// `/var/lib/ganeti/rapi/users`).
pub fn default_users_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("rapi").join("users")
}

/// TLS of the Remote API.
pub mod tls {
    use anyhow::{Context, Result};
    use std::path::Path;
    use std::sync::Arc;

    /// A server configuration from a PEM certificate chain and key (no client certificates).
    pub fn config_from_files(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
        let cert_pem =
            std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
        let chain =
            maguey_rpc::tls::certs_from_pem(&cert_pem).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = maguey_rpc::tls::key_from_pem(&key_pem).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg = rustls::ServerConfig::builder_with_provider(maguey_rpc::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("TLS protocol versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| anyhow::anyhow!("invalid Remote API certificate or key: {e}"))?;
        Ok(Arc::new(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    async fn code(users: &UsersFile, anon: bool, h: Option<String>, write: bool) -> Option<u16> {
        authorize(users, anon, h.as_deref(), write)
            .await
            .err()
            .map(|e| e.status.as_u16())
    }

    #[tokio::test]
    async fn access_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        std::fs::write(&p, "w wpw write\nr rpw read\nn npw\n").unwrap();
        let users = UsersFile::new(p);
        // Writers read and write; readers (and users without options) only read.
        assert_eq!(
            code(&users, false, Some(basic("w", "wpw")), true).await,
            None
        );
        assert_eq!(
            code(&users, false, Some(basic("w", "wpw")), false).await,
            None
        );
        assert_eq!(
            code(&users, false, Some(basic("r", "rpw")), false).await,
            None
        );
        assert_eq!(
            code(&users, false, Some(basic("r", "rpw")), true).await,
            Some(403)
        );
        assert_eq!(
            code(&users, false, Some(basic("n", "npw")), true).await,
            Some(403)
        );
        // Wrong or missing credentials.
        assert_eq!(
            code(&users, false, Some(basic("w", "x")), false).await,
            Some(401)
        );
        assert_eq!(
            code(&users, false, Some(basic("zz", "wpw")), false).await,
            Some(401)
        );
        assert_eq!(
            code(&users, false, Some("Basic ***".into()), false).await,
            Some(401)
        );
        assert_eq!(code(&users, false, None, false).await, Some(401));
        // Anonymous reads only when configured, never anonymous writes; bad credentials
        // stay refused even then.
        assert_eq!(code(&users, true, None, false).await, None);
        assert_eq!(code(&users, true, None, true).await, Some(401));
        assert_eq!(
            code(&users, true, Some(basic("w", "x")), false).await,
            Some(401)
        );
    }

    #[test]
    fn paths_and_write_access() {
        let segs = split_path("/2/jobs/12/wait").unwrap();
        assert!(needs_write(&Method::GET, &segs));
        assert!(!needs_write(
            &Method::GET,
            &split_path("/2/jobs/12").unwrap()
        ));
        assert!(needs_write(
            &Method::DELETE,
            &split_path("/2/jobs/12").unwrap()
        ));
        assert_eq!(
            split_path("/2//nodes/a%20b/").unwrap(),
            ["2", "nodes", "a b"]
        );
        assert!(split_path("/2/%ff").is_err());
    }
}

#[cfg(test)]
mod tls_tests {
    #[test]
    fn configured_certificate_and_key() {
        let ca = maguey_rpc::ca::ClusterCa::generate("t").unwrap();
        let id = ca.issue("master", &["192.0.2.1".parse().unwrap()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&c, &id.cert_pem).unwrap();
        std::fs::write(&k, &id.key_pem).unwrap();
        assert!(super::tls::config_from_files(&c, &k).is_ok());
        // A certificate with another key is refused; a missing file names itself.
        std::fs::write(&k, &ca.key_pem).unwrap();
        assert!(super::tls::config_from_files(&c, &k).is_err());
        let e = super::tls::config_from_files(&dir.path().join("nope"), &k).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
