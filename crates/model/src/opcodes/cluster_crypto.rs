//! Renewing the cluster's cryptographic material (Ganeti's OpClusterRenewCrypto).

use serde::{Deserialize, Serialize};

/// Renews the cluster's certificates and secrets in place, while instances run (Ganeti's
/// OpClusterRenewCrypto; `maguey cluster renew-crypto`). docs/security.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpClusterRenewCrypto {
    /// New node certificates, signed by the cluster CA, for every online node (the master's
    /// last); the old ones command nothing afterwards.
    #[serde(default = "super::yes")]
    pub node_certificates: bool,
    /// A new cluster CA (Ganeti's `new_cluster_cert`): every online node and the admin get a
    /// certificate from it, both CAs are trusted during the roll, then the old one is dropped.
    #[serde(default)]
    pub new_cluster_cert: bool,
    /// A new Remote API certificate (Ganeti's `new_rapi_cert`), signed by the cluster CA.
    #[serde(default)]
    pub new_rapi_cert: bool,
    /// A given Remote API certificate: an absolute path, on the master, of a PEM file with
    /// the certificate (chain) and its key (Ganeti's `rapi_cert_pem`, but a path: the key
    /// never sits in a job record).
    #[serde(default)]
    pub rapi_cert_file: Option<String>,
    /// A new admin client certificate; the old one is refused afterwards.
    #[serde(default)]
    pub new_admin_cert: bool,
    /// A new shared secret for every DRBD disk, applied to running pairs one instance at a
    /// time (disconnect, reconnect with the new secret, resync what was written meanwhile).
    #[serde(default)]
    pub new_drbd_secrets: bool,
    /// Sets the lifetime (seconds, at least [`MIN_NODE_CERTIFICATE_LIFETIME`]) of node
    /// certificates, from this renewal on: the master renews them automatically once two
    /// thirds of it have passed (implies `node_certificates`).
    #[serde(default)]
    pub node_certificate_lifetime: Option<u64>,
}

/// The shortest node certificate lifetime (seconds) a cluster accepts.
pub const MIN_NODE_CERTIFICATE_LIFETIME: u64 = 60;
/// The lifetime of node certificates in a new cluster (a year).
pub const DEFAULT_NODE_CERTIFICATE_LIFETIME: u64 = 365 * 86_400;
/// The longest (twenty years).
pub const MAX_NODE_CERTIFICATE_LIFETIME: u64 = 20 * 365 * 86_400;

impl Default for OpClusterRenewCrypto {
    fn default() -> Self {
        OpClusterRenewCrypto {
            node_certificates: true,
            new_cluster_cert: false,
            new_rapi_cert: false,
            rapi_cert_file: None,
            new_admin_cert: false,
            new_drbd_secrets: false,
            node_certificate_lifetime: None,
        }
    }
}
