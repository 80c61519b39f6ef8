//! Placement moves as opcodes: the one place where the placement engine's typed move
//! opcodes ([`MoveOp`]) become Maguey's [`OpCode`]s — for node evacuation, `cluster
//! balance` and any other plan that is carried out as jobs.

use maguey_model::{
    OpCode, OpInstanceFailover, OpInstanceMigrate, OpInstanceReplaceDisks, ReplaceDisksMode,
};
use maguey_placement::jobs::MoveOp;
use maguey_placement::model::Cluster;
use maguey_placement::types::IMove;

/// Ganeti's default shutdown timeout (seconds), as htools puts it in its failovers.
const SHUTDOWN_TIMEOUT: u64 = 120;

/// The opcode of one placement move opcode, with every field the placement engine sets.
pub fn opcode(op: &MoveOp) -> OpCode {
    match op {
        MoveOp::Failover {
            instance,
            target_node,
        } => OpInstanceFailover {
            instance_name: instance.clone(),
            shutdown_timeout: SHUTDOWN_TIMEOUT,
            ignore_consistency: false,
            target_node: target_node.clone(),
            iallocator: None,
            ignore_ipolicy: false,
            cleanup: false,
        }
        .into(),
        MoveOp::Migrate {
            instance,
            target_node,
        } => OpInstanceMigrate {
            instance_name: instance.clone(),
            mode: None,
            live: None,
            target_node: target_node.clone(),
            cleanup: false,
            allow_failover: true,
            iallocator: None,
            ignore_ipolicy: false,
            allow_runtime_changes: false,
            ignore_hvversions: true,
        }
        .into(),
        MoveOp::ReplaceSecondary {
            instance,
            remote_node,
        } => OpInstanceReplaceDisks {
            instance_name: instance.clone(),
            mode: ReplaceDisksMode::NewSecondary,
            disks: Vec::new(),
            remote_node: Some(remote_node.clone()),
            iallocator: None,
            early_release: false,
            ignore_ipolicy: false,
            force: false,
        }
        .into(),
    }
}

/// The opcodes of one move of instance `idx` of a planned cluster.
pub fn move_opcodes(c: &Cluster, idx: usize, mv: IMove) -> Vec<OpCode> {
    maguey_placement::jobs::move_ops(c, idx, mv)
        .iter()
        .map(opcode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use maguey_model::{DiskTemplate, VocabError};
    use serde_json::{json, Value};

    fn every_move_op() -> Vec<MoveOp> {
        let i = "inst1".to_string();
        vec![
            MoveOp::Failover {
                instance: i.clone(),
                target_node: None,
            },
            MoveOp::Failover {
                instance: i.clone(),
                target_node: Some("node3".into()),
            },
            MoveOp::Migrate {
                instance: i.clone(),
                target_node: None,
            },
            MoveOp::Migrate {
                instance: i.clone(),
                target_node: Some("node3".into()),
            },
            MoveOp::ReplaceSecondary {
                instance: i,
                remote_node: "node2".into(),
            },
        ]
    }

    /// Regression: the opcodes placement emits for hail's callers carry fields that Maguey's
    /// opcodes used to drop silently (`cleanup` of a failover, `ignore_hvversions` of a
    /// migration). Every field of the Ganeti form must survive, with its value.
    #[test]
    fn no_field_of_a_placement_move_is_dropped() {
        for m in every_move_op() {
            let ganeti = m.to_json();
            let ours = serde_json::to_value(opcode(&m)).unwrap();
            for (k, v) in ganeti.as_object().unwrap() {
                assert_eq!(ours.get(k), Some(v), "{k} of {ganeti}: ours is {ours}");
            }
            // The JSON path (an external allocator's answer) gives the same opcode.
            let parsed: OpCode = serde_json::from_value(ganeti.clone()).unwrap();
            assert_eq!(parsed, opcode(&m), "{ganeti}");
        }
    }

    /// A bad word is refused with the same message wherever it comes from: the CLI's parse,
    /// a JSON opcode (RAPI, /luxi/submit), a child job's opcode list, an allocator answer.
    #[test]
    fn a_bad_template_gets_the_same_error_on_every_path() {
        let cli: VocabError = "floppy".parse::<DiskTemplate>().unwrap_err();
        let expected = cli.to_string();
        assert_eq!(
            expected,
            "unknown disk template 'floppy' (known: diskless, file, sharedfile, plain, drbd)"
        );
        let create = json!({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "i1",
                            "disk_template": "floppy", "disks": [{"size": 64}]});
        let convert = json!({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "i1",
                             "disk_template": "floppy"});
        let json_op = serde_json::from_value::<OpCode>(create.clone()).unwrap_err();
        let child_jobs =
            serde_json::from_value::<Vec<Vec<OpCode>>>(json!([[convert.clone()]])).unwrap_err();
        let answer: Value = json!({"success": true, "info": "", "result": [[], [], [[convert]]]});
        let from_answer =
            serde_json::from_value::<Vec<Vec<OpCode>>>(answer["result"][2].clone()).unwrap_err();
        let text = serde_json::to_string(&create).unwrap();
        let luxi = serde_json::from_str::<OpCode>(&text).unwrap_err();
        for e in [json_op, child_jobs, from_answer, luxi] {
            assert!(e.to_string().starts_with(&expected), "{e}");
        }
    }
}
