//! OP_INSTANCE_FAILOVER: stops an instance on its primary node and starts it on another
//! that sees the same disks (`sharedfile`, `diskless`; `drbd` with the replicated-storage
//! work). With `ignore_consistency` it goes on when the primary cannot be reached (it died).

use crate::migration::{Migration, MoveKind, MoveRequest};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::ConfigData;
use serde_json::Value;

pub struct InstanceFailover(MoveRequest);

impl LogicalUnit for InstanceFailover {
    type Op = maguey_model::OpInstanceFailover;
    type Checked = Migration;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        if op.cleanup {
            return Err(prereq(
                "a failover has nothing to clean up (use 'instance migrate --cleanup' after a \
                 failed migration)",
            ));
        }
        let kind = MoveKind::Failover {
            shutdown_timeout: op.shutdown_timeout,
            ignore_consistency: op.ignore_consistency,
        };
        let req = MoveRequest::expand(
            cfg,
            &op.instance_name,
            op.target_node.as_deref(),
            kind,
            op.ignore_ipolicy,
        )?;
        Ok(InstanceFailover(req))
    }

    fn locks(&self) -> Vec<LockRequest> {
        self.0.locks()
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        self.0.check(cfg)
    }

    async fn exec(&mut self, env: &Env<'_>, checked: Self::Checked) -> Result<Value, OpError> {
        checked.exec(env).await
    }
}
