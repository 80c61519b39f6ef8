//! OP_INSTANCE_MIGRATE: moves a running instance to another node while it runs.
//!
//! `sharedfile` and `diskless` instances move their memory only; `file` instances also move
//! their disks: the target creates fresh disks and exports them over NBD, the source mirrors
//! into them, then the memory moves (Maguey's local-storage live migration). A stopped
//! instance is failed over (shared disks) or moved (local disks) instead, as in Ganeti.
//! `--cleanup` repairs the state a failed migration left: it finds where the instance really
//! runs, fixes the config and stops the stray copy.

use crate::migration::{Migration, MoveKind, MoveRequest};
use crate::{prereq, Env, LockRequest, LogicalUnit};
use maguey_jobs::OpError;
use maguey_model::{ConfigData, MigrationMode};
use serde_json::Value;

pub struct InstanceMigrate(MoveRequest);

impl LogicalUnit for InstanceMigrate {
    type Op = maguey_model::OpInstanceMigrate;
    type Checked = Migration;

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        if op.mode == Some(MigrationMode::NonLive) || op.live == Some(false) {
            return Err(prereq(
                "non-live migration is not supported; use 'instance failover' to restart the \
                 instance on another node",
            ));
        }
        if let Some(a) = op
            .iallocator
            .as_deref()
            .filter(|a| !a.is_empty() && *a != "hail")
        {
            return Err(prereq(format!(
                "unknown iallocator '{a}' (Maguey's placement engine answers as 'hail')"
            )));
        }
        let kind = if op.cleanup {
            MoveKind::Cleanup
        } else {
            MoveKind::Live {
                allow_failover: op.allow_failover,
            }
        };
        let req = MoveRequest::expand(
            cfg,
            &op.instance_name,
            op.target_node.as_deref(),
            kind,
            op.ignore_ipolicy,
        )?;
        Ok(InstanceMigrate(req))
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
