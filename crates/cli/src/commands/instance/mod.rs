//! `maguey instance` (gnt-instance): the handlers; the flags are in `args`, `instance add`
//! in `add`.

mod add;
mod args;
pub(crate) mod select;

pub use args::InstanceCmd;

use crate::input::{confirm, kv, name_ok, usage, word};
use crate::master::{client, cluster_url, run_job};
use crate::query::{info, list, list_fields};
use crate::CliResult;
use add::instance_add_op;
use maguey_client::Resource;
use maguey_model::{units::parse_size_mib, OpCode, Params};
use serde_json::Value;
use std::path::Path;

const INSTANCE_DEFAULT_FIELDS: &[&str] =
    &["name", "hypervisor", "os", "pnode", "status", "oper_ram"];

pub async fn run(dir: &Path, cmd: InstanceCmd) -> CliResult<u8> {
    use crate::commands::tags::{run as tags, TagAction};
    use maguey_model::TagKind::Instance as K;
    let no_job = crate::args::JobOpts {
        submit: false,
        priority: crate::args::Priority::Normal,
    };
    match cmd {
        InstanceCmd::AddTags { name, tags: t, job } => {
            tags(dir, K, Some(name), TagAction::Add, t, job).await
        }
        InstanceCmd::RemoveTags { name, tags: t, job } => {
            tags(dir, K, Some(name), TagAction::Remove, t, job).await
        }
        InstanceCmd::ListTags { name } => {
            tags(dir, K, Some(name), TagAction::List, vec![], no_job).await
        }
        InstanceCmd::ChangeGroup(a) => {
            let (op, job) = a.op()?;
            run_job(&client(dir)?, vec![op], job).await?;
            Ok(0)
        }
        InstanceCmd::Add(a) => {
            let op = instance_add_op(&a)?;
            let c = client(dir)?;
            run_job(&c, vec![op], a.job).await?;
            Ok(0)
        }
        InstanceCmd::Remove {
            name,
            force,
            ignore_failures,
            job,
        } => {
            if !force {
                confirm(&format!(
                    "This will remove the disks of instance {name}, and all its data. Continue?"
                ))?;
            }
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceRemove(maguey_model::OpInstanceRemove {
                    instance_name: name,
                    ignore_failures,
                    shutdown_timeout: 120,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::List { names, list: l } => {
            list(
                &client(dir)?,
                Resource::Instance,
                names,
                &l,
                INSTANCE_DEFAULT_FIELDS,
            )
            .await
        }
        InstanceCmd::ListFields => list_fields(&client(dir)?, "instance").await,
        InstanceCmd::Info { names, output } => {
            info(&client(dir)?, Resource::Instance, names, output).await
        }
        InstanceCmd::Console(a) => crate::commands::console::run(dir, cluster_url(), a).await,
        InstanceCmd::Migrate {
            name,
            target_node,
            cleanup,
            no_allow_failover,
            non_live,
            migration_mode,
            iallocator,
            force: _,
            job,
        } => {
            let mode = if non_live {
                Some(maguey_model::MigrationMode::NonLive)
            } else {
                migration_mode.as_deref().map(word).transpose()?
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceMigrate(maguey_model::OpInstanceMigrate {
                    instance_name: name,
                    mode,
                    live: None,
                    target_node,
                    cleanup,
                    allow_failover: !no_allow_failover,
                    iallocator,
                    ignore_ipolicy: false,
                    allow_runtime_changes: true,
                    ignore_hvversions: false,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::ActivateDisks {
            name,
            ignore_size,
            wait_for_sync,
            resolve_split_brain,
            job,
        } => {
            let c = client(dir)?;
            let Some(j) = run_job(
                &c,
                vec![OpCode::InstanceActivateDisks(
                    maguey_model::OpInstanceActivateDisks {
                        instance_name: name,
                        ignore_size,
                        wait_for_sync,
                        resolve_split_brain,
                    },
                )],
                job,
            )
            .await?
            else {
                return Ok(0);
            };
            for line in activated_disks(j.opresult.first()) {
                println!("{line}");
            }
            Ok(0)
        }
        InstanceCmd::DeactivateDisks { name, force, job } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceDeactivateDisks(
                    maguey_model::OpInstanceDeactivateDisks {
                        instance_name: name,
                        force,
                    },
                )],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Failover {
            name,
            target_node,
            ignore_consistency,
            shutdown_timeout,
            iallocator,
            force: _,
            job,
        } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceFailover(maguey_model::OpInstanceFailover {
                    instance_name: name,
                    shutdown_timeout,
                    ignore_consistency,
                    target_node,
                    iallocator,
                    ignore_ipolicy: false,
                    cleanup: false,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Move {
            name,
            target_node,
            shutdown_timeout,
            ignore_consistency,
            force: _,
            job,
        } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceMove(maguey_model::OpInstanceMove {
                    instance_name: name,
                    target_node,
                    shutdown_timeout,
                    ignore_consistency,
                    ignore_ipolicy: false,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Reinstall {
            name,
            os,
            os_parameters,
            force,
            job,
        } => {
            if !force {
                confirm(&format!(
                    "This will reinstall the instance {name} and remove all data on its disks. Continue?"
                ))?;
            }
            let osparams = match os_parameters {
                Some(_) => Some(kv(&os_parameters, "-O")?),
                None => None,
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceReinstall(
                    maguey_model::OpInstanceReinstall {
                        instance_name: name,
                        os_type: os,
                        osparams,
                    },
                )],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::GrowDisk {
            name,
            disk,
            amount,
            absolute,
            no_wait_for_sync,
            ignore_ipolicy,
            job,
        } => {
            let amount = parse_size_mib(&amount).map_err(|e| usage(format!("AMOUNT: {e}")))?;
            if amount == 0 {
                return Err(usage("AMOUNT: the size must be positive"));
            }
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceGrowDisk(maguey_model::OpInstanceGrowDisk {
                    instance_name: name,
                    disk,
                    amount,
                    absolute,
                    wait_for_sync: !no_wait_for_sync,
                    ignore_ipolicy,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::ReplaceDisks {
            name,
            on_primary,
            on_secondary,
            new_secondary,
            auto,
            iallocator,
            disks,
            early_release,
            force,
            job,
        } => {
            use maguey_model::ReplaceDisksMode;
            let mode = if on_primary {
                ReplaceDisksMode::OnPrimary
            } else if on_secondary {
                ReplaceDisksMode::OnSecondary
            } else if auto {
                ReplaceDisksMode::Auto
            } else {
                ReplaceDisksMode::NewSecondary
            };
            let disks = match disks {
                Some(d) => parse_disk_indices(&d).map_err(|e| usage(format!("--disks: {e}")))?,
                None => Vec::new(),
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceReplaceDisks(
                    maguey_model::OpInstanceReplaceDisks {
                        instance_name: name,
                        mode,
                        disks,
                        remote_node: new_secondary,
                        iallocator,
                        early_release,
                        ignore_ipolicy: false,
                        force,
                    },
                )],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::RecreateDisks {
            name,
            disk,
            nodes,
            iallocator,
            job,
        } => {
            let disks = match disk {
                Some(d) => parse_disk_indices(&d).map_err(|e| usage(format!("--disk: {e}")))?,
                None => Vec::new(),
            };
            let nodes: Vec<String> = match nodes {
                Some(n) => {
                    let parts: Vec<String> = n.split(':').map(str::to_string).collect();
                    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                        return Err(usage(format!("-n: expected PNODE[:SNODE], got '{n}'")));
                    }
                    parts
                }
                None => Vec::new(),
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceRecreateDisks(
                    maguey_model::OpInstanceRecreateDisks {
                        instance_name: name,
                        disks,
                        nodes,
                        iallocator,
                    },
                )],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Rename {
            name,
            new_name,
            job,
        } => {
            name_ok("instance", &new_name)?;
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceRename(maguey_model::OpInstanceRename {
                    instance_name: name,
                    new_name,
                    ip_check: false,
                    name_check: false,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Start {
            names,
            select,
            force,
            job,
        } => {
            select::run_each(dir, &select, names, job, |name| {
                OpCode::InstanceStartup(maguey_model::OpInstanceStartup {
                    instance_name: name,
                    force,
                    beparams: Params::new(),
                    hvparams: Params::new(),
                    no_remember: false,
                })
            })
            .await
        }
        InstanceCmd::Stop {
            names,
            select,
            timeout,
            job,
        } => {
            select::run_each(dir, &select, names, job, |name| {
                OpCode::InstanceShutdown(maguey_model::OpInstanceShutdown {
                    instance_name: name,
                    timeout,
                    no_remember: false,
                    admin_state_source: Default::default(),
                })
            })
            .await
        }
        InstanceCmd::Reboot {
            name,
            reboot_type,
            shutdown_timeout,
            job,
        } => {
            let reboot_type = word(&reboot_type)?;
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceReboot(maguey_model::OpInstanceReboot {
                    instance_name: name,
                    reboot_type,
                    shutdown_timeout,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Modify {
            name,
            backend_parameters,
            hypervisor_parameters,
            os_parameters,
            runtime_memory,
            offline,
            online,
            disk_template,
            node,
            no_wait_for_sync,
            force,
            ignore_ipolicy,
            job,
        } => {
            if node.is_some() && disk_template.is_none() {
                return Err(usage("-n is only for a disk template conversion (-t drbd)"));
            }
            let runtime_mem = match runtime_memory.as_deref() {
                Some(s) => Some(
                    maguey_model::units::parse_size_mib(s)
                        .map_err(|e| usage(format!("-m: {e}")))?,
                ),
                None => None,
            };
            let beparams = kv(&backend_parameters, "-B")?;
            let offline = if offline {
                Some(true)
            } else if online {
                Some(false)
            } else {
                None
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceSetParams(
                    maguey_model::OpInstanceSetParams {
                        instance_name: name,
                        beparams,
                        hvparams: kv(&hypervisor_parameters, "-H")?,
                        osparams: kv(&os_parameters, "-O")?,
                        offline,
                        runtime_mem,
                        force,
                        disk_template: disk_template.as_deref().map(word).transpose()?,
                        remote_node: node,
                        wait_for_sync: !no_wait_for_sync,
                        ignore_ipolicy,
                    },
                )],
                job,
            )
            .await?;
            Ok(0)
        }
    }
}

/// OP_INSTANCE_ACTIVATE_DISKS's result as Ganeti prints it: `node:iv_name:device` lines.
pub fn activated_disks(result: Option<&Value>) -> Vec<String> {
    result
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let parts: Vec<&str> = row.as_array()?.iter().filter_map(Value::as_str).collect();
            (parts.len() == 3).then(|| parts.join(":"))
        })
        .collect()
}

/// Disk indices as the user writes them: `0`, `0,1` (no duplicates).
fn parse_disk_indices(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let i: usize = part
            .trim()
            .parse()
            .map_err(|_| format!("'{part}' is not a disk index (0, 1, ...)"))?;
        if out.contains(&i) {
            return Err(format!("disk {i} given twice"));
        }
        out.push(i);
    }
    Ok(out)
}
