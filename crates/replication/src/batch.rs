//! Group commit: the writes that arrive while one entry is being committed wait together and
//! go out as the next entry, one [`Request::Batch`] (one log append and fsync per replica, one
//! replication round trip), instead of one entry and one round trip each. At most one entry
//! of this replica's writes is in flight, so config commands are still validated against the
//! config they will apply to (every earlier write of this leader is applied when a batch is
//! formed); a write is answered only once its entry is committed and applied here.

use crate::replica::{Replica, ReplicationError};
use crate::types::{Request, Response};
use maguey_model::ConfigData;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Answer = Result<Vec<Response>, ReplicationError>;

/// Writes waiting for the next entry.
struct Waiting {
    requests: Vec<Request>,
    reply: oneshot::Sender<Answer>,
}

/// The group commit queue of a replica.
#[derive(Default)]
pub(crate) struct GroupCommit {
    waiting: Mutex<Vec<Waiting>>,
    /// Held by the write that forms and commits the current entry.
    flushing: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    fn take(&self) -> Vec<Waiting> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The same error again, for every write of a batch that failed as a whole.
fn again(e: &ReplicationError) -> ReplicationError {
    match e {
        ReplicationError::NotLeader { leader } => ReplicationError::NotLeader {
            leader: leader.clone(),
        },
        ReplicationError::NoQuorum {
            seen,
            voters,
            needed,
            unacknowledged,
        } => ReplicationError::NoQuorum {
            seen: seen.clone(),
            voters: voters.clone(),
            needed: *needed,
            unacknowledged: *unacknowledged,
        },
        ReplicationError::Config(c) => ReplicationError::Refused(c.to_string()),
        ReplicationError::Refused(s) => ReplicationError::Refused(s.clone()),
        ReplicationError::Store { path, message } => ReplicationError::Store {
            path: path.clone(),
            message: message.clone(),
        },
        ReplicationError::Raft(s) => ReplicationError::Raft(s.clone()),
    }
}

impl Replica {
    /// Proposes `requests` (applied in this order, with whatever other writes wait now) and
    /// returns their answers once committed and applied here. A config command that does not
    /// validate against the config it would apply to is refused before it is proposed.
    pub(crate) async fn propose_grouped(&self, requests: Vec<Request>) -> Answer {
        let (reply, mut rx) = oneshot::channel();
        self.group
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Waiting { requests, reply });
        let _flushing = self.group.flushing.lock().await;
        // An earlier flush may have carried these writes already.
        if let Ok(answer) = rx.try_recv() {
            return answer;
        }
        let batch = self.group.take();
        self.flush(batch).await;
        rx.await
            .unwrap_or_else(|_| Err(ReplicationError::Raft("the write was dropped".into())))
    }

    /// Forms one entry of `batch` (refusing the config commands that do not validate),
    /// commits it and answers every write of it.
    async fn flush(&self, batch: Vec<Waiting>) {
        if let Err(e) = self.writable().await {
            for w in batch {
                let _ = w.reply.send(Err(again(&e)));
            }
            return;
        }
        let configs = batch
            .iter()
            .flat_map(|w| &w.requests)
            .filter(|r| matches!(r, Request::Config { .. }))
            .count();
        // Several config commands: each is validated against the config the ones before it
        // make (a copy, changed as the state machine will change it).
        let mut scratch: Option<ConfigData> = None;
        let current: Arc<ConfigData> = self.config();
        let mut accepted: Vec<(oneshot::Sender<Answer>, usize)> = Vec::new();
        let mut entry: Vec<Request> = Vec::new();
        for w in batch {
            let mut refused = None;
            for r in &w.requests {
                if let Request::Config { ts, command } = r {
                    let checked = if configs == 1 {
                        maguey_config::validate(&current, command)
                    } else {
                        let cfg = scratch.get_or_insert_with(|| (*current).clone());
                        maguey_config::apply(cfg, *ts, command)
                    };
                    if let Err(e) = checked {
                        refused = Some(e);
                        break;
                    }
                }
            }
            match refused {
                // A refused write is a single config command (`Replica::apply_at`).
                Some(e) => {
                    let _ = w.reply.send(Err(ReplicationError::Config(e)));
                }
                None => {
                    accepted.push((w.reply, w.requests.len()));
                    entry.extend(w.requests);
                }
            }
        }
        if entry.is_empty() {
            return;
        }
        let proposed = if entry.len() == 1 {
            // One write alone: the entry every version of Maguey decodes.
            let request = entry.remove(0);
            self.propose(request).await.map(|r| vec![r])
        } else {
            let n = entry.len();
            match self.propose(Request::Batch { requests: entry }).await {
                Ok(Response::Batch { responses }) if responses.len() == n => Ok(responses),
                Ok(other) => Err(ReplicationError::Raft(format!(
                    "unexpected answer to a batch of {n}: {other:?}"
                ))),
                Err(e) => Err(e),
            }
        };
        match proposed {
            Ok(responses) => {
                let mut responses = responses.into_iter();
                for (reply, n) in accepted {
                    let _ = reply.send(Ok(responses.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                for (reply, _) in accepted {
                    let _ = reply.send(Err(again(&e)));
                }
            }
        }
    }
}
