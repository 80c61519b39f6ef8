//! `maguey rapi-user`: Remote API users kept in the config and written by the master to its
//! RAPI users file (Ganeti's format, `{HA1}` hashes, mode 0600). The Remote API rereads the
//! file when it changes. Lines of users the config does not hold (written by hand) are kept.

use crate::api::MasterState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maguey_config::Command;
use maguey_model::RapiUser;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Rewrites the users file: the config's users, then every other line as it was, minus the
/// users named in `removed`.
pub fn sync_users_file(
    path: &Path,
    users: &BTreeMap<String, RapiUser>,
    removed: &[&str],
) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::from("# Ganeti RAPI users: user password [read|write|read,write]\n");
    for line in old.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let managed = users.contains_key(first) || removed.contains(&first);
        if !managed && !line.starts_with("# Ganeti RAPI users:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    for u in users.values() {
        out.push_str(&format!(
            "{} {}{}\n",
            u.name,
            u.password,
            if u.write { " write" } else { "" }
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".users.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(out.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// `GET /luxi/rapi-users`: names and access, never the hashes.
pub async fn list(State(s): State<MasterState>) -> Response {
    list_response(&s)
}

fn list_response(s: &MasterState) -> Response {
    let cfg = s.master.config.snapshot();
    let users: Vec<Value> = cfg
        .rapi_users
        .values()
        .map(|u| json!({"name": u.name, "write": u.write}))
        .collect();
    Json(users).into_response()
}

#[derive(Deserialize)]
pub struct AddRequest {
    name: String,
    password: String,
    #[serde(default)]
    write: bool,
}

/// `POST /luxi/rapi-users`: adds or replaces a user (the password hashed here, never stored).
pub async fn add(State(s): State<MasterState>, Json(r): Json<AddRequest>) -> Response {
    if r.password.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the password is empty");
    }
    let user = RapiUser {
        password: maguey_rapi::auth::ha1(&r.name, &r.password),
        name: r.name,
        write: r.write,
    };
    apply(&s, Command::SetRapiUser { user }, &[]).await
}

#[derive(Deserialize)]
pub struct RemoveRequest {
    name: String,
}

/// `POST /luxi/rapi-users/remove`.
pub async fn remove(State(s): State<MasterState>, Json(r): Json<RemoveRequest>) -> Response {
    let name = r.name.clone();
    apply(&s, Command::RemoveRapiUser { name: r.name }, &[&name]).await
}

async fn apply(s: &MasterState, cmd: Command, removed: &[&str]) -> Response {
    if let Err(e) = s.master.config.apply(cmd).await {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let cfg = s.master.config.snapshot();
    match sync_users_file(&s.users_file, &cfg.rapi_users, removed) {
        Ok(()) => list_response(s),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing {}: {e}", s.users_file.display()),
        ),
    }
}
