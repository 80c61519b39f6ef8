//! Renewing a node's certificate in place (`maguey cluster renew-crypto`, docs/security.md).
//!
//! The node makes a new key and a CSR ([`prepare`]; the key waits in `node.key.next`, 0600,
//! and never leaves the node), the master's CA signs it ([`sign`]; subject and SANs from the
//! config, not from the CSR), and the node checks and installs the certificate ([`install`]):
//! signed by its cluster CA, for its own name, for the waiting key. `node.pem` and `node.key`
//! are replaced atomically; the TLS server and the master's client follow them
//! ([`crate::reload`]).

use crate::ca::{
    cert_der_from_pem, fingerprint_pem, io_err, write_atomic, CertError, ClusterCa, NodeIdentity,
    Result, CA_CERT_FILE, NODE_CERT_FILE, NODE_KEY_FILE,
};
use rustls::pki_types::UnixTime;
use std::net::IpAddr;
use std::path::Path;

/// The new key of a renewal in progress, in the state directory.
pub const NEXT_KEY_FILE: &str = "node.key.next";

/// On the node: a new key (kept in [`NEXT_KEY_FILE`]) and its CSR, which is returned.
pub fn prepare(dir: &Path, node_name: &str) -> Result<String> {
    let (csr, key) = NodeIdentity::new_csr(node_name)?;
    write_atomic(&dir.join(NEXT_KEY_FILE), &key, 0o600)?;
    Ok(csr)
}

/// On the master: signs a node's CSR with the CA kept in `dir` (subject and SANs from the
/// arguments; only the CSR's key is used).
pub fn sign(dir: &Path, csr_pem: &str, node_name: &str, ips: &[IpAddr]) -> Result<String> {
    sign_for(dir, csr_pem, node_name, ips, None)
}

/// [`sign`] for a certificate valid `lifetime` from now (short-lived certificates).
pub fn sign_for(
    dir: &Path,
    csr_pem: &str,
    node_name: &str,
    ips: &[IpAddr],
    lifetime: Option<std::time::Duration>,
) -> Result<String> {
    let ca = ClusterCa::load(dir).map_err(|e| {
        CertError::Invalid(format!(
            "only the master, which holds the cluster CA, signs: {e}"
        ))
    })?;
    ca.sign_csr_for(csr_pem, node_name, ips, lifetime)
}

/// Whether `cert_pem` is signed by `ca_pem`, valid now and for TLS clients (every node
/// certificate is).
fn verify_chain(cert_pem: &str, ca_pem: &str) -> Result<()> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        crate::tls::ca_roots(ca_pem)?,
        crate::tls::provider(),
    )
    .build()
    .map_err(|e| CertError::Invalid(format!("cannot build the verifier: {e}")))?;
    verifier
        .verify_client_cert(&cert_der_from_pem(cert_pem)?, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| CertError::Invalid(format!("the new certificate is not valid: {e}")))
}

/// Whether `cert_pem` is signed by one of the CAs of `ca_pem`, valid now (a client
/// certificate: every node certificate is one).
pub fn verify_with(cert_pem: &str, ca_pem: &str) -> Result<()> {
    verify_chain(cert_pem, ca_pem)
}

/// The SubjectPublicKeyInfo (DER) of a certificate.
/// On the node: checks `cert_pem` (signed by this node's CA, naming `node_name`, for the key
/// [`prepare`] left) and makes it the node's certificate. Returns its fingerprint.
pub fn install(dir: &Path, node_name: &str, cert_pem: &str) -> Result<String> {
    let key_pem = check(dir, node_name, cert_pem)?;
    commit(dir, cert_pem, &key_pem)
}

/// The first half of [`install`]: checks `cert_pem` and returns the waiting key it is for.
pub fn check(dir: &Path, node_name: &str, cert_pem: &str) -> Result<String> {
    let next = dir.join(NEXT_KEY_FILE);
    let key_pem = std::fs::read_to_string(&next).map_err(|e| {
        CertError::Invalid(format!(
            "no renewal in progress ({}: {e}): prepare one first",
            next.display()
        ))
    })?;
    let ca_pem =
        std::fs::read_to_string(dir.join(CA_CERT_FILE)).map_err(io_err(&dir.join(CA_CERT_FILE)))?;
    verify_chain(cert_pem, &ca_pem)?;
    let id = NodeIdentity {
        cert_pem: cert_pem.to_string(),
        key_pem: key_pem.clone(),
        ca_pem,
    };
    let name = id.common_name()?;
    if name != node_name {
        return Err(CertError::Invalid(format!(
            "the new certificate is for '{name}', not for this node ('{node_name}')"
        )));
    }
    if !crate::ca::key_fits(&id.cert_pem, &id.key_pem)? {
        return Err(CertError::Invalid(
            "the new certificate is not for the key this node prepared".into(),
        ));
    }
    Ok(key_pem)
}

/// The second half of [`install`]: `cert_pem` and `key_pem` become the node's identity.
pub fn commit(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<String> {
    // The key first: a certificate never sits beside a key it does not match for long, and
    // the TLS reloaders keep the previous pair until both load.
    write_atomic(&dir.join(NODE_KEY_FILE), key_pem, 0o600)?;
    write_atomic(&dir.join(NODE_CERT_FILE), cert_pem, 0o644)?;
    let _ = std::fs::remove_file(dir.join(NEXT_KEY_FILE));
    fingerprint_pem(cert_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_sign_install_replaces_the_identity() {
        let master = tempfile::tempdir().unwrap();
        let node = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("renew").unwrap();
        ca.save(master.path()).unwrap();
        let old = ca.issue("node2", &[]).unwrap();
        old.save(node.path()).unwrap();

        // Installing without a prepared key is refused.
        let stray = ca.issue("node2", &[]).unwrap();
        let e = install(node.path(), "node2", &stray.cert_pem).unwrap_err();
        assert!(e.to_string().contains("no renewal in progress"), "{e}");

        let csr = prepare(node.path(), "node2").unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        // A certificate for another name, or for another key, or from another CA: refused,
        // and the old identity stays.
        let other_name = sign(master.path(), &csr, "node3", &[ip]).unwrap();
        let e = install(node.path(), "node2", &other_name).unwrap_err();
        assert!(e.to_string().contains("not for this node"), "{e}");
        let e = install(node.path(), "node2", &stray.cert_pem).unwrap_err();
        assert!(e.to_string().contains("not for the key"), "{e}");
        let foreign = ClusterCa::generate("other")
            .unwrap()
            .sign_csr(&csr, "node2", &[ip])
            .unwrap();
        let e = install(node.path(), "node2", &foreign).unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        assert_eq!(
            NodeIdentity::load(node.path()).unwrap().fingerprint(),
            old.fingerprint()
        );

        let cert = sign(master.path(), &csr, "node2", &[ip]).unwrap();
        let fp = install(node.path(), "node2", &cert).unwrap();
        let now = NodeIdentity::load(node.path()).unwrap();
        assert_eq!(now.fingerprint(), fp);
        assert_ne!(fp, old.fingerprint());
        assert!(!node.path().join(NEXT_KEY_FILE).exists());
        // The new pair works as a TLS identity.
        crate::tls::server_config(&now).unwrap();
        // Only the CA's holder signs.
        let e = sign(node.path(), &csr, "node2", &[ip]).unwrap_err();
        assert!(e.to_string().contains("only the master"), "{e}");
    }
}
