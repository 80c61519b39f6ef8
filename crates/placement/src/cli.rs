//! `maguey plan ...`: the command-line entry points of the placement
//! engine (mounted by the main `maguey` binary).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};

use crate::alloc::AllocOptions;
use crate::balance::{self, BalanceOptions, BalanceResult, SearchMode};
use crate::capacity::{self, CapacityResult};
use crate::model::{Cluster, LoadOptions};
use crate::roll::{self, RollOptions};
use crate::types::{DiskTemplate, IMove};
use crate::{ialloc, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Exact,
    Fast,
    Auto,
}

#[derive(Debug, clap::Subcommand)]
pub enum PlanCommand {
    /// Compute a balancing plan (like hbal).
    Balance {
        /// Cluster state in htools text-backend format.
        #[arg(long, short = 't')]
        text: Option<PathBuf>,
        /// Maximum number of moves.
        #[arg(long, short = 'l')]
        max_moves: Option<usize>,
        /// Minimum gain per move (applies below --min-gain-limit).
        #[arg(long, short = 'g', default_value_t = 0.01)]
        min_gain: f64,
        /// Score below which --min-gain applies.
        #[arg(long, default_value_t = 0.1)]
        min_gain_limit: f64,
        /// Node group to balance (required on multi-group clusters).
        #[arg(long, short = 'G')]
        group: Option<String>,
        /// Only failovers / migrations.
        #[arg(long)]
        no_disk_moves: bool,
        /// Only replace-disks moves.
        #[arg(long)]
        no_instance_moves: bool,
        /// Only move these instances (comma-separated).
        #[arg(long, value_delimiter = ',')]
        select_instances: Vec<String>,
        /// Never move these instances (comma-separated).
        #[arg(long, value_delimiter = ',')]
        exclude_instances: Vec<String>,
        /// Extra exclusion tag prefixes (comma-separated).
        #[arg(long, value_delimiter = ',')]
        exclusion_tags: Vec<String>,
        #[arg(long)]
        ignore_soft_errors: bool,
        /// Ignore dynamic utilisation (count-like load terms).
        #[arg(long)]
        ignore_dynu: bool,
        /// Only move instances off offline nodes.
        #[arg(long)]
        evac_mode: bool,
        /// Treat these nodes as offline (comma-separated), like hbal -O.
        #[arg(long, short = 'O', value_delimiter = ',')]
        offline: Vec<String>,
        /// Search strategy.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Print the gnt-instance commands, grouped into parallel job sets.
        #[arg(long, short = 'C')]
        print_commands: bool,
        /// Write the balanced cluster state (text backend) to this file.
        #[arg(long, short = 'S')]
        save: Option<PathBuf>,
    },
    /// Answer an iallocator request (like hail).
    Allocate {
        /// The request (JSON, iallocator protocol version 2), `-` for stdin.
        request: PathBuf,
        #[arg(long)]
        ignore_soft_errors: bool,
        /// Also require global N+1 redundancy (hail's default capacity checks).
        #[arg(long)]
        capacity_checks: bool,
    },
    /// How many more instances fit (like hspace).
    Capacity {
        /// Cluster state in htools text-backend format.
        #[arg(long, short = 't')]
        text: Option<PathBuf>,
        /// Simulated cluster POLICY,NODES,DISK,MEM,CPU[,SPINDLES] (repeatable).
        #[arg(long)]
        simulate: Vec<String>,
        /// Fixed spec DISK,MEM,CPU.
        #[arg(long)]
        standard_alloc: Option<String>,
        /// Initial spec of the tiered allocation DISK,MEM,CPU.
        #[arg(long)]
        tiered_alloc: Option<String>,
        /// Disk template of the new instances.
        #[arg(long, default_value = "drbd")]
        disk_template: String,
        /// Stop after this many instances.
        #[arg(long, short = 'l')]
        max_length: Option<usize>,
        /// KEY=VALUE output like hspace --machine-readable.
        #[arg(long)]
        machine_readable: bool,
        /// Keep the cluster globally N+1 redundant after every placement
        /// (hspace's default for non-DRBD templates).
        #[arg(long)]
        capacity_checks: bool,
    },
    /// Rolling-reboot groups (like hroller).
    Roll {
        /// Cluster state in htools text-backend format.
        #[arg(long, short = 't')]
        text: Option<PathBuf>,
        #[arg(long, short = 'G')]
        group: Option<String>,
        /// Only nodes with one of these tags (comma-separated).
        #[arg(long, value_delimiter = ',')]
        node_tags: Option<Vec<String>>,
        #[arg(long)]
        skip_non_redundant: bool,
        #[arg(long)]
        ignore_non_redundant: bool,
        #[arg(long)]
        offline_maintenance: bool,
        /// Nodes rebooted together are fully evacuated (primaries migrated
        /// away, secondaries moved elsewhere), like hroller
        /// --full-evacuation.
        #[arg(long)]
        full_evacuation: bool,
        /// Print the instance moves of each group (hroller --print-moves).
        #[arg(long)]
        print_moves: bool,
        /// Only print the first group, one node per line.
        #[arg(long)]
        one_step_only: bool,
        /// Do not print the header line.
        #[arg(long)]
        no_headers: bool,
        /// Go on without a master node.
        #[arg(long)]
        force: bool,
        /// Treat these nodes as offline (comma-separated).
        #[arg(long, short = 'O', value_delimiter = ',')]
        offline: Vec<String>,
    },
}

fn read(p: &PathBuf) -> anyhow::Result<String> {
    if p.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    }
}

fn move_desc(c: &Cluster, mv: IMove, new_p: usize, new_s: Option<usize>) -> (String, Vec<String>) {
    let n = |i: usize| c.nodes[i].name.clone();
    let ns = new_s.map(n).unwrap_or_default();
    let np = n(new_p);
    match mv {
        IMove::Failover => ("f".into(), vec!["mig".into()]),
        IMove::FailoverToAny(_) => (format!("fa:{np}"), vec![format!("mig_any:{np}")]),
        IMove::FailoverAndReplace(_) => {
            (format!("f r:{ns}"), vec!["mig".into(), format!("rep:{ns}")])
        }
        IMove::ReplaceSecondary(_) => (format!("r:{ns}"), vec![format!("rep:{ns}")]),
        IMove::ReplaceAndFailover(_) => {
            (format!("r:{np} f"), vec![format!("rep:{np}"), "mig".into()])
        }
        IMove::ReplacePrimary(_) => (
            format!("f r:{np} f"),
            vec!["mig".into(), format!("rep:{np}"), "mig".into()],
        ),
    }
}

/// Write a balance result like hbal does (moves, scores, optional commands).
pub fn print_balance(
    orig: &Cluster,
    r: &BalanceResult,
    print_commands: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let c = &r.cluster;
    let imlen = orig
        .instances
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0);
    let nmlen = orig.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    let pmlen = 2 * nmlen + 1;
    let pair = |p: usize, s: Option<usize>| match s {
        Some(s) => format!("{}:{}", c.nodes[p].name, c.nodes[s].name),
        None => c.nodes[p].name.clone(),
    };
    writeln!(out, "Initial score: {:.8}", r.initial_score)?;
    writeln!(out, "Trying to minimize the CV...")?;
    for (k, m) in r.moves.iter().enumerate() {
        let (desc, _) = move_desc(c, m.mv, m.new_p, m.new_s);
        writeln!(
            out,
            "  {:3}. {:<imlen$} {:<pmlen$} => {:<pmlen$} {:12.8} a={}",
            k + 1,
            c.instances[m.instance].name,
            pair(m.old_p, m.old_s),
            pair(m.new_p, m.new_s),
            m.score,
            desc
        )?;
    }
    if r.moves.is_empty() {
        writeln!(out, "No solution found")?;
    } else {
        writeln!(
            out,
            "Cluster score improved from {:.8} to {:.8}",
            r.initial_score, r.final_score
        )?;
    }
    writeln!(out, "Solution length={}", r.moves.len())?;
    writeln!(out, "Job sets={}", r.jobsets.len())?;
    if print_commands {
        writeln!(out, "Commands to run to reach the above solution:")?;
        for (jsn, js) in r.jobsets.iter().enumerate() {
            writeln!(out)?;
            writeln!(out, "echo jobset {}, {} jobs", jsn + 1, js.len())?;
            for (sn, &mi) in js.iter().enumerate() {
                let m = &r.moves[mi];
                let inst = &c.instances[m.instance];
                let (_, cmds) = move_desc(c, m.mv, m.new_p, m.new_s);
                writeln!(out, "  echo job {}/{}", jsn + 1, sn + 1)?;
                writeln!(out, "  check")?;
                let morf = if inst.is_running() {
                    "migrate"
                } else {
                    "failover"
                };
                for cmd in cmds {
                    let line = if cmd == "mig" {
                        format!("{morf} -f {}", inst.name)
                    } else if let Some(n) = cmd.strip_prefix("mig_any:") {
                        format!("{morf} -f -n {n} {}", inst.name)
                    } else if let Some(n) = cmd.strip_prefix("rep:") {
                        format!("replace-disks -n {n} {}", inst.name)
                    } else {
                        cmd
                    };
                    writeln!(out, "  gnt-instance {line}")?;
                }
            }
        }
    }
    writeln!(out, "Final score: {:.8}", r.final_score)?;
    Ok(())
}

/// Mark nodes offline (htools' `-O`).
pub fn set_offline(c: &mut Cluster, names: &[String]) -> anyhow::Result<()> {
    for name in names {
        let n = c
            .nodes
            .iter_mut()
            .find(|n| &n.name == name)
            .ok_or_else(|| anyhow!("wrong node name set as offline: {name}"))?;
        n.offline = true;
    }
    Ok(())
}

/// Select the group to balance like hbal: required on multi-group clusters.
pub fn select_group(c: &Cluster, group: Option<&str>) -> anyhow::Result<usize> {
    let groups = c.nodes_by_group();
    match group {
        Some(g) => c
            .group_by_name(g)
            .ok_or_else(|| anyhow!("node group {g} not found")),
        None => {
            if groups.len() > 1 {
                let names: Vec<&str> = groups
                    .iter()
                    .map(|(g, _)| c.groups[*g].name.as_str())
                    .collect();
                bail!(
                    "found multiple node groups ({}); select one with --group",
                    names.join(", ")
                );
            }
            groups
                .first()
                .map(|g| g.0)
                .ok_or_else(|| anyhow!("no node groups with nodes"))
        }
    }
}

fn print_capacity(
    kind: &str,
    r: &CapacityResult,
    ini: &Cluster,
    machine: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let reason = r
        .fail_reason()
        .map(|f| f.to_string())
        .unwrap_or_else(|| "none".into());
    if machine {
        let p = if kind == "tiered" {
            "HTS_TRL"
        } else {
            "HTS_ALLOC"
        };
        writeln!(
            out,
            "{}_SCORE={:.8}",
            if kind == "tiered" {
                "HTS_TRL"
            } else {
                "HTS_FIN"
            },
            crate::score::score(&r.cluster.nodes)
        )?;
        writeln!(out, "{p}_INSTANCES={}", r.count())?;
        writeln!(out, "{p}_FAIL_REASON={}", reason.to_uppercase())?;
        for (f, n) in &r.failures {
            writeln!(out, "{p}_{}_CNT={n}", f.to_string().to_uppercase())?;
        }
        if kind == "tiered" {
            let specs: Vec<String> = r
                .specs
                .iter()
                .map(|(s, n)| format!("{},{},{},{}={}", s.mem, s.disk, s.cpu, s.spindles, n))
                .collect();
            writeln!(out, "HTS_TSPEC='{}'", specs.join(" "))?;
        }
    } else {
        writeln!(
            out,
            "{} allocation results:",
            if kind == "tiered" {
                "Tiered"
            } else {
                "Normal (fixed-size)"
            }
        )?;
        if kind == "tiered" {
            for (s, n) in &r.specs {
                writeln!(
                    out,
                    "  - {n:3} instances of spec MEM {}, DSK {}, CPU {}",
                    s.mem, s.disk, s.cpu
                )?;
            }
        } else {
            writeln!(out, "  - {} instances allocated", r.count())?;
        }
        writeln!(out, "  - most likely failure reason: {reason}")?;
        writeln!(
            out,
            "  - initial cluster score: {:.8}",
            crate::score::score(&ini.nodes)
        )?;
        writeln!(
            out,
            "  -   final cluster score: {:.8}",
            crate::score::score(&r.cluster.nodes)
        )?;
    }
    Ok(())
}

/// The `--text` file, which is required when no caller supplies the live cluster.
fn need_text(p: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    p.ok_or_else(|| {
        anyhow!("--text FILE is required (`maguey plan` without it reads the live cluster)")
    })
}

/// The `--text` argument of a command, so that a caller can supply the live cluster.
pub fn text_arg(cmd: &mut PlanCommand) -> Option<&mut Option<PathBuf>> {
    match cmd {
        PlanCommand::Balance { text, .. } | PlanCommand::Roll { text, .. } => Some(text),
        PlanCommand::Capacity { text, simulate, .. } if simulate.is_empty() => Some(text),
        _ => None,
    }
}

/// Run a plan command, writing its output to `out`; returns the exit code.
pub fn run(cmd: PlanCommand, out: &mut dyn Write) -> anyhow::Result<i32> {
    match cmd {
        PlanCommand::Balance {
            text: path,
            max_moves,
            min_gain,
            min_gain_limit,
            group,
            no_disk_moves,
            no_instance_moves,
            select_instances,
            exclude_instances,
            exclusion_tags,
            ignore_soft_errors,
            ignore_dynu,
            evac_mode,
            offline,
            mode,
            print_commands,
            save,
        } => {
            let lo = LoadOptions {
                ex_tags: exclusion_tags,
                select_instances,
                exclude_instances,
                ignore_dynu,
                static_kvm_node_mem: 0,
            };
            let path = need_text(path)?;
            let mut full = text::load_text(&read(&path)?, &lo)?;
            set_offline(&mut full, &offline)?;
            writeln!(
                out,
                "Loaded {} nodes, {} instances",
                full.nodes.len(),
                full.instances.len()
            )?;
            let gdx = select_group(&full, group.as_deref())?;
            let (c, _, _) = full.split_group(gdx);
            writeln!(
                out,
                "Group size {} nodes, {} instances",
                c.nodes.len(),
                c.instances.len()
            )?;
            writeln!(out, "Selected node group: {}", full.groups[gdx].name)?;
            if c.instances.is_empty() {
                writeln!(out, "Cluster is empty, exiting.")?;
                return Ok(0);
            }
            let opts = BalanceOptions {
                max_moves,
                min_gain,
                min_gain_limit,
                disk_moves: !no_disk_moves,
                instance_moves: !no_instance_moves,
                ignore_soft_errors,
                evac_mode,
                mode: match mode {
                    ModeArg::Exact => SearchMode::Exact,
                    ModeArg::Fast => SearchMode::Fast,
                    ModeArg::Auto => SearchMode::Auto,
                },
                ..Default::default()
            };
            let r = balance::balance(&c, &opts);
            print_balance(&c, &r, print_commands, out)?;
            if let Some(p) = save {
                // write back the whole cluster with the group's new placement
                let mut fin = full.clone();
                let (_, node_map, inst_map) = full.split_group(gdx);
                for (new, &old) in node_map.iter().enumerate() {
                    fin.nodes[old].d = r.cluster.nodes[new].d.clone();
                }
                for (new, &old) in inst_map.iter().enumerate() {
                    let i = &r.cluster.instances[new];
                    fin.instances[old].pnode = node_map[i.pnode];
                    fin.instances[old].snode = i.snode.map(|s| node_map[s]);
                }
                std::fs::write(&p, text::write_text(&fin))
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(0)
        }
        PlanCommand::Allocate {
            request,
            ignore_soft_errors,
            capacity_checks,
        } => {
            let body = read(&request)?;
            let opts = AllocOptions {
                ignore_soft_errors,
                capacity_checks,
                ..Default::default()
            };
            let ans = ialloc::answer(&body, &opts)?;
            writeln!(out, "{ans}")?;
            Ok(0)
        }
        PlanCommand::Capacity {
            text: path,
            simulate,
            standard_alloc,
            tiered_alloc,
            disk_template,
            max_length,
            machine_readable,
            capacity_checks,
        } => {
            let c = match (&path, simulate.is_empty()) {
                (Some(p), true) => text::load_text(&read(p)?, &LoadOptions::default())?,
                (None, false) => capacity::simulate(&simulate)?,
                _ => bail!("give exactly one of --text or --simulate"),
            };
            let dt = DiskTemplate::from_raw(&disk_template)?;
            let su = c.ipolicy.std.spindle_use;
            let opts = AllocOptions {
                // like hspace: the global check is skipped for DRBD
                capacity_checks: capacity_checks && dt != DiskTemplate::Drbd,
                ..Default::default()
            };
            if standard_alloc.is_none() && tiered_alloc.is_none() {
                bail!("give --standard-alloc and/or --tiered-alloc");
            }
            if machine_readable {
                writeln!(out, "HTS_CLUSTER_NODES={}", c.nodes.len())?;
                writeln!(out, "HTS_INI_INST_CNT={}", c.instances.len())?;
            } else {
                writeln!(
                    out,
                    "The cluster has {} nodes and {} instances.",
                    c.nodes.len(),
                    c.instances.len()
                )?;
            }
            if let Some(t) = tiered_alloc {
                let spec = capacity::parse_spec(&t)?;
                let inst = capacity::inst_from_spec(&spec, dt, su);
                let r = capacity::tiered(&c, &inst, max_length, &opts).map_err(|e| anyhow!(e))?;
                print_capacity("tiered", &r, &c, machine_readable, out)?;
            }
            if let Some(s) = standard_alloc {
                let spec = capacity::parse_spec(&s)?;
                let inst = capacity::inst_from_spec(&spec, dt, su);
                let r = capacity::standard(&c, &inst, max_length, &opts).map_err(|e| anyhow!(e))?;
                print_capacity("standard", &r, &c, machine_readable, out)?;
            }
            if machine_readable {
                writeln!(out, "HTS_OK=1")?;
            }
            Ok(0)
        }
        PlanCommand::Roll {
            text: path,
            group,
            node_tags,
            skip_non_redundant,
            ignore_non_redundant,
            offline_maintenance,
            full_evacuation,
            print_moves,
            one_step_only,
            no_headers,
            force,
            offline,
        } => {
            let path = need_text(path)?;
            let mut c = text::load_text(&read(&path)?, &LoadOptions::default())?;
            let masters: Vec<&str> = c
                .nodes
                .iter()
                .filter(|n| n.master)
                .map(|n| n.name.as_str())
                .collect();
            match masters.len() {
                0 if !force => {
                    return Err(anyhow!(
                        "No master node found (maybe not supported by backend)."
                    ))
                }
                0 | 1 => {}
                _ => return Err(anyhow!("Found more than one master node: {masters:?}")),
            }
            set_offline(&mut c, &offline)?;
            let group = match group {
                Some(g) => Some(
                    c.group_by_name(&g)
                        .ok_or_else(|| anyhow!("Cannot find target group."))?,
                ),
                None => None,
            };
            let opts = RollOptions {
                group,
                node_tags,
                skip_non_redundant,
                ignore_non_redundant,
                offline_maintenance,
                full_evacuation,
            };
            let groups = roll::plan(&c, &opts).map_err(|e| anyhow!(e))?;
            let show = |g: &roll::RebootGroup, out: &mut dyn Write| -> anyhow::Result<()> {
                let names: Vec<&str> = g.nodes.iter().map(|&n| c.nodes[n].name.as_str()).collect();
                if one_step_only {
                    for n in names {
                        writeln!(out, "{n}")?;
                    }
                } else {
                    writeln!(out, "{}", names.join(","))?;
                }
                if print_moves {
                    for m in &g.moves {
                        let inst = &c.instances[m.instance].name;
                        match m.snode {
                            Some(s) => writeln!(
                                out,
                                "  {inst} {} {}",
                                c.nodes[m.pnode].name, c.nodes[s].name
                            )?,
                            None => writeln!(out, "  {inst} {}", c.nodes[m.pnode].name)?,
                        }
                    }
                }
                Ok(())
            };
            if one_step_only {
                if !no_headers {
                    writeln!(out, "'First Reboot Group'")?;
                }
                if let Some(g) = groups.first() {
                    show(g, out)?;
                }
            } else {
                if !no_headers {
                    writeln!(out, "'Node Reboot Groups'")?;
                }
                for g in &groups {
                    show(g, out)?;
                }
            }
            Ok(0)
        }
    }
}
