//! OP_NODE_EVACUATE and OP_NODE_MIGRATE: empty a node. The placement engine plans where
//! each instance goes (an iallocator `node-evacuate` request, as Ganeti asks hail); each
//! move is then submitted as its own job, at most `max_parallel` at a time, and this job
//! waits for them and reports every outcome. Each migration child job runs the migration
//! tasklet (`crate::migration::Migration`), as OP_INSTANCE_MIGRATE/FAILOVER/MOVE do.

use crate::util::node_by_name;
use crate::{prereq, Env, LockRequest, LogicalUnit};
use futures::future::{select_all, BoxFuture};
use maguey_jobs::OpError;
use maguey_model::{
    ConfigData, EvacMode, Instance, JobStatus, MigrationMode, OpCode, ReplaceDisksMode,
};
use serde_json::{json, Value};

pub struct NodeEvacuate {
    node: String,
    mode: EvacMode,
    /// Migrate only (OP_NODE_MIGRATE): the jobs must be live migrations.
    migrate_only: bool,
    remote_node: Option<String>,
    max_parallel: usize,
    /// Accept new secondaries in their primary's room.
    force: bool,
}

crate::unit_alias!(
    /// OP_NODE_MIGRATE: an evacuation of the primaries whose jobs must be migrations.
    NodeMigrate,
    maguey_model::OpNodeMigrate,
    NodeEvacuate,
    NodeEvacuate::migrate
);

impl NodeEvacuate {
    fn migrate(op: &maguey_model::OpNodeMigrate, cfg: &ConfigData) -> Result<Self, OpError> {
        check_iallocator(op.iallocator.as_deref())?;
        if op.mode == Some(MigrationMode::NonLive) || op.live == Some(false) {
            return Err(prereq("non-live migration is not supported"));
        }
        let target = op.target_node.clone();
        Self::new(
            &op.node_name,
            EvacMode::PrimaryOnly,
            target,
            op.max_parallel,
            true,
            cfg,
        )
    }

    fn new(
        node: &str,
        mode: EvacMode,
        remote: Option<String>,
        max_parallel: u32,
        migrate_only: bool,
        cfg: &ConfigData,
    ) -> Result<Self, OpError> {
        let node = node_by_name(cfg, node)?.name.clone();
        if let Some(r) = &remote {
            let r = node_by_name(cfg, r)?;
            if r.name == node {
                return Err(prereq("the target node is the node being evacuated"));
            }
        }
        if max_parallel == 0 {
            return Err(prereq("max_parallel must be at least 1"));
        }
        Ok(NodeEvacuate {
            node,
            mode,
            migrate_only,
            remote_node: remote.map(|r| r.to_string()),
            max_parallel: max_parallel as usize,
            force: false,
        })
    }
}

impl LogicalUnit for NodeEvacuate {
    type Op = maguey_model::OpNodeEvacuate;
    type Checked = ();

    fn expand(op: &Self::Op, cfg: &ConfigData) -> Result<Self, OpError> {
        check_iallocator(op.iallocator.as_deref())?;
        let remote = op.remote_node.clone();
        let mut u = Self::new(&op.node_name, op.mode, remote, op.max_parallel, false, cfg)?;
        u.force = op.force;
        Ok(u)
    }

    fn locks(&self) -> Vec<LockRequest> {
        crate::locks::node_planning(&self.node)
    }

    fn check_prereq(&mut self, cfg: &ConfigData) -> Result<Self::Checked, OpError> {
        node_by_name(cfg, &self.node)?;
        Ok(())
    }

    async fn exec(&mut self, env: &Env<'_>, _checked: Self::Checked) -> Result<Value, OpError> {
        // `all`: the primaries first (they move to their secondaries: the node becomes their
        // secondary), then every instance that has the node as secondary gets a new one.
        let phases: &[EvacMode] = match self.mode {
            EvacMode::All => &[EvacMode::PrimaryOnly, EvacMode::SecondaryOnly],
            EvacMode::SecondaryOnly => &[EvacMode::SecondaryOnly],
            EvacMode::PrimaryOnly => &[EvacMode::PrimaryOnly],
        };
        let mut submitted = Vec::new();
        for (k, phase) in phases.iter().enumerate() {
            let jobs = self.plan(env, *phase).await?;
            if k == 0 {
                crate::locks::release_planning(env.ctx);
            }
            if jobs.is_empty() {
                continue;
            }
            let r = run_jobs(env, jobs, self.max_parallel).await?;
            if let Some(a) = r["jobs"].as_array() {
                submitted.extend(a.iter().cloned());
            }
        }
        Ok(json!({ "jobs": submitted }))
    }
}

impl NodeEvacuate {
    /// The jobs that move the instances of one phase (`primary-only` or `secondary-only`)
    /// off the node: with a fixed target, a migration (primaries) or a secondary replacement
    /// (`replace_new_secondary`); otherwise as the placement engine plans.
    async fn plan(
        &self,
        env: &Env<'_>,
        phase: EvacMode,
    ) -> Result<Vec<(String, Vec<OpCode>)>, OpError> {
        let cfg = env.cfg();
        let node = node_by_name(&cfg, &self.node)?.clone();
        let instances: Vec<&Instance> = cfg
            .instances
            .values()
            .filter(|i| match phase {
                EvacMode::PrimaryOnly => i.primary_node == node.uuid,
                _ => i.secondary_nodes().contains(&node.uuid.as_str()),
            })
            .collect();
        if instances.is_empty() {
            env.log(format!(
                "no instance to move off node {} ({phase})",
                node.name
            ));
            return Ok(Vec::new());
        }
        let jobs: Vec<(String, Vec<OpCode>)> = match &self.remote_node {
            // A fixed target: one migration per instance, no planning.
            Some(target) if phase == EvacMode::PrimaryOnly => instances
                .iter()
                .map(|i| (i.name.clone(), vec![migrate_op(&i.name, Some(target))]))
                .collect(),
            // A fixed new secondary: one replace-disks per instance.
            Some(target) => {
                let t = node_by_name(&cfg, target)?;
                if let Some(i) = instances.iter().find(|i| i.primary_node == t.uuid) {
                    return Err(prereq(format!(
                        "node {} is instance {}'s primary: it cannot be its new secondary",
                        t.name, i.name
                    )));
                }
                for i in &instances {
                    crate::rooms::check_secondary_room(
                        &cfg,
                        &i.name,
                        &i.primary_node,
                        &t.uuid,
                        self.force,
                    )
                    .map_err(prereq)?;
                }
                instances
                    .iter()
                    .map(|i| (i.name.clone(), vec![replace_secondary_op(&i.name, &t.name)]))
                    .collect()
            }
            None => {
                let plan = crate::iallocator::evacuate_plan_rooms(
                    env.master,
                    &cfg,
                    &instances,
                    phase,
                    !self.force,
                )
                .await?;
                if !plan.failed.is_empty() {
                    return Err(prereq(format!(
                        "the allocator cannot move every instance off {}:\n{}",
                        node.name,
                        plan.summary.join("\n")
                    )));
                }
                for (name, nodes) in &plan.moved {
                    env.log(format!("plan: {name} → {}", nodes.join(", ")));
                }
                plan.moved
                    .iter()
                    .map(|(n, _)| n.clone())
                    .zip(plan.jobs)
                    .collect()
            }
        };
        if self.migrate_only {
            for (name, ops) in &jobs {
                if ops.iter().any(|o| {
                    !matches!(
                        o,
                        OpCode::InstanceMigrate(maguey_model::OpInstanceMigrate { .. })
                    )
                }) {
                    return Err(prereq(format!(
                        "instance {name} cannot be migrated off {}; use 'node evacuate'",
                        node.name
                    )));
                }
            }
        }
        Ok(jobs)
    }
}

fn replace_secondary_op(instance: &str, new_secondary: &str) -> OpCode {
    OpCode::InstanceReplaceDisks(maguey_model::OpInstanceReplaceDisks {
        instance_name: instance.to_string(),
        mode: ReplaceDisksMode::NewSecondary,
        disks: Vec::new(),
        remote_node: Some(new_secondary.to_string()),
        iallocator: None,
        early_release: false,
        ignore_ipolicy: false,
        force: false,
    })
}

fn check_iallocator(a: Option<&str>) -> Result<(), OpError> {
    match a {
        None | Some("") | Some("hail") => Ok(()),
        Some(other) => Err(prereq(format!(
            "unknown iallocator '{other}' (Maguey's placement engine answers as 'hail')"
        ))),
    }
}

fn migrate_op(instance: &str, target: Option<&str>) -> OpCode {
    OpCode::InstanceMigrate(maguey_model::OpInstanceMigrate {
        instance_name: instance.to_string(),
        mode: None,
        live: None,
        target_node: target.map(String::from),
        cleanup: false,
        allow_failover: true,
        iallocator: None,
        ignore_ipolicy: false,
        allow_runtime_changes: true,
        ignore_hvversions: false,
    })
}

/// A submitted job being waited for: instance name, job id, the final job.
type Waiting<'a> = BoxFuture<'a, (String, u64, Result<Option<maguey_model::Job>, OpError>)>;

/// Submits the jobs, at most `limit` unfinished at once, and waits for all of them.
/// Answers Ganeti's shape, `{"jobs": [[true, id], ...]}`; fails if any job failed.
async fn run_jobs(
    env: &Env<'_>,
    jobs: Vec<(String, Vec<OpCode>)>,
    limit: usize,
) -> Result<Value, OpError> {
    let total = jobs.len();
    let mut pending = jobs.into_iter();
    let mut running: Vec<Waiting<'_>> = Vec::new();
    let mut submitted: Vec<Value> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut done = 0;
    loop {
        while running.len() < limit {
            let Some((name, ops)) = pending.next() else {
                break;
            };
            let summary = ops
                .iter()
                .map(|o| o.summary())
                .collect::<Vec<_>>()
                .join(", ");
            let id = env.ctx.submit_jobs(vec![ops])?[0];
            env.log(format!("submitted job {id}: {summary}"));
            submitted.push(json!([true, id]));
            let ctx = env.ctx;
            running.push(Box::pin(async move { (name, id, ctx.wait_job(id).await) }));
        }
        if running.is_empty() {
            break;
        }
        let ((name, id, r), _, rest) = select_all(running).await;
        running = rest;
        done += 1;
        let job = r?;
        let status = job.as_ref().map(|j| j.status);
        match status {
            Some(JobStatus::Success) => {
                env.log(format!("job {id} ({name}) succeeded [{done}/{total}]"))
            }
            other => {
                let why = job
                    .as_ref()
                    .and_then(|j| j.opresult.last().cloned())
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                env.log(format!(
                    "job {id} ({name}) ended {} [{done}/{total}] {why}",
                    other.map(|s| s.as_str()).unwrap_or("unknown")
                ));
                failed.push(format!("{name} (job {id})"));
            }
        }
    }
    if !failed.is_empty() {
        return Err(OpError::Exec(format!(
            "{} of {total} moves failed: {}",
            failed.len(),
            failed.join(", ")
        )));
    }
    Ok(json!({ "jobs": submitted }))
}
