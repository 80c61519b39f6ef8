//! The watcher (Ganeti's `ganeti-watcher`): one pass over the cluster, run by the master every
//! few minutes and by `maguey cluster watcher run`.
//!
//! A pass, unless the watcher is paused (the pause is kept in the config):
//! 1. archives finished jobs older than the configured age;
//! 2. restarts instances that should run but are down by error (`ERROR_down`), at most
//!    [`MAX_TRIES`] times; the counter of an instance expires [`RETRY_EXPIRY`] seconds after
//!    its last attempt and is cleared when the instance is seen running;
//! 3. with the hypervisor parameter `user_shutdown` on, marks an instance whose guest powered
//!    itself off (`USER_down`) as stopped by the user (with it off, the hypervisor does not
//!    keep such a guest and it counts as down by error);
//! 4. re-activates the disks of mirrored instances whose secondary rebooted (boot id changed);
//! 5. submits verify-disks at low priority (unless one is pending) and activates the disks it
//!    reports.
//!
//! It leaves alone instances on offline or unreachable nodes and instances a job holds (their
//! lock is taken), reports instances running on a node other than their primary
//! (`ERROR_wrongnode`) without starting them, and never fails an instance over. Every action
//! is a job submitted by `watcher` with a reason naming the watcher.

use crate::query::{instance_status, live_instances, live_nodes};
use crate::util::filled_hvparams;
use crate::Master;
use maguey_config::Command;
use maguey_jobs::{Job, JobQueue, JobStatus, LockLevel, LOCKSET_NAME};
use maguey_model::{
    AdminState, AdminStateSource, ConfigData, OpClusterVerifyDisks, OpCode,
    OpInstanceActivateDisks, OpInstanceShutdown, OpInstanceStartup, WatcherPause, PRIORITY_LOW,
    PRIORITY_NORMAL,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Restart attempts per instance before the watcher gives up (Ganeti's `MAXTRIES`).
pub const MAX_TRIES: u32 = 5;
/// Seconds after its last attempt that an instance's counter is forgotten (Ganeti: 8 h).
pub const RETRY_EXPIRY: f64 = 8.0 * 3600.0;
/// Default pause between two passes of the master's watcher (Ganeti's cron: 5 minutes).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Default age of finished jobs that the watcher archives (Ganeti: 6 h).
pub const DEFAULT_JOB_AGE: Duration = Duration::from_secs(6 * 3600);
/// The submitter of the watcher's jobs.
pub const SUBMITTER: &str = "watcher";

/// Where the watcher reads the time: the system's, or one a test sets.
pub trait Clock: Send + Sync {
    /// Unix time, seconds.
    fn now(&self) -> f64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        maguey_model::now()
    }
}

/// The system clock moved by an offset that tests set (e.g. 8 hours ahead).
#[derive(Debug, Default)]
pub struct TestClock {
    offset: Mutex<f64>,
}

impl TestClock {
    /// Moves the clock `secs` seconds ahead of the system's.
    pub fn advance(&self, secs: f64) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += secs;
    }
}

impl Clock for TestClock {
    fn now(&self) -> f64 {
        maguey_model::now() + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Settings of the watcher.
#[derive(Debug, Clone)]
pub struct WatcherOptions {
    /// Finished jobs older than this are archived.
    pub job_age: Duration,
    /// How long a pass waits for the jobs it submitted before reporting them as pending.
    pub job_wait: Duration,
    /// Where the restart counters and the nodes' last boot ids are kept between passes, so
    /// that a master restart forgets neither (Ganeti's `watcher.data`); `None`: in memory.
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            job_age: DEFAULT_JOB_AGE,
            job_wait: Duration::from_secs(300),
            state_file: None,
        }
    }
}

/// The state a previous watcher left (empty when there is none or it does not parse).
fn load_state(path: &std::path::Path) -> State {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).unwrap_or_else(|e| {
            tracing::warn!("watcher: ignoring {}: {e}", path.display());
            State::default()
        }),
        Err(_) => State::default(),
    }
}

/// One thing a pass did or decided not to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Paused {
        until: Option<f64>,
    },
    Archived {
        jobs: usize,
    },
    /// A restart job; `error` is its failure (`None`: it started, or is still pending).
    Restarted {
        instance: String,
        attempt: u32,
        job: u64,
        error: Option<String>,
    },
    GaveUp {
        instance: String,
        tries: u32,
    },
    /// Marked stopped by the user after its guest powered itself off.
    UserDown {
        instance: String,
        job: u64,
        error: Option<String>,
    },
    WrongNode {
        instance: String,
        primary: String,
        running_on: Vec<String>,
    },
    /// Left alone: its primary node is offline or did not answer.
    NodeDown {
        instance: String,
        node: String,
        status: String,
    },
    /// Left alone: a job holds it.
    Locked {
        instance: String,
    },
    Rebooted {
        node: String,
    },
    DisksActivated {
        instance: String,
        job: u64,
        error: Option<String>,
    },
    VerifyDisks {
        job: u64,
    },
}

fn outcome(error: &Option<String>) -> String {
    match error {
        None => String::new(),
        Some(e) => format!(": failed: {e}"),
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Paused { until: None } => write!(f, "the watcher is paused; nothing done"),
            Event::Paused { until: Some(u) } => write!(
                f,
                "the watcher is paused until {}; nothing done",
                crate::watcher::fmt_time(*u)
            ),
            Event::Archived { jobs } => write!(f, "archived {jobs} finished jobs"),
            Event::Restarted {
                instance,
                attempt,
                job,
                error,
            } => write!(
                f,
                "instance {instance} was down by error: restart attempt {attempt} of \
                 {MAX_TRIES} (job {job}){}",
                outcome(error)
            ),
            Event::GaveUp { instance, tries } => write!(
                f,
                "instance {instance} is down by error: giving up after {tries} failed \
                 restarts (the counter expires 8 hours after the last one)"
            ),
            Event::UserDown {
                instance,
                job,
                error,
            } => write!(
                f,
                "instance {instance}: the guest powered itself off; marked stopped by the \
                 user (job {job}){}",
                outcome(error)
            ),
            Event::WrongNode {
                instance,
                primary,
                running_on,
            } => write!(
                f,
                "instance {instance} runs on {} instead of its primary {primary} \
                 (ERROR_wrongnode): not started; fix it by hand",
                running_on.join(", ")
            ),
            Event::NodeDown {
                instance,
                node,
                status,
            } => write!(
                f,
                "instance {instance} left alone: its primary node {node} is down or offline \
                 ({status})"
            ),
            Event::Locked { instance } => {
                write!(f, "instance {instance} left alone: a job holds it")
            }
            Event::Rebooted { node } => write!(f, "node {node} rebooted (boot id changed)"),
            Event::DisksActivated {
                instance,
                job,
                error,
            } => write!(
                f,
                "re-activated the disks of instance {instance} (job {job}){}",
                outcome(error)
            ),
            Event::VerifyDisks { job } => {
                write!(f, "submitted verify-disks at low priority (job {job})")
            }
        }
    }
}

fn fmt_time(t: f64) -> String {
    format!("{t:.0} (unix time)")
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub events: Vec<Event>,
}

impl Report {
    /// One line per event.
    pub fn lines(&self) -> Vec<String> {
        self.events.iter().map(|e| e.to_string()).collect()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Attempts {
    count: u32,
    last: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    tries: BTreeMap<String, Attempts>,
    /// Last boot id seen per node uuid.
    boot_ids: BTreeMap<String, String>,
}

/// The master's watcher.
pub struct Watcher {
    master: Arc<Master>,
    queue: Arc<JobQueue>,
    clock: Arc<dyn Clock>,
    opts: WatcherOptions,
    /// Held for a whole pass: passes never overlap.
    state: tokio::sync::Mutex<State>,
}

impl Watcher {
    pub fn new(
        master: Arc<Master>,
        queue: Arc<JobQueue>,
        clock: Arc<dyn Clock>,
        opts: WatcherOptions,
    ) -> Self {
        let state = opts
            .state_file
            .as_deref()
            .map(load_state)
            .unwrap_or_default();
        Watcher {
            master,
            queue,
            clock,
            opts,
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// Keeps the counters and boot ids in the state file (a failure is logged: the next pass
    /// writes again).
    fn save_state(&self, state: &State) {
        let Some(path) = &self.opts.state_file else {
            return;
        };
        let written = serde_json::to_vec(state)
            .map_err(std::io::Error::other)
            .and_then(|data| {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, data)?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = written {
            tracing::warn!("watcher: could not write {}: {e}", path.display());
        }
    }

    /// The pause in force now, if any.
    pub fn pause_info(&self) -> Option<WatcherPause> {
        let cfg = self.master.config.snapshot();
        cfg.cluster
            .watcher_pause
            .clone()
            .filter(|p| p.active(self.clock.now()))
    }

    /// Pauses the watcher for `duration` (`None`: until [`Watcher::resume`]); kept in the
    /// config.
    pub async fn pause(&self, duration: Option<Duration>) -> Result<WatcherPause, String> {
        let now = self.clock.now();
        let pause = WatcherPause {
            since: now,
            until: duration.map(|d| now + d.as_secs_f64()),
        };
        self.set_pause(Some(pause.clone())).await?;
        Ok(pause)
    }

    /// Ends a pause.
    pub async fn resume(&self) -> Result<(), String> {
        self.set_pause(None).await
    }

    async fn set_pause(&self, pause: Option<WatcherPause>) -> Result<(), String> {
        let mut cluster = self.master.config.snapshot().cluster.clone();
        cluster.watcher_pause = pause;
        self.master
            .config
            .apply(Command::UpdateCluster { cluster })
            .await
            .map(|_| ())
            .map_err(|e| format!("config update refused: {e}"))
    }

    /// Sets the boot id last seen on a node (tests: a node that "rebooted" since).
    pub async fn set_known_boot_id(&self, node_uuid: &str, boot_id: &str) {
        self.state
            .lock()
            .await
            .boot_ids
            .insert(node_uuid.to_string(), boot_id.to_string());
    }

    /// Runs one pass (nothing but a [`Event::Paused`] while paused).
    pub async fn run_once(&self) -> Report {
        let mut state = self.state.lock().await;
        let mut report = Report::default();
        if let Some(p) = self.pause_info() {
            report.events.push(Event::Paused { until: p.until });
            return report;
        }
        let archived = self.queue.archive_older_than(self.opts.job_age);
        if archived > 0 {
            report.events.push(Event::Archived { jobs: archived });
        }
        let now = self.clock.now();
        state.tries.retain(|_, a| now - a.last < RETRY_EXPIRY);
        let cfg = self.master.config.snapshot();
        let live = live_instances(&self.master, &cfg).await;
        let held = self.held_instances();
        let mut pending: Vec<(Event, u64)> = Vec::new();
        for inst in sorted(&cfg) {
            let status = instance_status(&cfg, inst, &live);
            if status == "running" {
                state.tries.remove(&inst.name);
            }
            if inst.admin_state != AdminState::Up {
                continue;
            }
            let locked = held.all || held.names.contains(&inst.name);
            let node_name = node_name(&cfg, &inst.primary_node);
            match status {
                "ERROR_down" | "USER_down" if locked => report.events.push(Event::Locked {
                    instance: inst.name.clone(),
                }),
                "USER_down" if user_shutdown(&cfg, inst) => {
                    let op = OpCode::InstanceShutdown(OpInstanceShutdown {
                        instance_name: inst.name.clone(),
                        timeout: 0,
                        no_remember: false,
                        admin_state_source: AdminStateSource::User,
                    });
                    let reason = format!(
                        "watcher: instance {} powered off by its guest (user_shutdown)",
                        inst.name
                    );
                    if let Some(job) = self.submit(op, PRIORITY_NORMAL, &reason, &mut report) {
                        let ev = Event::UserDown {
                            instance: inst.name.clone(),
                            job,
                            error: None,
                        };
                        pending.push((ev, job));
                    }
                }
                "ERROR_down" | "USER_down" => {
                    let tries = state.tries.get(&inst.name).map_or(0, |a| a.count);
                    if tries >= MAX_TRIES {
                        report.events.push(Event::GaveUp {
                            instance: inst.name.clone(),
                            tries,
                        });
                        continue;
                    }
                    let attempt = tries + 1;
                    state.tries.insert(
                        inst.name.clone(),
                        Attempts {
                            count: attempt,
                            last: now,
                        },
                    );
                    let op = OpCode::InstanceStartup(OpInstanceStartup {
                        instance_name: inst.name.clone(),
                        force: false,
                        beparams: Default::default(),
                        hvparams: Default::default(),
                        no_remember: false,
                    });
                    let reason = format!(
                        "watcher: instance {} down by error, restart attempt {attempt} of \
                         {MAX_TRIES}",
                        inst.name
                    );
                    if let Some(job) = self.submit(op, PRIORITY_NORMAL, &reason, &mut report) {
                        let ev = Event::Restarted {
                            instance: inst.name.clone(),
                            attempt,
                            job,
                            error: None,
                        };
                        pending.push((ev, job));
                    }
                }
                "ERROR_wrongnode" => report.events.push(Event::WrongNode {
                    instance: inst.name.clone(),
                    primary: node_name,
                    running_on: live
                        .iter()
                        .filter(|(_, m)| m.as_ref().is_some_and(|m| m.contains_key(&inst.name)))
                        .map(|(u, _)| crate::watcher::node_name(&cfg, u))
                        .collect(),
                }),
                "ERROR_nodedown" | "ERROR_nodeoffline" => report.events.push(Event::NodeDown {
                    instance: inst.name.clone(),
                    node: node_name,
                    status: status.to_string(),
                }),
                _ => {}
            }
        }
        let activated = self
            .rebooted_nodes(&cfg, &mut state, &held, &mut report, &mut pending)
            .await;
        self.save_state(&state);
        drop(state);
        self.wait_all(pending, &mut report).await;
        self.verify_disks(&held, &activated, &mut report).await;
        report
    }

    /// Compares boot ids with the last pass's; re-activates the disks of mirrored instances
    /// with a secondary on a rebooted node. Returns the instances it submitted jobs for.
    async fn rebooted_nodes(
        &self,
        cfg: &ConfigData,
        state: &mut State,
        held: &Held,
        report: &mut Report,
        pending: &mut Vec<(Event, u64)>,
    ) -> BTreeSet<String> {
        let nodes: Vec<&maguey_model::Node> = cfg.nodes.values().collect();
        let infos = live_nodes(&self.master, cfg, &nodes).await;
        let mut done = BTreeSet::new();
        for (uuid, info) in infos {
            let before = state.boot_ids.insert(uuid.clone(), info.bootid.clone());
            if before.is_none_or(|b| b == info.bootid) {
                continue;
            }
            report.events.push(Event::Rebooted {
                node: node_name(cfg, &uuid),
            });
            for inst in sorted(cfg) {
                let on_it = inst.secondary_nodes().contains(&uuid.as_str());
                let primary_up = cfg
                    .nodes
                    .get(&inst.primary_node)
                    .is_some_and(|n| !n.offline);
                if !on_it
                    || !primary_up
                    || inst.admin_state != AdminState::Up
                    || !inst.disk_template.is_internally_mirrored()
                    || done.contains(&inst.name)
                {
                    continue;
                }
                if held.all || held.names.contains(&inst.name) {
                    report.events.push(Event::Locked {
                        instance: inst.name.clone(),
                    });
                    continue;
                }
                if let Some(job) = self.activate_disks(&inst.name, "its secondary rebooted", report)
                {
                    done.insert(inst.name.clone());
                    let ev = Event::DisksActivated {
                        instance: inst.name.clone(),
                        job,
                        error: None,
                    };
                    pending.push((ev, job));
                }
            }
        }
        done
    }

    fn activate_disks(&self, instance: &str, why: &str, report: &mut Report) -> Option<u64> {
        let op = OpCode::InstanceActivateDisks(OpInstanceActivateDisks {
            instance_name: instance.to_string(),
            ..Default::default()
        });
        let reason = format!("watcher: re-activate the disks of instance {instance}: {why}");
        self.submit(op, PRIORITY_NORMAL, &reason, report)
    }

    /// Submits verify-disks at low priority unless one is pending, waits for it and activates
    /// the disks it reports (of instances that should run, that no job holds).
    async fn verify_disks(&self, held: &Held, skip: &BTreeSet<String>, report: &mut Report) {
        let busy = self.queue.list(false).iter().any(|j| {
            !j.status.is_finalized()
                && j.ops
                    .iter()
                    .any(|op| matches!(op, OpCode::ClusterVerifyDisks(_)))
        });
        if busy {
            return;
        }
        let op = OpCode::ClusterVerifyDisks(OpClusterVerifyDisks::default());
        let Some(job) = self.submit(op, PRIORITY_LOW, "watcher: periodic verify-disks", report)
        else {
            return;
        };
        report.events.push(Event::VerifyDisks { job });
        let Some(done) = self.wait(job).await else {
            return;
        };
        let cfg = self.master.config.snapshot();
        let names: Vec<String> = done
            .opresult
            .first()
            .and_then(|r| r.get("offline_disk_instances"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut pending = Vec::new();
        for name in names {
            let Some(inst) = cfg.instance_by_name(&name) else {
                continue;
            };
            let node_ok = inst
                .disks
                .iter()
                .flat_map(|d| d.nodes.iter())
                .all(|n| cfg.nodes.get(n).is_some_and(|n| !n.offline));
            if inst.admin_state != AdminState::Up
                || !node_ok
                || skip.contains(&name)
                || held.all
                || held.names.contains(&name)
            {
                continue;
            }
            if let Some(job) =
                self.activate_disks(&name, "verify-disks found them inactive", report)
            {
                let ev = Event::DisksActivated {
                    instance: name.clone(),
                    job,
                    error: None,
                };
                pending.push((ev, job));
            }
        }
        self.wait_all(pending, report).await;
    }

    fn submit(&self, op: OpCode, priority: i32, reason: &str, report: &mut Report) -> Option<u64> {
        match self.queue.submit_by(vec![op], priority, SUBMITTER, reason) {
            Ok(id) => {
                tracing::info!("watcher: job {id}: {reason}");
                Some(id)
            }
            Err(e) => {
                tracing::warn!("watcher: cannot submit a job ({reason}): {e}");
                let _ = report;
                None
            }
        }
    }

    /// Waits for each job and records its failure in its event.
    async fn wait_all(&self, pending: Vec<(Event, u64)>, report: &mut Report) {
        for (mut ev, job) in pending {
            let failure = match self.wait(job).await {
                Some(j) if j.status == JobStatus::Success => None,
                Some(j) => Some(job_error(&j)),
                None => Some(format!(
                    "still pending after {} s",
                    self.opts.job_wait.as_secs()
                )),
            };
            match &mut ev {
                Event::Restarted { error, .. }
                | Event::UserDown { error, .. }
                | Event::DisksActivated { error, .. } => *error = failure,
                _ => {}
            }
            tracing::info!("watcher: {ev}");
            report.events.push(ev);
        }
    }

    async fn wait(&self, id: u64) -> Option<Job> {
        let deadline = tokio::time::Instant::now() + self.opts.job_wait;
        let mut known = None;
        let mut serial = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let job = self
                .queue
                .wait_for_change(id, known, serial, left.min(Duration::from_secs(10)))
                .await
                .or_else(|| self.queue.get(id))?;
            if job.status.is_finalized() {
                return Some(job);
            }
            known = Some(job.status);
            serial = job.all_log().map(|l| l.serial).max().unwrap_or(serial);
        }
    }

    fn held_instances(&self) -> Held {
        let mut held = Held::default();
        for l in self.queue.locks() {
            if l.level != LockLevel::Instance || l.owners.is_empty() {
                continue;
            }
            if l.name == LOCKSET_NAME {
                held.all = true;
            } else {
                held.names.insert(l.name);
            }
        }
        held
    }
}

#[derive(Debug, Default)]
struct Held {
    all: bool,
    names: BTreeSet<String>,
}

fn sorted(cfg: &ConfigData) -> Vec<&maguey_model::Instance> {
    let mut v: Vec<_> = cfg.instances.values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn node_name(cfg: &ConfigData, uuid: &str) -> String {
    cfg.nodes
        .get(uuid)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| uuid.to_string())
}

fn user_shutdown(cfg: &ConfigData, inst: &maguey_model::Instance) -> bool {
    match filled_hvparams(cfg, inst).get("user_shutdown") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "yes" | "1" | "on"),
        _ => false,
    }
}

/// The error message of a failed job.
fn job_error(job: &Job) -> String {
    job.opresult
        .iter()
        .zip(&job.opstatus)
        .find(|(_, s)| **s != JobStatus::Success)
        .map(|(r, _)| match r {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| job.status.as_str().to_string())
}
