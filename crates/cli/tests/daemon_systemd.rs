//! magueyd as systemd runs it (docs/install.md): it reads its settings from a magueyd.toml
//! (`--config`), tells the service manager `READY=1` on `$NOTIFY_SOCKET` once it serves (and
//! `STOPPING=1` on SIGTERM), and refuses a settings file with an unknown key, naming it.

mod common;
use common::maguey_bin;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn magueyd() -> std::path::PathBuf {
    maguey_test_infra::bins::beside(maguey_bin(), "magueyd")
}

#[test]
fn magueyd_reads_its_toml_and_notifies_readiness() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("node1");
    let port = free_port();
    let out = Command::new(maguey_bin())
        .arg("--state-dir")
        .arg(&dir)
        .args([
            "cluster",
            "init",
            "--address",
            "127.0.0.1",
            "--node-name",
            "node1",
        ])
        .args(["--port", &port.to_string(), "--no-start", "c1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The state directory comes from the file, not from a flag.
    let cfg = t.path().join("magueyd.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\nrapi_port = 0\nwatcher_interval = 0\n\
             migration_ports = \"41000-41009\"\nlog_level = \"info\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let sock_path = t.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut child = Command::new(magueyd())
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("MAGUEY_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from magueyd");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(
        msg.lines().any(|l| l == format!("MAINPID={}", child.id())),
        "{msg}"
    );
    // Ready means serving: the node RPC port accepts connections.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("magueyd listens when ready");

    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("STOPPING=1 from magueyd");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn magueyd_refuses_an_unknown_key_naming_it_and_its_line() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("magueyd.toml");
    std::fs::write(&cfg, "rapi_port = 5080\nmigration_port = \"8100-8199\"\n").unwrap();
    let out = Command::new(magueyd())
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(t.path().join("state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("magueyd.toml"), "{err}");
    assert!(err.contains("migration_port"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    // Nothing was created: the daemon stopped before touching its state directory.
    assert!(!t.path().join("state").exists());
}
