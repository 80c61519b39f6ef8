//! `maguey group` (gnt-group): node groups, their allocation policy, parameters, instance
//! policy, nodes and tags.

use crate::args::JobOpts;
use crate::commands::object::{self, Object, ObjectCmd};
use crate::input::{kv, name_ok, usage};
use crate::master::{client, run_job};
use crate::CliResult;
use clap::{Args, Subcommand};
use maguey_client::Resource;
use maguey_model::{IPolicyChange, ISpec, MinMax, OpCode, OrDefault, Params, TagKind};
use std::collections::BTreeMap;
use std::path::Path;

const OBJECT: Object = Object {
    resource: Resource::Group,
    tag_kind: TagKind::NodeGroup,
    noun: "group",
    default_fields: GROUP_DEFAULT_FIELDS,
};

const GROUP_DEFAULT_FIELDS: &[&str] = &["name", "node_cnt", "pinst_cnt", "alloc_policy"];

/// Ganeti's instance policy options (group add and modify).
#[derive(Debug, Args, Clone, Default)]
pub struct IPolicyOpts {
    /// Memory bounds, `min=N,max=N` (MiB).
    #[arg(long = "specs-mem-size")]
    pub mem_size: Option<String>,
    /// CPU count bounds, `min=N,max=N`.
    #[arg(long = "specs-cpu-count")]
    pub cpu_count: Option<String>,
    /// Disk count bounds, `min=N,max=N`.
    #[arg(long = "specs-disk-count")]
    pub disk_count: Option<String>,
    /// Size bounds of each disk, `min=N,max=N` (MiB).
    #[arg(long = "specs-disk-size")]
    pub disk_size: Option<String>,
    /// NIC count bounds, `min=N,max=N`.
    #[arg(long = "specs-nic-count")]
    pub nic_count: Option<String>,
    /// Spindle use bounds, `min=N,max=N`.
    #[arg(long = "specs-spindle-use")]
    pub spindle_use: Option<String>,
    /// The whole min/max list as JSON, or `default` (inherit from the cluster).
    #[arg(long = "ipolicy-bounds-specs")]
    pub bounds: Option<String>,
    /// Allowed disk templates (comma-separated), or `default`.
    #[arg(long = "ipolicy-disk-templates")]
    pub disk_templates: Option<String>,
    /// vCPUs per physical CPU, or `default`.
    #[arg(long = "ipolicy-vcpu-ratio")]
    pub vcpu_ratio: Option<String>,
    /// Instances per spindle, or `default`.
    #[arg(long = "ipolicy-spindle-ratio")]
    pub spindle_ratio: Option<String>,
}

fn or_default<T>(
    v: &Option<String>,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> CliResult<Option<OrDefault<T>>> {
    match v.as_deref() {
        None => Ok(None),
        Some("default") => Ok(Some(OrDefault::Default)),
        Some(s) => parse(s)
            .map(|v| Some(OrDefault::Value(v)))
            .map_err(|e| usage(format!("{what}: {e}"))),
    }
}

impl IPolicyOpts {
    /// The change these options ask for.
    pub fn change(&self) -> CliResult<IPolicyChange> {
        let mut c = IPolicyChange {
            minmax: or_default(
                &self.bounds,
                "--ipolicy-bounds-specs",
                crate::commands::ipolicy_opts::parse_bounds,
            )?,
            disk_templates: or_default(&self.disk_templates, "--ipolicy-disk-templates", |s| {
                s.split(',')
                    .map(|t| {
                        t.trim()
                            .parse()
                            .map_err(|e: maguey_model::VocabError| e.to_string())
                    })
                    .collect()
            })?,
            vcpu_ratio: or_default(&self.vcpu_ratio, "--ipolicy-vcpu-ratio", |s| {
                s.parse::<f64>().map_err(|e| e.to_string())
            })?,
            spindle_ratio: or_default(&self.spindle_ratio, "--ipolicy-spindle-ratio", |s| {
                s.parse::<f64>().map_err(|e| e.to_string())
            })?,
            std: None,
        };
        let specs = [
            ("memory-size", &self.mem_size),
            ("cpu-count", &self.cpu_count),
            ("disk-count", &self.disk_count),
            ("disk-size", &self.disk_size),
            ("nic-count", &self.nic_count),
            ("spindle-use", &self.spindle_use),
        ];
        if specs.iter().any(|(_, v)| v.is_some()) {
            if c.minmax.is_some() {
                return Err(usage(
                    "--specs-* and --ipolicy-bounds-specs cannot be combined",
                ));
            }
            let mut mm = MinMax {
                min: ISpec::default(),
                max: ISpec::default(),
            };
            let mut std = ISpec::default();
            for (key, v) in specs {
                let Some(v) = v else { continue };
                let p = crate::input::kv(&Some(v.clone()), &format!("--specs-{key}"))?;
                for (k, val) in p {
                    let n = val
                        .as_u64()
                        .or_else(|| val.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| {
                            usage(format!("--specs {key}: {k}={val} is not a number"))
                        })?;
                    match k.as_str() {
                        "min" => mm.min.set(key, Some(n)),
                        "max" => mm.max.set(key, Some(n)),
                        // Cluster level only (the group units refuse it).
                        "std" => std.set(key, Some(n)),
                        _ => return Err(usage(format!("--specs {key}: use min=, max= or std="))),
                    };
                }
            }
            if mm != MinMax::default() {
                c.minmax = Some(OrDefault::Value(vec![mm]));
            }
            if std != ISpec::default() {
                c.std = Some(OrDefault::Value(std));
            }
        }
        Ok(c)
    }
}

/// `-D template:k=v,...` (repeatable).
fn diskparams(d: &[String]) -> CliResult<BTreeMap<String, Params>> {
    let mut out = BTreeMap::new();
    for s in d {
        let (t, rest) = s.split_once(':').unwrap_or((s.as_str(), ""));
        out.insert(t.to_string(), kv(&Some(rest.to_string()), "-D")?);
    }
    Ok(out)
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Adds a node group.
    Add {
        name: String,
        #[arg(long)]
        alloc_policy: Option<String>,
        /// Node parameters, `k=v,...`.
        #[arg(long = "node-parameters", short = 'N')]
        node_parameters: Option<String>,
        /// Disk parameters, `template:k=v,...` (repeatable).
        #[arg(short = 'D', long = "disk-parameters")]
        disk_parameters: Vec<String>,
        #[command(flatten)]
        ipolicy: IPolicyOpts,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Changes a group's allocation policy, parameters or instance policy (a value `default`
    /// removes the group's override).
    Modify {
        name: String,
        #[arg(long)]
        alloc_policy: Option<String>,
        #[arg(long = "node-parameters", short = 'N')]
        node_parameters: Option<String>,
        #[arg(short = 'D', long = "disk-parameters")]
        disk_parameters: Vec<String>,
        #[command(flatten)]
        ipolicy: IPolicyOpts,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Removes an empty group.
    Remove {
        name: String,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Renames a group.
    Rename {
        name: String,
        new_name: String,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves nodes into a group.
    AssignNodes {
        group: String,
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Even if a DRBD instance ends up with its nodes in two groups.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        job: JobOpts,
    },
    /// Moves every instance of the group to other groups (one job per instance).
    Evacuate(crate::commands::group_moves::EvacuateArgs),
    #[command(flatten)]
    Object(ObjectCmd),
}

fn policy(p: &Option<String>) -> CliResult<Option<maguey_model::AllocPolicy>> {
    p.as_deref()
        .map(|s| {
            s.parse()
                .map_err(|e: maguey_model::VocabError| usage(e.to_string()))
        })
        .transpose()
}

pub async fn run(dir: &Path, cmd: GroupCmd) -> CliResult<u8> {
    let c = client(dir)?;
    let op = match cmd {
        GroupCmd::Add {
            name,
            alloc_policy,
            node_parameters,
            disk_parameters,
            ipolicy,
            job,
        } => {
            name_ok("group", &name)?;
            let op = OpCode::GroupAdd(maguey_model::OpGroupAdd {
                group_name: name,
                alloc_policy: policy(&alloc_policy)?,
                ndparams: kv(&node_parameters, "--node-parameters")?,
                diskparams: diskparams(&disk_parameters)?,
                ipolicy: ipolicy.change()?,
                tags: Vec::new(),
            });
            (op, job)
        }
        GroupCmd::Modify {
            name,
            alloc_policy,
            node_parameters,
            disk_parameters,
            ipolicy,
            job,
        } => {
            let ip = ipolicy.change()?;
            let op = OpCode::GroupSetParams(maguey_model::OpGroupSetParams {
                group_name: name,
                alloc_policy: policy(&alloc_policy)?,
                ndparams: node_parameters
                    .is_some()
                    .then(|| kv(&node_parameters, "--node-parameters"))
                    .transpose()?,
                diskparams: (!disk_parameters.is_empty())
                    .then(|| diskparams(&disk_parameters))
                    .transpose()?,
                ipolicy: (!ip.is_empty()).then_some(ip),
            });
            (op, job)
        }
        GroupCmd::Remove { name, job } => (
            OpCode::GroupRemove(maguey_model::OpGroupRemove { group_name: name }),
            job,
        ),
        GroupCmd::Rename {
            name,
            new_name,
            job,
        } => {
            name_ok("group", &new_name)?;
            (
                OpCode::GroupRename(maguey_model::OpGroupRename {
                    group_name: name,
                    new_name,
                }),
                job,
            )
        }
        GroupCmd::AssignNodes {
            group,
            nodes,
            force,
            job,
        } => (
            OpCode::GroupAssignNodes(maguey_model::OpGroupAssignNodes {
                group_name: group,
                force,
                nodes,
            }),
            job,
        ),
        GroupCmd::Evacuate(a) => a.op()?,
        GroupCmd::Object(o) => return object::run(dir, &c, &OBJECT, o).await,
    };
    run_job(&c, vec![op.0], op.1).await?;
    Ok(0)
}
