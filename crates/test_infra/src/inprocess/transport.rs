//! The in-process transport: node RPCs answered by [`NodeRuntime`]s in this process, through
//! the JSON a daemon would receive and send.

use maguey_node::fence::TermStore;
use maguey_node::NodeRuntime;
use maguey_rpc::client::{Method, StatusCode};
use maguey_rpc::{
    NodeRequest, RpcError, RpcReply, RpcTransport, TransportAnswer, TransportFuture,
    TransportRequest,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers one node request as the daemon's `POST /rpc` handler does. The only place the
/// harness calls into the node's request handling: adapt this function when its signature
/// changes.
pub async fn answer_node_request(node: &NodeRuntime, req: NodeRequest) -> RpcReply {
    node.rpc_reply(req).await
}

/// Routes node RPCs (`https://ip:port/rpc`) to the in-process runtime registered for `ip:port`.
/// The request is decoded from, and the reply encoded to, the JSON bytes a daemon would see.
/// An unknown or [`set_reachable`](Self::set_reachable)`(false)` address is unreachable.
/// A stamped request (a master's client, [`maguey_rpc::Fence`]) is checked against the node's
/// stored term as the daemon checks it, the sender counting as the master the node obeys.
#[derive(Default)]
pub struct InProcessTransport {
    /// Each node's stored master term (`maguey_node::fence`), opened at its first stamp.
    terms: Mutex<BTreeMap<String, Arc<TermStore>>>,
    nodes: RwLock<BTreeMap<String, Arc<NodeRuntime>>>,
    unreachable: RwLock<BTreeSet<String>>,
    /// Procedures called, per address, in order.
    calls: Mutex<Vec<(String, String)>>,
}

impl fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .read()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("InProcessTransport")
            .field("nodes", &nodes)
            .finish()
    }
}

impl InProcessTransport {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Answers requests to `addr` (`ip:port`) with `node`.
    pub fn add_node(&self, addr: &str, node: Arc<NodeRuntime>) {
        if let Ok(mut n) = self.nodes.write() {
            n.insert(addr.to_string(), node);
        }
    }

    /// Makes `addr` unreachable (a node that is down) or reachable again.
    pub fn set_reachable(&self, addr: &str, reachable: bool) {
        if let Ok(mut u) = self.unreachable.write() {
            if reachable {
                u.remove(addr);
            } else {
                u.insert(addr.to_string());
            }
        }
    }

    /// `(address, procedure)` of every node RPC answered so far, in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        lock(&self.calls).clone()
    }

    fn node(&self, addr: &str) -> Option<Arc<NodeRuntime>> {
        if self
            .unreachable
            .read()
            .map(|u| u.contains(addr))
            .unwrap_or(false)
        {
            return None;
        }
        self.nodes.read().ok()?.get(addr).cloned()
    }

    async fn answer(&self, req: TransportRequest) -> Result<TransportAnswer, RpcError> {
        let unreachable = |why: &str| RpcError::Unreachable(format!("{}: {why}", req.url));
        let addr = req
            .url
            .strip_prefix("https://")
            .and_then(|rest| rest.strip_suffix("/rpc"))
            .ok_or_else(|| unreachable("only node RPCs are answered in process"))?
            .to_string();
        let node = self
            .node(&addr)
            .ok_or_else(|| unreachable("connection refused (no node there)"))?;
        if req.method != Method::Post {
            return Ok(TransportAnswer {
                status: StatusCode::METHOD_NOT_ALLOWED,
                body: String::new(),
            });
        }
        let body = req.body.unwrap_or_default();
        let request: NodeRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return Ok(TransportAnswer {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body: format!("Failed to deserialize the JSON body: {e}"),
                })
            }
        };
        if let Some(stamp) = &req.fence {
            let state_dir = node.config().state_dir.clone();
            let store = {
                let mut terms = lock(&self.terms);
                match terms.get(&addr) {
                    Some(t) => t.clone(),
                    None => {
                        let t = TermStore::open(&state_dir)
                            .map(Arc::new)
                            .map_err(|e| RpcError::Protocol(e.to_string()))?;
                        terms.insert(addr.clone(), t.clone());
                        t
                    }
                }
            };
            let ssconf = maguey_node::read_ssconf(&state_dir);
            if let Err(e) = store.admit(stamp, ssconf.as_ref(), "", true) {
                let body = serde_json::to_string(&RpcReply::Error(e.to_string()))
                    .map_err(|e| RpcError::Protocol(format!("cannot encode the reply: {e}")))?;
                return Ok(TransportAnswer {
                    status: StatusCode::CONFLICT,
                    body,
                });
            }
        }
        lock(&self.calls).push((addr.clone(), request.procedure().to_string()));
        let leave = matches!(request, NodeRequest::LeaveCluster);
        let reply = tokio::time::timeout(req.timeout, answer_node_request(&node, request))
            .await
            .map_err(|_| RpcError::Unreachable(format!("{}: timed out", req.url)))?;
        if leave && matches!(reply, RpcReply::Ok(_)) {
            // The daemon exits once it has left the cluster.
            self.set_reachable(&addr, false);
        }
        let body = serde_json::to_string(&reply)
            .map_err(|e| RpcError::Protocol(format!("cannot encode the reply: {e}")))?;
        Ok(TransportAnswer {
            status: StatusCode::OK,
            body,
        })
    }
}

impl RpcTransport for InProcessTransport {
    fn send(&self, req: TransportRequest) -> TransportFuture<'_> {
        Box::pin(self.answer(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inprocess::start_node;
    use serde_json::json;
    use std::time::Duration;

    fn post(url: &str, body: &[u8]) -> TransportRequest {
        TransportRequest {
            method: Method::Post,
            url: url.to_string(),
            body: Some(body.to_vec()),
            timeout: Duration::from_secs(5),
            fence: None,
        }
    }

    #[tokio::test]
    async fn routes_by_address_through_json_like_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let n = start_node(dir.path(), 0, 1024, 2).unwrap();
        let t = InProcessTransport::new();
        t.add_node(&n.addr, n.runtime.clone());
        let url = format!("https://{}/rpc", n.addr);
        let body = serde_json::to_vec(&NodeRequest::Version).unwrap();

        let a = t.send(post(&url, &body)).await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        let reply: RpcReply = serde_json::from_str(&a.body).unwrap();
        let RpcReply::Ok(v) = reply else {
            panic!("{}", a.body)
        };
        assert_eq!(v["node_name"], json!("node1"));
        assert_eq!(t.calls(), [(n.addr.clone(), "version".to_string())]);

        // A body the daemon could not decode is refused as axum would.
        let a = t
            .send(post(&url, b"{\"procedure\": \"nope\"}"))
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);

        // Nobody at another address, nor at a node that is down.
        let other = t.send(post("https://127.0.80.9:1/rpc", &body)).await;
        assert!(matches!(other, Err(RpcError::Unreachable(_))));
        t.set_reachable(&n.addr, false);
        let down = t.send(post(&url, &body)).await;
        assert!(matches!(down, Err(RpcError::Unreachable(_))));
        t.set_reachable(&n.addr, true);
        assert!(t.send(post(&url, &body)).await.is_ok());
    }

    #[tokio::test]
    async fn stamped_requests_are_fenced_like_the_daemon_fences_them() {
        let dir = tempfile::tempdir().unwrap();
        let n = start_node(dir.path(), 0, 1024, 2).unwrap();
        let t = InProcessTransport::new();
        t.add_node(&n.addr, n.runtime.clone());
        let url = format!("https://{}/rpc", n.addr);
        let body = serde_json::to_vec(&NodeRequest::Version).unwrap();
        let stamped = |term| TransportRequest {
            fence: Some(maguey_rpc::FenceStamp {
                cluster: "c1".into(),
                term,
            }),
            ..post(&url, &body)
        };
        assert_eq!(t.send(stamped(3)).await.unwrap().status, StatusCode::OK);
        let a = t.send(stamped(2)).await.unwrap();
        assert_eq!(a.status, StatusCode::CONFLICT);
        let reply: RpcReply = serde_json::from_str(&a.body).unwrap();
        assert!(
            matches!(&reply, RpcReply::Error(m) if m.contains("lower than term 3")),
            "{reply:?}"
        );
        // Unstamped requests (older masters) pass; the refused one was never executed.
        assert!(t.send(post(&url, &body)).await.is_ok());
        assert_eq!(t.calls().len(), 2);
    }
}
