//! How jobs enter the queue from outside it. The master API's `/luxi/submit` (for the CLI,
//! with a client certificate or with the Remote API's users), the Remote API's resources and
//! the join service all submit here, so that they check opcodes and priorities alike and
//! create jobs the same way. (Child jobs of a running job use [`crate::OpContext`] and inherit
//! its priority.)

use crate::{JobError, JobQueue};
use maguey_model::OpCode;
use serde_json::Value;
use std::ops::RangeInclusive;

/// Job priorities a client may ask for (Ganeti's `OP_PRIO_HIGHEST..=OP_PRIO_LOWEST`).
pub const PRIORITIES: RangeInclusive<i32> = -20..=19;

/// Who submits a job: what may be submitted depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The master API with a cluster client certificate (the master's own CLI).
    MasterApi,
    /// The master API on the Remote API's port, authenticated with the RAPI users file
    /// (`maguey --cluster URL`).
    RemoteApi,
    /// A Remote API (RAPI v2) resource.
    Rapi,
    /// A node joining with a token.
    Join,
}

impl Origin {
    /// How a job records this origin as its submitter.
    pub fn submitter(self) -> &'static str {
        match self {
            Origin::MasterApi => "cli",
            Origin::RemoteApi => "remote-cli",
            Origin::Rapi => "rapi",
            Origin::Join => "join",
        }
    }

    /// Why `op` may not be submitted from here, if it may not.
    fn refuses(self, op: &OpCode) -> Option<SubmitError> {
        match (self, op) {
            (o, OpCode::NodeAdd(op))
                if !matches!(o, Origin::Join) && op.certificate_fingerprint.is_some() =>
            {
                Some(SubmitError::Forbidden(
                    "certificate_fingerprint is set by the join service only",
                ))
            }
            (Origin::MasterApi, _) => None,
            (_, OpCode::ClusterRenewCrypto(_)) => Some(SubmitError::Forbidden(
                "certificates and secrets are renewed through the master's CLI only",
            )),
            (_, OpCode::ClusterDestroy(_)) => Some(SubmitError::Forbidden(
                "the cluster cannot be destroyed through the Remote API: use the master's CLI",
            )),
            _ => None,
        }
    }
}

/// Why a job was not submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// An opcode is not allowed from this origin.
    #[error("{0}")]
    Forbidden(&'static str),
    /// An opcode of the wire form does not decode.
    #[error("opcode {index}: {message}")]
    BadOpcode { index: usize, message: String },
    #[error("priority must be between -20 and 19")]
    BadPriority(i32),
    /// The drain flag is set.
    #[error("the job queue is drained, refusing the job (maguey cluster queue undrain)")]
    Drained,
    /// The queue refused or could not store the job.
    #[error(transparent)]
    Queue(#[from] JobError),
    /// Too many jobs wait already (Remote API origins): try again later.
    #[error("{0} jobs are queued already: try again later")]
    Busy(usize),
    /// This Remote API user has too many unfinished jobs: try again later.
    #[error("user {user} has {pending} unfinished jobs (at most {MAX_PENDING_PER_USER}): try again later")]
    UserBusy { user: String, pending: usize },
}

/// Queued jobs beyond which the Remote API (RAPI and `maguey --cluster`) submits no more.
pub const MAX_QUEUED_REMOTE: usize = 1000;

/// Unfinished jobs one Remote API user may have (through RAPI and `maguey --cluster`
/// together) before their submissions are refused.
pub const MAX_PENDING_PER_USER: usize = 100;

/// The Remote API user a submitter names (`rapi:USER`, `remote-cli:USER`).
fn remote_user(submitter: &str) -> Option<&str> {
    let (origin, user) = submitter.split_once(':')?;
    [Origin::Rapi, Origin::RemoteApi]
        .iter()
        .any(|o| o.submitter() == origin)
        .then_some(user)
}

/// Submits one job of `ops` at `priority`; answers its id.
pub fn submit(
    queue: &JobQueue,
    origin: Origin,
    ops: Vec<OpCode>,
    priority: i32,
) -> Result<u64, SubmitError> {
    if let Some(e) = ops.iter().find_map(|op| origin.refuses(op)) {
        return Err(e);
    }
    submit_by(queue, origin, ops, priority, origin.submitter(), "")
}

/// As [`submit`], recording `submitter` (e.g. `rapi:USER`) and `reason` in the job.
pub fn submit_by(
    queue: &JobQueue,
    origin: Origin,
    ops: Vec<OpCode>,
    priority: i32,
    submitter: &str,
    reason: &str,
) -> Result<u64, SubmitError> {
    if let Some(e) = ops.iter().find_map(|op| origin.refuses(op)) {
        return Err(e);
    }
    if !PRIORITIES.contains(&priority) {
        return Err(SubmitError::BadPriority(priority));
    }
    if queue.is_drained() {
        return Err(SubmitError::Drained);
    }
    if matches!(origin, Origin::Rapi | Origin::RemoteApi) {
        let queued = queue.queued_count();
        if queued >= MAX_QUEUED_REMOTE {
            return Err(SubmitError::Busy(queued));
        }
        if let Some(user) = remote_user(submitter) {
            let pending = queue.unfinished_by(|s| remote_user(s) == Some(user));
            if pending >= MAX_PENDING_PER_USER {
                return Err(SubmitError::UserBusy {
                    user: user.to_string(),
                    pending,
                });
            }
        }
    }
    Ok(queue.submit_by(ops, priority, submitter, reason)?)
}

/// As [`submit`], for opcodes in their wire form (JSON with Ganeti's `OP_ID`). An opcode the
/// origin may not submit is refused before a malformed one.
pub fn submit_wire(
    queue: &JobQueue,
    origin: Origin,
    ops: Vec<Value>,
    priority: i32,
) -> Result<u64, SubmitError> {
    submit_wire_by(queue, origin, ops, priority, origin.submitter())
}

/// As [`submit_wire`], recording `submitter` (e.g. `remote-cli:USER`) in the job.
pub fn submit_wire_by(
    queue: &JobQueue,
    origin: Origin,
    ops: Vec<Value>,
    priority: i32,
    submitter: &str,
) -> Result<u64, SubmitError> {
    let decoded: Vec<Result<OpCode, String>> = ops
        .into_iter()
        .map(|v| serde_json::from_value::<OpCode>(v).map_err(|e| e.to_string()))
        .collect();
    if let Some(e) = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok())
        .find_map(|op| origin.refuses(op))
    {
        return Err(e);
    }
    let mut good = Vec::with_capacity(decoded.len());
    for (index, d) in decoded.into_iter().enumerate() {
        good.push(d.map_err(|message| SubmitError::BadOpcode { index, message })?);
    }
    submit_by(queue, origin, good, priority, submitter, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn queue(dir: &std::path::Path) -> std::sync::Arc<JobQueue> {
        JobQueue::open(&dir.join("jobs.db"), 1).unwrap()
    }

    #[test]
    fn every_origin_checks_alike() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(dir.path());
        let delay = json!({"OP_ID": "OP_TEST_DELAY", "duration": 0});
        let destroy = json!({"OP_ID": "OP_CLUSTER_DESTROY"});
        // A destroy is refused off the master's own API, before a malformed opcode.
        for origin in [Origin::RemoteApi, Origin::Rapi, Origin::Join] {
            assert!(matches!(
                submit_wire(
                    &q,
                    origin,
                    vec![json!({"OP_ID": "OP_NOPE"}), destroy.clone()],
                    0
                ),
                Err(SubmitError::Forbidden(_))
            ));
            assert!(matches!(
                submit(
                    &q,
                    origin,
                    vec![OpCode::ClusterDestroy(maguey_model::OpClusterDestroy {})],
                    0
                ),
                Err(SubmitError::Forbidden(_))
            ));
        }
        assert_eq!(
            submit_wire(
                &q,
                Origin::MasterApi,
                vec![delay.clone(), json!({"OP_ID": "OP_NOPE"})],
                0
            )
            .err()
            .map(|e| e.to_string().starts_with("opcode 1: ")),
            Some(true)
        );
        for p in [-21, 20] {
            assert_eq!(
                submit_wire(&q, Origin::Rapi, vec![delay.clone()], p),
                Err(SubmitError::BadPriority(p))
            );
        }
        assert_eq!(
            submit(&q, Origin::Rapi, vec![], 0),
            Err(SubmitError::Queue(JobError::EmptyJob))
        );
        assert!(
            q.list(false).is_empty(),
            "a refused submission queued a job"
        );
        let id = submit_wire(&q, Origin::Rapi, vec![delay], -20).unwrap();
        let job = q.get(id).unwrap();
        assert_eq!((job.priority, job.ops.len()), (-20, 1));
    }

    #[test]
    fn a_drained_queue_refuses_new_jobs_until_undrained_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let delay = json!({"OP_ID": "OP_TEST_DELAY", "duration": 0});
        {
            let q = queue(dir.path());
            assert!(!q.is_drained());
            q.set_drained(true).unwrap();
            for origin in [Origin::MasterApi, Origin::Rapi] {
                assert_eq!(
                    submit_wire(&q, origin, vec![delay.clone()], 0),
                    Err(SubmitError::Drained)
                );
            }
            assert!(q.list(false).is_empty());
        }
        let q = queue(dir.path());
        assert!(q.is_drained(), "the flag survives a reopen");
        q.set_drained(false).unwrap();
        assert!(submit_wire(&q, Origin::MasterApi, vec![delay], 0).is_ok());
    }

    #[test]
    fn only_the_join_service_records_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(dir.path());
        let add = json!({"OP_ID": "OP_NODE_ADD", "node_name": "n2", "primary_ip": "192.0.2.2",
                         "certificate_fingerprint": "ab".repeat(32)});
        for origin in [Origin::MasterApi, Origin::RemoteApi, Origin::Rapi] {
            assert!(matches!(
                submit_wire(&q, origin, vec![add.clone()], 0),
                Err(SubmitError::Forbidden(_))
            ));
        }
        assert!(q.list(false).is_empty());
        submit_wire(&q, Origin::Join, vec![add], 0).unwrap();
    }

    #[test]
    fn remote_submissions_stop_at_the_queued_bound() {
        let dir = tempfile::tempdir().unwrap();
        // Not started: every job stays queued.
        let q = queue(dir.path());
        let delay = json!({"OP_ID": "OP_TEST_DELAY", "duration": 0});
        let jobs: Vec<(Vec<OpCode>, i32)> = (0..MAX_QUEUED_REMOTE)
            .map(|_| (vec![serde_json::from_value(delay.clone()).unwrap()], 0))
            .collect();
        q.submit_many(jobs).unwrap();
        for origin in [Origin::Rapi, Origin::RemoteApi] {
            assert_eq!(
                submit_wire(&q, origin, vec![delay.clone()], 0),
                Err(SubmitError::Busy(MAX_QUEUED_REMOTE))
            );
        }
        // The master's own CLI (admin certificate) still submits.
        submit_wire(&q, Origin::MasterApi, vec![delay], 0).unwrap();
    }

    #[test]
    fn one_remote_user_is_bounded_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(dir.path());
        let delay = || -> Vec<OpCode> {
            vec![serde_json::from_value(json!({"OP_ID": "OP_TEST_DELAY", "duration": 0})).unwrap()]
        };
        // Through RAPI and `maguey --cluster` together.
        for i in 0..MAX_PENDING_PER_USER {
            let (origin, by) = if i % 2 == 0 {
                (Origin::Rapi, "rapi:alice")
            } else {
                (Origin::RemoteApi, "remote-cli:alice")
            };
            submit_by(&q, origin, delay(), 0, by, "").unwrap();
        }
        let before = q.list(false).len();
        for (origin, by) in [
            (Origin::Rapi, "rapi:alice"),
            (Origin::RemoteApi, "remote-cli:alice"),
        ] {
            assert_eq!(
                submit_by(&q, origin, delay(), 0, by, ""),
                Err(SubmitError::UserBusy {
                    user: "alice".into(),
                    pending: MAX_PENDING_PER_USER
                })
            );
        }
        assert_eq!(q.list(false).len(), before);
        // Another user, and the admin's CLI, still submit.
        submit_by(&q, Origin::Rapi, delay(), 0, "rapi:bob", "").unwrap();
        submit_wire(
            &q,
            Origin::MasterApi,
            vec![json!({"OP_ID": "OP_TEST_DELAY", "duration": 0})],
            0,
        )
        .unwrap();
        // Finished jobs do not count.
        let id = q.list(false)[0].id;
        q.cancel(id).unwrap();
        submit_by(&q, Origin::Rapi, delay(), 0, "rapi:alice", "").unwrap();
    }
}
