//! Reader and writer of the htools text backend (`hbal -t FILE`, `-S`).

use crate::model::*;
use crate::types::*;

/// Ganeti's `sepSplit`: like `split`, but the empty string gives no field.
fn sep_split(s: &str, sep: char) -> Vec<String> {
    if s.is_empty() {
        vec![]
    } else {
        s.split(sep).map(str::to_string).collect()
    }
}

fn yn(what: &str, s: &str) -> Result<bool> {
    match s {
        "Y" => Ok(true),
        "N" => Ok(false),
        _ => Err(Error::Parse(format!("{what}: invalid Y/N value '{s}'"))),
    }
}

fn parse_ispec(owner: &str, s: &str) -> Result<ISpec> {
    let f = sep_split(s, ',');
    if f.len() < 6 {
        return Err(Error::Parse(format!(
            "invalid ispec data for {owner}: '{s}'"
        )));
    }
    Ok(ISpec {
        mem: parse_int(&format!("{owner}/memsize"), &f[0])?,
        cpu: parse_int(&format!("{owner}/cpucount"), &f[1])?,
        disk: parse_int(&format!("{owner}/disksize"), &f[2])?,
        disk_count: parse_int(&format!("{owner}/diskcount"), &f[3])?,
        nic_count: parse_int(&format!("{owner}/niccount"), &f[4])?,
        spindle_use: parse_int(&format!("{owner}/spindleuse"), &f[5])?,
    })
}

fn parse_ipolicy(line: &str) -> Result<(String, IPolicy)> {
    let f = sep_split(line, '|');
    if f.len() < 6 {
        return Err(Error::Parse(format!("invalid ipolicy data: '{line}'")));
    }
    let owner = f[0].clone();
    let std = parse_ispec(&format!("{owner}/stdspec"), &f[1])?;
    let specs = sep_split(&f[2], ';');
    if !specs.len().is_multiple_of(2) {
        return Err(Error::Parse(format!(
            "odd number of min/max specs for {owner}"
        )));
    }
    let mut minmax = vec![];
    for p in specs.chunks(2) {
        minmax.push(MinMax {
            min: parse_ispec(&format!("{owner}/minspec"), &p[0])?,
            max: parse_ispec(&format!("{owner}/maxspec"), &p[1])?,
        });
    }
    let dts = sep_split(&f[3], ',')
        .iter()
        .map(|d| DiskTemplate::from_raw(d))
        .collect::<Result<Vec<_>>>()?;
    Ok((
        owner.clone(),
        IPolicy {
            minmax,
            std,
            disk_templates: dts,
            vcpu_ratio: parse_f64(&format!("{owner}/vcpu_ratio"), &f[4])?,
            spindle_ratio: parse_f64(&format!("{owner}/spindle_ratio"), &f[5])?,
        },
    ))
}

/// Parse a text-backend file into an unfinalised cluster (placement of
/// instances recorded, node states fresh). Use [`load_text`] for a ready
/// cluster.
pub fn parse_text_raw(data: &str) -> Result<Cluster> {
    let lines: Vec<&str> = data.lines().collect();
    let mut sections: Vec<Vec<&str>> = vec![];
    if !lines.is_empty() {
        let mut cur = vec![];
        for l in lines {
            if l.is_empty() {
                sections.push(std::mem::take(&mut cur));
            } else {
                cur.push(l);
            }
        }
        sections.push(cur);
    }
    if sections.len() < 4 {
        return Err(Error::Parse(format!(
            "invalid format of the input file: {} sections instead of 4 or more",
            sections.len()
        )));
    }
    let mut groups = vec![];
    for l in &sections[0] {
        let f = sep_split(l, '|');
        if f.len() < 4 {
            return Err(Error::Parse(format!(
                "invalid/incomplete group data: '{l}'"
            )));
        }
        groups.push(Group {
            name: f[0].clone(),
            uuid: f[1].clone(),
            alloc_policy: AllocPolicy::from_raw(&f[2])?,
            tags: sep_split(&f[3], ','),
            networks: f.get(4).map(|s| sep_split(s, ',')).unwrap_or_default(),
            ipolicy: IPolicy::default(),
        });
    }
    let mut nodes: Vec<Node> = vec![];
    for l in &sections[1] {
        let mut f = sep_split(l, '|');
        if f.len() < 9 {
            return Err(Error::Parse(format!("invalid/incomplete node data: '{l}'")));
        }
        let defaults = ["1", "", "N", "0", "1", "1.0"];
        while f.len() < 15 {
            let k = f.len() - 9;
            f.push(defaults[k].to_string());
        }
        let name = f[0].as_str();
        let gdx = groups
            .iter()
            .position(|g| g.uuid == f[8])
            .ok_or_else(|| Error::Parse(format!("unknown group '{}' for node {name}", f[8])))?;
        let node = if f[1..7].iter().any(|x| x == "?") {
            Node::new(name, 0.0, 0, 0, 0.0, 0, 0.0, 0, true, 0, 0, gdx, false)
        } else {
            let excl = match f[11].as_str() {
                "Y" => true,
                "N" => false,
                x => {
                    return Err(Error::Parse(format!(
                        "invalid exclusive_storage value for node '{name}': {x}"
                    )))
                }
            };
            let mut n = Node::new(
                name,
                parse_f64(name, &f[1])?,
                parse_int(name, &f[2])?,
                parse_int(name, &f[3])?,
                parse_f64(name, &f[4])?,
                parse_int(name, &f[5])?,
                parse_f64(name, &f[6])?,
                parse_int(name, &f[13])?,
                f[7] == "Y",
                parse_int(name, &f[9])?,
                parse_int(name, &f[12])?,
                gdx,
                excl,
            );
            n.tags = sep_split(&f[10], ',');
            n.cpu_speed = parse_f64(name, &f[14])?;
            n.master = f[7] == "M";
            n
        };
        nodes.push(node);
    }
    let mut instances = vec![];
    let node_idx: std::collections::HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    for l in &sections[2] {
        let mut f = sep_split(l, '|');
        if f.len() < 10 {
            return Err(Error::Parse(format!(
                "invalid/incomplete instance data: '{l}'"
            )));
        }
        let defaults = ["1", "-", "N"];
        while f.len() < 13 {
            let k = f.len() - 10;
            f.push(defaults[k].to_string());
        }
        let name = f[0].as_str();
        let lookup = |nn: &str| {
            node_idx
                .get(nn)
                .copied()
                .ok_or_else(|| Error::Parse(format!("unknown node '{nn}' for instance {name}")))
        };
        let pidx = lookup(&f[6])?;
        let sidx = if f[7].is_empty() {
            None
        } else {
            Some(lookup(&f[7])?)
        };
        let dsize = parse_int(name, &f[2])?;
        let spindles = if f[11] == "-" {
            None
        } else {
            Some(parse_int(name, &f[11])?)
        };
        let template = DiskTemplate::from_raw(&f[8])
            .map_err(|e| Error::Parse(format!("instance {name}: {e}")))?;
        let mut inst = Instance::new(
            name,
            parse_int(name, &f[1])?,
            dsize,
            vec![Disk {
                size: dsize,
                spindles,
            }],
            parse_int(name, &f[3])?,
            InstanceStatus::from_raw(&f[4])?,
            sep_split(&f[9], ','),
            yn(&format!("auto_balance of {name}"), &f[5])?,
            template,
            parse_int(name, &f[10])?,
            yn(&format!("forthcoming of {name}"), &f[12])?,
        );
        inst.pnode = pidx;
        inst.snode = sidx;
        if inst.has_secondary() && sidx == Some(pidx) {
            return Err(Error::Parse(format!(
                "instance {name} has same primary and secondary node - {}",
                f[6]
            )));
        }
        instances.push(inst);
    }
    if node_idx.len() != nodes.len() {
        return Err(Error::Parse("duplicate node names".into()));
    }
    let tags: Vec<String> = sections[3].iter().map(|s| s.to_string()).collect();
    let mut cpol = IPolicy::default();
    if let Some(pol) = sections.get(4) {
        for l in pol {
            let (owner, ip) = parse_ipolicy(l)?;
            if owner.is_empty() {
                cpol = ip;
            } else {
                let g = groups
                    .iter_mut()
                    .find(|g| g.name == owner)
                    .ok_or_else(|| Error::Parse(format!("ipolicy for unknown group '{owner}'")))?;
                g.ipolicy = ip;
            }
        }
    }
    Ok(Cluster {
        groups,
        nodes,
        instances,
        tags,
        ipolicy: cpol,
    })
}

/// Parse and finalise a text-backend cluster.
pub fn load_text(data: &str, opts: &LoadOptions) -> Result<Cluster> {
    let mut c = parse_text_raw(data)?;
    c.finalize(opts)?;
    Ok(c)
}

fn ispec_txt(s: &ISpec) -> String {
    format!(
        "{},{},{},{},{},{}",
        s.mem, s.cpu, s.disk, s.disk_count, s.nic_count, s.spindle_use
    )
}

fn show_f64(v: f64) -> String {
    format!("{v:?}")
}

fn ipolicy_txt(owner: &str, p: &IPolicy) -> String {
    let mm: Vec<String> = p
        .minmax
        .iter()
        .flat_map(|m| [ispec_txt(&m.min), ispec_txt(&m.max)])
        .collect();
    let dts: Vec<&str> = p.disk_templates.iter().map(|d| d.to_raw()).collect();
    format!(
        "{}|{}|{}|{}|{}|{}",
        owner,
        ispec_txt(&p.std),
        mm.join(";"),
        dts.join(","),
        show_f64(p.vcpu_ratio),
        show_f64(p.spindle_ratio)
    )
}

/// Serialise a cluster in the text-backend format (as `hbal -S` does). The
/// free memory column is written so that reloading the file reproduces
/// the current memory accounting.
pub fn write_text(c: &Cluster) -> String {
    let mut out = String::new();
    for g in &c.groups {
        out.push_str(&format!(
            "{}|{}|{}|{}|{}\n",
            g.name,
            g.uuid,
            g.alloc_policy.to_raw(),
            g.tags.join(","),
            g.networks.join(",")
        ));
    }
    out.push('\n');
    for n in &c.nodes {
        let st = &n.d.st;
        let f_mem = (n.t_mem as i64) - n.n_mem - st.i_mem - n.x_mem;
        out.push_str(&format!(
            "{}|{:.0}|{}|{}|{:.0}|{}|{:.0}|{}|{}|{}|{}|{}|{}|{}|{:.6}\n",
            n.name,
            n.t_mem,
            n.n_mem,
            f_mem,
            n.t_dsk,
            st.f_dsk,
            n.t_cpu,
            if n.offline {
                'Y'
            } else if n.master {
                'M'
            } else {
                'N'
            },
            c.groups[n.group].uuid,
            n.t_spindles,
            n.tags.join(","),
            if n.excl_storage { "Y" } else { "N" },
            st.f_spindles,
            n.n_cpu,
            n.cpu_speed
        ));
    }
    out.push('\n');
    for i in &c.instances {
        let pn = c.nodes.get(i.pnode).map(|n| n.name.as_str()).unwrap_or("");
        let sn = i
            .snode
            .and_then(|s| c.nodes.get(s))
            .map(|n| n.name.as_str())
            .unwrap_or("");
        out.push_str(&format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
            i.name,
            i.mem,
            i.dsk,
            i.vcpus,
            i.status.to_raw(),
            if i.auto_balance { "Y" } else { "N" },
            pn,
            sn,
            i.template.to_raw(),
            i.tags.join(","),
            i.spindle_use,
            i.total_spindles()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            if i.forthcoming { "Y" } else { "N" }
        ));
    }
    out.push('\n');
    for t in &c.tags {
        out.push_str(t);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&ipolicy_txt("", &c.ipolicy));
    out.push('\n');
    for g in &c.groups {
        out.push_str(&ipolicy_txt(&g.name, &g.ipolicy));
        out.push('\n');
    }
    out
}
