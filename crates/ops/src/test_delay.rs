//! OP_TEST_DELAY: sleeps on the master and/or on nodes (for testing the job queue).

use crate::util::node_by_name;
use crate::{prereq, wrong_op, Env, LogicalUnit};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpError};
use maguey_model::{ConfigData, OpCode};
use maguey_rpc::NodeRequest;
use serde_json::Value;
use std::time::Duration;

pub struct TestDelay {
    duration: f64,
    on_master: bool,
    on_nodes: Vec<String>,
    repeat: u32,
    fail: bool,
}

impl LogicalUnit for TestDelay {
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError> {
        let OpCode::TestDelay(maguey_model::OpTestDelay {
            duration,
            on_master,
            on_nodes,
            repeat,
            fail,
        }) = op
        else {
            return Err(wrong_op(op));
        };
        if !duration.is_finite() || *duration < 0.0 || *duration > 86400.0 {
            return Err(prereq(format!("invalid duration {duration}")));
        }
        for n in on_nodes {
            node_by_name(cfg, n)?;
        }
        Ok(TestDelay {
            duration: *duration,
            on_master: *on_master,
            on_nodes: on_nodes.clone(),
            repeat: *repeat,
            fail: *fail,
        })
    }

    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)> {
        if self.on_nodes.is_empty() {
            Vec::new()
        } else {
            vec![(
                LockLevel::Node,
                LockNames::Names(self.on_nodes.clone()),
                LockMode::Exclusive,
            )]
        }
    }

    fn check_prereq(&mut self, _cfg: &ConfigData) -> Result<(), OpError> {
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>) -> Result<Value, OpError> {
        for i in 0..self.repeat.max(1) {
            if self.repeat > 0 {
                env.log(format!("test delay iteration {}/{}", i + 1, self.repeat));
            }
            if self.on_master && self.duration > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(self.duration)).await;
            }
            let cfg = env.cfg();
            for name in &self.on_nodes {
                let node = node_by_name(&cfg, name)?;
                let _: Value = env
                    .rpc(
                        node,
                        NodeRequest::TestDelay {
                            duration: self.duration,
                        },
                    )
                    .await?;
            }
        }
        if self.fail {
            return Err(OpError::Exec("OP_TEST_DELAY failed on request".into()));
        }
        Ok(Value::Bool(true))
    }
}
