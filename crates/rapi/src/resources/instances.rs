//! `/2/instances`: the list, one instance, creation ([`super::instance_create`]), removal,
//! state changes, moves, disks, modify, rename, reinstall, the console and tags.

use super::instance_create;
use super::objects::{list, one_object, I_FIELDS};
use super::request::{defaults, disk_list, no_dry_run, Body};
use super::tags::{self, INSTANCE};
use super::{instance_exists, not_implemented, submit_job, submit_op, unrouted};
use crate::{ApiError, ApiResult, Rapi, Req};
use axum::http::{Method, StatusCode};
use maguey_model::OpCode;
use maguey_ops::query::{query, QueryRequest, Resource};
use serde_json::json;

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let m = &req.method;
    let (get, put, post) = (m == Method::GET, m == Method::PUT, m == Method::POST);
    match segs {
        [] if get => {
            list(
                rapi,
                req,
                Resource::Instance,
                I_FIELDS,
                "/2/instances",
                "id",
            )
            .await
        }
        [] if post => instance_create::create(rapi, req),
        [i] if get => one_object(rapi, Resource::Instance, i, I_FIELDS).await,
        [i] if m == Method::DELETE => {
            no_dry_run(req)?;
            let b = remove_body(req)?;
            submit_for(rapi, i, || remove_op(&b, i))
        }
        [i, "info"] if get => {
            let static_only = req.flag("static", false)?;
            instance_exists(rapi, i)?;
            submit_op(
                rapi,
                OpCode::InstanceQueryData(maguey_model::OpInstanceQueryData {
                    instances: vec![i.to_string()],
                    static_only,
                    use_locking: false,
                }),
            )
        }
        [i, "startup"] if put => {
            no_dry_run(req)?;
            let (force, no_remember) = (req.flag("force", false)?, req.flag("no_remember", false)?);
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceStartup(maguey_model::OpInstanceStartup {
                    instance_name: i.to_string(),
                    force,
                    beparams: Default::default(),
                    hvparams: Default::default(),
                    no_remember,
                }))
            })
        }
        [i, "shutdown"] if put => {
            no_dry_run(req)?;
            let b = Body::parse(req, "OP_INSTANCE_SHUTDOWN", &["timeout"], &[])?;
            let no_remember = req.flag("no_remember", false)?;
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceShutdown(maguey_model::OpInstanceShutdown {
                    instance_name: i.to_string(),
                    timeout: b.or("timeout", defaults::SHUTDOWN_TIMEOUT)?,
                    no_remember,
                    admin_state_source: Default::default(),
                }))
            })
        }
        [i, "reboot"] if post => {
            no_dry_run(req)?;
            let b = Body::parse(
                req,
                "OP_INSTANCE_REBOOT",
                &["shutdown_timeout"],
                &["ignore_secondaries"],
            )?;
            // Ganeti's RAPI reboots `hard` when no type is given.
            let reboot_type = match req.query_str("type") {
                None => maguey_model::RebootType::Hard,
                Some(t) => t
                    .parse()
                    .map_err(|e: maguey_model::VocabError| ApiError::bad_request(e.to_string()))?,
            };
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceReboot(maguey_model::OpInstanceReboot {
                    instance_name: i.to_string(),
                    reboot_type,
                    shutdown_timeout: b.or("shutdown_timeout", defaults::SHUTDOWN_TIMEOUT)?,
                }))
            })
        }
        [i, "modify"] if put => {
            no_dry_run(req)?;
            let b = modify_body(req)?;
            submit_for(rapi, i, || modify_op(&b, i))
        }
        [i, "migrate"] if put => {
            no_dry_run(req)?;
            let b = migrate_body(req)?;
            submit_for(rapi, i, || migrate_op(&b, i))
        }
        [i, "change-group"] if put => {
            instance_exists(rapi, i)?;
            super::group_moves::change_group(rapi, req, i)
        }
        [i, "failover"] if put => {
            no_dry_run(req)?;
            let b = failover_body(req)?;
            submit_for(rapi, i, || failover_op(&b, i))
        }
        [i, "activate-disks"] if put => {
            no_dry_run(req)?;
            let ignore_size = req.flag("ignore_size", false)?;
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceActivateDisks(
                    maguey_model::OpInstanceActivateDisks {
                        instance_name: i.to_string(),
                        ignore_size,
                        wait_for_sync: false,
                        resolve_split_brain: false,
                    },
                ))
            })
        }
        [i, "deactivate-disks"] if put => {
            no_dry_run(req)?;
            let force = req.flag("force", false)?;
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceDeactivateDisks(
                    maguey_model::OpInstanceDeactivateDisks {
                        instance_name: i.to_string(),
                        force,
                    },
                ))
            })
        }
        [i, "rename"] if put => {
            no_dry_run(req)?;
            let b = Body::parse(
                req,
                "OP_INSTANCE_RENAME",
                &["new_name", "ip_check", "name_check"],
                &[],
            )?;
            if !b.contains("new_name") {
                return Err(ApiError::bad_request("missing 'new_name'"));
            }
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceRename(maguey_model::OpInstanceRename {
                    instance_name: i.to_string(),
                    new_name: b.req("new_name")?,
                    ip_check: b.or("ip_check", false)?,
                    name_check: b.or("name_check", false)?,
                }))
            })
        }
        [i, "disk", idx, "grow"] if post => {
            no_dry_run(req)?;
            let (disk, b) = grow_body(req, idx)?;
            submit_for(rapi, i, || grow_op(&b, i, disk))
        }
        [i, "replace-disks"] if post => {
            no_dry_run(req)?;
            let b = replace_body(req)?;
            submit_for(rapi, i, || replace_op(&b, i))
        }
        [i, "recreate-disks"] if post => {
            no_dry_run(req)?;
            let mut b = Body::parse(
                req,
                "OP_INSTANCE_RECREATE_DISKS",
                &["disks", "nodes", "iallocator"],
                &[],
            )?;
            normalise_disks(&mut b)?;
            submit_for(rapi, i, || {
                Ok(OpCode::InstanceRecreateDisks(
                    maguey_model::OpInstanceRecreateDisks {
                        instance_name: i.to_string(),
                        disks: b.or_default("disks")?,
                        nodes: b.or_default("nodes")?,
                        iallocator: b.opt("iallocator")?,
                    },
                ))
            })
        }
        [i, "reinstall"] if post => reinstall(rapi, req, i),
        [i, "console"] if get => console(rapi, i).await,
        [i, "tags"] if get => tags::get(rapi, INSTANCE, i),
        [i, "tags"] if put || m == Method::DELETE => tags::change(rapi, req, INSTANCE, Some(i)),
        _ => Err(unrouted(req)),
    }
}

/// Submits the opcode `op` builds for an existing instance (404 if unknown; the request's
/// fields were checked before, their values are decoded after).
fn submit_for(rapi: &Rapi, inst: &str, op: impl FnOnce() -> Result<OpCode, ApiError>) -> ApiResult {
    instance_exists(rapi, inst)?;
    submit_op(rapi, op()?)
}

fn remove_body(req: &Req) -> Result<Body, ApiError> {
    Body::parse(
        req,
        "OP_INSTANCE_REMOVE",
        &["shutdown_timeout", "ignore_failures"],
        &[],
    )
}

/// `DELETE /2/instances/I`: `ignore_failures` is accepted but never honoured.
fn remove_op(b: &Body, inst: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::InstanceRemove(maguey_model::OpInstanceRemove {
        instance_name: inst.to_string(),
        ignore_failures: false,
        shutdown_timeout: b.or("shutdown_timeout", defaults::SHUTDOWN_TIMEOUT)?,
    }))
}

fn migrate_body(req: &Req) -> Result<Body, ApiError> {
    Body::parse(
        req,
        "OP_INSTANCE_MIGRATE",
        &[
            "mode",
            "cleanup",
            "target_node",
            "iallocator",
            "allow_failover",
            "ignore_ipolicy",
            "allow_runtime_changes",
        ],
        &[],
    )
}

fn migrate_op(b: &Body, inst: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::InstanceMigrate(maguey_model::OpInstanceMigrate {
        instance_name: inst.to_string(),
        mode: b.opt("mode")?,
        live: None,
        target_node: b.opt("target_node")?,
        cleanup: b.or("cleanup", false)?,
        allow_failover: b.or("allow_failover", true)?,
        iallocator: b.opt("iallocator")?,
        ignore_ipolicy: b.or("ignore_ipolicy", false)?,
        allow_runtime_changes: b.or("allow_runtime_changes", true)?,
        ignore_hvversions: false,
    }))
}

fn failover_body(req: &Req) -> Result<Body, ApiError> {
    Body::parse(
        req,
        "OP_INSTANCE_FAILOVER",
        &[
            "iallocator",
            "ignore_consistency",
            "target_node",
            "shutdown_timeout",
            "ignore_ipolicy",
        ],
        &[],
    )
}

fn failover_op(b: &Body, inst: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::InstanceFailover(maguey_model::OpInstanceFailover {
        instance_name: inst.to_string(),
        shutdown_timeout: b.or("shutdown_timeout", defaults::SHUTDOWN_TIMEOUT)?,
        ignore_consistency: b.or("ignore_consistency", false)?,
        target_node: b.opt("target_node")?,
        iallocator: b.opt("iallocator")?,
        ignore_ipolicy: b.or("ignore_ipolicy", false)?,
        cleanup: false,
    }))
}

/// `POST /2/instances/I/disk/N/grow`: the disk index and the checked body.
fn grow_body(req: &Req, idx: &str) -> Result<(usize, Body), ApiError> {
    let disk: usize = idx
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid disk index '{idx}' (0, 1, ...)")))?;
    let b = Body::parse(
        req,
        "OP_INSTANCE_GROW_DISK",
        &["amount", "absolute", "wait_for_sync", "ignore_ipolicy"],
        &[],
    )?;
    match b.get("amount") {
        Some(v) if v.as_u64().is_some_and(|a| a > 0) => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "'amount' must be a positive integer (MiB), not {v}"
            )))
        }
        None => return Err(ApiError::bad_request("missing 'amount' (MiB)")),
    }
    Ok((disk, b))
}

fn grow_op(b: &Body, inst: &str, disk: usize) -> Result<OpCode, ApiError> {
    Ok(OpCode::InstanceGrowDisk(maguey_model::OpInstanceGrowDisk {
        instance_name: inst.to_string(),
        disk,
        amount: b.req("amount")?,
        absolute: b.or("absolute", false)?,
        wait_for_sync: b.or("wait_for_sync", true)?,
        ignore_ipolicy: b.or("ignore_ipolicy", false)?,
    }))
}

/// Normalises `disks` (see [`disk_list`]) before the instance is looked up.
fn normalise_disks(b: &mut Body) -> Result<(), ApiError> {
    if let Some(list) = disk_list(b, "disks")? {
        b.set("disks", json!(list));
    }
    Ok(())
}

fn replace_body(req: &Req) -> Result<Body, ApiError> {
    let mut b = Body::parse(
        req,
        "OP_INSTANCE_REPLACE_DISKS",
        &[
            "mode",
            "disks",
            "remote_node",
            "iallocator",
            "early_release",
            "ignore_ipolicy",
        ],
        &[],
    )?;
    // Older clients send the arguments in the query string.
    for k in ["mode", "remote_node", "iallocator", "disks"] {
        if let Some(v) = req.query_str(k) {
            b.insert_if_absent(k, json!(v));
        }
    }
    if !b.contains("early_release") && req.query_str("early_release").is_some() {
        let early = req.flag("early_release", false)?;
        b.set("early_release", json!(early));
    }
    normalise_disks(&mut b)?;
    Ok(b)
}

fn replace_op(b: &Body, inst: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::InstanceReplaceDisks(
        maguey_model::OpInstanceReplaceDisks {
            instance_name: inst.to_string(),
            mode: b.or("mode", maguey_model::ReplaceDisksMode::Auto)?,
            disks: b.or_default("disks")?,
            remote_node: b.opt("remote_node")?,
            iallocator: b.opt("iallocator")?,
            early_release: b.or("early_release", false)?,
            ignore_ipolicy: b.or("ignore_ipolicy", false)?,
            force: false,
        },
    ))
}

fn modify_body(req: &Req) -> Result<Body, ApiError> {
    let mut b = Body::parse(
        req,
        "OP_INSTANCE_SET_PARAMS",
        &[
            "beparams",
            "hvparams",
            "osparams",
            "offline",
            "force",
            "custom_beparams",
            "custom_hvparams",
            "runtime_mem",
            "disk_template",
            "remote_node",
            "wait_for_sync",
            "ignore_ipolicy",
        ],
        &[
            "disks",
            "nics",
            "iallocator",
            "os_name",
            "force_variant",
            "osparams_private",
            "pnode",
            "online_inst",
            "offline_inst",
            "conflicts_check",
            "hotplug",
            "hotplug_if_possible",
            "instance_communication",
            "ext_params",
            "file_driver",
            "file_storage_dir",
            "allow_arbit_params",
            "clear_osparams",
            "clear_osparams_private",
            "remove_osparams",
            "remove_osparams_private",
            "hv_state",
            "disk_state",
            "snode",
        ],
    )?;
    for (from, to) in [
        ("custom_beparams", "beparams"),
        ("custom_hvparams", "hvparams"),
    ] {
        if let Some(v) = b.take(from) {
            if b.contains(to) {
                return Err(ApiError::bad_request(format!(
                    "both '{from}' and '{to}' given"
                )));
            }
            b.set(to, v);
        }
    }
    Ok(b)
}

/// `PUT /2/instances/I/modify`.
fn modify_op(b: &Body, inst: &str) -> Result<OpCode, ApiError> {
    Ok(OpCode::InstanceSetParams(
        maguey_model::OpInstanceSetParams {
            instance_name: inst.to_string(),
            beparams: b.or_default("beparams")?,
            hvparams: b.or_default("hvparams")?,
            osparams: b.or_default("osparams")?,
            offline: b.opt("offline")?,
            runtime_mem: b.opt("runtime_mem")?,
            force: b.or("force", false)?,
            disk_template: b.opt("disk_template")?,
            remote_node: b.opt("remote_node")?,
            wait_for_sync: b.or("wait_for_sync", true)?,
            ignore_ipolicy: b.or("ignore_ipolicy", false)?,
        },
    ))
}

/// `POST /2/instances/NAME/reinstall`, as Ganeti: one job that stops the instance, reinstalls
/// it and (unless `start` is false / `nostartup` is set) starts it again.
fn reinstall(rapi: &Rapi, req: &Req, inst: &str) -> ApiResult {
    no_dry_run(req)?;
    instance_exists(rapi, inst)?;
    let b = Body::parse(
        req,
        "OP_INSTANCE_REINSTALL",
        &["os", "start", "osparams"],
        &["clear_osparams"],
    )?;
    let start = match b.get("start") {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ApiError::bad_request("'start' must be a boolean"))?,
        None => !req.flag("nostartup", false)?,
    };
    submit_job(rapi, reinstall_ops(req, &b, inst, start)?)
}

fn reinstall_ops(req: &Req, b: &Body, inst: &str, start: bool) -> Result<Vec<OpCode>, ApiError> {
    let os_type = b
        .get("os")
        .and_then(|v| v.as_str())
        .or_else(|| req.query_str("os"))
        .map(String::from);
    let mut ops = vec![
        OpCode::InstanceShutdown(maguey_model::OpInstanceShutdown {
            instance_name: inst.to_string(),
            timeout: defaults::SHUTDOWN_TIMEOUT,
            no_remember: false,
            admin_state_source: Default::default(),
        }),
        OpCode::InstanceReinstall(maguey_model::OpInstanceReinstall {
            instance_name: inst.to_string(),
            os_type,
            osparams: b.opt("osparams")?,
        }),
    ];
    if start {
        ops.push(startup(inst));
    }
    Ok(ops)
}

/// OP_INSTANCE_STARTUP with its defaults.
fn startup(inst: &str) -> OpCode {
    OpCode::InstanceStartup(maguey_model::OpInstanceStartup {
        instance_name: inst.to_string(),
        force: false,
        beparams: Default::default(),
        hvparams: Default::default(),
        no_remember: false,
    })
}

async fn console(rapi: &Rapi, name: &str) -> ApiResult {
    instance_exists(rapi, name)?;
    let res = query(
        &rapi.inner.master,
        &QueryRequest {
            what: Resource::Instance,
            names: vec![name.to_string()],
            fields: vec!["oper_state".into(), "hypervisor".into()],
        },
    )
    .await
    .map_err(ApiError::not_found)?;
    let row = res.rows.first().cloned().unwrap_or_default();
    let running = row.first().and_then(|v| v.as_bool()).unwrap_or(false);
    if !running {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Instance console unavailable",
        ));
    }
    match row.get(1).and_then(|v| v.as_str()) {
        Some("fake") => Ok(json!({
            "instance": name,
            "kind": "message",
            "message": "Console not available for fake hypervisor",
        })),
        Some(hv) => Err(not_implemented(&format!(
            "the console of {hv} instances through the API"
        ))),
        None => Err(ApiError::not_found(format!(
            "instance '{name}' is not known"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::request::tests_support::{req, wire};
    use serde_json::{json, Value};

    #[test]
    fn defaults_match_the_wire() {
        let r = req(Method::PUT, Value::Null, &[]);
        let inst = json!({"instance_name": "i1"});
        let checks = [
            (
                remove_op(&remove_body(&r).unwrap(), "i1"),
                "OP_INSTANCE_REMOVE",
            ),
            (
                migrate_op(&migrate_body(&r).unwrap(), "i1"),
                "OP_INSTANCE_MIGRATE",
            ),
            (
                failover_op(&failover_body(&r).unwrap(), "i1"),
                "OP_INSTANCE_FAILOVER",
            ),
            (
                modify_op(&modify_body(&r).unwrap(), "i1"),
                "OP_INSTANCE_SET_PARAMS",
            ),
            (Ok(startup("i1")), "OP_INSTANCE_STARTUP"),
        ];
        for (op, id) in checks {
            assert_eq!(op.unwrap(), wire(id, &inst), "{id}");
        }
        assert_eq!(
            replace_op(&replace_body(&r).unwrap(), "i1").unwrap(),
            wire(
                "OP_INSTANCE_REPLACE_DISKS",
                &json!({"instance_name": "i1", "mode": "replace_auto"})
            )
        );
        let r = req(Method::POST, json!({"amount": 64}), &[]);
        let (disk, b) = grow_body(&r, "1").unwrap();
        assert_eq!(
            grow_op(&b, "i1", disk).unwrap(),
            wire(
                "OP_INSTANCE_GROW_DISK",
                &json!({"instance_name": "i1", "disk": 1, "amount": 64})
            )
        );
        let ops = reinstall_ops(
            &req(Method::POST, Value::Null, &[("os", "noop")]),
            &Body::empty("x"),
            "i1",
            true,
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![
                wire("OP_INSTANCE_SHUTDOWN", &inst),
                wire(
                    "OP_INSTANCE_REINSTALL",
                    &json!({"instance_name": "i1", "os_type": "noop"})
                ),
                wire("OP_INSTANCE_STARTUP", &inst),
            ]
        );
    }

    #[test]
    fn requests_become_typed_opcodes() {
        // Older clients' query arguments; disk lists as strings.
        let r = req(
            Method::POST,
            json!({"early_release": true}),
            &[
                ("mode", "replace_new_secondary"),
                ("remote_node", "n3"),
                ("disks", "0,1"),
            ],
        );
        assert_eq!(
            replace_op(&replace_body(&r).unwrap(), "i1").unwrap(),
            wire(
                "OP_INSTANCE_REPLACE_DISKS",
                &json!({"instance_name": "i1", "mode": "replace_new_secondary",
                        "remote_node": "n3", "disks": [0, 1], "early_release": true})
            )
        );
        let r = req(
            Method::PUT,
            json!({"custom_beparams": {"vcpus": 2}, "offline": false}),
            &[],
        );
        assert_eq!(
            modify_op(&modify_body(&r).unwrap(), "i1").unwrap(),
            wire(
                "OP_INSTANCE_SET_PARAMS",
                &json!({"instance_name": "i1", "beparams": {"vcpus": 2}, "offline": false})
            )
        );
        // Refusals: both spellings of a field, unsupported and unknown fields, bad values.
        let code = |e: ApiError| e.status.as_u16();
        let r = req(
            Method::PUT,
            json!({"custom_beparams": {}, "beparams": {}}),
            &[],
        );
        assert_eq!(modify_body(&r).err().map(code), Some(400));
        let r = req(Method::PUT, json!({"nics": [["add", {}]]}), &[]);
        assert_eq!(modify_body(&r).err().map(code), Some(501));
        let r = req(Method::PUT, json!({"bogus": 1}), &[]);
        assert_eq!(migrate_body(&r).err().map(code), Some(400));
        let r = req(Method::PUT, json!({"cleanup": "yes"}), &[]);
        assert_eq!(
            migrate_op(&migrate_body(&r).unwrap(), "i1").err().map(code),
            Some(400)
        );
        for body in [json!({}), json!({"amount": 0}), json!({"amount": "1G"})] {
            let r = req(Method::POST, body, &[]);
            assert_eq!(grow_body(&r, "0").err().map(code), Some(400));
        }
        assert_eq!(
            grow_body(&req(Method::POST, json!({"amount": 1}), &[]), "x")
                .err()
                .map(code),
            Some(400)
        );
    }
}
