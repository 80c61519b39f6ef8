//! Opcode execution, in the shape of Ganeti's logical units.
//!
//! Each opcode has one thin module under `units/` with a type implementing [`LogicalUnit`]
//! for that opcode's type (`LogicalUnit::Op`):
//! 1. [`LogicalUnit::expand`] resolves names against a config snapshot (nothing locked yet),
//! 2. [`LogicalUnit::locks`] declares the locks through a named policy of [`locks`], which
//!    [`run_lu`] takes in level order,
//! 3. [`LogicalUnit::check_prereq`] checks everything on a fresh snapshot, changing nothing,
//!    and returns what it checked (`LogicalUnit::Checked`),
//! 4. [`LogicalUnit::exec`] does the work with it: node RPCs first, then config commands.
//!    When a step fails after others succeeded, the unit undoes what it created and says so
//!    in the job log.
//!
//! What units share is a library beside them: `lifecycle` (is running, start, stop),
//! `disks` (copy, remove, undo), `migration` (the one tasklet that moves a primary), [`drbd`],
//! [`iallocator`] and [`moves`] (the placement engine in process), [`locks`] (policies).

pub mod cert_renewal;
mod config_backend;
pub mod cut_off;
mod disks;
pub mod drbd;
mod drbd_group_move;
mod drbd_replace;
mod drbd_secrets;
mod group_moves;
pub mod hooks;
pub mod iallocator;
pub mod ipolicy;
mod lifecycle;
pub mod locks;
pub mod master_ip;
pub mod metrics;
mod migration;
pub mod moves;
mod netpool;
pub mod os_diagnose;
pub mod query;
mod query_disks;
mod query_groups;
pub mod refusal;
mod room_moves;
pub mod rooms;
mod units;
mod util;
pub mod watcher;

use maguey_config::Command;
use maguey_jobs::{LockLevel, LockMode, LockNames, OpContext, OpError, OpExecutor};
use maguey_model::{ConfigData, Node, OpCode, Ssconf};
use maguey_rpc::{NodeRequest, RpcClient, RpcError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use config_backend::{BoxFuture, ConfigBackend, ConfigWriteError};
pub use units::tags;
use units::*;
pub use util::{instance_runtime, node_addr};

/// What the master owns and every logical unit needs.
pub struct Master {
    /// The config: the local `ConfigStore`, or the replicated one on a Raft leader.
    pub config: Arc<dyn ConfigBackend>,
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
    /// The opcode being executed (its hooks path and `GANETI_OP_CODE`).
    pub op: Option<&'a OpCode>,
}

impl Env<'_> {
    pub fn log(&self, msg: impl Into<String>) {
        self.ctx.log(msg);
    }

    pub fn cfg(&self) -> Arc<ConfigData> {
        self.master.config.snapshot()
    }

    /// Applies a config command; a refusal is an execution error.
    pub async fn apply(&self, cmd: Command) -> Result<u64, OpError> {
        self.master
            .config
            .apply(cmd)
            .await
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

/// A lock a unit needs: level, names, mode (built by the policies in [`locks`]).
pub type LockRequest = (LockLevel, LockNames, LockMode);

/// One opcode's logical unit.
pub trait LogicalUnit: Sized + Send + Sync {
    /// The opcode it executes.
    type Op: Sync;
    /// What [`LogicalUnit::check_prereq`] checked, handed to [`LogicalUnit::exec`].
    type Checked: Send;
    /// Resolves the opcode's names against the config; refuses bad input.
    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError>;
    /// Locks to take, in level order.
    fn locks(&self) -> Vec<LockRequest>;
    /// Checks every prerequisite on a snapshot taken after the locks; changes nothing.
    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError>;
    /// The hooks' variables (without `GANETI_`) and nodes, from what was checked. Default
    /// (`None`): the opcode's instance or node as the config has it.
    fn hooks_env(&self, _cfg: &ConfigData, _checked: &Self::Checked) -> Option<hooks::HooksEnv> {
        None
    }
    /// Executes: RPCs first, then config commands; undoes partial work on failure.
    fn exec(
        &mut self,
        env: &Env<'_>,
        checked: Self::Checked,
    ) -> impl Future<Output = Result<Value, OpError>> + Send;
}

/// A unit for a second opcode that shares another unit's phases (activate/deactivate disks,
/// tags set/del, node evacuate/migrate): `$ctor(op, cfg)` builds the inner unit.
macro_rules! unit_alias {
    ($(#[$meta:meta])* $name:ident, $op:ty, $inner:ty, $ctor:path) => {
        $(#[$meta])*
        pub struct $name($inner);

        impl $crate::LogicalUnit for $name {
            type Op = $op;
            type Checked = <$inner as $crate::LogicalUnit>::Checked;
            fn expand(
                op: &$op,
                cfg: &maguey_model::ConfigData,
            ) -> Result<Self, maguey_jobs::OpError> {
                $ctor(op, cfg).map($name)
            }
            fn locks(&self) -> Vec<$crate::LockRequest> {
                $crate::LogicalUnit::locks(&self.0)
            }
            fn check_prereq(
                &mut self,
                cfg: &maguey_model::ConfigData,
            ) -> Result<Self::Checked, maguey_jobs::OpError> {
                $crate::LogicalUnit::check_prereq(&mut self.0, cfg)
            }
            fn hooks_env(
                &self,
                cfg: &maguey_model::ConfigData,
                checked: &Self::Checked,
            ) -> Option<$crate::hooks::HooksEnv> {
                $crate::LogicalUnit::hooks_env(&self.0, cfg, checked)
            }
            async fn exec(
                &mut self,
                env: &$crate::Env<'_>,
                checked: Self::Checked,
            ) -> Result<serde_json::Value, maguey_jobs::OpError> {
                $crate::LogicalUnit::exec(&mut self.0, env, checked).await
            }
        }
    };
}
pub(crate) use unit_alias;

/// Runs a logical unit through its four phases.
pub async fn run_lu<L: LogicalUnit>(op: &L::Op, env: &Env<'_>) -> Result<Value, OpError> {
    let mut lu = L::expand(op, &env.cfg())?;
    let mut locks = lu.locks();
    locks.sort_by_key(|(level, _, _)| *level);
    for (level, names, mode) in locks {
        env.ctx.acquire(level, names, mode).await?;
    }
    let cfg = env.cfg();
    let checked = lu.check_prereq(&cfg)?;
    let hooks = hooks::Hooks::prepare(env, lu.hooks_env(&cfg, &checked));
    if let Some(h) = &hooks {
        h.pre(env).await?;
    }
    let result = lu.exec(env, checked).await;
    if let (Some(h), Ok(_)) = (&hooks, &result) {
        h.post(env).await;
    }
    result
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
                op: Some(op),
            };
            match op {
                OpCode::ClusterVerify(o) => run_lu::<cluster_verify::ClusterVerify>(o, &env).await,
                OpCode::ClusterDestroy(o) => {
                    run_lu::<cluster_destroy::ClusterDestroy>(o, &env).await
                }
                OpCode::ClusterRenewCrypto(o) => {
                    run_lu::<cluster_renew_crypto::ClusterRenewCrypto>(o, &env).await
                }
                OpCode::NodeAdd(o) => run_lu::<node_add::NodeAdd>(o, &env).await,
                OpCode::NodeRemove(o) => run_lu::<node_remove::NodeRemove>(o, &env).await,
                OpCode::NodeSetParams(o) => run_lu::<node_set_params::NodeSetParams>(o, &env).await,
                OpCode::InstanceCreate(o) => {
                    run_lu::<instance_create::InstanceCreate>(o, &env).await
                }
                OpCode::InstanceRemove(o) => {
                    run_lu::<instance_remove::InstanceRemove>(o, &env).await
                }
                OpCode::InstanceStartup(o) => {
                    run_lu::<instance_state::InstanceStartup>(o, &env).await
                }
                OpCode::InstanceShutdown(o) => {
                    run_lu::<instance_state::InstanceShutdown>(o, &env).await
                }
                OpCode::InstanceReboot(o) => {
                    run_lu::<instance_state::InstanceReboot>(o, &env).await
                }
                OpCode::InstanceSetParams(o) => {
                    run_lu::<instance_set_params::InstanceSetParams>(o, &env).await
                }
                OpCode::InstanceMigrate(o) => {
                    run_lu::<instance_migrate::InstanceMigrate>(o, &env).await
                }
                OpCode::InstanceFailover(o) => {
                    run_lu::<instance_failover::InstanceFailover>(o, &env).await
                }
                OpCode::InstanceMove(o) => run_lu::<instance_move::InstanceMove>(o, &env).await,
                OpCode::InstanceReinstall(o) => {
                    run_lu::<instance_reinstall::InstanceReinstall>(o, &env).await
                }
                OpCode::InstanceRename(o) => {
                    run_lu::<instance_reinstall::InstanceRename>(o, &env).await
                }
                OpCode::NodeMigrate(o) => run_lu::<node_evacuate::NodeMigrate>(o, &env).await,
                OpCode::NodeEvacuate(o) => run_lu::<node_evacuate::NodeEvacuate>(o, &env).await,
                OpCode::InstanceActivateDisks(o) => {
                    run_lu::<instance_activate_disks::InstanceActivateDisks>(o, &env).await
                }
                OpCode::InstanceDeactivateDisks(o) => {
                    run_lu::<instance_activate_disks::InstanceDeactivateDisks>(o, &env).await
                }
                OpCode::InstanceGrowDisk(o) => {
                    run_lu::<instance_grow_disk::InstanceGrowDisk>(o, &env).await
                }
                OpCode::InstanceReplaceDisks(o) => {
                    run_lu::<instance_replace_disks::InstanceReplaceDisks>(o, &env).await
                }
                OpCode::InstanceRecreateDisks(o) => {
                    run_lu::<instance_recreate_disks::InstanceRecreateDisks>(o, &env).await
                }
                OpCode::ClusterVerifyDisks(o) => {
                    run_lu::<cluster_verify_disks::ClusterVerifyDisks>(o, &env).await
                }
                OpCode::TestDelay(o) => run_lu::<test_delay::TestDelay>(o, &env).await,
                OpCode::TagsSet(o) => run_lu::<tags::TagsSet>(o, &env).await,
                OpCode::TagsDel(o) => run_lu::<tags::TagsDel>(o, &env).await,
                OpCode::InstanceQueryData(o) => {
                    run_lu::<instance_query_data::InstanceQueryData>(o, &env).await
                }
                OpCode::GroupAdd(o) => run_lu::<group::GroupAdd>(o, &env).await,
                OpCode::GroupSetParams(o) => run_lu::<group::GroupSetParams>(o, &env).await,
                OpCode::GroupRename(o) => run_lu::<group::GroupRename>(o, &env).await,
                OpCode::GroupRemove(o) => run_lu::<group::GroupRemove>(o, &env).await,
                OpCode::GroupAssignNodes(o) => {
                    run_lu::<group_assign_nodes::GroupAssignNodes>(o, &env).await
                }
                OpCode::NetworkAdd(o) => run_lu::<network::NetworkAdd>(o, &env).await,
                OpCode::NetworkSetParams(o) => run_lu::<network::NetworkSetParams>(o, &env).await,
                OpCode::NetworkRename(o) => run_lu::<network::NetworkRename>(o, &env).await,
                OpCode::NetworkRemove(o) => run_lu::<network::NetworkRemove>(o, &env).await,
                OpCode::NetworkConnect(o) => {
                    run_lu::<network_connect::NetworkConnection>(o, &env).await
                }
                OpCode::NetworkDisconnect(o) => {
                    run_lu::<network_connect::NetworkDisconnect>(o, &env).await
                }
                OpCode::RoomEvacuate(o) => run_lu::<room_evacuate::RoomEvacuate>(o, &env).await,
                OpCode::RoomReturn(o) => run_lu::<room_evacuate::RoomReturn>(o, &env).await,
                OpCode::RoomFailover(o) => run_lu::<room_failover::RoomFailover>(o, &env).await,
                OpCode::ClusterSetParams(o) => {
                    run_lu::<cluster_set_params::ClusterSetParams>(o, &env).await
                }
                OpCode::InstanceChangeGroup(o) => {
                    run_lu::<group_evacuate::InstanceChangeGroup>(o, &env).await
                }
                OpCode::GroupEvacuate(o) => run_lu::<group_evacuate::GroupEvacuate>(o, &env).await,
                OpCode::ClusterActivateMasterIp(o) => {
                    run_lu::<units::master_ip::ClusterActivateMasterIp>(o, &env).await
                }
                OpCode::ClusterDeactivateMasterIp(o) => {
                    run_lu::<units::master_ip::ClusterDeactivateMasterIp>(o, &env).await
                }
            }
        })
    }
}

/// A prerequisite failure.
pub(crate) fn prereq(msg: impl Into<String>) -> OpError {
    OpError::Prereq(msg.into())
}
