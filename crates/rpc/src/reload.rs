//! Certificates that change under a running daemon (`maguey cluster renew-crypto`,
//! docs/security.md): the node's TLS server presents, and the master's RPC client presents,
//! whatever `node.pem`/`node.key` hold now. Both look at the files' modification times (one
//! `stat` per file per TLS handshake or request) and load them again when they changed.
//! Connections open with the old certificate end with their pool; new ones use the new one.

use crate::ca::{CertError, NodeIdentity, Result, CA_CERT_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use crate::client::{
    HttpsTransport, RpcClient, RpcError, RpcTransport, TransportFuture, TransportRequest,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Modification times (and sizes) of the identity files: what tells a change.
type Stamp = Vec<Option<(SystemTime, u64)>>;

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

/// [`crate::tls::server_config`] for the identity in `dir`, following its renewals. Client
/// certificates are verified against the CA `dir` holds at start.
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>> {
    let id = NodeIdentity::load(dir)?;
    let base = crate::tls::server_config(&id)?;
    let resolver = ReloadingCert {
        dir: dir.to_path_buf(),
        current: Mutex::new((stamp(dir), certified_key(&id)?)),
    };
    let mut config = (*base).clone();
    config.cert_resolver = Arc::new(resolver);
    Ok(Arc::new(config))
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
}
