//! Replacing the cluster CA in place (`maguey cluster renew-crypto --new-cluster-certificate`,
//! docs/security.md). The roll, driven by the master's job under the whole cluster's lock:
//!
//! 1. [`prepare`] on the master: a new CA, kept aside (`ca.next.pem`, `ca.next.key` 0600);
//! 2. [`trust`] on every node: `ca.pem` holds the current CA and the new one; servers and
//!    clients trust both from their next handshake ([`crate::reload`], [`crate::tls::ca_roots`]);
//! 3. every node gets a certificate from the new CA (the renewal of [`crate::renew`], signed
//!    with [`sign_next`]);
//! 4. [`finish`] on every node, the master last: `ca.pem` holds the new CA only (a node whose
//!    own certificate is not from it refuses), and on the master the new key becomes `ca.key`.
//!    Certificates of the old CA are refused from then on.

use crate::ca::{
    cert_der_from_pem, fingerprint_pem, io_err, write_atomic, CertError, ClusterCa, NodeIdentity,
    Result, CA_CERT_FILE, CA_KEY_FILE,
};
use std::path::Path;

/// The new CA of a roll in progress, on the master.
pub const NEXT_CA_CERT_FILE: &str = "ca.next.pem";
pub const NEXT_CA_KEY_FILE: &str = "ca.next.key";

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// The new CA kept aside on the master.
fn next_ca(dir: &Path) -> Result<ClusterCa> {
    let ca = ClusterCa {
        cert_pem: read(&dir.join(NEXT_CA_CERT_FILE))
            .map_err(|e| CertError::Invalid(format!("no CA roll in progress on this node: {e}")))?,
        key_pem: read(&dir.join(NEXT_CA_KEY_FILE))?,
    };
    Ok(ca)
}

/// Step 1, on the master (it holds the CA): a new CA named like the current one, kept aside.
/// Returns its certificate.
pub fn prepare(dir: &Path, cluster_name: &str) -> Result<String> {
    ClusterCa::load(dir).map_err(|e| {
        CertError::Invalid(format!(
            "only the master, which holds the cluster CA, rolls it: {e}"
        ))
    })?;
    let ca = ClusterCa::generate(cluster_name)?;
    write_atomic(&dir.join(NEXT_CA_KEY_FILE), &ca.key_pem, 0o600)?;
    write_atomic(&dir.join(NEXT_CA_CERT_FILE), &ca.cert_pem, 0o644)?;
    Ok(ca.cert_pem)
}

/// Checks that `pem` is one CA certificate.
fn check_ca(pem: &str) -> Result<String> {
    let certs = crate::tls::certs_from_pem(pem)?;
    if certs.len() != 1 {
        return Err(CertError::Invalid(format!(
            "expected one CA certificate, got {}",
            certs.len()
        )));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| CertError::Invalid(format!("invalid CA certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(CertError::Invalid("not a CA certificate".into()));
    }
    fingerprint_pem(pem)
}

/// Step 2, on every node: trust `new_ca_pem` beside the CA(s) `ca.pem` holds (appended: the
/// current CA stays first). Doing it twice changes nothing; an abandoned roll's CA stays
/// trusted until a roll finishes.
pub fn trust(dir: &Path, new_ca_pem: &str) -> Result<()> {
    check_ca(new_ca_pem)?;
    let path = dir.join(CA_CERT_FILE);
    let current = read(&path)?;
    let new_der = cert_der_from_pem(new_ca_pem)?;
    if crate::tls::certs_from_pem(&current)?.contains(&new_der) {
        return Ok(());
    }
    let mut bundle = current.trim_end().to_string();
    bundle.push('\n');
    write_atomic(&path, &format!("{bundle}{new_ca_pem}"), 0o644)
}

/// Step 3's signature, on the master: a node's CSR signed by the new CA.
pub fn sign_next(
    dir: &Path,
    csr_pem: &str,
    node_name: &str,
    ips: &[std::net::IpAddr],
    lifetime: Option<std::time::Duration>,
) -> Result<String> {
    next_ca(dir)?.sign_csr_for(csr_pem, node_name, ips, lifetime)
}

/// Step 4, on every node: `ca.pem` := `new_ca_pem` alone, once this node's own certificate
/// is from it; on the master the new key becomes `ca.key` and the files of the roll go.
pub fn finish(dir: &Path, new_ca_pem: &str) -> Result<()> {
    check_ca(new_ca_pem)?;
    let id = NodeIdentity::load(dir)?;
    crate::renew::verify_with(&id.cert_pem, new_ca_pem).map_err(|e| {
        CertError::Invalid(format!(
            "this node's certificate is not from the new CA yet (renew it first): {e}"
        ))
    })?;
    let next_cert = dir.join(NEXT_CA_CERT_FILE);
    if next_cert.exists() {
        let next = next_ca(dir)?;
        if fingerprint_pem(&next.cert_pem)? != fingerprint_pem(new_ca_pem)? {
            return Err(CertError::Invalid(
                "the new CA is not the one this master prepared".into(),
            ));
        }
        write_atomic(&dir.join(CA_KEY_FILE), &next.key_pem, 0o600)?;
        write_atomic(&dir.join(CA_CERT_FILE), new_ca_pem, 0o644)?;
        ClusterCa::load(dir)?;
        let _ = std::fs::remove_file(dir.join(NEXT_CA_KEY_FILE));
        let _ = std::fs::remove_file(&next_cert);
        return Ok(());
    }
    write_atomic(&dir.join(CA_CERT_FILE), new_ca_pem, 0o644)
}

/// On a master candidate of a replicated cluster: the CA key its leader hands it
/// (`/raft/secrets`) becomes `ca.key` when it belongs to the CA that `ca.pem` holds (first);
/// so, after a roll, the new CA's key replaces the old one once this node trusts the new CA.
/// Answers whether `ca.key` changed; a key of another CA is refused.
pub fn adopt_key(dir: &Path, key_pem: &str) -> Result<bool> {
    let key_path = dir.join(CA_KEY_FILE);
    if read(&key_path).is_ok_and(|k| k == key_pem) {
        return Ok(false);
    }
    ClusterCa {
        cert_pem: read(&dir.join(CA_CERT_FILE))?,
        key_pem: key_pem.to_string(),
    }
    .check()?;
    write_atomic(&key_path, key_pem, 0o600)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_adopts_the_key_of_the_ca_it_trusts_only() {
        let d = tempfile::tempdir().unwrap();
        let old = ClusterCa::generate("adopt").unwrap();
        let new = ClusterCa::generate("adopt").unwrap();
        std::fs::write(d.path().join(CA_CERT_FILE), &old.cert_pem).unwrap();
        assert!(adopt_key(d.path(), &old.key_pem).unwrap());
        assert!(!adopt_key(d.path(), &old.key_pem).unwrap());
        // The new CA's key while ca.pem still holds the old CA: refused, ca.key kept.
        assert!(adopt_key(d.path(), &new.key_pem).is_err());
        assert_eq!(ClusterCa::load(d.path()).unwrap().key_pem, old.key_pem);
        // After the roll's finish (ca.pem: the new CA alone) it is adopted.
        std::fs::write(d.path().join(CA_CERT_FILE), &new.cert_pem).unwrap();
        assert!(adopt_key(d.path(), &new.key_pem).unwrap());
        assert_eq!(ClusterCa::load(d.path()).unwrap().key_pem, new.key_pem);
    }

    #[test]
    fn a_roll_trusts_both_then_only_the_new_ca() {
        let master = tempfile::tempdir().unwrap();
        let node = tempfile::tempdir().unwrap();
        let old = ClusterCa::generate("roll").unwrap();
        old.save(master.path()).unwrap();
        old.issue("node1", &[])
            .unwrap()
            .save(master.path())
            .unwrap();
        let old_node2 = old.issue("node2", &[]).unwrap();
        old_node2.save(node.path()).unwrap();

        // Only the CA's holder prepares.
        assert!(prepare(node.path(), "roll").is_err());
        let new_pem = prepare(master.path(), "roll").unwrap();
        let key_mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(master.path().join(NEXT_CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(key_mode & 0o777, 0o600);
        // Not yet a CA to finish with: the node's certificate is from the old one.
        trust(node.path(), &new_pem).unwrap();
        trust(node.path(), &new_pem).unwrap();
        let bundle = std::fs::read_to_string(node.path().join(CA_CERT_FILE)).unwrap();
        assert_eq!(crate::tls::certs_from_pem(&bundle).unwrap().len(), 2);
        let e = finish(node.path(), &new_pem).unwrap_err();
        assert!(e.to_string().contains("not from the new CA"), "{e}");
        // A certificate of the old CA still verifies against the bundle, and so does one
        // from the new CA.
        crate::renew::verify_with(&old_node2.cert_pem, &bundle).unwrap();
        let csr = crate::renew::prepare(node.path(), "node2").unwrap();
        let cert = sign_next(master.path(), &csr, "node2", &[], None).unwrap();
        crate::renew::install(node.path(), "node2", &cert).unwrap();
        finish(node.path(), &new_pem).unwrap();
        let only = std::fs::read_to_string(node.path().join(CA_CERT_FILE)).unwrap();
        assert_eq!(only, new_pem);
        assert!(crate::renew::verify_with(&old_node2.cert_pem, &only).is_err());

        // The master: its own certificate first, then the key moves.
        trust(master.path(), &new_pem).unwrap();
        let csr = crate::renew::prepare(master.path(), "node1").unwrap();
        let cert = sign_next(master.path(), &csr, "node1", &[], None).unwrap();
        crate::renew::install(master.path(), "node1", &cert).unwrap();
        // A CA it did not prepare is refused.
        let stray = ClusterCa::generate("stray").unwrap();
        assert!(finish(master.path(), &stray.cert_pem).is_err());
        finish(master.path(), &new_pem).unwrap();
        let ca = ClusterCa::load(master.path()).unwrap();
        assert_eq!(ca.cert_pem, new_pem);
        assert!(!master.path().join(NEXT_CA_KEY_FILE).exists());
    }
}
