//! OP_INSTANCE_MOVE: stops an instance, copies its disks to another node over the
//! cluster's mutual TLS (chunks through the master; holes stay holes), makes that node the
//! primary and starts the instance there if it was meant to run.

use crate::migration::{Migration, MoveKind, MoveRequest};
use crate::{Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::ConfigData;
use serde_json::Value;

pub struct InstanceMove(MoveRequest);

impl LogicalUnit for InstanceMove {
    type Op = maguey_model::OpInstanceMove;
    type Checked = Migration;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        let kind = MoveKind::Copy {
            shutdown_timeout: op.shutdown_timeout,
            ignore_consistency: op.ignore_consistency,
        };
        let req = MoveRequest::expand(
            cfg,
            &op.instance_name,
            Some(&op.target_node),
            kind,
            op.ignore_ipolicy,
        )?;
        Ok(InstanceMove(req))
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
