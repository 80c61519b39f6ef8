//! Faults a user can cause in a lab of processes (docs/lab.md): `maguey lab kill` (a node's
//! daemon and its VMs, SIGKILL at once, like a power loss), `lab cut` and `lab heal` (its
//! network link down and up: needs the namespaces of a lab run as root). `lab up` on the
//! lab restarts what was killed and brings cut links back up.

use crate::{alive, pid_of, set_node_link, vmnodes, Lab};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The 1-based index of the node called `node` (`node2`), or given by its number (`2`).
pub fn node_index(lab: &Lab, node: &str) -> Result<usize> {
    if let Some(i) = lab.nodes.iter().position(|n| n.name == node) {
        return Ok(i + 1);
    }
    match node.parse::<usize>() {
        Ok(i) if (1..=lab.nodes.len()).contains(&i) => Ok(i),
        _ => bail!(
            "no node '{node}' in the lab (its nodes: {})",
            lab.nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The lab of processes in `dir` (faults are not for labs of node VMs yet).
fn process_lab(dir: &Path) -> Result<Lab> {
    if vmnodes::is_vm_lab(dir) {
        bail!("kill, cut and heal work on labs of processes, not on labs of node VMs");
    }
    Lab::load(dir)
}

/// What `lab kill` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Killed {
    pub node: String,
    /// The daemon's pid, if it was running.
    pub daemon: Option<i32>,
    /// QEMU processes killed with it.
    pub vms: usize,
}

/// `lab kill`: kills `node`'s daemon and its VMs (SIGKILL, no goodbye), and waits until the
/// daemon is gone (10 s at most).
pub fn kill(dir: &Path, node: &str) -> Result<Killed> {
    let lab = process_lab(dir)?;
    let i = node_index(&lab, node)?;
    let n = &lab.nodes[i - 1];
    let daemon = pid_of(&n.dir).filter(|p| alive(*p));
    if let Some(p) = daemon {
        // SAFETY: kill(2) on the lab's own daemon (its pidfile, checked alive just above).
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    // QEMU outlives magueyd by design: a power loss takes it too.
    let vms = maguey_node::hypervisor::kvm::kill_all(&n.dir);
    if let Some(p) = daemon {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(p) {
            if Instant::now() > deadline {
                bail!(
                    "{}'s magueyd (pid {p}) is still alive after SIGKILL",
                    n.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(Killed {
        node: n.name.clone(),
        daemon,
        vms,
    })
}

/// `lab cut` (`up` false) and `lab heal` (`up` true): `node`'s link to the lab's network.
/// Returns the node's name.
pub fn set_link(dir: &Path, node: &str, up: bool) -> Result<String> {
    let lab = process_lab(dir)?;
    let i = node_index(&lab, node)?;
    if lab.host_bridge.is_none() {
        bail!(
            "the lab in {} has no network namespaces (run `lab up` as root, `--netns on`): \
             there is no link to cut",
            dir.display()
        );
    }
    set_node_link(dir, i, up)
        .with_context(|| format!("setting {}'s link", lab.nodes[i - 1].name))?;
    Ok(lab.nodes[i - 1].name.clone())
}

/// Waits until every node whose daemon `restart` started listens on its address (the host
/// reaches every node, namespaced or not).
pub(crate) async fn wait_listening(lab: &Lab, started: &[usize], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for &i in started {
        let n = &lab.nodes[i - 1];
        let addr = format!("{}:{}", n.ip, lab.port);
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(&addr),
            )
            .await;
            if matches!(attempt, Ok(Ok(_))) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} in time (see {})",
                    n.name,
                    n.dir.join("magueyd.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
