//! Hooks, as Ganeti runs them: per opcode a hooks path (`instance-add`, `node-remove`, ...),
//! pre scripts before the unit executes and post scripts after it succeeded, run by the node
//! RPC `hooks_runner` on the master and the nodes the operation concerns, with Ganeti's
//! environment (`GANETI_*`, and the same values as `MAGUEY_*`). A failing pre hook refuses
//! the operation before anything changed; a failing post hook is reported in the job log.
//!
//! [`crate::run_lu`] runs them for every unit; units add variables and nodes through
//! [`crate::LogicalUnit::hooks_env`] (default: the opcode's instance or node as found in the
//! config).

use crate::util::{filled_beparams, filled_hvparams, nic_runtimes, node_addr};
use crate::{prereq, Env};
use maguey_jobs::OpError;
use maguey_model::{AdminState, ConfigData, Instance, Node, OpCode};
use maguey_rpc::{HookPhase, HookResult, HookStatus, NodeRequest};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Ganeti's hooks version.
pub const HOOKS_VERSION: &str = "2";

/// Variables (without the `GANETI_` prefix) and the nodes (uuids) to run on, besides the
/// master.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HooksEnv {
    pub vars: BTreeMap<String, String>,
    pub nodes: Vec<String>,
}

impl HooksEnv {
    /// Ganeti's instance variables (`INSTANCE_NAME`, `INSTANCE_PRIMARY`, ...); runs on the
    /// instance's nodes.
    pub fn instance(cfg: &ConfigData, inst: &Instance) -> Self {
        let mut v = BTreeMap::new();
        let name = |u: &str| cfg.nodes.get(u).map(|n| n.name.clone()).unwrap_or_default();
        let be = filled_beparams(cfg, inst);
        let mut put = |k: &str, val: String| {
            v.insert(format!("INSTANCE_{k}"), val);
        };
        put("NAME", inst.name.clone());
        put("UUID", inst.uuid.clone());
        put("PRIMARY", name(&inst.primary_node));
        put(
            "SECONDARIES",
            inst.secondary_nodes()
                .iter()
                .map(|u| name(u))
                .collect::<Vec<_>>()
                .join(" "),
        );
        put("OS_TYPE", inst.os.clone());
        put(
            "STATUS",
            if inst.admin_state == AdminState::Up {
                "up"
            } else {
                "down"
            }
            .into(),
        );
        put("ADMIN_STATE", inst.admin_state.to_string());
        put("MEMORY", be.maxmem.to_string());
        put("MAXMEM", be.maxmem.to_string());
        put("MINMEM", be.minmem.to_string());
        put("VCPUS", be.vcpus.to_string());
        put("DISK_TEMPLATE", inst.disk_template.to_string());
        put("HYPERVISOR", inst.hypervisor.to_string());
        put("TAGS", inst.tags.join(" "));
        put("DISK_COUNT", inst.disks.len().to_string());
        for (i, d) in inst.disks.iter().enumerate() {
            put(&format!("DISK{i}_SIZE"), d.size.to_string());
            put(&format!("DISK{i}_MODE"), d.mode.to_string());
            put(&format!("DISK{i}_UUID"), d.uuid.clone());
            if let Some(n) = &d.name {
                put(&format!("DISK{i}_NAME"), n.clone());
            }
        }
        let nics = nic_runtimes(cfg, inst);
        put("NIC_COUNT", inst.nics.len().to_string());
        for (i, n) in inst.nics.iter().enumerate() {
            put(&format!("NIC{i}_MAC"), n.mac.clone());
            put(&format!("NIC{i}_IP"), n.ip.clone().unwrap_or_default());
            put(&format!("NIC{i}_UUID"), n.uuid.clone());
            if let Some(rt) = nics.get(i) {
                put(&format!("NIC{i}_MODE"), rt.mode.to_string());
                put(&format!("NIC{i}_LINK"), rt.link.clone());
            }
        }
        for (k, val) in filled_hvparams(cfg, inst) {
            put(&format!("HV_{}", k.to_uppercase()), scalar(&val));
        }
        if let Ok(Value::Object(m)) = serde_json::to_value(&be) {
            for (k, val) in m {
                put(&format!("BE_{}", k.to_uppercase()), scalar(&val));
            }
        }
        let mut nodes = vec![inst.primary_node.clone()];
        nodes.extend(inst.secondary_nodes().iter().map(|s| s.to_string()));
        HooksEnv { vars: v, nodes }
    }

    /// Ganeti's node variables (`NODE_NAME`, `NODE_PIP`, `NODE_SIP`); runs on the node.
    pub fn node(node: &Node) -> Self {
        let mut v = BTreeMap::new();
        v.insert("NODE_NAME".into(), node.name.clone());
        v.insert("NODE_PIP".into(), node.primary_ip.clone());
        v.insert("NODE_SIP".into(), node.secondary_ip.clone());
        v.insert("NODE_UUID".into(), node.uuid.clone());
        HooksEnv {
            vars: v,
            nodes: vec![node.uuid.clone()],
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Ganeti's hooks path and object type of an opcode; `None`: it runs no hooks.
pub fn hooks_path(op: &OpCode) -> Option<(&'static str, &'static str)> {
    Some(match op {
        OpCode::ClusterVerify(_) => ("cluster-verify", "CLUSTER"),
        OpCode::ClusterDestroy(_) => ("cluster-destroy", "CLUSTER"),
        OpCode::NodeAdd(_) => ("node-add", "NODE"),
        OpCode::NodeRemove(_) => ("node-remove", "NODE"),
        OpCode::NodeSetParams(_) => ("node-modify", "NODE"),
        OpCode::NodeMigrate(_) => ("node-migrate", "NODE"),
        OpCode::NodeEvacuate(_) => ("node-evacuate", "NODE"),
        OpCode::InstanceCreate(_) => ("instance-add", "INSTANCE"),
        OpCode::InstanceRemove(_) => ("instance-remove", "INSTANCE"),
        OpCode::InstanceStartup(_) => ("instance-start", "INSTANCE"),
        OpCode::InstanceShutdown(_) => ("instance-stop", "INSTANCE"),
        OpCode::InstanceReboot(_) => ("instance-reboot", "INSTANCE"),
        OpCode::InstanceSetParams(_) => ("instance-modify", "INSTANCE"),
        OpCode::InstanceMigrate(_) => ("instance-migrate", "INSTANCE"),
        OpCode::InstanceFailover(_) => ("instance-failover", "INSTANCE"),
        OpCode::InstanceMove(_) => ("instance-move", "INSTANCE"),
        OpCode::InstanceReinstall(_) => ("instance-reinstall", "INSTANCE"),
        OpCode::InstanceRename(_) => ("instance-rename", "INSTANCE"),
        OpCode::InstanceGrowDisk(_) => ("disk-grow", "INSTANCE"),
        OpCode::InstanceReplaceDisks(_) => ("mirrors-replace", "INSTANCE"),
        OpCode::InstanceRecreateDisks(_) => ("instance-recreate-disks", "INSTANCE"),
        OpCode::InstanceChangeGroup(_) => ("instance-change-group", "INSTANCE"),
        OpCode::GroupEvacuate(_) => ("group-evacuate", "GROUP"),
        _ => return None,
    })
}

/// The hooks of one opcode execution, prepared after its checks.
pub(crate) struct Hooks {
    hpath: &'static str,
    vars: BTreeMap<String, String>,
    /// Where they run: the master first, then the nodes concerned (online ones).
    nodes: Vec<Node>,
}

impl Hooks {
    /// The hooks of `op` (none for opcodes without a hooks path), with the unit's variables
    /// (`unit`) or, without them, the opcode's instance or node from the config.
    pub(crate) fn prepare(env: &Env<'_>, unit: Option<HooksEnv>) -> Option<Hooks> {
        let op = env.op?;
        let (hpath, htype) = hooks_path(op)?;
        let cfg = env.cfg();
        let extra = unit.unwrap_or_else(|| {
            if let Some(i) = op.instance_name().and_then(|n| cfg.instance_by_name(n)) {
                HooksEnv::instance(&cfg, i)
            } else if let Some(n) = op.node_name().and_then(|n| cfg.node_by_name(n)) {
                HooksEnv::node(n)
            } else {
                HooksEnv::default()
            }
        });
        let master = cfg.master_node();
        let mut vars = BTreeMap::new();
        vars.insert("HOOKS_VERSION".to_string(), HOOKS_VERSION.to_string());
        vars.insert("HOOKS_PATH".into(), hpath.into());
        vars.insert("OP_CODE".into(), op.op_id().into());
        vars.insert("OBJECT_TYPE".into(), htype.into());
        vars.insert("CLUSTER".into(), cfg.cluster.cluster_name.clone());
        vars.insert(
            "MASTER".into(),
            master.map(|m| m.name.clone()).unwrap_or_default(),
        );
        vars.insert("JOB_ID".into(), env.ctx.job_id().to_string());
        vars.extend(extra.vars);
        let mut seen = BTreeSet::new();
        let nodes = master
            .map(|m| m.uuid.clone())
            .into_iter()
            .chain(extra.nodes)
            .filter(|u| seen.insert(u.clone()))
            .filter_map(|u| cfg.nodes.get(&u).cloned())
            .filter(|n| !n.offline)
            .collect();
        Some(Hooks { hpath, vars, nodes })
    }

    fn env(&self, phase: HookPhase) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut vars = self.vars.clone();
        vars.insert("HOOKS_PHASE".into(), phase.as_str().into());
        for (k, v) in vars {
            out.insert(format!("MAGUEY_{k}"), v.clone());
            out.insert(format!("GANETI_{k}"), v);
        }
        out
    }

    /// Runs one phase on every node; logs each script's outcome and output. Returns the
    /// failures, as `node/script: output` lines.
    async fn run(&self, env: &Env<'_>, phase: HookPhase) -> Vec<String> {
        let cfg = env.cfg();
        let addrs: Vec<String> = self.nodes.iter().map(|n| node_addr(&cfg, n)).collect();
        let req = NodeRequest::HooksRunner {
            hpath: self.hpath.to_string(),
            phase,
            env: self.env(phase),
        };
        let results = env
            .master
            .rpc
            .call_many::<Vec<HookResult>>(&addrs, &req)
            .await;
        let mut failed = Vec::new();
        let dir = format!("{}-{}.d", self.hpath, phase.as_str());
        for (node, r) in self.nodes.iter().zip(results) {
            match r {
                Err(e) => env.log(format!(
                    "warning: cannot run the {dir} hooks on node {}: {e}",
                    node.name
                )),
                Ok(list) => {
                    for h in list {
                        let what = match h.status {
                            HookStatus::Success => "succeeded",
                            HookStatus::Fail => "FAILED",
                            HookStatus::Skip => "skipped",
                        };
                        let sep = if h.output.is_empty() { "" } else { ":\n" };
                        env.log(format!(
                            "hook {dir}/{} on node {} {what}{sep}{}",
                            h.script, node.name, h.output
                        ));
                        if h.status == HookStatus::Fail {
                            failed.push(format!("{}/{}: {}", node.name, h.script, h.output));
                        }
                    }
                }
            }
        }
        failed
    }

    /// Pre hooks: a failure refuses the operation (nothing changed yet).
    pub(crate) async fn pre(&self, env: &Env<'_>) -> Result<(), OpError> {
        let failed = self.run(env, HookPhase::Pre).await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(prereq(format!(
                "pre hooks of {} failed, operation refused: {}",
                self.hpath,
                failed.join("; ")
            )))
        }
    }

    /// Post hooks (after success): failures are reported, not fatal.
    pub(crate) async fn post(&self, env: &Env<'_>) {
        let failed = self.run(env, HookPhase::Post).await;
        if !failed.is_empty() {
            env.log(format!(
                "warning: post hooks of {} failed (the operation itself succeeded): {}",
                self.hpath,
                failed.join("; ")
            ));
        }
    }
}
