//! Bounds of every HTTPS server ([`crate::server::serve`]): how many connections at once (in
//! all, and from one peer address), how long a request's headers may take, how long its
//! body may stall. A flood of connections or slow bodies then ties up a bounded share of the
//! server, and other clients keep being served.

use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Connections served at once, in all.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections served at once from one peer address.
pub const MAX_CONNECTIONS_PER_PEER: usize = 64;
/// How long a request's headers may take to arrive.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request body may go without sending anything.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts open connections, in all and per peer address.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    max: usize,
    per_peer: usize,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

/// One admitted connection; released when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    peer: IpAddr,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

impl ConnectionLimits {
    pub fn new(max: usize, per_peer: usize) -> Self {
        ConnectionLimits {
            max,
            per_peer,
            open: Arc::default(),
        }
    }

    /// A slot for a new connection from `peer`, unless a bound is reached.
    pub fn admit(&self, peer: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *open;
        let mine = per.entry(peer).or_insert(0);
        if *total >= self.max || *mine >= self.per_peer {
            if *mine == 0 {
                per.remove(&peer);
            }
            return None;
        }
        *total += 1;
        *mine += 1;
        Some(ConnectionSlot {
            peer,
            open: self.open.clone(),
        })
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.peer);
            }
        }
    }
}

/// A request body that fails when nothing arrives for [`BODY_READ_TIMEOUT`].
pub struct TimeoutBody<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> TimeoutBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        TimeoutBody {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

/// The error of a stalled body.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for more than {0:?}")]
pub struct BodyTimeout(Duration);

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits() {
        let l = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert!(l.admit(a).is_none(), "per-peer bound");
        let _b1 = l.admit(b).unwrap();
        assert!(l.admit(b).is_none(), "total bound");
        drop(a1);
        assert!(l.admit(b).is_some());
    }
}
