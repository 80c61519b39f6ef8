//! OP_INSTANCE_RECREATE_DISKS

use crate::{wrong_op, Env, LogicalUnit};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{ConfigData, OpCode};
use serde_json::Value;

pub struct InstanceRecreateDisks;

impl LogicalUnit for InstanceRecreateDisks {
    fn expand(op: &OpCode, _cfg: &ConfigData) -> Result<Self, OpError> {
        match op {
            OpCode::InstanceRecreateDisks { .. } => Ok(InstanceRecreateDisks),
            _ => Err(wrong_op(op)),
        }
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        Vec::new()
    }

    fn check_prereq(&mut self, _cfg: &ConfigData) -> Result<(), OpError> {
        Ok(())
    }

    async fn exec(&mut self, _env: &Env<'_>) -> Result<Value, OpError> {
        Err(OpError::Exec("SCAFFOLD: not implemented yet".into()))
    }
}
