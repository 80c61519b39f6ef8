//! `maguey cluster` (gnt-cluster).

use crate::args::{Format, JobOpts, Priority};
use crate::commands::instance::activated_disks;
use crate::commands::tags::TagAction;
use crate::input::{kv, usage};
use crate::master::{client, priority, run_job};
use crate::output::print_info;
use crate::{CliError, CliResult};
use clap::Subcommand;
use maguey_client::MasterClient;
use maguey_model::OpCode;
use maguey_model::TagKind;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Job options of a command that only reads.
const NO_JOB: JobOpts = JobOpts {
    submit: false,
    priority: Priority::Normal,
};

// Parsed once per process: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Creates a cluster on this node and starts its daemon.
    Init {
        /// Cluster name.
        name: String,
        /// This node's name (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// This node's primary IP address.
        #[arg(long, short = 'a')]
        address: String,
        /// Secondary IP address (replication traffic).
        #[arg(long, short = 's')]
        secondary_ip: Option<String>,
        /// Node daemon port on every node.
        #[arg(long, default_value_t = maguey_model::DEFAULT_RPC_PORT)]
        port: u16,
        /// Directory of `file` disks on every node (relative: under each node's state dir).
        #[arg(long, default_value = "/srv/maguey/file-storage")]
        file_storage_dir: String,
        /// Directory of `sharedfile` disks, the same on every node (NFS in real life).
        #[arg(long, default_value = "/srv/maguey/shared-file-storage")]
        shared_file_storage_dir: String,
        /// Enabled hypervisors, comma-separated; the first is the default of new instances.
        #[arg(long, default_value = "kvm")]
        enabled_hypervisors: String,
        /// Enabled disk templates, comma-separated.
        #[arg(long, default_value = "plain,drbd,file,diskless")]
        enabled_disk_templates: String,
        /// Cluster-level hypervisor parameters, HV:k=v,... (repeatable, e.g.
        /// -H kvm:kernel_path=/boot/vmlinuz,initrd_path=/boot/initrd.img).
        #[arg(short = 'H', long = "hypervisor-parameters")]
        hypervisor_parameters: Vec<String>,
        /// MAC prefix of generated addresses.
        #[arg(long, default_value = "aa:00:00")]
        mac_prefix: String,
        /// LVM volume group of `plain` and `drbd` disks on every node.
        #[arg(long, default_value = maguey_model::DEFAULT_VG_NAME)]
        vg_name: String,
        /// Cluster-level backend parameters, k=v,...
        #[arg(short = 'B', long)]
        backend_parameters: Option<String>,
        /// Cluster-level NIC parameters, k=v,...
        #[arg(short = 'N', long)]
        nic_parameters: Option<String>,
        /// Memory (MiB) the fake hypervisor reports on this node.
        #[arg(long)]
        fake_memory: Option<u64>,
        /// Do not start magueyd.
        #[arg(long)]
        no_start: bool,
        /// Replicate the config with Raft among the master candidates: the Raft leader is the
        /// master, and another candidate takes over when it dies (docs/replication.md).
        #[arg(long)]
        replicated: bool,
    },
    /// Shows the cluster's settings.
    Info {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Plans moves that even out the load (hbal on the live cluster); --execute runs them,
    /// set after set, each move its own job.
    Balance {
        /// At most this many moves.
        #[arg(long, short = 'l')]
        max_moves: Option<usize>,
        /// Stop when a move gains less than this (hbal's -g).
        #[arg(long, short = 'g')]
        min_gain: Option<f64>,
        /// No replace-disks moves.
        #[arg(long)]
        no_disk_moves: bool,
        /// Submit the moves as jobs and wait for them.
        #[arg(long, short = 'X')]
        execute: bool,
        #[arg(long, value_enum, default_value_t = Priority::Normal)]
        priority: Priority,
        /// Only this node group (hbal -G); without it every group is balanced on its own.
        #[arg(long, short = 'G')]
        group: Option<String>,
    },
    /// Checks the configuration against every node.
    Verify {
        #[command(flatten)]
        job: JobOpts,
    },
    /// Finds instances whose disks should be active but are not (a node rebooted) and
    /// activates them, one job each; reports unreachable nodes, missing volumes and DRBD
    /// split brains (never resolved here).
    VerifyDisks {
        /// Only the instances of this node group.
        #[arg(long, short = 'g')]
        group: Option<String>,
        #[arg(long, value_enum, default_value_t = Priority::Normal)]
        priority: Priority,
    },
    /// Destroys the cluster (only the master left, no instances).
    Destroy {
        /// Required: you really mean it.
        #[arg(long)]
        yes_do_it: bool,
    },
    /// Changes the cluster's settings and parameters (gnt-cluster modify).
    Modify(crate::commands::cluster_modify::ModifyArgs),
    /// Prints the master node's name.
    Getmaster,
    /// Brings the floating master IP up on the master node (gnt-cluster activate-master-ip).
    ActivateMasterIp {
        #[command(flatten)]
        job: JobOpts,
    },
    /// Takes the floating master IP down (gnt-cluster deactivate-master-ip).
    DeactivateMasterIp {
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves the master of a replicated cluster to another master candidate (planned
    /// maintenance): the master steps down and NODE (or the first candidate to stand) leads.
    MasterFailover {
        /// The candidate to become master.
        #[arg(long)]
        to: Option<String>,
    },
    /// Two-node recovery of a replicated cluster that lost its quorum: this node becomes the
    /// only voter in a new epoch and the master; the other candidates are cut off (offline,
    /// no longer candidates) and must be added again (`node modify --master-candidate yes`).
    /// Until an admin confirms a cut-off node is off, its instances are not failed over or
    /// started elsewhere. Run it on the node that is to go on.
    ForceSingle {
        /// Required for the recovery: you checked that the other node is down or cut off.
        #[arg(long, required_unless_present = "confirm_off")]
        yes_do_it: bool,
        /// Instead: confirm that NODE, cut off earlier, is off (its instances may be failed
        /// over and started elsewhere).
        #[arg(long, value_name = "NODE", conflicts_with = "yes_do_it")]
        confirm_off: Option<String>,
    },
    /// Adds tags to the cluster.
    AddTags {
        tags: Vec<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Removes tags from the cluster (each must be there).
    RemoveTags {
        tags: Vec<String>,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Lists the cluster's tags.
    ListTags,
    /// The job queue's drain flag: while drained, new jobs are refused (running and queued
    /// ones go on), as gnt-cluster queue.
    #[command(subcommand)]
    Queue(crate::commands::cluster_modify::QueueCmd),
    /// Prints the versions of the software, the protocol and the configuration.
    Version,
    /// Prints the whole configuration as JSON (backup, debugging).
    ExportConfig,
    /// Creates a state directory's config store from a JSON export (offline).
    ImportConfig { file: PathBuf },
    /// The watcher: pause [DURATION], continue, info, run (one pass now).
    #[command(subcommand)]
    Watcher(crate::commands::watcher::WatcherCmd),
    /// Renews the cluster's certificates while instances run (gnt-cluster renew-crypto).
    RenewCrypto(crate::commands::cluster_crypto::RenewCryptoArgs),
}

pub async fn run(dir: &Path, cmd: ClusterCmd) -> CliResult<u8> {
    match cmd {
        ClusterCmd::Init {
            name,
            node_name,
            address,
            secondary_ip,
            port,
            file_storage_dir,
            shared_file_storage_dir,
            enabled_hypervisors,
            enabled_disk_templates,
            hypervisor_parameters,
            mac_prefix,
            vg_name,
            backend_parameters,
            nic_parameters,
            fake_memory,
            no_start,
            replicated,
        } => {
            let node_name = match node_name {
                Some(n) => n,
                None => hostname()
                    .ok_or_else(|| usage("cannot tell the host name; give --node-name"))?,
            };
            let primary_ip = address
                .parse()
                .map_err(|_| usage(format!("invalid IP address '{address}'")))?;
            let secondary_ip = match secondary_ip {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| usage(format!("invalid IP address '{s}'")))?,
                ),
                None => None,
            };
            fn words<T: std::str::FromStr<Err = maguey_model::VocabError>>(
                s: &str,
            ) -> Result<Vec<T>, crate::CliError> {
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(crate::input::word)
                    .collect()
            }
            let params = maguey_bootstrap::init::InitParams {
                state_dir: dir.to_path_buf(),
                cluster_name: name.clone(),
                node_name,
                primary_ip,
                secondary_ip,
                port,
                file_storage_dir,
                shared_file_storage_dir,
                enabled_hypervisors: words(&enabled_hypervisors)?,
                enabled_disk_templates: words(&enabled_disk_templates)?,
                hvparams: crate::commands::cluster_modify::hv_params(&hypervisor_parameters)?
                    .into_iter()
                    .map(|(hv, p)| Ok((crate::input::word(&hv)?, p)))
                    .collect::<CliResult<_>>()?,
                mac_prefix,
                beparams: kv(&backend_parameters, "-B")?,
                nicparams: kv(&nic_parameters, "-N")?,
                fake_memory_mib: fake_memory,
                fake_cpus: None,
            };
            maguey_bootstrap::init::init_cluster_with_vg(&params, &vg_name)
                .map_err(|e| usage(format!("{e:#}")))?;
            if replicated {
                maguey_bootstrap::files::mark_replicated(dir)
                    .map_err(|e| CliError::Other(format!("{e:#}")))?;
            }
            if !no_start {
                // A packaged node: systemd runs magueyd (docs/install.md); elsewhere, a fork.
                if maguey_bootstrap::systemd::manages(dir) {
                    maguey_bootstrap::systemd::enable_and_start()
                } else {
                    maguey_bootstrap::spawn_daemon(dir, &[]).map(|_| ())
                }
                .map_err(|e| CliError::Other(format!("{e:#}")))?;
                let c = client(dir)?;
                c.wait_for_master(std::time::Duration::from_secs(30))
                    .await
                    .map_err(|e| {
                        CliError::Unreachable(format!(
                            "the master at {} did not answer: {e}",
                            c.base_url()
                        ))
                    })?;
            }
            println!("cluster {name} initialised in {}", dir.display());
            Ok(0)
        }
        ClusterCmd::ForceSingle {
            yes_do_it: _,
            confirm_off,
        } => {
            let c = match (&confirm_off, crate::master::local_candidate(dir)) {
                (None, None) => {
                    return Err(usage(
                        "force-single runs on a master candidate of a replicated cluster \
                         (MAGUEY_DIR: its state directory)",
                    ))
                }
                _ => client(dir)?,
            };
            let r = c.force_single(confirm_off.as_deref()).await?;
            match confirm_off {
                Some(node) => println!(
                    "node {node} is confirmed off: its instances may be failed over and started \
                     elsewhere"
                ),
                None => {
                    let cut: Vec<&str> = r["cut_off"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    println!(
                        "{} is the only voter now (term {}) and becomes the master; cut off: {}",
                        r["master"].as_str().unwrap_or("this node"),
                        r["term"],
                        if cut.is_empty() {
                            "none".to_string()
                        } else {
                            cut.join(", ")
                        }
                    );
                }
            }
            Ok(0)
        }
        ClusterCmd::MasterFailover { to } => {
            let c = client(dir)?;
            let r = c.master_failover(to.as_deref()).await?;
            println!(
                "the master is now {}",
                r["master"].as_str().unwrap_or("unknown")
            );
            Ok(0)
        }
        ClusterCmd::Info { output } => {
            let c = client(dir)?;
            let cfg = c.config().await?;
            let master = cfg
                .master_node()
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let info = json!({
                "Cluster name": cfg.cluster.cluster_name,
                "Cluster UUID": cfg.cluster.uuid,
                "Master node": master,
                "Config serial": cfg.serial_no,
                "Node daemon port": cfg.cluster.rpc_port,
                "MAC prefix": cfg.cluster.mac_prefix,
                "File storage dir": cfg.cluster.file_storage_dir,
                "Shared file storage dir": cfg.cluster.shared_file_storage_dir,
                "Volume group": cfg.cluster.vg_name,
                "DRBD usermode helper": cfg.cluster.drbd_usermode_helper,
                "Reserved LVs": cfg.cluster.reserved_lvs,
                "Default iallocator": cfg.cluster.default_iallocator,
                "Enabled hypervisors": cfg.cluster.enabled_hypervisors,
                "Enabled disk templates": cfg.cluster.enabled_disk_templates,
                "Candidate pool size": cfg.cluster.candidate_pool_size,
                "CA fingerprint": cfg.cluster.ca_fingerprint,
                "Default backend parameters": cfg.cluster.beparams_default(),
                "Default NIC parameters": cfg.cluster.nicparams_default(),
                "Default node parameters": cfg.cluster.ndparams,
                "Hypervisor parameters": cfg.cluster.hvparams,
                "Instance policy": cfg.ipolicy_for_group(None),
                "Nodes": cfg.nodes.len(),
                "Instances": cfg.instances.len(),
            });
            let mut info = info;
            if cfg.cluster.replicated {
                // The Raft view of a replicated master (docs/replication.md).
                if let (Ok(r), Some(map)) = (c.replication().await, info.as_object_mut()) {
                    map.insert("Replication".into(), r);
                }
            }
            if output == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                );
            } else {
                print_info(&info, 0);
            }
            Ok(0)
        }
        ClusterCmd::Balance {
            max_moves,
            min_gain,
            no_disk_moves,
            execute,
            priority: p,
            group,
        } => {
            crate::commands::balance::run(
                &client(dir)?,
                crate::commands::balance::Options {
                    max_moves,
                    min_gain,
                    no_disk_moves,
                    execute,
                    priority: priority(p),
                    group,
                },
            )
            .await
        }
        ClusterCmd::Verify { job } => {
            let c = client(dir)?;
            let Some(j) = run_job(
                &c,
                vec![OpCode::ClusterVerify(maguey_model::OpClusterVerify {
                    skip_checks: vec![],
                })],
                job,
            )
            .await?
            else {
                return Ok(0);
            };
            let ok = j
                .opresult
                .first()
                .and_then(|r| r.get("ok"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(if ok { 0 } else { 1 })
        }
        ClusterCmd::VerifyDisks { group, priority: p } => {
            let c = client(dir)?;
            verify_disks(&c, group, p).await
        }
        ClusterCmd::Destroy { yes_do_it } => {
            if !yes_do_it {
                return Err(usage(
                    "destroying the cluster removes its state for good; add --yes-do-it",
                ));
            }
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::ClusterDestroy(maguey_model::OpClusterDestroy {})],
                JobOpts {
                    submit: false,
                    priority: Priority::Normal,
                },
            )
            .await?;
            println!("cluster destroyed");
            Ok(0)
        }
        ClusterCmd::Watcher(w) => crate::commands::watcher::run(dir, w).await,
        ClusterCmd::RenewCrypto(a) => crate::commands::cluster_crypto::run(dir, a).await,
        ClusterCmd::Modify(a) => crate::commands::cluster_modify::run(dir, a).await,
        ClusterCmd::AddTags { tags, job } => {
            crate::commands::tags::run(dir, TagKind::Cluster, None, TagAction::Add, tags, job).await
        }
        ClusterCmd::RemoveTags { tags, job } => {
            crate::commands::tags::run(dir, TagKind::Cluster, None, TagAction::Remove, tags, job)
                .await
        }
        ClusterCmd::ListTags => {
            crate::commands::tags::run(dir, TagKind::Cluster, None, TagAction::List, vec![], NO_JOB)
                .await
        }
        ClusterCmd::Getmaster => crate::commands::cluster_modify::getmaster(dir).await,
        ClusterCmd::ActivateMasterIp { job } => {
            crate::commands::cluster_modify::master_ip(dir, true, job).await
        }
        ClusterCmd::DeactivateMasterIp { job } => {
            crate::commands::cluster_modify::master_ip(dir, false, job).await
        }
        ClusterCmd::Queue(q) => crate::commands::cluster_modify::queue(dir, q).await,
        ClusterCmd::Version => crate::commands::cluster_modify::version(dir).await,
        ClusterCmd::ExportConfig => {
            let c = client(dir)?;
            let cfg = c.config().await?;
            println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
            Ok(0)
        }
        ClusterCmd::ImportConfig { file } => {
            let json = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("{}: {e}", file.display())))?;
            maguey_config::ConfigStore::import_json(
                &maguey_bootstrap::files::config_path(dir),
                &json,
            )
            .map_err(|e| usage(format!("import: {e}")))?;
            println!("config imported into {}", dir.display());
            Ok(0)
        }
    }
}

/// `cluster verify-disks` (Ganeti's gnt-cluster verify-disks): OP_CLUSTER_VERIFY_DISKS, then
/// one OP_INSTANCE_ACTIVATE_DISKS job per instance whose disks are down. Exit 1 when a node
/// could not be asked, an activation failed or volumes are missing.
async fn verify_disks(c: &MasterClient, group: Option<String>, p: Priority) -> CliResult<u8> {
    let opts = || JobOpts {
        submit: false,
        priority: p,
    };
    let Some(j) = run_job(
        c,
        vec![OpCode::ClusterVerifyDisks(
            maguey_model::OpClusterVerifyDisks { group_name: group },
        )],
        opts(),
    )
    .await?
    else {
        return Ok(0);
    };
    let r = j.opresult.first().cloned().unwrap_or(Value::Null);
    let mut code = 0u8;
    let bad_nodes = r["bad_nodes"].as_object().cloned().unwrap_or_default();
    for (node, err) in &bad_nodes {
        let text = err
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| err.to_string());
        println!("Error gathering data on node {node}: {text}");
        code = 1;
    }
    if !bad_nodes.is_empty() {
        println!("You need to fix these nodes first before fixing instances");
    }
    let missing = r["missing_disks"].as_object().cloned().unwrap_or_default();
    let instances: Vec<String> = r["offline_disk_instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .filter(|i| !missing.contains_key(i))
        .collect();
    for inst in &instances {
        println!("Activating disks for instance '{inst}'");
        let op = OpCode::InstanceActivateDisks(maguey_model::OpInstanceActivateDisks {
            instance_name: inst.clone(),
            ignore_size: false,
            wait_for_sync: false,
            resolve_split_brain: false,
        });
        match run_job(c, vec![op], opts()).await {
            Ok(Some(j)) => {
                for line in activated_disks(j.opresult.first()) {
                    println!("{line}");
                }
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!(
                    "Error activating disks for instance {inst}: {}",
                    e.message()
                );
                code = 1;
            }
        }
    }
    if let Some(sb) = r["standalone_disks"].as_object() {
        for (inst, lines) in sb {
            for l in lines.as_array().into_iter().flatten() {
                println!(
                    "Instance {inst}: {}",
                    l.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| l.to_string())
                );
            }
        }
    }
    if !missing.is_empty() {
        for (inst, vols) in &missing {
            let vols: Vec<(String, String)> = vols
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| Some((v[0].as_str()?.to_string(), v[1].as_str()?.to_string())))
                .collect();
            if vols.iter().all(|(n, _)| bad_nodes.contains_key(n)) {
                println!("Instance {inst} cannot be verified as it lives on broken nodes");
                continue;
            }
            println!("Instance {inst} has missing logical volumes:");
            for (node, vol) in vols {
                if bad_nodes.contains_key(&node) {
                    println!("\tbroken node {node} /dev/{vol}");
                } else {
                    println!("\t{node} /dev/{vol}");
                }
            }
        }
        println!(
            "You need to replace or recreate disks for all the above instances if this \
             message persists after fixing broken nodes."
        );
        code = 1;
    } else if instances.is_empty() {
        println!("No disks need to be activated.");
    }
    Ok(code)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
