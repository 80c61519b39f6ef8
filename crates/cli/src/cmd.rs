//! Command implementations: raw flags → validated opcodes → jobs.

use crate::args::*;
use crate::output::{fields, print_info, print_rows};
use crate::wait::finish;
use crate::{CliError, CliResult};
use maguey_daemon::api::JoinTokenRequest;
use maguey_daemon::client::MasterClient;
use maguey_model::{
    names::validate_hostname, parse_kv_list, units::parse_size_mib, DiskSpec, NicSpec, OpCode,
    Params, PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL,
};
use maguey_ops::query::Resource;
use serde_json::{json, Value};
use std::path::Path;

const INSTANCE_DEFAULT_FIELDS: &[&str] =
    &["name", "hypervisor", "os", "pnode", "status", "oper_ram"];
const NODE_DEFAULT_FIELDS: &[&str] = &[
    "name",
    "dtotal",
    "dfree",
    "mtotal",
    "mnode",
    "mfree",
    "pinst_cnt",
    "sinst_cnt",
];

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// A word of the model's vocabulary (template, mode, ...); an unknown one is a usage error
/// with the model's message.
fn word<T: std::str::FromStr<Err = maguey_model::VocabError>>(s: &str) -> Result<T, CliError> {
    s.parse()
        .map_err(|e: maguey_model::VocabError| usage(e.to_string()))
}

/// `--cluster URL`: the master's Remote API, set once by [`run`].
static CLUSTER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn client(dir: &Path) -> CliResult<MasterClient> {
    match CLUSTER.get().cloned().flatten() {
        Some(url) => Ok(MasterClient::remote_from_env(&url)?),
        None => Ok(MasterClient::from_state_dir(dir)?),
    }
}

fn priority(p: Priority) -> i32 {
    match p {
        Priority::Low => PRIORITY_LOW,
        Priority::Normal => PRIORITY_NORMAL,
        Priority::High => PRIORITY_HIGH,
    }
}

/// Submits one job; waits for it and streams its log unless `--submit`.
async fn run_job(
    c: &MasterClient,
    ops: Vec<OpCode>,
    opts: JobOpts,
) -> CliResult<Option<maguey_model::Job>> {
    let id = c.submit(ops, priority(opts.priority)).await?;
    if opts.submit {
        println!("{id}");
        return Ok(None);
    }
    finish(c, id).await.map(Some)
}

fn kv(s: &Option<String>, what: &str) -> CliResult<Params> {
    match s {
        None => Ok(Params::new()),
        Some(s) => parse_kv_list(s).map_err(|e| usage(format!("{what}: {e}"))),
    }
}

fn name_ok(kind: &str, name: &str) -> CliResult {
    validate_hostname(name).map_err(|e| usage(format!("invalid {kind} name: {e}")))
}

pub async fn run(cli: Cli) -> CliResult<u8> {
    let _ = CLUSTER.set(cli.cluster.clone());
    let dir = cli.state_dir.clone();
    match cli.command {
        Top::Cluster(c) => cluster(&dir, c).await,
        Top::Node(c) => node(&dir, c).await,
        Top::Instance(c) => instance(&dir, c).await,
        Top::Job(c) => job(&dir, c).await,
        Top::Debug(DebugCmd::Delay {
            duration,
            nodes,
            repeat,
            fail,
            job,
        }) => {
            let c = client(&dir)?;
            run_job(
                &c,
                vec![OpCode::TestDelay(maguey_model::OpTestDelay {
                    duration,
                    on_master: true,
                    on_nodes: nodes,
                    repeat,
                    fail,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        Top::Plan(mut p) => {
            // Without --text, plan on the live cluster: its description goes through the
            // placement engine's own loader and text writer into a temporary htools file.
            let live =
                tempfile::NamedTempFile::new().map_err(|e| CliError::Other(e.to_string()))?;
            if let Some(text @ None) = maguey_placement::cli::text_arg(&mut p) {
                let c = client(&dir)?;
                let desc = c.cluster_description().await?;
                let mut cluster = maguey_placement::ialloc::parse_cluster(&desc.to_string())
                    .map_err(|e| CliError::Other(format!("reading the live cluster: {e}")))?;
                // The iallocator description has no master flag; hroller's plan needs it
                // (the text format writes it as `M`).
                let cfg = c.config().await?;
                if let Some(m) = cfg.master_node() {
                    for n in cluster.nodes.iter_mut().filter(|n| n.name == m.name) {
                        n.master = true;
                    }
                }
                std::fs::write(live.path(), maguey_placement::text::write_text(&cluster))
                    .map_err(|e| CliError::Other(e.to_string()))?;
                *text = Some(live.path().to_path_buf());
            }
            let mut out = std::io::stdout();
            let code = maguey_placement::cli::run(p, &mut out)
                .map_err(|e| CliError::Usage(format!("{e:#}")))?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Top::Lab(l) => lab(l).await,
    }
}

async fn lab(cmd: LabCmd) -> CliResult<u8> {
    match cmd {
        LabCmd::Up(opts) => {
            let lab = maguey_lab::up(&opts)
                .await
                .map_err(|e| CliError::Other(format!("lab up: {e:#}")))?;
            println!(
                "lab cluster '{}' is up with {} nodes in {}",
                lab.cluster_name,
                lab.nodes.len(),
                opts.dir.display()
            );
            println!(
                "point the CLI at it with: eval \"$(maguey lab env --dir {})\"",
                opts.dir.display()
            );
            Ok(0)
        }
        LabCmd::Env { dir } => {
            print!(
                "{}",
                maguey_lab::env(&dir).map_err(|e| usage(format!("{e:#}")))?
            );
            Ok(0)
        }
        LabCmd::Down { dir } => {
            let n = maguey_lab::down(&dir).map_err(|e| usage(format!("{e:#}")))?;
            println!("stopped {n} daemons");
            Ok(0)
        }
    }
}

async fn cluster(dir: &Path, cmd: ClusterCmd) -> CliResult<u8> {
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
            mac_prefix,
            vg_name,
            backend_parameters,
            nic_parameters,
            fake_memory,
            no_start,
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
            let split = |s: &str| {
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            let params = maguey_daemon::init::InitParams {
                state_dir: dir.to_path_buf(),
                cluster_name: name.clone(),
                node_name,
                primary_ip,
                secondary_ip,
                port,
                file_storage_dir,
                shared_file_storage_dir,
                enabled_hypervisors: split(&enabled_hypervisors),
                enabled_disk_templates: split(&enabled_disk_templates),
                mac_prefix,
                beparams: kv(&backend_parameters, "-B")?,
                nicparams: kv(&nic_parameters, "-N")?,
                fake_memory_mib: fake_memory,
                fake_cpus: None,
            };
            maguey_daemon::init::init_cluster_with_vg(&params, &vg_name)
                .map_err(|e| usage(format!("{e:#}")))?;
            if !no_start {
                maguey_lab::spawn_daemon(dir, &[])
                    .map_err(|e| CliError::Other(format!("{e:#}")))?;
                let c = client(dir)?;
                maguey_lab::wait_for_master(&c, std::time::Duration::from_secs(30))
                    .await
                    .map_err(|e| CliError::Unreachable(format!("{e:#}")))?;
            }
            println!("cluster {name} initialised in {}", dir.display());
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
                "Enabled hypervisors": cfg.cluster.enabled_hypervisors,
                "Enabled disk templates": cfg.cluster.enabled_disk_templates,
                "Candidate pool size": cfg.cluster.candidate_pool_size,
                "CA fingerprint": cfg.cluster.ca_fingerprint,
                "Default backend parameters": cfg.cluster.beparams_default(),
                "Default NIC parameters": cfg.cluster.nicparams_default(),
                "Nodes": cfg.nodes.len(),
                "Instances": cfg.instances.len(),
            });
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
        } => {
            crate::balance::run(
                &client(dir)?,
                crate::balance::Options {
                    max_moves,
                    min_gain,
                    no_disk_moves,
                    execute,
                    priority: priority(p),
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
        ClusterCmd::ExportConfig => {
            let c = client(dir)?;
            let cfg = c.config().await?;
            println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
            Ok(0)
        }
        ClusterCmd::ImportConfig { file } => {
            let json = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("{}: {e}", file.display())))?;
            maguey_config::ConfigStore::import_json(&maguey_daemon::files::config_path(dir), &json)
                .map_err(|e| usage(format!("import: {e}")))?;
            println!("config imported into {}", dir.display());
            Ok(0)
        }
    }
}

/// OP_INSTANCE_ACTIVATE_DISKS's result as Ganeti prints it: `node:iv_name:device` lines.
fn activated_disks(result: Option<&Value>) -> Vec<String> {
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

/// Asks the user on the terminal, as Ganeti does before destructive operations; without a
/// terminal the answer is no (use -f).
fn confirm(question: &str) -> CliResult {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{question}\nno terminal to ask on: add -f to confirm"
        )));
    }
    print!("{question} y/[n]: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| usage(format!("reading the answer: {e}")))?;
    match line.trim() {
        "y" | "yes" | "Y" => Ok(()),
        _ => Err(usage("aborted")),
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn list(
    c: &MasterClient,
    what: Resource,
    names: Vec<String>,
    opts: &ListOpts,
    defaults: &[&str],
) -> CliResult<u8> {
    let f = fields(&opts.fields, defaults);
    let r = c.query(what, names, f).await?;
    print_rows(&r.fields, &r.rows, opts);
    Ok(0)
}

async fn list_fields(c: &MasterClient, what: &str) -> CliResult<u8> {
    for (name, desc) in c.fields(what).await? {
        println!("{name:<20} {desc}");
    }
    Ok(0)
}

async fn info(c: &MasterClient, what: Resource, names: Vec<String>) -> CliResult<u8> {
    let all: Vec<String> = c
        .fields(match what {
            Resource::Instance => "instance",
            Resource::Node => "node",
            Resource::Group => "group",
        })
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let r = c.query(what, names, all).await?;
    for row in r.rows {
        let obj: serde_json::Map<String, Value> = r.fields.iter().cloned().zip(row).collect();
        let title = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        println!(
            "{}: {title}",
            match what {
                Resource::Instance => "Instance name",
                Resource::Node => "Node name",
                Resource::Group => "Group name",
            }
        );
        print_info(&Value::Object(obj), 2);
    }
    Ok(0)
}

async fn node(dir: &Path, cmd: NodeCmd) -> CliResult<u8> {
    match cmd {
        NodeCmd::Add {
            name,
            address,
            secondary_ip,
            group,
            token_only,
        } => {
            name_ok("node", &name)?;
            let c = client(dir)?;
            let r = c
                .join_token(&JoinTokenRequest {
                    node_name: name.clone(),
                    primary_ip: address.clone(),
                    secondary_ip,
                    group,
                })
                .await?;
            if token_only {
                println!("{}", r.token);
            } else {
                println!("Join token for node {name} (valid for one hour, usable once):");
                println!("  {}", r.token);
                println!("On {name}, run:");
                println!(
                    "  magueyd --join {} --token {} --node-name {name} --listen {address}:{}",
                    r.master_url,
                    r.token,
                    r.master_url.rsplit(':').next().unwrap_or("1811")
                );
                println!(
                    "The node is added to the cluster (OP_NODE_ADD) when its daemon has joined."
                );
            }
            Ok(0)
        }
        NodeCmd::Migrate {
            name,
            target_node,
            non_live,
            iallocator,
            max_parallel,
            force: _,
            job,
        } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeMigrate(maguey_model::OpNodeMigrate {
                    node_name: name,
                    mode: non_live.then_some(maguey_model::MigrationMode::NonLive),
                    live: None,
                    target_node,
                    iallocator,
                    ignore_ipolicy: false,
                    allow_runtime_changes: true,
                    max_parallel,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        NodeCmd::Evacuate {
            name,
            primary_only,
            secondary_only,
            remote_node,
            iallocator,
            max_parallel,
            force: _,
            job,
        } => {
            let mode = if primary_only {
                maguey_model::EvacMode::PrimaryOnly
            } else if secondary_only {
                maguey_model::EvacMode::SecondaryOnly
            } else {
                maguey_model::EvacMode::All
            };
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeEvacuate(maguey_model::OpNodeEvacuate {
                    node_name: name,
                    mode,
                    remote_node,
                    iallocator,
                    early_release: false,
                    max_parallel,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        NodeCmd::Failover {
            name,
            ignore_consistency,
            force: _,
            job,
        } => node_failover(&client(dir)?, name, ignore_consistency, job).await,
        NodeCmd::Remove { name, job } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeRemove(maguey_model::OpNodeRemove {
                    node_name: name,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        NodeCmd::List { names, list: l } => {
            list(
                &client(dir)?,
                Resource::Node,
                names,
                &l,
                NODE_DEFAULT_FIELDS,
            )
            .await
        }
        NodeCmd::ListFields => list_fields(&client(dir)?, "node").await,
        NodeCmd::Info { names } => info(&client(dir)?, Resource::Node, names).await,
        NodeCmd::Modify {
            name,
            offline,
            drained,
            master_candidate,
            master_capable,
            vm_capable,
            force,
            job,
        } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::NodeSetParams(maguey_model::OpNodeSetParams {
                    node_name: name,
                    offline,
                    drained,
                    master_candidate,
                    master_capable,
                    vm_capable,
                    force,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
    }
}

/// Parses `N:k=v,...` (Ganeti's --disk/--net syntax) into (index, params).
/// `node failover`: one OP_INSTANCE_FAILOVER job per primary instance of the node (Ganeti's
/// gnt-node failover, client side). Refused, nothing submitted, when an instance has no
/// secondary node to fail over to.
async fn node_failover(
    c: &MasterClient,
    node: String,
    ignore_consistency: bool,
    opts: JobOpts,
) -> CliResult<u8> {
    let r = c
        .query(
            Resource::Node,
            vec![node.clone()],
            vec!["name".into(), "pinst_list".into()],
        )
        .await?;
    let Some(row) = r.rows.first() else {
        return Err(usage(format!("unknown node '{node}'")));
    };
    let node = row[0].as_str().unwrap_or(&node).to_string();
    let pinst: Vec<String> = row[1]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if pinst.is_empty() {
        println!("No primary instances on node {node}, exiting.");
        return Ok(0);
    }
    let r = c
        .query(
            Resource::Instance,
            pinst,
            vec!["name".into(), "snodes".into()],
        )
        .await?;
    let mut names = Vec::new();
    let mut refused = Vec::new();
    for row in &r.rows {
        let name = row[0].as_str().unwrap_or_default().to_string();
        if row[1].as_array().is_none_or(|a| a.is_empty()) {
            refused.push(name);
        } else {
            names.push(name);
        }
    }
    if !refused.is_empty() {
        return Err(CliError::Other(format!(
            "instance(s) without a secondary node cannot fail over: {} (nothing was done)",
            refused.join(", ")
        )));
    }
    let prio = priority(opts.priority);
    let mut ids = Vec::new();
    for name in names {
        let id = c
            .submit(
                vec![OpCode::InstanceFailover(maguey_model::OpInstanceFailover {
                    instance_name: name.clone(),
                    shutdown_timeout: 120,
                    ignore_consistency,
                    target_node: None,
                    iallocator: None,
                    ignore_ipolicy: false,
                    cleanup: false,
                })],
                prio,
            )
            .await?;
        println!("job {id}: failing over {name}");
        ids.push((name, id));
    }
    if opts.submit {
        return Ok(0);
    }
    let mut failed = 0;
    for (name, id) in ids {
        let job = crate::wait::follow(c, id, true).await?;
        if job.status == maguey_model::JobStatus::Success {
            println!("job {id} ({name}) succeeded");
        } else {
            let why = job
                .opresult
                .last()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default();
            println!("job {id} ({name}) {}: {why}", job.status.as_str());
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn indexed(s: &str, what: &str) -> CliResult<(usize, Params)> {
    let (idx, rest) = s.split_once(':').unwrap_or((s, ""));
    let idx: usize = idx
        .trim()
        .parse()
        .map_err(|_| usage(format!("{what} '{s}': expected N:key=value,...")))?;
    Ok((
        idx,
        parse_kv_list(rest).map_err(|e| usage(format!("{what} '{s}': {e}")))?,
    ))
}

fn in_order<T>(mut items: Vec<(usize, T)>, what: &str) -> CliResult<Vec<T>> {
    items.sort_by_key(|(i, _)| *i);
    for (pos, (i, _)) in items.iter().enumerate() {
        if *i != pos {
            return Err(usage(format!(
                "{what} indices must be 0, 1, 2, ... without gaps or repeats"
            )));
        }
    }
    Ok(items.into_iter().map(|(_, t)| t).collect())
}

fn instance_add_op(a: &InstanceAdd) -> CliResult<OpCode> {
    name_ok("instance", &a.name)?;
    let mut disks = Vec::new();
    for d in &a.disks {
        let (i, p) = indexed(d, "--disk")?;
        let mut size = None;
        let mut mode = None;
        let mut name = None;
        let mut vg = None;
        for (k, v) in p {
            let v = v.as_str().unwrap_or_default().to_string();
            match k.as_str() {
                "size" => {
                    size = Some(parse_size_mib(&v).map_err(|e| usage(format!("--disk {i}: {e}")))?)
                }
                "mode" => mode = Some(v),
                "name" => name = Some(v),
                "vg" => vg = Some(v),
                other => {
                    return Err(usage(format!(
                        "--disk {i}: unknown key '{other}' (size, mode, name, vg)"
                    )))
                }
            }
        }
        let size = size.ok_or_else(|| usage(format!("--disk {i}: size is required")))?;
        disks.push((
            i,
            DiskSpec {
                size,
                mode: mode.as_deref().map(word).transpose()?,
                name,
                vg,
            },
        ));
    }
    let disks = in_order(disks, "--disk")?;
    let mut nics = Vec::new();
    for n in &a.nets {
        let (i, p) = indexed(n, "--net")?;
        let mut spec = NicSpec::default();
        for (k, v) in p {
            let v = Some(v.as_str().unwrap_or_default().to_string());
            match k.as_str() {
                "mac" => spec.mac = v,
                "ip" => spec.ip = v,
                "mode" => spec.mode = v.as_deref().map(word).transpose()?,
                "link" => spec.link = v,
                "network" => spec.network = v,
                "name" => spec.name = v,
                other => return Err(usage(format!("--net {i}: unknown key '{other}'"))),
            }
        }
        nics.push((i, spec));
    }
    let mut nics = in_order(nics, "--net")?;
    if a.no_nics {
        if !nics.is_empty() {
            return Err(usage("--no-nics and --net exclude each other"));
        }
    } else if nics.is_empty() {
        nics.push(NicSpec::default());
    }
    let (pnode, snode) = match &a.node {
        None => (None, None),
        Some(n) => match n.split_once(':') {
            Some((p, s)) => (Some(p.to_string()), Some(s.to_string())),
            None => (Some(n.clone()), None),
        },
    };
    let (hypervisor, hvparams) = match &a.hypervisor {
        None => (None, Params::new()),
        Some(h) => {
            let (name, rest) = h.split_once(':').unwrap_or((h.as_str(), ""));
            (
                Some(name.to_string()),
                parse_kv_list(rest).map_err(|e| usage(format!("-H: {e}")))?,
            )
        }
    };
    let beparams = kv(&a.backend_parameters, "-B")?;
    maguey_model::ParamKind::Be
        .validate(&beparams)
        .map_err(|e| usage(format!("-B: {e}")))?;
    Ok(OpCode::InstanceCreate(maguey_model::OpInstanceCreate {
        instance_name: a.name.clone(),
        mode: maguey_model::InstanceCreateMode::Create,
        disk_template: word(&a.template)?,
        disks,
        nics,
        pnode,
        snode,
        os_type: a.os.clone(),
        osparams: kv(&a.os_parameters, "-O")?,
        no_install: a.no_install,
        start: !a.no_start,
        hypervisor: hypervisor.as_deref().map(word).transpose()?,
        hvparams,
        beparams,
        iallocator: a.iallocator.clone(),
        wait_for_sync: !a.no_wait_for_sync,
        tags: a
            .tags
            .as_deref()
            .map(|t| t.split(',').map(String::from).collect())
            .unwrap_or_default(),
    }))
}

async fn instance(dir: &Path, cmd: InstanceCmd) -> CliResult<u8> {
    match cmd {
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
        InstanceCmd::Info { names } => info(&client(dir)?, Resource::Instance, names).await,
        InstanceCmd::Console(a) => {
            crate::console::run(dir, CLUSTER.get().cloned().flatten(), a).await
        }
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
            force: _,
            job,
        } => {
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
        InstanceCmd::Start { name, force, job } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceStartup(maguey_model::OpInstanceStartup {
                    instance_name: name,
                    force,
                    beparams: Params::new(),
                    hvparams: Params::new(),
                    no_remember: false,
                })],
                job,
            )
            .await?;
            Ok(0)
        }
        InstanceCmd::Stop { name, timeout, job } => {
            let c = client(dir)?;
            run_job(
                &c,
                vec![OpCode::InstanceShutdown(maguey_model::OpInstanceShutdown {
                    instance_name: name,
                    timeout,
                    no_remember: false,
                })],
                job,
            )
            .await?;
            Ok(0)
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
                    },
                )],
                job,
            )
            .await?;
            Ok(0)
        }
    }
}

async fn job(dir: &Path, cmd: JobCmd) -> CliResult<u8> {
    let c = client(dir)?;
    match cmd {
        JobCmd::List { archived, list: l } => {
            let jobs = c.jobs(archived).await?;
            let fields = fields(&l.fields, &["id", "status", "summary"]);
            const KNOWN: &[&str] = &[
                "id",
                "status",
                "summary",
                "priority",
                "received_ts",
                "start_ts",
                "end_ts",
            ];
            if let Some(f) = fields.iter().find(|f| !KNOWN.contains(&f.as_str())) {
                return Err(usage(format!(
                    "unknown job field '{f}' (known: {})",
                    KNOWN.join(", ")
                )));
            }
            let rows: Vec<Vec<Value>> = jobs
                .iter()
                .map(|j| {
                    fields
                        .iter()
                        .map(|f| j.get(f).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            print_rows(&fields, &rows, &l);
            Ok(0)
        }
        JobCmd::Info { ids } => {
            for id in ids {
                let j = c.job(id).await?;
                println!("Job ID: {}", j.id);
                println!("  Status: {}", j.status.as_str());
                println!("  Priority: {}", j.priority);
                println!("  Received: {}", j.received_ts);
                println!(
                    "  Started: {}",
                    j.start_ts
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                println!(
                    "  Ended: {}",
                    j.end_ts
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
                println!("  Opcodes:");
                for (i, op) in j.ops.iter().enumerate() {
                    println!(
                        "    - {} [{}]",
                        j.summary
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| op.op_id().into()),
                        j.opstatus.get(i).map(|s| s.as_str()).unwrap_or("?")
                    );
                    println!(
                        "      Result: {}",
                        j.opresult.get(i).cloned().unwrap_or(Value::Null)
                    );
                    for e in j.oplog.get(i).into_iter().flatten() {
                        println!("      {} {}", e.timestamp, e.message);
                    }
                }
            }
            Ok(0)
        }
        JobCmd::Watch { id } => {
            let j = crate::wait::follow(&c, id, false).await?;
            println!("job {id}: {}", j.status.as_str());
            Ok(if j.status == maguey_model::JobStatus::Success {
                0
            } else {
                1
            })
        }
        JobCmd::Cancel { id } => {
            let r = c.cancel(id).await?;
            let ok = r.get("canceled").and_then(Value::as_bool).unwrap_or(false);
            println!("{}", r.get("message").and_then(Value::as_str).unwrap_or(""));
            Ok(if ok { 0 } else { 1 })
        }
        JobCmd::Archive { age } => {
            let r = c
                .archive(std::time::Duration::from_secs_f64(age.max(0.0)))
                .await?;
            println!(
                "archived {} jobs",
                r.get("archived").cloned().unwrap_or(Value::Null)
            );
            Ok(0)
        }
    }
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
