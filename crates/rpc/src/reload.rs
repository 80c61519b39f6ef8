//! Certificates that change under a running daemon (`maguey cluster renew-crypto`,
//! docs/security.md): the node's TLS server presents, and the master's RPC client presents,
//! whatever `node.pem`/`node.key` hold now. Both look at the files' modification times (one
//! `stat` per file per TLS handshake or request) and load them again when they changed.
//! Connections open with the old certificate end with their pool; new ones use the new one.

use crate::ca::{CertError, NodeIdentity, Result, CA_CERT_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use crate::client::{
    HttpsTransport, RpcClient, RpcError, RpcTransport, TransportFuture, TransportRequest,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Modification times (and sizes) of the identity files: what tells a change.
type Stamp = Vec<Option<(SystemTime, u64)>>;
/// Modification time and size of one file (`None`: missing).
type FileStamp = Option<(SystemTime, u64)>;

fn stamp(dir: &Path) -> Stamp {
    [NODE_CERT_FILE, NODE_KEY_FILE, CA_CERT_FILE]
        .iter()
        .map(|f| {
            let m = std::fs::metadata(dir.join(f)).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// The node certificate (chain with the CA) and key rustls serves.
fn certified_key(id: &NodeIdentity) -> Result<Arc<CertifiedKey>> {
    let provider = crate::tls::provider();
    let mut chain = crate::tls::certs_from_pem(&id.cert_pem)?;
    chain.extend(crate::ca::cert_der_from_pem(&id.ca_pem));
    let key = provider
        .key_provider
        .load_private_key(crate::tls::key_from_pem(&id.key_pem)?)
        .map_err(|e| CertError::Invalid(format!("invalid node key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// Serves the certificate in `dir`, loaded again whenever its files change. A change that
/// does not load (a half-written pair) keeps the previous certificate, with a warning.
#[derive(Debug)]
struct ReloadingCert {
    dir: PathBuf,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.dir);
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cur.0 != now {
            match NodeIdentity::load(&self.dir).and_then(|id| certified_key(&id)) {
                Ok(k) => {
                    tracing::info!(
                        "TLS: serving the renewed certificate of {}",
                        self.dir.display()
                    );
                    *cur = (now, k);
                }
                Err(e) => {
                    tracing::warn!("TLS: keeping the previous certificate: {e}");
                    cur.0 = now;
                }
            }
        }
        cur.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Verifies client certificates against the CA(s) `ca.pem` holds now (both CAs while the CA
/// is replaced, [`crate::ca_roll`]); clients without a certificate are let through to the
/// routes, which decide.
#[derive(Debug)]
struct ReloadingVerifier {
    dir: PathBuf,
    current: Mutex<(FileStamp, Arc<dyn ClientCertVerifier>)>,
}

fn client_verifier(ca_pem: &str) -> Result<Arc<dyn ClientCertVerifier>> {
    WebPkiClientVerifier::builder_with_provider(
        crate::tls::ca_roots(ca_pem)?,
        crate::tls::provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| CertError::Invalid(format!("cannot build the client verifier: {e}")))
}

impl ReloadingVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let path = self.dir.join(CA_CERT_FILE);
        let now = file_stamp(&path);
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cur.0 != now {
            cur.0 = now;
            let loaded = std::fs::read_to_string(&path)
                .map_err(|e| CertError::Invalid(e.to_string()))
                .and_then(|pem| client_verifier(&pem));
            match loaded {
                Ok(v) => {
                    tracing::info!("TLS: trusting the CA(s) of {}", path.display());
                    cur.1 = v;
                }
                Err(e) => tracing::warn!("TLS: keeping the previous CA: {e}"),
            }
        }
        cur.1.clone()
    }
}

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A server configuration presenting what `resolver` resolves and verifying clients against
/// the CA(s) `dir`'s `ca.pem` holds now.
fn following(
    dir: &Path,
    ca_pem: &str,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>> {
    let verifier = ReloadingVerifier {
        dir: dir.to_path_buf(),
        current: Mutex::new((
            file_stamp(&dir.join(CA_CERT_FILE)),
            client_verifier(ca_pem)?,
        )),
    };
    let config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Invalid(format!("TLS protocol versions: {e}")))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

/// [`crate::tls::server_config`] for the identity in `dir`, following its renewals and the
/// CA(s) `ca.pem` holds (a CA roll).
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>> {
    let id = NodeIdentity::load(dir)?;
    // What the static configuration would refuse (a key that does not fit), refused here too.
    crate::tls::server_config(&id)?;
    let resolver = ReloadingCert {
        dir: dir.to_path_buf(),
        current: Mutex::new((stamp(dir), certified_key(&id)?)),
    };
    following(dir, &id.ca_pem, Arc::new(resolver))
}

/// The Remote API's certificate: `rapi.pem` ([`crate::rotate::RAPI_CERT_FILE`]) when the
/// state directory holds one that loads, else the node's own (both followed when they
/// change).
#[derive(Debug)]
struct RapiCert {
    node: ReloadingCert,
    file: PathBuf,
    current: Mutex<(FileStamp, Option<Arc<CertifiedKey>>)>,
}

fn file_stamp(path: &Path) -> FileStamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn rapi_key(path: &Path) -> Result<Arc<CertifiedKey>> {
    let pem = std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    crate::rotate::check_cert_and_key(&pem)?;
    let key = crate::tls::provider()
        .key_provider
        .load_private_key(crate::tls::key_from_pem(&pem)?)
        .map_err(|e| CertError::Invalid(format!("invalid key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        crate::tls::certs_from_pem(&pem)?,
        key,
    )))
}

impl RapiCert {
    fn current(&self) -> Arc<CertifiedKey> {
        let now = file_stamp(&self.file);
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cur.0 != now {
            cur.0 = now;
            if now.is_none() {
                cur.1 = None;
            } else {
                match rapi_key(&self.file) {
                    Ok(k) => {
                        tracing::info!("Remote API: serving {}", self.file.display());
                        cur.1 = Some(k);
                    }
                    Err(e) => tracing::warn!("Remote API: keeping the previous certificate: {e}"),
                }
            }
        }
        match &cur.1 {
            Some(k) => k.clone(),
            None => self.node.current(),
        }
    }
}

impl ResolvesServerCert for RapiCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The Remote API's TLS configuration: [`server_config`], serving `rapi.pem` when the state
/// directory holds one (`cluster renew-crypto --new-rapi-certificate`).
pub fn rapi_server_config(dir: &Path) -> Result<Arc<ServerConfig>> {
    let id = NodeIdentity::load(dir)?;
    crate::tls::server_config(&id)?;
    let resolver = RapiCert {
        node: ReloadingCert {
            dir: dir.to_path_buf(),
            current: Mutex::new((stamp(dir), certified_key(&id)?)),
        },
        file: dir.join(crate::rotate::RAPI_CERT_FILE),
        current: Mutex::new((None, None)),
    };
    following(dir, &id.ca_pem, Arc::new(resolver))
}

/// The master's transport: HTTPS presenting the identity in `dir`, rebuilt (a new client, a
/// new connection pool) when the files change.
struct ReloadingTransport {
    dir: PathBuf,
    timeout: Duration,
    current: Mutex<(Stamp, Arc<HttpsTransport>)>,
}

impl std::fmt::Debug for ReloadingTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingTransport")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn https_transport(id: &NodeIdentity, timeout: Duration) -> Result<HttpsTransport, RpcError> {
    let client = RpcClient::new(id, timeout)?;
    Ok(HttpsTransport::new(client.http().clone()))
}

impl ReloadingTransport {
    fn current(&self) -> Arc<HttpsTransport> {
        let now = stamp(&self.dir);
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cur.0 != now {
            let loaded = NodeIdentity::load(&self.dir)
                .map_err(|e| RpcError::Protocol(e.to_string()))
                .and_then(|id| https_transport(&id, self.timeout));
            match loaded {
                Ok(t) => {
                    tracing::info!("RPC client: presenting the renewed certificate");
                    *cur = (now, Arc::new(t));
                }
                Err(e) => {
                    tracing::warn!("RPC client: keeping the previous certificate: {e}");
                    cur.0 = now;
                }
            }
        }
        cur.1.clone()
    }
}

impl RpcTransport for ReloadingTransport {
    fn send(&self, req: TransportRequest) -> TransportFuture<'_> {
        let t = self.current();
        Box::pin(async move { t.send(req).await })
    }

    fn http_now(&self) -> Option<reqwest::Client> {
        Some(self.current().http().clone())
    }
}

/// [`RpcClient::new`] for the identity in `dir`, presenting its renewed certificate from the
/// first request after a renewal on.
pub fn rpc_client(dir: &Path, timeout: Duration) -> Result<RpcClient, RpcError> {
    let id = NodeIdentity::load(dir).map_err(|e| RpcError::Protocol(e.to_string()))?;
    let client = RpcClient::new(&id, timeout)?;
    let transport = ReloadingTransport {
        dir: dir.to_path_buf(),
        timeout,
        current: Mutex::new((stamp(dir), Arc::new(https_transport(&id, timeout)?))),
    };
    Ok(client.replace_transport(Arc::new(transport)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::ClusterCa;

    #[test]
    fn a_renewed_certificate_is_served_from_the_next_handshake() {
        let t = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("reload").unwrap();
        let first = ca.issue("node1", &[]).unwrap();
        first.save(t.path()).unwrap();
        let cert = ReloadingCert {
            dir: t.path().to_path_buf(),
            current: Mutex::new((stamp(t.path()), certified_key(&first).unwrap())),
        };
        let served = |c: &ReloadingCert| crate::ca::fingerprint_der(&c.current().cert[0]);
        assert_eq!(served(&cert), first.fingerprint());
        // The same length, another mtime: a second later, as a renewal writes it.
        std::thread::sleep(Duration::from_millis(20));
        let second = ca.issue("node1", &[]).unwrap();
        second.save(t.path()).unwrap();
        assert_eq!(served(&cert), second.fingerprint());
        // A broken file keeps the last good certificate.
        std::fs::write(t.path().join(NODE_KEY_FILE), "garbage").unwrap();
        assert_eq!(served(&cert), second.fingerprint());
    }

    /// A renewal writes `node.key` and then `node.pem`: a handshake in between must not serve
    /// the old certificate with the new key (every client would see a bad signature).
    #[test]
    fn a_half_written_renewal_keeps_serving_the_previous_pair() {
        let t = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("reload").unwrap();
        let first = ca.issue("node1", &[]).unwrap();
        first.save(t.path()).unwrap();
        let cert = ReloadingCert {
            dir: t.path().to_path_buf(),
            current: Mutex::new((stamp(t.path()), certified_key(&first).unwrap())),
        };
        let served = |c: &ReloadingCert| crate::ca::fingerprint_der(&c.current().cert[0]);
        let second = ca.issue("node1", &[]).unwrap();
        crate::ca::write_atomic(&t.path().join(NODE_KEY_FILE), &second.key_pem, 0o600).unwrap();
        let err = NodeIdentity::load(t.path()).unwrap_err().to_string();
        assert!(err.contains("does not fit its key"), "{err}");
        let k = cert.current();
        assert_eq!(crate::ca::fingerprint_der(&k.cert[0]), first.fingerprint());
        assert!(
            k.keys_match().is_ok(),
            "the served key fits the served certificate"
        );
        crate::ca::write_atomic(&t.path().join(NODE_CERT_FILE), &second.cert_pem, 0o644).unwrap();
        assert_eq!(served(&cert), second.fingerprint());
        assert!(cert.current().keys_match().is_ok());
    }
}
