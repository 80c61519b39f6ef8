//! Renewing the cluster's cryptographic material (Ganeti's OpClusterRenewCrypto).

use serde::{Deserialize, Serialize};

/// Renews the cluster's certificates in place, while instances run (Ganeti's
/// OpClusterRenewCrypto; `maguey cluster renew-crypto`). docs/security.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpClusterRenewCrypto {
    /// New node certificates, signed by the cluster CA, for every online node (the master's
    /// last); the old ones command nothing afterwards.
    #[serde(default = "super::yes")]
    pub node_certificates: bool,
}

impl Default for OpClusterRenewCrypto {
    fn default() -> Self {
        OpClusterRenewCrypto {
            node_certificates: true,
        }
    }
}
