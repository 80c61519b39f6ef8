//! Opcode execution, in the shape of Ganeti's logical units.
//!
//! Each opcode has one module with a type implementing [`LogicalUnit`]:
//! 1. [`LogicalUnit::expand`] resolves names against a config snapshot (nothing locked yet),
//! 2. [`LogicalUnit::locks`] declares the locks, which [`run_lu`] takes in level order,
//! 3. [`LogicalUnit::check_prereq`] checks everything on a fresh snapshot, changing nothing,
//! 4. [`LogicalUnit::exec`] does the work: node RPCs first, then config commands. When a step
//!    fails after others succeeded, the unit undoes what it created and says so in the job log.

mod cluster_destroy;
mod cluster_verify;
mod cluster_verify_disks;
pub mod drbd;
pub mod iallocator;
mod instance_activate_disks;
mod instance_create;
mod instance_failover;
mod instance_grow_disk;
mod instance_migrate;
mod instance_move;
mod instance_query_data;
mod instance_recreate_disks;
mod instance_reinstall;
mod instance_remove;
mod instance_replace_disks;
mod instance_set_params;
mod instance_state;
mod node_add;
mod node_evacuate;
mod node_remove;
mod node_set_params;
pub mod os_diagnose;
pub mod query;
pub mod tags;
mod test_delay;
mod util;

use maguey_config::{Command, ConfigStore};
use maguey_jobs::{LockLevel, LockMode, LockNames, OpContext, OpError, OpExecutor};
use maguey_model::{ConfigData, Node, OpCode, Ssconf};
use maguey_rpc::{NodeRequest, RpcClient, RpcError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use util::{instance_runtime, node_addr};

/// What the master owns and every logical unit needs.
pub struct Master {
    pub config: Arc<ConfigStore>,
    pub rpc: RpcClient,
    /// This node's name.
    pub node_name: String,
    /// Notified when OP_CLUSTER_DESTROY succeeded: the daemon then wipes its state and exits.
    pub destroy: Arc<tokio::sync::Notify>,
}

impl Master {
    /// Sends the current ssconf to every online node; failures are returned, not fatal.
    pub async fn distribute_ssconf(&self) -> Vec<(String, RpcError)> {
        let cfg = self.config.snapshot();
        let ssconf = Ssconf::from_config(&cfg);
        let nodes: Vec<&Node> = cfg.nodes.values().filter(|n| !n.offline).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| node_addr(&cfg, n)).collect();
        let results = self
            .rpc
            .call_many::<Value>(&addrs, &NodeRequest::WriteSsconf { ssconf })
            .await;
        nodes
            .iter()
            .zip(results)
            .filter_map(|(n, r)| r.err().map(|e| (n.name.clone(), e)))
            .collect()
    }
}

/// The environment of one executing opcode: the master and the job's context.
pub struct Env<'a> {
    pub master: &'a Master,
    pub ctx: &'a OpContext,
}

impl Env<'_> {
    pub fn log(&self, msg: impl Into<String>) {
        self.ctx.log(msg);
    }

    pub fn cfg(&self) -> Arc<ConfigData> {
        self.master.config.snapshot()
    }

    /// Applies a config command; a refusal is an execution error.
    pub fn apply(&self, cmd: Command) -> Result<u64, OpError> {
        self.master
            .config
            .apply(cmd)
            .map_err(|e| OpError::Exec(format!("config update refused: {e}")))
    }

    /// Calls one node; an error names the node and the procedure.
    pub async fn rpc<T: DeserializeOwned>(
        &self,
        node: &Node,
        req: NodeRequest,
    ) -> Result<T, OpError> {
        let cfg = self.cfg();
        let proc_name = req.procedure();
        self.master
            .rpc
            .call(&node_addr(&cfg, node), &req)
            .await
            .map_err(|e| OpError::Exec(format!("{proc_name} on node {}: {e}", node.name)))
    }
}

/// One opcode's logical unit.
pub trait LogicalUnit: Sized + Send + Sync {
    /// Resolves the opcode's names against the config; refuses bad input.
    fn expand(op: &OpCode, cfg: &ConfigData) -> Result<Self, OpError>;
    /// Locks to take, in level order.
    fn locks(&self) -> Vec<(LockLevel, LockNames, LockMode)>;
    /// Checks every prerequisite on a snapshot taken after the locks; changes nothing.
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<(), OpError>;
    /// Executes: RPCs first, then config commands; undoes partial work on failure.
    fn exec(&mut self, env: &Env<'_>) -> impl Future<Output = Result<Value, OpError>> + Send;
}

/// Runs a logical unit through its four phases.
pub async fn run_lu<L: LogicalUnit>(op: &OpCode, env: &Env<'_>) -> Result<Value, OpError> {
    let mut lu = L::expand(op, &env.cfg())?;
    let mut locks = lu.locks();
    locks.sort_by_key(|(level, _, _)| *level);
    for (level, names, mode) in locks {
        env.ctx.acquire(level, names, mode).await?;
    }
    lu.check_prereq(&env.cfg())?;
    lu.exec(env).await
}

/// The job queue's executor: dispatches each opcode to its logical unit.
pub struct Executor {
    pub master: Arc<Master>,
}

impl OpExecutor for Executor {
    fn execute<'a>(
        &'a self,
        op: &'a OpCode,
        ctx: &'a OpContext,
    ) -> Pin<Box<dyn Future<Output = Result<Value, OpError>> + Send + 'a>> {
        Box::pin(async move {
            let env = Env {
                master: &self.master,
                ctx,
            };
            match op {
                OpCode::ClusterVerify(maguey_model::OpClusterVerify { .. }) => {
                    run_lu::<cluster_verify::ClusterVerify>(op, &env).await
                }
                OpCode::ClusterDestroy(maguey_model::OpClusterDestroy {}) => {
                    run_lu::<cluster_destroy::ClusterDestroy>(op, &env).await
                }
                OpCode::NodeAdd(maguey_model::OpNodeAdd { .. }) => {
                    run_lu::<node_add::NodeAdd>(op, &env).await
                }
                OpCode::NodeRemove(maguey_model::OpNodeRemove { .. }) => {
                    run_lu::<node_remove::NodeRemove>(op, &env).await
                }
                OpCode::NodeSetParams(maguey_model::OpNodeSetParams { .. }) => {
                    run_lu::<node_set_params::NodeSetParams>(op, &env).await
                }
                OpCode::InstanceCreate(maguey_model::OpInstanceCreate { .. }) => {
                    run_lu::<instance_create::InstanceCreate>(op, &env).await
                }
                OpCode::InstanceRemove(maguey_model::OpInstanceRemove { .. }) => {
                    run_lu::<instance_remove::InstanceRemove>(op, &env).await
                }
                OpCode::InstanceStartup(maguey_model::OpInstanceStartup { .. }) => {
                    run_lu::<instance_state::InstanceStartup>(op, &env).await
                }
                OpCode::InstanceShutdown(maguey_model::OpInstanceShutdown { .. }) => {
                    run_lu::<instance_state::InstanceShutdown>(op, &env).await
                }
                OpCode::InstanceReboot(maguey_model::OpInstanceReboot { .. }) => {
                    run_lu::<instance_state::InstanceReboot>(op, &env).await
                }
                OpCode::InstanceSetParams(maguey_model::OpInstanceSetParams { .. }) => {
                    run_lu::<instance_set_params::InstanceSetParams>(op, &env).await
                }
                OpCode::InstanceMigrate(maguey_model::OpInstanceMigrate { .. }) => {
                    run_lu::<instance_migrate::InstanceMigrate>(op, &env).await
                }
                OpCode::InstanceFailover(maguey_model::OpInstanceFailover { .. }) => {
                    run_lu::<instance_failover::InstanceFailover>(op, &env).await
                }
                OpCode::InstanceMove(maguey_model::OpInstanceMove { .. }) => {
                    run_lu::<instance_move::InstanceMove>(op, &env).await
                }
                OpCode::InstanceReinstall(maguey_model::OpInstanceReinstall { .. }) => {
                    run_lu::<instance_reinstall::InstanceReinstall>(op, &env).await
                }
                OpCode::InstanceRename(maguey_model::OpInstanceRename { .. }) => {
                    run_lu::<instance_reinstall::InstanceRename>(op, &env).await
                }
                OpCode::NodeMigrate(maguey_model::OpNodeMigrate { .. })
                | OpCode::NodeEvacuate(maguey_model::OpNodeEvacuate { .. }) => {
                    run_lu::<node_evacuate::NodeEvacuate>(op, &env).await
                }
                OpCode::InstanceActivateDisks(maguey_model::OpInstanceActivateDisks { .. })
                | OpCode::InstanceDeactivateDisks(maguey_model::OpInstanceDeactivateDisks {
                    ..
                }) => run_lu::<instance_activate_disks::InstanceActivateDisks>(op, &env).await,
                OpCode::InstanceGrowDisk(maguey_model::OpInstanceGrowDisk { .. }) => {
                    run_lu::<instance_grow_disk::InstanceGrowDisk>(op, &env).await
                }
                OpCode::InstanceReplaceDisks(maguey_model::OpInstanceReplaceDisks { .. }) => {
                    run_lu::<instance_replace_disks::InstanceReplaceDisks>(op, &env).await
                }
                OpCode::InstanceRecreateDisks(maguey_model::OpInstanceRecreateDisks { .. }) => {
                    run_lu::<instance_recreate_disks::InstanceRecreateDisks>(op, &env).await
                }
                OpCode::ClusterVerifyDisks(maguey_model::OpClusterVerifyDisks { .. }) => {
                    run_lu::<cluster_verify_disks::ClusterVerifyDisks>(op, &env).await
                }
                OpCode::TestDelay(maguey_model::OpTestDelay { .. }) => {
                    run_lu::<test_delay::TestDelay>(op, &env).await
                }
                OpCode::TagsSet(maguey_model::OpTagsSet { .. })
                | OpCode::TagsDel(maguey_model::OpTagsDel { .. }) => {
                    run_lu::<tags::Tags>(op, &env).await
                }
                OpCode::InstanceQueryData(maguey_model::OpInstanceQueryData { .. }) => {
                    run_lu::<instance_query_data::InstanceQueryData>(op, &env).await
                }
            }
        })
    }
}

/// A prerequisite failure.
pub(crate) fn prereq(msg: impl Into<String>) -> OpError {
    OpError::Prereq(msg.into())
}

/// The opcode did not match the unit (a programming error, reported, not panicked).
pub(crate) fn wrong_op(op: &OpCode) -> OpError {
    OpError::Exec(format!("internal error: unexpected opcode {}", op.op_id()))
}
