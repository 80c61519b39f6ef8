//! The floating master IP on this node (Ganeti's `master-ip-setup`): `ip addr replace` brings
//! it up (again: bringing it up twice is fine), gratuitous ARP tells the neighbours that it
//! moved (IPv4, with `arping` when it is installed), `ip addr del` takes it down (already down
//! is fine). The device must exist; the address must not be one of this node's own.

use crate::error::{NodeError, NodeResult};
use crate::exec::{Cmd, CommandRunner};
use maguey_model::MasterIp;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Where `name` is installed (daemons may run with a short `PATH`).
fn program(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn ip_cmd(args: &[String]) -> Cmd {
    let ip = program("ip").unwrap_or_else(|| PathBuf::from("ip"));
    Cmd::program(&ip, args).timeout(TIMEOUT)
}

fn check(m: &MasterIp) -> NodeResult<()> {
    m.validate().map_err(NodeError::bad_request)?;
    crate::network::validate_ifname(&m.netdev)?;
    if !crate::network::iface_exists(&m.netdev) {
        return Err(NodeError::bad_request(format!(
            "network device '{}' for the master IP does not exist on this node",
            m.netdev
        )));
    }
    Ok(())
}

fn run(runner: &dyn CommandRunner, cmd: &Cmd) -> NodeResult<crate::exec::CmdOutput> {
    runner
        .run(cmd)
        .map_err(|e| NodeError::io(format!("cannot run {}: {}", cmd.argv()[0], e.reason())))
}

/// Brings `m` up on its device and announces it.
pub fn activate(runner: &dyn CommandRunner, m: &MasterIp) -> NodeResult<()> {
    check(m)?;
    let args: Vec<String> = ["addr", "replace", &m.cidr(), "dev", &m.netdev]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run(runner, &ip_cmd(&args))?;
    if !out.success() {
        return Err(NodeError::command_failed(format!(
            "'ip {}' failed: {}",
            args.join(" "),
            out.stderr.trim()
        )));
    }
    if m.ip.is_ipv4() {
        match program("arping") {
            Some(arping) => {
                let ip = m.ip.to_string();
                let args: Vec<String> = ["-q", "-U", "-c", "3", "-I", &m.netdev, "-s", &ip, &ip]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let out = run(runner, &Cmd::program(&arping, &args).timeout(TIMEOUT))?;
                // arping -U expects no replies and exits 1 for that: only a failure to run
                // it at all matters, and that was an error above.
                tracing::debug!("arping for {ip}: {}", out.status_text());
            }
            None => tracing::warn!(
                "master IP {} is up without gratuitous ARP: arping is not installed",
                m.ip
            ),
        }
    }
    Ok(())
}

/// Takes `m` down; an address that is not there is fine.
pub fn deactivate(runner: &dyn CommandRunner, m: &MasterIp) -> NodeResult<()> {
    m.validate().map_err(NodeError::bad_request)?;
    crate::network::validate_ifname(&m.netdev)?;
    if !crate::network::iface_exists(&m.netdev) {
        return Ok(());
    }
    let args: Vec<String> = ["addr", "del", &m.cidr(), "dev", &m.netdev]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run(runner, &ip_cmd(&args))?;
    // "Cannot assign requested address": it was not there.
    if out.success() || out.stderr.contains("Cannot assign requested address") {
        Ok(())
    } else {
        Err(NodeError::command_failed(format!(
            "'ip {}' failed: {}",
            args.join(" "),
            out.stderr.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::ScriptedRunner;

    fn m(netdev: &str) -> MasterIp {
        MasterIp {
            ip: "192.0.2.10".parse().unwrap(),
            netmask: 24,
            netdev: netdev.into(),
        }
    }

    #[test]
    fn bad_devices_and_masks_are_refused_before_any_command() {
        let r = ScriptedRunner::new();
        for bad in [m("no-such-dev0"), m("a/b"), m(""), m("-x")] {
            assert!(activate(&r, &bad).is_err());
        }
        let mut wide = m("lo");
        wide.netmask = 33;
        assert!(activate(&r, &wide).is_err());
        assert!(r.calls().is_empty(), "{:?}", r.calls());
    }
}
