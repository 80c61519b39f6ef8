//! Renewing the admin and Remote API certificates in place (`maguey cluster renew-crypto
//! --new-admin-certificate`, `--new-rapi-certificate`, `--rapi-certificate FILE`;
//! docs/security.md), and the checks that follow them.
//!
//! * The admin certificate: the master's CA issues a new one into `admin.pem`/`admin.key`
//!   (0600). The master API admits only the admin certificate whose fingerprint is the one
//!   `admin.pem` holds now ([`CurrentAdmin`]): the old one is refused from then on.
//! * The Remote API certificate: `rapi.pem` in the state directory (certificate chain and
//!   key, 0600), either issued by the cluster CA for the master's name and addresses or
//!   given by the admin (checked: a certificate and the key that fits it). The Remote API
//!   serves whatever `rapi.pem` holds now ([`crate::reload::rapi_server_config`]).

use crate::ca::{fingerprint_pem, write_atomic, CertError, ClusterCa, Result, ADMIN_CERT_FILE};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The Remote API's certificate and key (PEM, one file), in the state directory.
pub const RAPI_CERT_FILE: &str = "rapi.pem";

/// On the master: a new admin certificate from the CA in `dir`, replacing `admin.pem` and
/// `admin.key`. Returns its fingerprint.
pub fn renew_admin(dir: &Path) -> Result<String> {
    let ca = ClusterCa::load(dir).map_err(|e| {
        CertError::Invalid(format!(
            "only the master, which holds the cluster CA, issues: {e}"
        ))
    })?;
    let admin = ca.issue_admin()?;
    admin.save_admin(dir)?;
    Ok(admin.fingerprint())
}

/// Checks a PEM text holding a certificate (chain) and the private key that fits its first
/// certificate; returns the certificate's fingerprint.
pub fn check_cert_and_key(pem: &str) -> Result<String> {
    let chain = crate::tls::certs_from_pem(pem)?;
    let key = crate::tls::key_from_pem(pem)?;
    let provider = crate::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::Invalid(format!("invalid private key: {e}")))?;
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| CertError::Invalid(format!("the key does not fit the certificate: {e}")))?;
    fingerprint_pem(pem)
}

/// On the master: a new Remote API certificate in `dir`: `given` (a PEM text with the
/// certificate and its key, checked), or one the cluster CA issues for `name` and `ips`.
/// Returns its fingerprint.
pub fn renew_rapi(dir: &Path, given: Option<&str>, name: &str, ips: &[IpAddr]) -> Result<String> {
    let pem = match given {
        Some(pem) => {
            check_cert_and_key(pem)?;
            pem.to_string()
        }
        None => {
            let ca = ClusterCa::load(dir).map_err(|e| {
                CertError::Invalid(format!(
                    "only the master, which holds the cluster CA, issues: {e}"
                ))
            })?;
            let id = ca.issue(name, ips)?;
            format!("{}{}{}", id.cert_pem, id.ca_pem, id.key_pem)
        }
    };
    let fp = check_cert_and_key(&pem)?;
    write_atomic(&dir.join(RAPI_CERT_FILE), &pem, 0o600)?;
    Ok(fp)
}

/// The fingerprint of the admin certificate `admin.pem` holds now, looked at again when the
/// file changes: the master API admits that admin certificate only.
#[derive(Debug)]
pub struct CurrentAdmin {
    dir: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, Option<String>)>>,
}

impl CurrentAdmin {
    pub fn new(dir: &Path) -> Self {
        CurrentAdmin {
            dir: dir.to_path_buf(),
            cached: Mutex::new(None),
        }
    }

    /// The current admin fingerprint; `None` when this node holds no admin certificate (any
    /// admin certificate of the cluster CA is then admitted, as before renewals existed).
    pub fn fingerprint(&self) -> Option<String> {
        let path = self.dir.join(ADMIN_CERT_FILE);
        let meta = std::fs::metadata(&path).ok()?;
        let stamp = (meta.modified().ok()?, meta.len());
        let mut cached = match self.cached.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((t, l, fp)) = cached.as_ref() {
            if (*t, *l) == stamp {
                return fp.clone();
            }
        }
        let fp = std::fs::read_to_string(&path)
            .ok()
            .and_then(|pem| fingerprint_pem(&pem).ok());
        *cached = Some((stamp.0, stamp.1, fp.clone()));
        fp
    }

    /// Whether `fingerprint` (of a verified admin certificate) is the current one.
    pub fn admits(&self, fingerprint: &str) -> bool {
        self.fingerprint().is_none_or(|fp| fp == fingerprint)
    }
}

/// The message of the 403 answered by [`require_current_admin`].
pub const ADMIN_CERT_RENEWED: &str =
    "this admin certificate was replaced (cluster renew-crypto): use the current admin.pem";

/// axum middleware, after [`crate::server::require_admin_cert`]: 403 unless the admin
/// certificate is the current one ([`CurrentAdmin`]).
pub async fn require_current_admin(
    axum::extract::State(current): axum::extract::State<std::sync::Arc<CurrentAdmin>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let admitted = match req.extensions().get::<crate::server::PeerIdentity>() {
        Some(crate::server::PeerIdentity(Some(p))) => p.admin && current.admits(&p.fingerprint),
        _ => false,
    };
    if admitted {
        next.run(req).await
    } else {
        (axum::http::StatusCode::FORBIDDEN, ADMIN_CERT_RENEWED).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::NodeIdentity;

    #[test]
    fn a_renewed_admin_certificate_replaces_the_old_one() {
        let t = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("rotate").unwrap();
        ca.save(t.path()).unwrap();
        let first = ca.issue_admin().unwrap();
        first.save_admin(t.path()).unwrap();
        let current = CurrentAdmin::new(t.path());
        assert!(current.admits(&first.fingerprint()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let fp = renew_admin(t.path()).unwrap();
        assert_ne!(fp, first.fingerprint());
        assert!(!current.admits(&first.fingerprint()));
        assert!(current.admits(&fp));
        assert_eq!(
            NodeIdentity::load_admin(t.path()).unwrap().fingerprint(),
            fp
        );
        // Without the CA nothing is issued.
        let other = tempfile::tempdir().unwrap();
        assert!(renew_admin(other.path()).is_err());
        // Without admin.pem every admin certificate is admitted.
        assert!(CurrentAdmin::new(other.path()).admits("x"));
    }

    #[test]
    fn rapi_certificates_issued_or_given_and_checked() {
        let t = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("rotate").unwrap();
        ca.save(t.path()).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let fp = renew_rapi(t.path(), None, "node1", &[ip]).unwrap();
        let pem = std::fs::read_to_string(t.path().join(RAPI_CERT_FILE)).unwrap();
        assert_eq!(fingerprint_pem(&pem).unwrap(), fp);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path().join(RAPI_CERT_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A given pair is installed as it is.
        let other = ClusterCa::generate("elsewhere")
            .unwrap()
            .issue("rapi", &[])
            .unwrap();
        let given = format!("{}{}", other.cert_pem, other.key_pem);
        assert_eq!(
            renew_rapi(t.path(), Some(&given), "node1", &[]).unwrap(),
            other.fingerprint()
        );
        // A key that does not fit, or no key: refused, the file unchanged.
        let mismatched = format!("{}{}", other.cert_pem, ca.key_pem);
        let e = renew_rapi(t.path(), Some(&mismatched), "node1", &[]).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = renew_rapi(t.path(), Some(&other.cert_pem), "node1", &[]).unwrap_err();
        assert!(e.to_string().contains("no private key"), "{e}");
        let now = std::fs::read_to_string(t.path().join(RAPI_CERT_FILE)).unwrap();
        assert_eq!(now, given);
    }
}
