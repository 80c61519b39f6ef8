//! Live migration over TLS (docs/security.md): QEMU's `tls-creds-x509` objects made of this
//! node's certificate (`node.pem`, `node.key`) and the cluster CA (`ca.pem`), for the
//! migration stream and for the NBD exports of a local-disk migration.
//!
//! * The target (server) verifies the client's certificate against the CA, and its
//!   `authz-simple` object admits only the source node's certificate (its subject).
//! * The source (client) verifies the server's certificate against the CA and checks that it
//!   names the target node (`tls-hostname`).
//!
//! QEMU reads the files when the object is created (`object-add`), as the user it runs as:
//! they are copied into a fresh directory of that user (under the temporary directory when it
//! is not root) and removed again at once; QEMU keeps them in memory. Each migration loads them afresh, so a
//! renewed certificate serves the next migration.

use super::KvmHypervisor;
use crate::error::{NodeError, NodeResult};
use maguey_rpc::ca::{CA_CERT_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use std::path::Path;

/// The prefix of the ids of the `tls-creds-x509` and `authz-simple` objects of a migrating
/// QEMU; each attempt adds fresh ones (an NBD client of a failed attempt may still hold the
/// previous credentials) and deletes the earlier ones it can.
const ID_PREFIX: &str = "maguey-tls-";

/// The finite-field Diffie-Hellman group `ffdhe2048` of RFC 7919 (PKCS#3 PEM, public).
/// QEMU's TLS server loads `dh-params.pem` from its credentials directory and, when the file
/// is missing, *generates* 2048-bit parameters at every `object-add` (0.1–1.3 s measured
/// here, the bulk of a small TLS migration's extra time), though TLS 1.3 never uses them.
const DH_PARAMS_PEM: &str = "-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// The QOM ids of one attempt's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsIds {
    /// `tls-creds-x509`.
    pub creds: String,
    /// `authz-simple` (servers only).
    pub authz: String,
}

/// Which side of the TLS session a QEMU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// The migration target: listens, verifies the client and authorizes one node.
    Server,
    /// The migration source: dials, verifies the server.
    Client,
}

/// The identity QEMU's `tls-authz` sees for a node's certificate: gnutls' distinguished name
/// of its subject, in certificate order (the cluster CA writes `CN=node, O=Maguey`).
pub fn x509_identity(node: &str) -> String {
    format!("CN={node},O=Maguey")
}

/// The uid and gid a process runs as (`/proc/PID/status`), if it can be read.
fn process_ids(pid: u32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

/// Writes QEMU's credentials directory for `endpoint` from the node's files in `state_dir`,
/// owned by `owner` (the QEMU process's uid and gid) when it is not root.
fn write_creds_dir(
    state_dir: &Path,
    dir: &Path,
    endpoint: Endpoint,
    owner: Option<(u32, u32)>,
) -> NodeResult<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let read = |f: &str| {
        std::fs::read(state_dir.join(f)).map_err(|e| {
            NodeError::io(format!(
                "migration over TLS needs this node's certificate: cannot read {}: {e}",
                state_dir.join(f).display()
            ))
        })
    };
    let (ca, cert, key) = (
        read(CA_CERT_FILE)?,
        read(NODE_CERT_FILE)?,
        read(NODE_KEY_FILE)?,
    );
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| NodeError::io(format!("{p}: {e}"))
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let side = match endpoint {
        Endpoint::Server => "server",
        Endpoint::Client => "client",
    };
    let dh = DH_PARAMS_PEM.as_bytes().to_vec();
    let mut files = vec![
        ("ca-cert.pem".to_string(), &ca),
        (format!("{side}-cert.pem"), &cert),
        (format!("{side}-key.pem"), &key),
    ];
    if endpoint == Endpoint::Server {
        files.push(("dh-params.pem".to_string(), &dh));
    }
    for (file, data) in files {
        let p = dir.join(file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(io(&p))?;
        f.write_all(data).map_err(io(&p))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io(&p))?;
        }
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io(dir))?;
    }
    Ok(())
}

impl KvmHypervisor {
    /// Loads this node's certificate into the instance's QEMU (`tls-creds-x509`, replacing
    /// earlier ones); a server also gets the `authz-simple` object admitting only `peer`.
    pub(super) async fn add_tls_creds(
        &self,
        name: &str,
        pid: u32,
        endpoint: Endpoint,
        peer: &str,
    ) -> NodeResult<TlsIds> {
        maguey_model::names::validate_hostname(peer)
            .map_err(|e| NodeError::bad_request(format!("invalid migration peer: {e}")))?;
        // QEMU reads the files as the user it runs as: in a fresh directory of its own
        // under the system's temporary directory (the node's state directory is 0700),
        // created by root, then handed to the user.
        let owner = process_ids(pid).filter(|(uid, _)| *uid != 0);
        let dir = match owner {
            None => self.run_dir.join(format!("{name}.tls")),
            Some(_) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                std::env::temp_dir().join(format!("maguey-tls-{name}-{pid}-{stamp}"))
            }
        };
        let r = async {
            write_creds_dir(&self.state_dir, &dir, endpoint, owner)?;
            let mut q = self.qmp(name).await?;
            let listed = q
                .execute::<serde_json::Value, _>(
                    "qom-list",
                    Some(serde_json::json!({"path": "/objects"})),
                )
                .await;
            if let Ok(objects) = listed {
                let ids = objects.as_array().into_iter().flatten();
                for id in ids.filter_map(|o| o["name"].as_str()) {
                    if id.starts_with(ID_PREFIX) {
                        let _ = q.call("object-del", serde_json::json!({ "id": id })).await;
                    }
                }
            }
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let ids = TlsIds {
                creds: format!("{ID_PREFIX}creds-{stamp}"),
                authz: format!("{ID_PREFIX}authz-{stamp}"),
            };
            let side = match endpoint {
                Endpoint::Server => "server",
                Endpoint::Client => "client",
            };
            q.call(
                "object-add",
                serde_json::json!({"qom-type": "tls-creds-x509", "id": ids.creds,
                    "dir": dir.display().to_string(), "endpoint": side, "verify-peer": true}),
            )
            .await
            .map_err(|e| NodeError::from(e).context(format!("instance {name}: TLS credentials")))?;
            if endpoint == Endpoint::Server {
                q.call(
                    "object-add",
                    serde_json::json!({"qom-type": "authz-simple", "id": ids.authz,
                        "identity": x509_identity(peer)}),
                )
                .await?;
            }
            Ok::<TlsIds, NodeError>(ids)
        }
        .await;
        // QEMU holds the credentials in memory from now on.
        let _ = std::fs::remove_dir_all(&dir);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_subject_in_certificate_order() {
        assert_eq!(x509_identity("node2"), "CN=node2,O=Maguey");
    }

    #[test]
    fn creds_dir_holds_the_node_files_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let ca = maguey_rpc::ClusterCa::generate("c").unwrap();
        ca.issue("node1", &[]).unwrap().save(t.path()).unwrap();
        let dir = t.path().join("vm.tls");
        write_creds_dir(t.path(), &dir, Endpoint::Client, None).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ca-cert.pem", "client-cert.pem", "client-key.pem"]);
        // A server gets the fixed DH group: QEMU would generate one otherwise.
        let server = t.path().join("vm-server.tls");
        write_creds_dir(t.path(), &server, Endpoint::Server, None).unwrap();
        let dh = std::fs::read_to_string(server.join("dh-params.pem")).unwrap();
        assert!(dh.starts_with("-----BEGIN DH PARAMETERS-----"), "{dh}");
        let mode = std::fs::metadata(dir.join("client-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read(dir.join("client-key.pem")).unwrap(),
            std::fs::read(t.path().join("node.key")).unwrap()
        );
        // Without a certificate there is nothing to migrate with.
        let empty = tempfile::tempdir().unwrap();
        let e = write_creds_dir(
            empty.path(),
            &empty.path().join("x"),
            Endpoint::Server,
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("needs this node's certificate"),
            "{e}"
        );
    }
}
