//! QEMU in its own systemd scope: under systemd, each instance's QEMU is started through
//! `systemd-run --scope --slice=maguey.slice --unit=maguey-INSTANCE`, so that it lives in
//! `maguey.slice/maguey-INSTANCE.scope`, outside magueyd's service cgroup: stopping,
//! restarting or upgrading magueyd never touches a VM, and `maguey-guests.service` powers
//! the guests down (ACPI) before systemd stops the scopes at host shutdown.

/// The slice every instance's scope sits in (`packaging/systemd/maguey.slice`).
pub const SLICE: &str = "maguey.slice";
/// The unit whose stop powers the guests down at host shutdown; scopes are ordered before it
/// so that systemd stops it (ACPI power-down) before it stops them (SIGTERM).
pub const GUESTS_UNIT: &str = "maguey-guests.service";

/// The scope unit of an instance (instance names are host names: valid in unit names).
pub fn unit_name(instance: &str) -> String {
    format!("maguey-{instance}.scope")
}

/// `argv` (QEMU's, program first) wrapped in `systemd-run --scope`; with `ids` (uid, gid)
/// systemd-run switches to them before it executes QEMU (it talks to systemd as root first).
pub fn wrap(instance: &str, argv: &[String], ids: Option<(u32, u32)>) -> Vec<String> {
    let mut out: Vec<String> = [
        "/usr/bin/systemd-run",
        "--scope",
        "--quiet",
        "--collect",
        "--slice",
        SLICE,
        "--unit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push(unit_name(instance));
    out.push(format!("--description=Maguey instance {instance}"));
    out.push(format!("--property=Before={GUESTS_UNIT}"));
    if let Some((uid, gid)) = ids {
        out.push(format!("--uid={uid}"));
        out.push(format!("--gid={gid}"));
    }
    out.push("--".to_string());
    out.extend(argv.iter().cloned());
    out
}

/// The scope a process sits in, from `/proc/PID/cgroup` (cgroup v2 or the v1 systemd
/// hierarchy), e.g. `maguey.slice/maguey-vm1.scope`.
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("0::")
                .or_else(|| l.strip_prefix("1:name=systemd:"))
        })
        .map(|p| p.trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_qemu_in_a_scope_under_the_slice() {
        let argv = vec!["/usr/bin/kvm".to_string(), "-name".into(), "vm1".into()];
        let w = wrap("vm1.example.com", &argv, None);
        assert!(!w.iter().any(|a| a.starts_with("--uid")));
        let u = wrap("vm1.example.com", &argv, Some((990, 991)));
        let dashdash = u.iter().position(|a| a == "--").unwrap();
        assert!(u[..dashdash].contains(&"--uid=990".to_string()), "{u:?}");
        assert!(u[..dashdash].contains(&"--gid=991".to_string()), "{u:?}");
        assert_eq!(w[0], "/usr/bin/systemd-run");
        let at = |flag: &str| w.iter().position(|a| a == flag).map(|i| w[i + 1].clone());
        assert_eq!(at("--slice").as_deref(), Some("maguey.slice"));
        assert_eq!(
            at("--unit").as_deref(),
            Some("maguey-vm1.example.com.scope")
        );
        assert!(w.contains(&"--scope".to_string()));
        // QEMU's argv follows `--` unchanged.
        let dashdash = w.iter().position(|a| a == "--").unwrap();
        assert_eq!(&w[dashdash + 1..], &argv[..]);
    }

    #[test]
    fn reads_the_cgroup_of_a_process() {
        // Any process has a cgroup line of one of the two forms (or none in odd sandboxes).
        if let Some(cg) = cgroup_of(std::process::id()) {
            assert!(!cg.starts_with('/'));
        }
    }
}
