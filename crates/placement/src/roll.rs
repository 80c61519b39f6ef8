//! Rolling-reboot planning (hroller's job): groups of nodes that can be
//! rebooted together without losing redundancy.
//!
//! Two nodes conflict if they hold the two halves of a DRBD instance, or
//! if both are primaries of instances sharing a secondary node (rebooting
//! both would need that secondary to take over both). The conflict graph
//! is coloured greedily (largest-first, DSatur and colour-degree orders,
//! the smallest colouring wins); each colour class is then split so that
//! the non-redundant (non-mirrored) instances of its nodes can be moved to
//! nodes outside the class. Bigger groups come first, the master last.

use crate::model::Cluster;

#[derive(Debug, Clone, Default)]
pub struct RollOptions {
    /// Only this node group.
    pub group: Option<usize>,
    /// Only nodes with one of these tags.
    pub node_tags: Option<Vec<String>>,
    /// Skip nodes with non-redundant instances.
    pub skip_non_redundant: bool,
    /// Do not plan moves of non-redundant instances.
    pub ignore_non_redundant: bool,
    /// Offline maintenance: only primary/secondary edges matter.
    pub offline_maintenance: bool,
}

fn greedy_color(adj: &[Vec<usize>], order: &[usize]) -> Vec<usize> {
    let n = adj.len();
    let mut color = vec![usize::MAX; n];
    for &v in order {
        let mut used: Vec<bool> = vec![false; adj[v].len() + 1];
        for &u in &adj[v] {
            if color[u] < used.len() {
                used[color[u]] = true;
            }
        }
        color[v] = used.iter().position(|x| !x).unwrap_or(used.len());
    }
    color
}

fn dsatur(adj: &[Vec<usize>], verts: &[usize], by_degree_only_colors: bool) -> Vec<usize> {
    let n = adj.len();
    let mut color = vec![usize::MAX; n];
    let mut remaining: Vec<usize> = verts.to_vec();
    while !remaining.is_empty() {
        let mut best = 0;
        let mut best_key = (0usize, 0usize);
        for (k, &v) in remaining.iter().enumerate() {
            let cols: std::collections::BTreeSet<usize> = adj[v]
                .iter()
                .filter(|&&u| color[u] != usize::MAX)
                .map(|&u| color[u])
                .collect();
            let sat = if by_degree_only_colors {
                adj[v].iter().filter(|&&u| color[u] != usize::MAX).count()
            } else {
                cols.len()
            };
            let key = (sat, adj[v].len());
            if k == 0 || key > best_key {
                best = k;
                best_key = key;
            }
        }
        let v = remaining.remove(best);
        let mut used = vec![false; adj[v].len() + 1];
        for &u in &adj[v] {
            if color[u] < used.len() {
                used[color[u]] = true;
            }
        }
        color[v] = used.iter().position(|x| !x).unwrap_or(used.len());
    }
    color
}

/// Compute the reboot groups (node indices); fails if non-redundant
/// instances cannot be moved away.
pub fn reboot_groups(
    c: &Cluster,
    opts: &RollOptions,
) -> std::result::Result<Vec<Vec<usize>>, String> {
    let nn = c.nodes.len();
    let non_redundant = |n: usize| -> Vec<usize> {
        c.nodes[n]
            .plist
            .iter()
            .copied()
            .filter(|&i| !c.instances[i].has_secondary())
            .collect()
    };
    let selected: Vec<bool> = (0..nn)
        .map(|i| {
            let n = &c.nodes[i];
            !n.offline
                && (!opts.skip_non_redundant || non_redundant(i).is_empty())
                && opts
                    .node_tags
                    .as_ref()
                    .is_none_or(|t| n.tags.iter().any(|x| t.contains(x)))
                && opts.group.is_none_or(|g| n.group == g)
        })
        .collect();
    // conflict graph
    let mut adj: Vec<Vec<usize>> = vec![vec![]; nn];
    let add_edge = |a: usize, b: usize, adj: &mut Vec<Vec<usize>>| {
        if a != b && selected[a] && selected[b] && !adj[a].contains(&b) {
            adj[a].push(b);
            adj[b].push(a);
        }
    };
    for inst in &c.instances {
        if let (true, Some(s)) = (inst.has_secondary(), inst.snode) {
            add_edge(inst.pnode, s, &mut adj);
        }
    }
    if !opts.offline_maintenance {
        for n in &c.nodes {
            let prims: Vec<usize> = n.slist.iter().map(|&i| c.instances[i].pnode).collect();
            for (k, &a) in prims.iter().enumerate() {
                for &b in &prims[k + 1..] {
                    add_edge(a, b, &mut adj);
                }
            }
        }
    }
    let verts: Vec<usize> = (0..nn).filter(|&i| selected[i]).collect();
    let mut by_deg = verts.clone();
    by_deg.sort_by_key(|&v| std::cmp::Reverse(adj[v].len()));
    let colorings = [
        greedy_color(&adj, &by_deg),
        dsatur(&adj, &verts, false),
        dsatur(&adj, &verts, true),
    ];
    let ncolors = |col: &Vec<usize>| {
        verts
            .iter()
            .map(|&v| col[v])
            .max()
            .map(|m| m + 1)
            .unwrap_or(0)
    };
    let best = colorings
        .iter()
        .min_by_key(|c| ncolors(c))
        .ok_or_else(|| "no coloring".to_string())?;
    let k = ncolors(best);
    let mut classes: Vec<Vec<usize>> = vec![vec![]; k];
    for &v in &verts {
        classes[best[v]].push(v);
    }
    // split classes so that non-redundant instances can be moved away
    let mut groups: Vec<Vec<usize>> = vec![];
    let online: Vec<usize> = (0..nn).filter(|&i| !c.nodes[i].offline).collect();
    for class in classes {
        if opts.ignore_non_redundant {
            groups.push(class);
            continue;
        }
        let mut remaining = class;
        while !remaining.is_empty() {
            let (grp, rest) = clear_nodes(c, &remaining, &online, &non_redundant);
            if grp.is_empty() {
                return Err("Not enough capacity to move non-redundant instances".into());
            }
            groups.push(grp);
            remaining = rest;
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    // master last (within its group and as the last group)
    let (mut with_master, mut without): (Vec<Vec<usize>>, Vec<Vec<usize>>) = groups
        .into_iter()
        .partition(|g| g.iter().any(|&n| c.nodes[n].master));
    for g in with_master.iter_mut() {
        g.sort_by_key(|&n| c.nodes[n].master);
    }
    without.append(&mut with_master);
    Ok(without)
}

/// Greedily pick nodes of `cands` whose non-redundant instances can all be
/// placed on nodes outside the picked set (same node group).
fn clear_nodes(
    c: &Cluster,
    cands: &[usize],
    online: &[usize],
    non_redundant: &dyn Fn(usize) -> Vec<usize>,
) -> (Vec<usize>, Vec<usize>) {
    let mut dyns: Vec<crate::model::NodeDyn> = c.nodes.iter().map(|n| n.d.clone()).collect();
    let mut picked: Vec<usize> = vec![];
    let mut rest = vec![];
    for &n in cands {
        let insts = non_redundant(n);
        let mut trial = dyns.clone();
        let mut ok = true;
        for &i in &insts {
            let inst = &c.instances[i];
            let target = online.iter().copied().find(|&t| {
                t != n && !picked.contains(&t) && c.nodes[t].group == c.nodes[n].group && {
                    let mut d = trial[t].clone();
                    c.nodes[t].add_pri(&mut d, inst, true).is_ok()
                }
            });
            match target {
                Some(t) => {
                    let mut d = trial[t].clone();
                    if c.nodes[t].add_pri(&mut d, inst, true).is_err() {
                        ok = false;
                        break;
                    }
                    trial[t] = d;
                    let mut src = trial[n].clone();
                    c.nodes[n].remove_pri(&mut src, inst);
                    trial[n] = src;
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        // nodes already picked must not have received instances
        if ok
            && picked
                .iter()
                .all(|&p| trial[p].st.n_pri <= dyns[p].st.n_pri)
        {
            picked.push(n);
            dyns = trial;
        } else {
            rest.push(n);
        }
    }
    (picked, rest)
}
