//! Fencing by term on the wire: every master→node RPC names the cluster and the master's term
//! (`X-Maguey-Cluster`, `X-Maguey-Term`), so that a node can refuse a deposed master.
//!
//! The master's [`RpcClient`](crate::RpcClient) holds a [`Fence`] (the cluster's uuid and a
//! shared term: the config's `master_term` today, the Raft term once a leader sets it) and
//! stamps every node RPC with it. The node side (`maguey_node::fence`) persists the highest
//! term it has seen and refuses lower ones. A request without the headers (a peer of an
//! older protocol) carries no [`FenceStamp`] and is served as before.

use axum::http::{HeaderMap, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The header naming the cluster (its uuid) a request is meant for.
pub const CLUSTER_HEADER: &str = "x-maguey-cluster";
/// The header carrying the sender's master term.
pub const TERM_HEADER: &str = "x-maguey-term";

/// What one request carries: the cluster and the sender's term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceStamp {
    pub cluster: String,
    pub term: u64,
}

/// Why the fencing headers of a request are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceHeaderError {
    #[error("invalid {TERM_HEADER} header '{0}': expected a term number")]
    BadTerm(String),
    #[error("invalid {CLUSTER_HEADER} header: expected a cluster uuid")]
    BadCluster,
    #[error("{CLUSTER_HEADER} and {TERM_HEADER} go together: the request has only one")]
    Incomplete,
}

impl FenceStamp {
    /// The stamp a request carries: `None` without both headers (an older peer).
    pub fn from_headers(h: &HeaderMap) -> Result<Option<FenceStamp>, FenceHeaderError> {
        let (cluster, term) = match (h.get(CLUSTER_HEADER), h.get(TERM_HEADER)) {
            (None, None) => return Ok(None),
            (Some(c), Some(t)) => (c, t),
            _ => return Err(FenceHeaderError::Incomplete),
        };
        let cluster = cluster
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(FenceHeaderError::BadCluster)?
            .to_string();
        let term = parse_term(term)?;
        Ok(Some(FenceStamp { cluster, term }))
    }

    /// Adds the two headers to `h`.
    pub fn insert_into(&self, h: &mut HeaderMap) {
        if let Ok(c) = HeaderValue::from_str(&self.cluster) {
            h.insert(CLUSTER_HEADER, c);
            h.insert(TERM_HEADER, HeaderValue::from(self.term));
        }
    }
}

fn parse_term(v: &HeaderValue) -> Result<u64, FenceHeaderError> {
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| FenceHeaderError::BadTerm(String::from_utf8_lossy(v.as_bytes()).into()))
}

/// The master's side: the cluster it commands and its current term, shared by every clone
/// of its RPC client (a Raft leader raises it when it wins).
#[derive(Debug, Clone)]
pub struct Fence {
    cluster: Arc<str>,
    term: Arc<AtomicU64>,
}

impl Fence {
    pub fn new(cluster: &str, term: u64) -> Self {
        Fence {
            cluster: Arc::from(cluster),
            term: Arc::new(AtomicU64::new(term)),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    /// Sets the term (a new leader's); a term never goes down: a lower one is ignored.
    pub fn raise(&self, term: u64) {
        self.term.fetch_max(term, Ordering::SeqCst);
    }

    /// What the next request carries.
    pub fn stamp(&self) -> FenceStamp {
        FenceStamp {
            cluster: self.cluster.to_string(),
            term: self.term(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_headers() {
        let f = Fence::new("c-1", 3);
        let clone = f.clone();
        clone.raise(7);
        clone.raise(5);
        assert_eq!(f.term(), 7);
        let mut h = HeaderMap::new();
        assert_eq!(FenceStamp::from_headers(&h), Ok(None));
        f.stamp().insert_into(&mut h);
        assert_eq!(
            FenceStamp::from_headers(&h),
            Ok(Some(FenceStamp {
                cluster: "c-1".into(),
                term: 7
            }))
        );
        h.insert(TERM_HEADER, HeaderValue::from_static("seven"));
        assert!(matches!(
            FenceStamp::from_headers(&h),
            Err(FenceHeaderError::BadTerm(_))
        ));
        h.remove(TERM_HEADER);
        assert_eq!(
            FenceStamp::from_headers(&h),
            Err(FenceHeaderError::Incomplete)
        );
    }
}
