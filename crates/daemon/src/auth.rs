//! Who may call what on magueyd (docs/security.md):
//!
//! * the node RPC (`/rpc`, node consoles) answers only the current master: the certificate
//!   whose fingerprint the master published in the ssconf (`master_certificate`), or, before
//!   the first ssconf reaches a new node, the one the master named when the node joined; and
//!   the node's own certificate (the master calls itself). In a replicated cluster (ssconf
//!   `replicated`) every master candidate's certificate (`master_candidate_certificates`):
//!   whichever wins the election is the master, fenced by its term;
//! * the master API (`/luxi/...`) answers only admin certificates
//!   ([`maguey_rpc::server::require_admin_cert`]).
//!
//! A node's certificate is valid while its fingerprint is the master's: a removed node's
//! certificate, or one signed for a node whose OP_NODE_ADD failed, commands nothing.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maguey_rpc::{PeerCert, PeerIdentity};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file, in the state directory, naming the master a node joined (until its first ssconf).
pub const JOINED_MASTER_FILE: &str = "joined-master.json";

/// The master a node joined, as the master's join answer named it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedMaster {
    pub name: String,
    /// SHA-256 (hex) of the master's certificate; empty from masters that do not tell it.
    #[serde(default)]
    pub certificate: String,
}

impl JoinedMaster {
    pub fn load(dir: &Path) -> Option<JoinedMaster> {
        let bytes = std::fs::read(dir.join(JOINED_MASTER_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        maguey_node::write_atomic(&dir.join(JOINED_MASTER_FILE), &bytes).map_err(anyhow::Error::msg)
    }
}

/// The node RPC's authorization: the current master's certificate only.
#[derive(Debug, Clone)]
pub struct NodeAuth {
    /// Where the ssconf and the join file are.
    pub state_dir: PathBuf,
}

impl NodeAuth {
    /// Whether `peer` may command this node; the refusal says why.
    pub fn check(&self, peer: Option<&PeerCert>) -> Result<(), String> {
        let Some(peer) = peer else {
            return Err(maguey_rpc::server::PEER_CERT_REQUIRED.to_string());
        };
        if peer.admin {
            return Err(
                "an admin certificate does not command nodes: submit a job to the master".into(),
            );
        }
        let ssconf = maguey_node::read_ssconf(&self.state_dir);
        // A replicated cluster's master is whichever candidate leads: every candidate's
        // certificate commands the node (a new leader must reach nodes before they learn it).
        if ssconf.as_ref().is_some_and(|ss| {
            ss.replicated
                && !peer.fingerprint.is_empty()
                && ss.master_candidate_certificates.contains(&peer.fingerprint)
        }) {
            return Ok(());
        }
        let (name, fingerprint) = match ssconf {
            Some(ss) => (ss.master_node, ss.master_certificate),
            None => match JoinedMaster::load(&self.state_dir) {
                Some(m) => (m.name, m.certificate),
                None => (String::new(), String::new()),
            },
        };
        let allowed = if fingerprint.is_empty() {
            // A master that records no identities (older config): its name.
            !name.is_empty() && peer.common_name == name
        } else {
            peer.fingerprint == fingerprint
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "only the master commands this node: the certificate of '{}' (fingerprint {}) is \
                 not the current master's",
                peer.common_name, peer.fingerprint
            ))
        }
    }
}

/// axum middleware: 403 unless [`NodeAuth::check`] lets the peer in.
pub async fn require_master(State(auth): State<NodeAuth>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<PeerIdentity>().cloned();
    match auth.check(peer.as_ref().and_then(|p| p.0.as_ref())) {
        Ok(()) => next.run(req).await,
        Err(e) => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
    }
}

/// Files of the state directory that hold secrets or cluster state: owner only (0600).
const PRIVATE_FILES: &[&str] = &[
    "config.redb",
    "jobs.redb",
    "config.redb.v2-backup",
    "jobs.redb.v2-backup",
    "magueyd.log",
    "ca.key",
    "node.key",
    "admin.key",
    "admin.pem",
];

/// At start: everything magueyd and its children create is owner-only (umask 077), the state
/// directory is 0700 and its stores, keys and log 0600 (also those of older versions).
pub fn harden_state_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow::anyhow!("setting the mode of {}: {e}", dir.display()))?;
    for f in PRIVATE_FILES {
        let p = dir.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| anyhow::anyhow!("setting the mode of {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// The RAPI users file (password hashes) must not be readable or writable by others: a
/// refusal to start names the fix.
pub fn check_users_file_mode(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // no users file: no RAPI users
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the RAPI users file {} has mode {mode:o}: it holds password hashes and must be \
             readable by its owner only (chmod 600 {})",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use maguey_model::Ssconf;

    #[test]
    fn modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        std::fs::write(&users, "u p write\n").unwrap();
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_users_file_mode(&users).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_users_file_mode(&users).unwrap();
        check_users_file_mode(&dir.path().join("none")).unwrap();
        std::fs::write(dir.path().join("config.redb"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("config.redb"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        harden_state_dir(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join("config.redb")), 0o600);
        // Files created afterwards are owner-only too.
        std::fs::write(dir.path().join("new.log"), "x").unwrap();
        assert_eq!(mode(&dir.path().join("new.log")), 0o600);
    }

    fn peer(name: &str, fp: &str, admin: bool) -> PeerCert {
        PeerCert {
            common_name: name.into(),
            fingerprint: fp.into(),
            admin,
        }
    }

    #[test]
    fn only_the_master() {
        let dir = tempfile::tempdir().unwrap();
        let auth = NodeAuth {
            state_dir: dir.path().to_path_buf(),
        };
        let master = peer("node1", "m", false);
        let other = peer("node3", "o", false);
        // Nothing known yet: nobody.
        assert!(auth.check(Some(&master)).is_err());
        assert!(auth.check(None).is_err());
        // Joined: the master named at join time.
        JoinedMaster {
            name: "node1".into(),
            certificate: "m".into(),
        }
        .save(dir.path())
        .unwrap();
        assert!(auth.check(Some(&master)).is_ok());
        assert!(auth.check(Some(&other)).is_err());
        // A node named like the master with another certificate (e.g. removed and re-added).
        assert!(auth.check(Some(&peer("node1", "old", false))).is_err());
        // The ssconf wins over the join file.
        let ss = Ssconf {
            master_node: "node3".into(),
            master_certificate: "o".into(),
            ..Default::default()
        };
        std::fs::write(
            dir.path().join(maguey_node::SSCONF_FILE),
            serde_json::to_vec(&ss).unwrap(),
        )
        .unwrap();
        assert!(auth.check(Some(&other)).is_ok());
        assert!(auth.check(Some(&master)).is_err());
        // Admin certificates never command nodes.
        let e = auth
            .check(Some(&peer("maguey admin", "o", true)))
            .unwrap_err();
        assert!(e.contains("admin"), "{e}");
        // An ssconf without fingerprints (older master): by name.
        let ss = Ssconf {
            master_node: "node1".into(),
            ..Default::default()
        };
        std::fs::write(
            dir.path().join(maguey_node::SSCONF_FILE),
            serde_json::to_vec(&ss).unwrap(),
        )
        .unwrap();
        assert!(auth.check(Some(&peer("node1", "x", false))).is_ok());
        assert!(auth.check(Some(&other)).is_err());
        // A replicated cluster: every candidate's certificate, no other.
        let ss = Ssconf {
            master_node: "node1".into(),
            master_certificate: "m".into(),
            master_candidate_certificates: vec!["m".into(), "o".into()],
            ..Default::default()
        };
        let write = |ss: &Ssconf| {
            std::fs::write(
                dir.path().join(maguey_node::SSCONF_FILE),
                serde_json::to_vec(ss).unwrap(),
            )
            .unwrap()
        };
        write(&ss);
        assert!(auth.check(Some(&other)).is_err(), "single master: only it");
        write(&Ssconf {
            replicated: true,
            ..ss
        });
        assert!(auth.check(Some(&other)).is_ok());
        assert!(auth.check(Some(&master)).is_ok());
        assert!(auth.check(Some(&peer("node4", "x", false))).is_err());
        assert!(auth.check(Some(&peer("maguey admin", "o", true))).is_err());
    }
}
