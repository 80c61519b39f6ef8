//! Running under systemd: readiness (`sd_notify`, one datagram to `$NOTIFY_SOCKET`, only
//! when it is set), journald-friendly logs, and whether magueyd runs as a systemd service
//! (then each QEMU gets its own scope under `maguey.slice`, see `maguey_node`'s kvm scope).

use std::path::Path;

/// Sends `state` (e.g. `READY=1`) to the service manager when `$NOTIFY_SOCKET` names one;
/// does nothing otherwise. Errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(Path::new(&socket), state) {
        tracing::warn!(
            "sd_notify {state:?} to {}: {e}",
            Path::new(&socket).display()
        );
    }
}

fn send(socket: &Path, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_os_str().as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (systemd uses one in containers and tests).
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), socket)?;
    }
    Ok(())
}

/// Whether the host was booted with systemd (`sd_booted()`).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether stderr goes to the journal (systemd sets `$JOURNAL_STREAM` for services): then
/// log lines carry no timestamp and no colours (journald adds its own).
pub fn logs_to_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Whether this process runs as a systemd service: the host runs systemd and our own cgroup
/// is a `.service` (not inherited environment variables, which a shell may carry).
pub fn running_as_service() -> bool {
    booted()
        && std::fs::read_to_string("/proc/self/cgroup")
            .map(|t| cgroup_is_service(&t))
            .unwrap_or(false)
}

fn cgroup_is_service(text: &str) -> bool {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("0::")
                .or_else(|| l.strip_prefix("1:name=systemd:"))
        })
        .is_some_and(|p| p.trim_end().ends_with(".service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_sends_one_datagram_to_a_path_or_abstract_socket() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send(&path, "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("maguey-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        send(Path::new(&format!("@{name}")), "READY=1").unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_service_cgroup_is_recognised() {
        assert!(cgroup_is_service("0::/system.slice/magueyd.service\n"));
        assert!(cgroup_is_service(
            "12:pids:/\n1:name=systemd:/system.slice/magueyd.service\n"
        ));
        assert!(!cgroup_is_service(
            "0::/user.slice/user-0.slice/session-3.scope\n"
        ));
        assert!(!cgroup_is_service("0::/\n"));
    }
}
