//! `maguey instance add`: its flags and the OP_INSTANCE_CREATE they make.

use crate::args::JobOpts;
use crate::input::{kv, name_ok, usage, word};
use crate::CliResult;
use clap::Args;
use maguey_model::{parse_kv_list, units::parse_size_mib, DiskSpec, NicSpec, OpCode, Params};

#[derive(Debug, Args)]
pub struct InstanceAdd {
    pub name: String,
    /// Disk template: diskless, file, sharedfile, plain or drbd (one the cluster enables).
    #[arg(short = 't', long = "disk-template")]
    pub template: String,
    /// A disk: N:size=SIZE[,mode=rw|ro] (repeatable).
    #[arg(long = "disk")]
    pub disks: Vec<String>,
    /// Primary node, or PRIMARY:SECONDARY.
    #[arg(short = 'n', long = "node")]
    pub node: Option<String>,
    /// Allocator that picks the node(s) when -n is not given (built in: maguey, hail).
    #[arg(short = 'I', long = "iallocator")]
    pub iallocator: Option<String>,
    /// OS definition (name or name+variant).
    #[arg(short = 'o', long = "os-type")]
    pub os: Option<String>,
    #[arg(long)]
    pub no_install: bool,
    #[arg(long)]
    pub no_start: bool,
    /// `drbd`: do not wait for the initial resync of the new disks.
    #[arg(long)]
    pub no_wait_for_sync: bool,
    /// The allocator chooses nodes in this node group only.
    #[arg(short = 'g', long = "node-group")]
    pub node_group: Option<String>,
    /// Create the instance even if it breaks its group's instance policy.
    #[arg(long)]
    pub ignore_ipolicy: bool,
    /// HYPERVISOR[:k=v,...].
    #[arg(short = 'H', long)]
    pub hypervisor: Option<String>,
    /// Backend parameters k=v,... (`memory=SIZE` sets maxmem and minmem, as in Ganeti).
    #[arg(short = 'B', long)]
    pub backend_parameters: Option<String>,
    /// OS parameters k=v,...
    #[arg(short = 'O', long)]
    pub os_parameters: Option<String>,
    /// A NIC: N:k=v,... (mac, ip, mode, link, network) (repeatable).
    #[arg(long = "net")]
    pub nets: Vec<String>,
    /// No NICs.
    #[arg(long)]
    pub no_nics: bool,
    /// Tags.
    #[arg(long)]
    pub tags: Option<String>,
    #[command(flatten)]
    pub job: JobOpts,
}

/// Parses `N:k=v,...` (Ganeti's --disk/--net syntax) into (index, params).
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

pub fn instance_add_op(a: &InstanceAdd) -> CliResult<OpCode> {
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
        group_name: a.node_group.clone(),
        ignore_ipolicy: a.ignore_ipolicy,
        tags: a
            .tags
            .as_deref()
            .map(|t| t.split(',').map(String::from).collect())
            .unwrap_or_default(),
    }))
}
