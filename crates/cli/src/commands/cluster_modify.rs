//! `maguey cluster modify|getmaster|version` (gnt-cluster modify, getmaster, version).

use crate::args::JobOpts;
use crate::input::{kv, usage, word};
use crate::master::{client, run_job};
use crate::CliResult;
use clap::Args;
use maguey_model::{
    parse_kv_list, DiskTemplate, Hypervisor, OpClusterSetParams, OpCode, ParamKind, Params,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Flags of `cluster modify`; each one left out keeps its setting.
#[derive(Debug, Args)]
pub struct ModifyArgs {
    /// Enabled hypervisors, comma-separated (one in use by an instance cannot be disabled).
    #[arg(long)]
    enabled_hypervisors: Option<String>,
    /// Enabled disk templates, comma-separated (one in use cannot be disabled).
    #[arg(long)]
    enabled_disk_templates: Option<String>,
    /// Hypervisor parameters, HV:k=v,... (repeatable); merged into the cluster's and used by
    /// instances started afterwards, unless an instance sets the key itself.
    #[arg(short = 'H', long = "hypervisor-parameters")]
    hypervisor_parameters: Vec<String>,
    /// Backend parameters, k=v,... (`memory=SIZE` sets maxmem and minmem).
    #[arg(short = 'B', long)]
    backend_parameters: Option<String>,
    /// NIC parameters, k=v,...
    #[arg(short = 'N', long)]
    nic_parameters: Option<String>,
    /// Node parameters, k=v,...
    #[arg(long)]
    node_parameters: Option<String>,
    /// Number of master candidates the cluster keeps.
    #[arg(short = 'C', long)]
    candidate_pool_size: Option<u32>,
    /// LVM volume group of new `plain` and `drbd` disks.
    #[arg(long)]
    vg_name: Option<String>,
    /// DRBD usermode helper (absolute path; Ganeti's default /bin/true).
    #[arg(long = "drbd-usermode-helper")]
    drbd_helper: Option<String>,
    /// MAC prefix of generated addresses (three bytes).
    #[arg(long)]
    mac_prefix: Option<String>,
    /// Directory of `file` disks (cannot move while instances have `file` disks).
    #[arg(long)]
    file_storage_dir: Option<String>,
    /// Directory of `sharedfile` disks (absolute; cannot move while such disks exist).
    #[arg(long)]
    shared_file_storage_dir: Option<String>,
    /// LVs cluster verify does not report as orphans, comma-separated (empty: none).
    #[arg(long)]
    reserved_lvs: Option<String>,
    /// Default instance allocator.
    #[arg(short = 'I', long)]
    default_iallocator: Option<String>,
    /// The floating master IP, brought up on the master node (`none`: no master IP).
    #[arg(long)]
    master_ip: Option<String>,
    /// The master node's network device the master IP goes on (e.g. br0).
    #[arg(long)]
    master_netdev: Option<String>,
    /// The master IP's prefix length (default 32, IPv6 128).
    #[arg(long)]
    master_netmask: Option<u8>,
    /// The cluster's instance policy (Ganeti's --specs-*, --ipolicy-* options).
    #[command(flatten)]
    ipolicy: Box<crate::commands::ipolicy_opts::ClusterIPolicyOpts>,
    #[command(flatten)]
    job: JobOpts,
}

/// `-H HV:k=v,...` values, by hypervisor name, each checked against its hypervisor's keys.
pub fn hv_params(values: &[String]) -> CliResult<BTreeMap<String, Params>> {
    let mut out: BTreeMap<String, Params> = BTreeMap::new();
    for v in values {
        let (hv, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
        let hv: Hypervisor = word(hv.trim())?;
        let p = parse_kv_list(rest).map_err(|e| usage(format!("-H {v}: {e}")))?;
        ParamKind::Hv(hv)
            .validate(&p)
            .map_err(|e| usage(format!("-H {v}: {e}")))?;
        let entry = out.entry(hv.as_str().to_string()).or_default();
        for (k, val) in p {
            if entry.insert(k.clone(), val).is_some() {
                return Err(usage(format!("-H: {hv} key '{k}' given twice")));
            }
        }
    }
    Ok(out)
}

fn list<T: std::str::FromStr<Err = maguey_model::VocabError>>(
    s: &Option<String>,
) -> CliResult<Option<Vec<T>>> {
    s.as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(word)
                .collect()
        })
        .transpose()
}

/// Parses `k=v` flags and checks them against their kind (usage error before any job).
fn params(s: &Option<String>, what: &str, kind: ParamKind) -> CliResult<Option<Params>> {
    if s.is_none() {
        return Ok(None);
    }
    let p = kv(s, what)?;
    kind.validate(&p)
        .map_err(|e| usage(format!("{what}: {e}")))?;
    Ok(Some(p))
}

pub async fn run(dir: &Path, a: ModifyArgs) -> CliResult<u8> {
    let hv = hv_params(&a.hypervisor_parameters)?;
    let ipolicy = a.ipolicy.change()?;
    let op = OpClusterSetParams {
        vg_name: a.vg_name,
        enabled_hypervisors: list::<Hypervisor>(&a.enabled_hypervisors)?,
        enabled_disk_templates: list::<DiskTemplate>(&a.enabled_disk_templates)?,
        hvparams: (!hv.is_empty()).then_some(hv),
        beparams: params(&a.backend_parameters, "-B", ParamKind::Be)?,
        nicparams: params(&a.nic_parameters, "-N", ParamKind::Nic)?,
        ndparams: params(&a.node_parameters, "--node-parameters", ParamKind::Nd)?,
        candidate_pool_size: a.candidate_pool_size,
        drbd_helper: a.drbd_helper,
        mac_prefix: a.mac_prefix,
        file_storage_dir: a.file_storage_dir,
        shared_file_storage_dir: a.shared_file_storage_dir,
        reserved_lvs: a.reserved_lvs.map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        }),
        default_iallocator: a.default_iallocator,
        ipolicy: (!ipolicy.is_empty()).then_some(ipolicy),
        master_ip: a.master_ip,
        master_netdev: a.master_netdev,
        master_netmask: a.master_netmask,
    };
    if op == OpClusterSetParams::default() {
        return Err(usage(
            "no parameters to change (see maguey cluster modify --help)",
        ));
    }
    let c = client(dir)?;
    let Some(j) = run_job(&c, vec![OpCode::ClusterSetParams(op)], a.job).await? else {
        return Ok(0);
    };
    let changed = j
        .opresult
        .first()
        .and_then(|r| r.as_array())
        .map(Vec::len)
        .unwrap_or(0);
    if changed == 0 {
        println!("nothing changed");
    }
    Ok(0)
}

/// `cluster activate-master-ip|deactivate-master-ip`: the floating master IP up or down on
/// the master node.
pub async fn master_ip(dir: &Path, up: bool, job: JobOpts) -> CliResult<u8> {
    let op = if up {
        OpCode::ClusterActivateMasterIp(Default::default())
    } else {
        OpCode::ClusterDeactivateMasterIp(Default::default())
    };
    let c = client(dir)?;
    run_job(&c, vec![op], job).await?;
    Ok(0)
}

/// `cluster getmaster`: the master node's name, as the ssconf of the state directory names
/// it (as Ganeti's, it works on any node, also while the master is down); without an
/// ssconf, the master's config says.
pub async fn getmaster(dir: &Path) -> CliResult<u8> {
    let ssconf = std::fs::read(dir.join("ssconf.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<maguey_model::Ssconf>(&b).ok());
    if let Some(name) = ssconf.map(|s| s.master_node).filter(|m| !m.is_empty()) {
        println!("{name}");
        return Ok(0);
    }
    let cfg = client(dir)?.config().await?;
    let m = cfg
        .master_node()
        .ok_or_else(|| crate::CliError::Other("the configuration names no master".into()))?;
    println!("{}", m.name);
    Ok(0)
}

/// `cluster version`: this program's versions, and the master's configuration format.
pub async fn version(dir: &Path) -> CliResult<u8> {
    println!("Software version: {}", maguey_model::VERSION);
    println!("Internode protocol: {}", maguey_model::PROTOCOL_VERSION);
    println!("Configuration format: {}", maguey_model::CONFIG_VERSION);
    println!("OS api version: 20");
    let cfg = client(dir)?.config().await?;
    println!("Master configuration format: {}", cfg.version);
    Ok(0)
}

/// `cluster queue ...`.
#[derive(Debug, clap::Subcommand)]
pub enum QueueCmd {
    /// Sets the drain flag: new jobs are refused.
    Drain,
    /// Clears the drain flag.
    Undrain,
    /// Shows the drain flag and the jobs by status.
    Info {
        #[arg(long, value_enum, default_value_t = crate::args::Format::Table)]
        output: crate::args::Format,
    },
}

pub async fn queue(dir: &Path, q: QueueCmd) -> CliResult<u8> {
    let c = client(dir)?;
    let (info, output) = match q {
        QueueCmd::Drain => (c.set_queue_drained(true).await?, None),
        QueueCmd::Undrain => (c.set_queue_drained(false).await?, None),
        QueueCmd::Info { output } => (c.queue_info().await?, Some(output)),
    };
    if output == Some(crate::args::Format::Json) {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).unwrap_or_default()
        );
        return Ok(0);
    }
    let drained = info["drained"].as_bool().unwrap_or(false);
    println!(
        "The drain flag is {}",
        if drained { "set" } else { "unset" }
    );
    if output.is_some() {
        for (status, n) in info["jobs"].as_object().into_iter().flatten() {
            println!("  {status}: {n}");
        }
    }
    Ok(0)
}
