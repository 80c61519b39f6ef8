//! The jobs a plan turns into (htools' `iMoveToJob`), typed: each [`MoveOp`] is one opcode
//! of a move job. In process, Maguey's `ops` turns them into its opcodes (one function); for
//! external callers [`MoveOp::to_json`] gives the opcode exactly as hail emits it.

use crate::model::Cluster;
use crate::types::IMove;
use serde_json::{json, Value};

/// One opcode of an instance move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOp {
    /// `OP_INSTANCE_FAILOVER`: for instances that are not running (htools' forthcoming
    /// instances), optionally to a given node (failover-to-any on shared storage).
    Failover {
        instance: String,
        target_node: Option<String>,
    },
    /// `OP_INSTANCE_MIGRATE`, falling back to a failover when the instance is down;
    /// optionally to a given node.
    Migrate {
        instance: String,
        target_node: Option<String>,
    },
    /// `OP_INSTANCE_REPLACE_DISKS` in `replace_new_secondary` mode.
    ReplaceSecondary {
        instance: String,
        remote_node: String,
    },
}

impl MoveOp {
    /// The instance the opcode moves.
    pub fn instance(&self) -> &str {
        match self {
            MoveOp::Failover { instance, .. }
            | MoveOp::Migrate { instance, .. }
            | MoveOp::ReplaceSecondary { instance, .. } => instance,
        }
    }

    /// Ganeti's JSON form of the opcode, field for field what hail emits.
    pub fn to_json(&self) -> Value {
        let mut v = match self {
            MoveOp::Failover { instance, .. } => {
                json!({"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": instance,
                       "shutdown_timeout": 120, "ignore_consistency": false,
                       "ignore_ipolicy": false, "cleanup": false})
            }
            MoveOp::Migrate { instance, .. } => {
                json!({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": instance,
                       "allow_runtime_changes": false, "ignore_ipolicy": false,
                       "cleanup": false, "allow_failover": true, "ignore_hvversions": true})
            }
            MoveOp::ReplaceSecondary {
                instance,
                remote_node,
            } => {
                return json!({"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": instance,
                              "early_release": false, "ignore_ipolicy": false,
                              "mode": "replace_new_secondary", "disks": [],
                              "remote_node": remote_node});
            }
        };
        if let (
            MoveOp::Failover {
                target_node: Some(t),
                ..
            }
            | MoveOp::Migrate {
                target_node: Some(t),
                ..
            },
            Some(m),
        ) = (self, v.as_object_mut())
        {
            m.insert("target_node".into(), json!(t));
        }
        v
    }
}

/// The opcodes of one move (htools' `iMoveToJob`).
pub fn move_ops(c: &Cluster, idx: usize, mv: IMove) -> Vec<MoveOp> {
    let inst = &c.instances[idx];
    let instance = inst.name.clone();
    let op_f = |target_node: Option<String>| {
        if inst.forthcoming {
            MoveOp::Failover {
                instance: instance.clone(),
                target_node,
            }
        } else {
            MoveOp::Migrate {
                instance: instance.clone(),
                target_node,
            }
        }
    };
    let op_r = |n: usize| MoveOp::ReplaceSecondary {
        instance: instance.clone(),
        remote_node: c.nodes[n].name.clone(),
    };
    match mv {
        IMove::Failover => vec![op_f(None)],
        IMove::FailoverToAny(n) => vec![op_f(Some(c.nodes[n].name.clone()))],
        IMove::ReplacePrimary(n) => vec![op_f(None), op_r(n), op_f(None)],
        IMove::ReplaceSecondary(n) => vec![op_r(n)],
        IMove::ReplaceAndFailover(n) => vec![op_r(n), op_f(None)],
        IMove::FailoverAndReplace(n) => vec![op_f(None), op_r(n)],
    }
}

/// The outcome of a `node-evacuate` or `change-group` request, typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvacAnswer {
    /// Instance, its new group and its new nodes (primary first).
    pub moved: Vec<(String, String, Vec<String>)>,
    /// Instance and why it cannot move.
    pub failed: Vec<(String, String)>,
    /// One job per moved instance: its opcodes, in order.
    pub jobs: Vec<Vec<MoveOp>>,
}

impl EvacAnswer {
    /// Ganeti's `[moved, failed, jobs]` result.
    pub fn to_json(&self) -> Value {
        let moved: Vec<Value> = self
            .moved
            .iter()
            .map(|(i, g, ns)| json!([i, g, ns]))
            .collect();
        let failed: Vec<Value> = self.failed.iter().map(|(i, m)| json!([i, m])).collect();
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|ops| Value::Array(ops.iter().map(MoveOp::to_json).collect()))
            .collect();
        json!([moved, failed, jobs])
    }
}
