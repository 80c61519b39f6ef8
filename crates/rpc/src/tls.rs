//! rustls configurations for mutual TLS between cluster members.
//!
//! Servers request (but do not require) a client certificate and verify any presented one
//! against the cluster CA; routes that need an authenticated peer use
//! [`crate::server::require_peer_cert`]. Clients trust only the cluster CA (no system roots).
//!
//! Unlike Ganeti (which uses one cluster-wide server certificate), every node has its own
//! certificate naming its addresses, and clients check that the server certificate is signed
//! by the cluster CA *and* names the address dialled: a node cannot pose as another.

use crate::ca::{cert_der_from_pem, CertError, NodeIdentity, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// The crypto provider used everywhere (ring), independent of any process-wide default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str) -> impl FnOnce(rustls::Error) -> CertError + '_ {
    move |e| CertError::Invalid(format!("{what}: {e}"))
}

/// All certificates of a PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CertError::Invalid(format!("invalid certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::Invalid("no certificate found in PEM".into()));
    }
    Ok(certs)
}

/// The private key of a PEM text.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        PemError::NoItemsFound => CertError::Invalid("no private key found in PEM".into()),
        e => CertError::Invalid(format!("invalid private key PEM: {e}")),
    })
}

/// A root store holding only the cluster CA: every certificate of `ca_pem` (two while the CA
/// is replaced, [`crate::ca_roll`]).
pub fn ca_roots(ca_pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert).map_err(tls_err("invalid CA certificate"))?;
    }
    Ok(Arc::new(roots))
}

/// TLS server configuration of a node: its certificate, optional client certificates verified
/// against the cluster CA (a certificate from another CA fails the handshake).
pub fn server_config(id: &NodeIdentity) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(ca_roots(&id.ca_pem)?, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| CertError::Invalid(format!("cannot build the client verifier: {e}")))?;
    let mut chain = certs_from_pem(&id.cert_pem)?;
    chain.extend(cert_der_from_pem(&id.ca_pem));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err("TLS protocol versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_from_pem(&id.key_pem)?)
        .map_err(tls_err("invalid node certificate or key"))?;
    Ok(Arc::new(config))
}

/// TLS client configuration of a node: presents its certificate, trusts only the cluster CA.
pub fn client_config(id: &NodeIdentity) -> Result<Arc<ClientConfig>> {
    client_config_with(&id.ca_pem, Some((&id.cert_pem, &id.key_pem))).map(Arc::new)
}

/// A client configuration trusting only `ca_pem`, with an optional client certificate
/// `(cert_pem, key_pem)`.
pub fn client_config_with(ca_pem: &str, client: Option<(&str, &str)>) -> Result<ClientConfig> {
    let provider = provider();
    let inner = WebPkiServerVerifier::builder_with_provider(ca_roots(ca_pem)?, provider.clone())
        .build()
        .map_err(|e| CertError::Invalid(format!("cannot build the server verifier: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err("TLS protocol versions"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier { inner }));
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)
            .map_err(tls_err("invalid node certificate or key")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A client configuration that accepts any server certificate. Only for fetching the CA
/// certificate at join time, which is then checked against the token's fingerprint.
pub(crate) fn insecure_client_config() -> Result<ClientConfig> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("TLS protocol versions"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer { provider }))
        .with_no_client_auth())
}

/// Verifies the chain against the cluster CA and that the certificate names the address
/// dialled (a node's certificate carries its primary and secondary IPs, set by the CA): a node
/// cannot pose as another node or as the master.
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct AcceptAnyServer {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::ClusterCa;

    fn invalid_message(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(CertError::Invalid(m)) => m,
            other => panic!("expected an invalid-PEM error, got {other:?}"),
        }
    }

    #[test]
    fn pem_texts_give_their_certificates_and_key() {
        let ca = ClusterCa::generate("pem-test").unwrap();
        let id = ca.issue("node1", &["127.0.0.1".parse().unwrap()]).unwrap();
        // Decoded independently (x509-parser's own PEM reader).
        let der = |pem: &str| {
            x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap()
                .1
                .contents
        };
        let node_der = CertificateDer::from(der(&id.cert_pem));

        // A chain: every certificate, in order, other sections skipped.
        let text = format!("{}{}{}", id.cert_pem, id.key_pem, ca.cert_pem);
        let chain = certs_from_pem(&text).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0], node_der);
        assert_eq!(chain[1], CertificateDer::from(der(&ca.cert_pem)));
        assert_eq!(cert_der_from_pem(&text).unwrap(), node_der);

        // The key, found after a certificate too.
        let key = key_from_pem(&format!("{}{}", id.cert_pem, id.key_pem)).unwrap();
        let rcgen_key = rcgen::KeyPair::from_pem(&id.key_pem).unwrap();
        assert_eq!(key.secret_der(), rcgen_key.serialized_der());
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
    }

    #[test]
    fn missing_and_malformed_pem_is_refused() {
        let ca = ClusterCa::generate("pem-test").unwrap();
        assert_eq!(
            invalid_message(certs_from_pem(&ca.key_pem)),
            "no certificate found in PEM"
        );
        assert_eq!(
            invalid_message(cert_der_from_pem("")),
            "no certificate found in PEM"
        );
        assert_eq!(
            invalid_message(key_from_pem(&ca.cert_pem)),
            "no private key found in PEM"
        );
        let bad_base64 = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        let unterminated = ca.cert_pem.replace("-----END CERTIFICATE-----", "");
        for text in [bad_base64, unterminated.as_str()] {
            for m in [
                invalid_message(certs_from_pem(text)),
                invalid_message(cert_der_from_pem(text)),
            ] {
                assert!(m.starts_with("invalid certificate PEM: "), "{m}");
            }
        }
        let bad_key = "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n";
        let m = invalid_message(key_from_pem(bad_key));
        assert!(m.starts_with("invalid private key PEM: "), "{m}");
    }
}
