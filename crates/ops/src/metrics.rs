//! Prometheus metrics (text format 0.0.4): the master's `GET /metrics` on the Remote API's
//! port, built from the same queries as `instance list` and `node list` (so the numbers are
//! theirs), the job queue and the node RPC error counters; and each node's own small
//! `/metrics` ([`node_text`]).

use crate::query::{query, QueryRequest, Resource};
use crate::Master;
use maguey_jobs::{Job, JobQueue, JobStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds (seconds) of the job duration histogram.
const DURATION_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Builds Prometheus text: one `# HELP`/`# TYPE` header per family, then its samples.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        other => other.as_f64(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Rows of a query as maps field → value.
async fn rows(
    master: &Master,
    what: Resource,
    fields: &[&str],
) -> Result<Vec<BTreeMap<String, Value>>, String> {
    let r = query(
        master,
        &QueryRequest {
            what,
            names: Vec::new(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        },
    )
    .await?;
    Ok(r.rows
        .into_iter()
        .map(|row| r.fields.iter().cloned().zip(row).collect())
        .collect())
}

const NODE_GAUGES: &[(&str, &str, &str)] = &[
    (
        "mtotal",
        "maguey_node_memory_total_mib",
        "Total memory (MiB)",
    ),
    (
        "mnode",
        "maguey_node_memory_node_mib",
        "Memory used by the node itself (MiB)",
    ),
    ("mfree", "maguey_node_memory_free_mib", "Free memory (MiB)"),
    ("dtotal", "maguey_node_disk_total_mib", "Total disk (MiB)"),
    ("dfree", "maguey_node_disk_free_mib", "Free disk (MiB)"),
    ("ctotal", "maguey_node_cpus", "CPUs"),
    (
        "pinst_cnt",
        "maguey_node_primary_instances",
        "Instances with this primary node",
    ),
    (
        "sinst_cnt",
        "maguey_node_secondary_instances",
        "Instances with this secondary node",
    ),
    (
        "offline",
        "maguey_node_offline",
        "1 if the node is marked offline",
    ),
    ("drained", "maguey_node_drained", "1 if the node is drained"),
];

const INSTANCE_GAUGES: &[(&str, &str, &str)] = &[
    (
        "be/maxmem",
        "maguey_instance_memory_mib",
        "Memory (maxmem, MiB)",
    ),
    (
        "be/minmem",
        "maguey_instance_min_memory_mib",
        "Minimum memory (MiB)",
    ),
    ("be/vcpus", "maguey_instance_vcpus", "Virtual CPUs"),
    (
        "disk_usage",
        "maguey_instance_disk_mib",
        "Total disk size (MiB)",
    ),
    (
        "oper_ram",
        "maguey_instance_memory_used_mib",
        "Memory in use when running (MiB)",
    ),
    (
        "admin_up",
        "maguey_instance_admin_up",
        "1 if the instance should run",
    ),
];

/// The master's metrics.
pub async fn master_text(master: &Master, queue: &JobQueue) -> Result<String, String> {
    let cfg = master.config.snapshot();
    let mut t = Text::default();
    t.family("maguey_cluster_info", "gauge", "The cluster (always 1)");
    let master_name = cfg
        .master_node()
        .map(|n| n.name.clone())
        .unwrap_or_default();
    t.sample(
        "maguey_cluster_info",
        &[
            ("cluster", &cfg.cluster.cluster_name),
            ("master", &master_name),
            ("version", maguey_model::VERSION),
        ],
        1.0,
    );
    t.family(
        "maguey_config_serial",
        "gauge",
        "Serial number of the configuration",
    );
    t.sample("maguey_config_serial", &[], cfg.serial_no as f64);

    let nodes = rows(
        master,
        Resource::Node,
        &[
            "name",
            "group",
            "role",
            "mtotal",
            "mnode",
            "mfree",
            "dtotal",
            "dfree",
            "ctotal",
            "pinst_cnt",
            "sinst_cnt",
            "offline",
            "drained",
        ],
    )
    .await?;
    t.family(
        "maguey_node_info",
        "gauge",
        "Nodes (always 1), with group and role",
    );
    for n in &nodes {
        let (name, group, role) = (text(&n["name"]), text(&n["group"]), text(&n["role"]));
        t.sample(
            "maguey_node_info",
            &[("node", &name), ("group", &group), ("role", &role)],
            1.0,
        );
    }
    t.family(
        "maguey_node_up",
        "gauge",
        "1 if the node answered the master",
    );
    for n in &nodes {
        let up = num(&n["mtotal"]).is_some();
        t.sample(
            "maguey_node_up",
            &[("node", &text(&n["name"]))],
            f64::from(u8::from(up)),
        );
    }
    for (field, name, help) in NODE_GAUGES {
        t.family(name, "gauge", help);
        for n in &nodes {
            if let Some(v) = num(&n[*field]) {
                t.sample(name, &[("node", &text(&n["name"]))], v);
            }
        }
    }

    let insts = rows(
        master,
        Resource::Instance,
        &[
            "name",
            "status",
            "pnode",
            "disk_template",
            "hypervisor",
            "be/maxmem",
            "be/minmem",
            "be/vcpus",
            "disk_usage",
            "oper_ram",
            "admin_up",
        ],
    )
    .await?;
    t.family(
        "maguey_instance_status",
        "gauge",
        "Instances (always 1), with their status as `instance list` shows it",
    );
    for i in &insts {
        let labels = [
            ("instance", text(&i["name"])),
            ("status", text(&i["status"])),
            ("node", text(&i["pnode"])),
            ("disk_template", text(&i["disk_template"])),
            ("hypervisor", text(&i["hypervisor"])),
        ];
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        t.sample("maguey_instance_status", &l, 1.0);
    }
    for (field, name, help) in INSTANCE_GAUGES {
        t.family(name, "gauge", help);
        for i in &insts {
            if let Some(v) = num(&i[*field]) {
                t.sample(name, &[("instance", &text(&i["name"]))], v);
            }
        }
    }
    // What the instances that should run take from their primary node.
    let mut alloc: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for n in &nodes {
        alloc.insert(text(&n["name"]), (0.0, 0.0, 0.0));
    }
    for i in insts.iter().filter(|i| i["admin_up"] == Value::Bool(true)) {
        let a = alloc.entry(text(&i["pnode"])).or_default();
        a.0 += num(&i["be/maxmem"]).unwrap_or(0.0);
        a.1 += num(&i["be/vcpus"]).unwrap_or(0.0);
        a.2 += num(&i["disk_usage"]).unwrap_or(0.0);
    }
    for (k, name, help) in [
        (
            0,
            "maguey_node_allocated_memory_mib",
            "Memory of the instances that should run here",
        ),
        (
            1,
            "maguey_node_allocated_vcpus",
            "VCPUs of the instances that should run here",
        ),
        (
            2,
            "maguey_node_allocated_disk_mib",
            "Disk of the instances that should run here",
        ),
    ] {
        t.family(name, "gauge", help);
        for (node, a) in &alloc {
            let v = match k {
                0 => a.0,
                1 => a.1,
                _ => a.2,
            };
            t.sample(name, &[("node", node)], v);
        }
    }
    drbd(master, &cfg, &mut t).await;
    jobs(&mut t, &queue.list(false));
    t.family(
        "maguey_rpc_errors_total",
        "counter",
        "Failed node RPCs of the master since it started, by procedure",
    );
    for (procedure, n) in maguey_rpc::rpc_error_counts() {
        t.sample(
            "maguey_rpc_errors_total",
            &[("procedure", procedure)],
            n as f64,
        );
    }
    Ok(t.finish())
}

/// DRBD state of each mirrored disk, as its primary node sees it (where it answers).
async fn drbd(master: &Master, cfg: &maguey_model::ConfigData, t: &mut Text) {
    let insts: Vec<&maguey_model::Instance> = cfg
        .instances
        .values()
        .filter(|i| i.disk_template.is_internally_mirrored())
        .filter(|i| cfg.nodes.get(&i.primary_node).is_some_and(|n| !n.offline))
        .collect();
    let futs = insts.iter().map(|i| async move {
        let node = cfg.nodes.get(&i.primary_node)?;
        master
            .rpc
            .call::<Vec<Option<maguey_rpc::DrbdDiskStatus>>>(
                &crate::util::node_addr(cfg, node),
                &maguey_rpc::NodeRequest::DrbdStatus {
                    disks: crate::drbd::drbd_disks(i),
                },
            )
            .await
            .ok()
    });
    let answers = futures::future::join_all(futs).await;
    type Get = fn(&maguey_rpc::DrbdDiskStatus) -> Option<f64>;
    let gauges: [(&str, &str, Get); 3] = [
        (
            "maguey_drbd_disk_in_sync",
            "1 if the DRBD disk is connected and up to date on both nodes",
            |s| Some(f64::from(u8::from(s.in_sync))),
        ),
        (
            "maguey_drbd_disk_degraded",
            "1 if the DRBD disk has no good peer or no good local disk",
            |s| Some(f64::from(u8::from(s.degraded))),
        ),
        (
            "maguey_drbd_disk_sync_percent",
            "Resync progress of the DRBD disk while it resynchronises",
            |s| s.sync_percent,
        ),
    ];
    for (name, help, get) in gauges {
        t.family(name, "gauge", help);
        for (inst, answer) in insts.iter().zip(&answers) {
            let Some(list) = answer else { continue };
            for (d, st) in crate::drbd::drbd_disks(inst).iter().zip(list) {
                if let Some(v) = st.as_ref().and_then(get) {
                    t.sample(name, &[("instance", &inst.name), ("disk", &d.iv_name)], v);
                }
            }
        }
    }
}

fn jobs(t: &mut Text, jobs: &[Job]) {
    t.family(
        "maguey_jobs",
        "gauge",
        "Jobs in the queue (not archived), by status",
    );
    for s in [
        JobStatus::Queued,
        JobStatus::Waiting,
        JobStatus::Running,
        JobStatus::Success,
        JobStatus::Error,
        JobStatus::Canceling,
        JobStatus::Canceled,
    ] {
        let n = jobs.iter().filter(|j| j.status == s).count();
        t.sample("maguey_jobs", &[("status", s.as_str())], n as f64);
    }
    t.family(
        "maguey_job_failures",
        "gauge",
        "Failed jobs in the queue (not archived), by first opcode",
    );
    let mut failed: BTreeMap<&str, u64> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.status == JobStatus::Error) {
        if let Some(op) = j.ops.first() {
            *failed.entry(op.op_id()).or_default() += 1;
        }
    }
    for (op, n) in failed {
        t.sample("maguey_job_failures", &[("opcode", op)], n as f64);
    }
    t.family(
        "maguey_job_duration_seconds",
        "histogram",
        "Run time of the finished jobs in the queue (not archived)",
    );
    let durations: Vec<f64> = jobs
        .iter()
        .filter_map(|j| Some(j.end_ts? - j.start_ts?))
        .collect();
    for b in DURATION_BUCKETS {
        let n = durations.iter().filter(|d| **d <= *b).count();
        t.sample(
            "maguey_job_duration_seconds_bucket",
            &[("le", &number(*b))],
            n as f64,
        );
    }
    t.sample(
        "maguey_job_duration_seconds_bucket",
        &[("le", "+Inf")],
        durations.len() as f64,
    );
    t.sample(
        "maguey_job_duration_seconds_sum",
        &[],
        durations.iter().sum(),
    );
    t.sample(
        "maguey_job_duration_seconds_count",
        &[],
        durations.len() as f64,
    );
}

/// A node's own metrics: memory and CPUs its hypervisors see and how many instances run
/// there (no names: the endpoint needs no credentials).
pub fn node_text(
    node: &str,
    per_hv: &[(&str, Option<maguey_rpc::NodeInfo>, Option<usize>)],
) -> String {
    let mut t = Text::default();
    t.family(
        "maguey_node_daemon_info",
        "gauge",
        "This node daemon (always 1)",
    );
    t.sample(
        "maguey_node_daemon_info",
        &[("node", node), ("version", maguey_model::VERSION)],
        1.0,
    );
    type Get = fn(&maguey_rpc::NodeInfo) -> f64;
    let gauges: [(&str, &str, Get); 4] = [
        ("maguey_node_memory_total_mib", "Total memory (MiB)", |i| {
            i.memory_total as f64
        }),
        ("maguey_node_memory_free_mib", "Free memory (MiB)", |i| {
            i.memory_free as f64
        }),
        (
            "maguey_node_memory_node_mib",
            "Memory used by the node (MiB)",
            |i| i.memory_dom0 as f64,
        ),
        ("maguey_node_cpus", "CPUs", |i| f64::from(i.cpu_count)),
    ];
    for (name, help, get) in gauges {
        t.family(name, "gauge", help);
        for (hv, info, _) in per_hv {
            if let Some(i) = info {
                t.sample(name, &[("hypervisor", hv)], get(i));
            }
        }
    }
    t.family(
        "maguey_node_instances_running",
        "gauge",
        "Instances running on this node, by hypervisor",
    );
    for (hv, _, n) in per_hv {
        if let Some(n) = n {
            t.sample(
                "maguey_node_instances_running",
                &[("hypervisor", hv)],
                *n as f64,
            );
        }
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let mut t = Text::default();
        t.family("m", "gauge", "help");
        t.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        t.sample("m", &[], f64::INFINITY);
        assert_eq!(
            t.finish(),
            "# HELP m help\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\"} 1.5\nm +Inf\n"
        );
    }
}
