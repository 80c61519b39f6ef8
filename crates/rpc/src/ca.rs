//! The cluster CA: one self-signed certificate authority per cluster that signs every node's
//! certificate. Node certificates are used both as TLS server and client certificates.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors of certificate handling (generation, parsing, files).
#[derive(Debug, Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = CertError> = std::result::Result<T, E>;

fn invalid(what: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |e| CertError::Invalid(format!("{what}: {e}"))
}

/// File names inside a state directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const NODE_CERT_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node.key";
/// The admin client certificate (the CLI's identity), separate from every node certificate.
pub const ADMIN_CERT_FILE: &str = "admin.pem";
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// The organizational unit that marks an admin certificate. The CA never puts an OU into a
/// node certificate (subjects of node certificates come from the CA, not from the CSR), so
/// only a certificate issued by [`ClusterCa::issue_admin`] carries it.
pub const ADMIN_OU: &str = "Maguey cluster administrator";
/// The common name of admin certificates (not a valid node name: it has a space).
pub const ADMIN_CN: &str = "maguey admin";

/// The cluster certificate authority (kept on the master and master candidates).
#[derive(Clone)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The certificate of one node, its private key and the cluster CA certificate.
#[derive(Clone)]
pub struct NodeIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("cert_fingerprint", &fingerprint_pem(&self.cert_pem).ok())
            .field("ca_fingerprint", &fingerprint_pem(&self.ca_pem).ok())
            .finish_non_exhaustive()
    }
}

/// Current year (UTC), good enough for validity periods.
fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// DER of the first certificate in a PEM text.
pub fn cert_der_from_pem(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        PemError::NoItemsFound => CertError::Invalid("no certificate found in PEM".into()),
        e => CertError::Invalid(format!("invalid certificate PEM: {e}")),
    })
}

/// SHA-256 (lower-case hex) of DER bytes.
pub fn fingerprint_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// SHA-256 (lower-case hex) of the DER of the first certificate in `pem`.
pub fn fingerprint_pem(pem: &str) -> Result<String> {
    Ok(fingerprint_der(&cert_der_from_pem(pem)?))
}

fn read(path: PathBuf) -> Result<String> {
    std::fs::read_to_string(&path).map_err(|source| CertError::Io { path, source })
}

/// An I/O error on `path`, as a [`CertError`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `content` to `path` atomically (a temporary file beside it, fsync, rename) with
/// `mode`. The temporary name is unique within the process, so that concurrent writers of
/// the same file (a renewal and a CA roll) never share one.
pub(crate) fn write_atomic(path: &Path, content: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(content.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn write(path: PathBuf, content: &str, mode: u32) -> Result<()> {
    write_atomic(&path, content, mode)
}

/// Whether `key_pem` is the private key of the (first) certificate in `cert_pem`.
pub fn key_fits(cert_pem: &str, key_pem: &str) -> Result<bool> {
    let der = cert_der_from_pem(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CertError::Invalid(format!("cannot parse the certificate: {e}")))?;
    let key = KeyPair::from_pem(key_pem).map_err(invalid("invalid private key"))?;
    Ok(cert.public_key().raw == key.public_key_der().as_slice())
}

/// Refuses a certificate beside a key it does not fit (a renewal caught between writing
/// `node.key` and `node.pem`: served, it fails every handshake with "bad signature").
fn check_fits(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    if key_fits(cert_pem, key_pem)? {
        Ok(())
    } else {
        Err(CertError::Invalid(format!(
            "the certificate in {} does not fit its key (a renewal being written?)",
            dir.display()
        )))
    }
}

fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// How far back a short-lived certificate's validity starts (clocks of nodes differ a little).
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// Parameters of a node certificate: CN and SANs set by the CA, server + client auth; valid
/// for `lifetime` from now (ten years without one).
fn node_params_for(
    node_name: &str,
    ips: &[IpAddr],
    lifetime: Option<std::time::Duration>,
) -> Result<CertificateParams> {
    let mut params = node_params(node_name, ips)?;
    if let Some(lifetime) = lifetime {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
        params.not_after = epoch + now + lifetime;
    }
    Ok(params)
}

/// Parameters of a node certificate: CN and SANs set by the CA, server + client auth.
fn node_params(node_name: &str, ips: &[IpAddr]) -> Result<CertificateParams> {
    if node_name.is_empty() {
        return Err(CertError::Invalid("node name is empty".into()));
    }
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, node_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Maguey");
    let dns = node_name
        .try_into()
        .map_err(|e| CertError::Invalid(format!("invalid node name '{node_name}': {e}")))?;
    params.subject_alt_names.push(SanType::DnsName(dns));
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 12, 31);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Parameters of an admin client certificate: client auth only, marked by [`ADMIN_OU`].
fn admin_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, ADMIN_CN);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Maguey");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ADMIN_OU);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 12, 31);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

/// Whether a DER certificate is an admin certificate (its subject carries [`ADMIN_OU`]).
/// Only meaningful for a certificate already verified against the cluster CA.
pub fn is_admin_der(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let admin = cert
        .subject()
        .iter_organizational_unit()
        .any(|ou| ou.as_str() == Ok(ADMIN_OU));
    admin
}

impl ClusterCa {
    /// Generates a new CA (ECDSA P-256, valid ~20 years) for `cluster_name`.
    pub fn generate(cluster_name: &str) -> Result<Self> {
        let key = KeyPair::generate().map_err(invalid("cannot generate a key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Maguey cluster CA {cluster_name}"),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Maguey");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let year = current_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 20, 12, 31);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(invalid("cannot create the CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let ca = ClusterCa {
            cert_pem: read(dir.join(CA_CERT_FILE))?,
            key_pem: read(dir.join(CA_KEY_FILE))?,
        };
        ca.issuer()?;
        Ok(ca)
    }

    /// Saves `ca.pem` (0644) and `ca.key` (0600) into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        ensure_dir(dir)?;
        write(dir.join(CA_KEY_FILE), &self.key_pem, 0o600)?;
        write(dir.join(CA_CERT_FILE), &self.cert_pem, 0o644)
    }

    /// SHA-256 (hex) of the CA certificate's DER; empty if `cert_pem` is not a certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint_pem(&self.cert_pem).unwrap_or_default()
    }

    /// Checks that the key belongs to the (first) CA certificate.
    pub fn check(&self) -> Result<()> {
        self.issuer().map(|_| ())
    }

    /// The CA as an rcgen issuer (same subject and key as the stored certificate).
    fn issuer(&self) -> Result<(Certificate, KeyPair)> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(invalid("invalid CA key"))?;
        let params = CertificateParams::from_ca_cert_pem(&self.cert_pem)
            .map_err(invalid("invalid CA certificate"))?;
        let cert = params
            .self_signed(&key)
            .map_err(invalid("CA key does not fit the CA certificate"))?;
        // The re-signed certificate must carry the same public key as the stored one.
        let stored = cert_der_from_pem(&self.cert_pem)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&stored)
            .map_err(|e| CertError::Invalid(format!("invalid CA certificate: {e}")))?;
        if parsed.tbs_certificate.subject_pki.raw != key.public_key_der().as_slice() {
            return Err(CertError::Invalid(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        Ok((cert, key))
    }

    /// Issues a new key pair and certificate for `node_name` (CN and DNS SAN) and `ips`
    /// (IP SANs), valid for TLS server and client authentication.
    pub fn issue(&self, node_name: &str, ips: &[IpAddr]) -> Result<NodeIdentity> {
        let (ca_cert, ca_key) = self.issuer()?;
        let key = KeyPair::generate().map_err(invalid("cannot generate a key"))?;
        let cert = node_params(node_name, ips)?
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(invalid("cannot sign the node certificate"))?;
        Ok(NodeIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }

    /// Issues a new admin client certificate (see [`ADMIN_OU`]); save it with
    /// [`NodeIdentity::save_admin`].
    pub fn issue_admin(&self) -> Result<NodeIdentity> {
        let (ca_cert, ca_key) = self.issuer()?;
        let key = KeyPair::generate().map_err(invalid("cannot generate a key"))?;
        let cert = admin_params()
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(invalid("cannot sign the admin certificate"))?;
        Ok(NodeIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }

    /// Signs a certificate signing request. Only the CSR's public key (and its self-signature,
    /// which is checked) is used: subject and SANs come from `node_name` and `ips`.
    pub fn sign_csr(&self, csr_pem: &str, node_name: &str, ips: &[IpAddr]) -> Result<String> {
        self.sign_csr_for(csr_pem, node_name, ips, None)
    }

    /// [`ClusterCa::sign_csr`] for a certificate valid `lifetime` from now (ten years
    /// without one).
    pub fn sign_csr_for(
        &self,
        csr_pem: &str,
        node_name: &str,
        ips: &[IpAddr],
        lifetime: Option<std::time::Duration>,
    ) -> Result<String> {
        let (ca_cert, ca_key) = self.issuer()?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(invalid("invalid certificate signing request"))?;
        let csr = CertificateSigningRequestParams {
            params: node_params_for(node_name, ips, lifetime)?,
            public_key: csr.public_key,
        };
        let cert = csr
            .signed_by(&ca_cert, &ca_key)
            .map_err(invalid("cannot sign the certificate signing request"))?;
        Ok(cert.pem())
    }
}

impl NodeIdentity {
    /// Loads `node.pem`, `node.key` and `ca.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let id = NodeIdentity {
            cert_pem: read(dir.join(NODE_CERT_FILE))?,
            key_pem: read(dir.join(NODE_KEY_FILE))?,
            ca_pem: read(dir.join(CA_CERT_FILE))?,
        };
        cert_der_from_pem(&id.ca_pem)?;
        check_fits(dir, &id.cert_pem, &id.key_pem)?;
        Ok(id)
    }

    /// Saves `node.pem`, `node.key` (0600) and `ca.pem` into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        ensure_dir(dir)?;
        write(dir.join(NODE_KEY_FILE), &self.key_pem, 0o600)?;
        write(dir.join(NODE_CERT_FILE), &self.cert_pem, 0o644)?;
        write(dir.join(CA_CERT_FILE), &self.ca_pem, 0o644)
    }

    /// Loads the admin certificate (`admin.pem`, `admin.key`) and `ca.pem` from `dir`.
    pub fn load_admin(dir: &Path) -> Result<Self> {
        let id = NodeIdentity {
            cert_pem: read(dir.join(ADMIN_CERT_FILE))?,
            key_pem: read(dir.join(ADMIN_KEY_FILE))?,
            ca_pem: read(dir.join(CA_CERT_FILE))?,
        };
        if !is_admin_der(&cert_der_from_pem(&id.cert_pem)?) {
            return Err(CertError::Invalid(format!(
                "{} is not an admin certificate",
                dir.join(ADMIN_CERT_FILE).display()
            )));
        }
        cert_der_from_pem(&id.ca_pem)?;
        check_fits(dir, &id.cert_pem, &id.key_pem)?;
        Ok(id)
    }

    /// Saves an admin certificate as `admin.pem` and `admin.key` (both 0600: root only) into
    /// `dir`, and `ca.pem` unless it is there.
    pub fn save_admin(&self, dir: &Path) -> Result<()> {
        ensure_dir(dir)?;
        write(dir.join(ADMIN_KEY_FILE), &self.key_pem, 0o600)?;
        write(dir.join(ADMIN_CERT_FILE), &self.cert_pem, 0o600)?;
        if !dir.join(CA_CERT_FILE).exists() {
            write(dir.join(CA_CERT_FILE), &self.ca_pem, 0o644)?;
        }
        Ok(())
    }

    /// A new key pair and a CSR (PEM) for `node_name`: returns `(csr_pem, key_pem)`.
    pub fn new_csr(node_name: &str) -> Result<(String, String)> {
        let key = KeyPair::generate().map_err(invalid("cannot generate a key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, node_name);
        let csr = params
            .serialize_request(&key)
            .map_err(invalid("cannot create the certificate signing request"))?;
        let pem = csr
            .pem()
            .map_err(invalid("cannot encode the certificate signing request"))?;
        Ok((pem, key.serialize_pem()))
    }

    /// SHA-256 (hex) of this node's certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint_pem(&self.cert_pem).unwrap_or_default()
    }

    /// SHA-256 (hex) of the cluster CA certificate.
    pub fn ca_fingerprint(&self) -> String {
        fingerprint_pem(&self.ca_pem).unwrap_or_default()
    }

    /// The common name of this node's certificate.
    pub fn common_name(&self) -> Result<String> {
        let der = cert_der_from_pem(&self.cert_pem)?;
        common_name_der(&der)
            .ok_or_else(|| CertError::Invalid("the node certificate has no common name".into()))
    }
}

/// The end of a certificate's validity (seconds since the epoch), if it parses.
pub fn not_after_pem(pem: &str) -> Option<i64> {
    let der = cert_der_from_pem(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The subject common name of a DER certificate, if it parses and has one.
pub fn common_name_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
