//! `maguey instance console NAME` on a real VM (QEMU, TCG here), through the master and the
//! primary node's daemon over mutual TLS: the tiny guest runs on node2 while the CLI talks to
//! the master on node1. Scripted use (stdin a pipe): what is typed comes back (the guest's
//! serial tty echoes it) and the guest's ticks stream out; one client at a time; only the
//! master opens consoles on nodes; `--show-cmd` prints a runnable command; `--log` prints the
//! last output without attaching; the same works remotely through the Remote API's port
//! (`--cluster URL`, a RAPI user); a stopped or unknown instance is refused with exit 1 or 2.

mod common;
use common::*;
use maguey_lab::guest::{READY_MARKER, TICK_MARKER};
use maguey_test_infra::kvm;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(120);

/// A `maguey` child process, killed if the test fails while it runs.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(lab: &TestLab, args: &[&str]) -> Proc {
        Proc(Some(
            Command::new(maguey_bin())
                .args(args)
                .env("MAGUEY_DIR", lab.master_dir())
                .env_remove("MAGUEY_CLUSTER")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running maguey"),
        ))
    }

    fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn send(&mut self, data: &str) {
        let c = self.0.as_mut().expect("running");
        let stdin = c.stdin.as_mut().expect("stdin");
        stdin.write_all(data.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin and collects the exit code and output, within `timeout`.
    fn finish(mut self, timeout: Duration) -> Run {
        let mut c = self.0.take().expect("running");
        drop(c.stdin.take());
        let deadline = Instant::now() + timeout;
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let o = c.wait_with_output().unwrap();
                panic!(
                    "maguey did not end within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = c.wait_with_output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `maguey ARGS` with `input` on stdin (then closed), within `timeout`.
fn console_with_input(lab: &TestLab, args: &[&str], input: &str, timeout: Duration) -> Run {
    let mut p = Proc::spawn(lab, args);
    p.send(input);
    p.finish(timeout)
}

/// The tick numbers in `out`.
fn ticks(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix(TICK_MARKER))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

#[test]
fn kvm_console_through_master_and_node() {
    // QEMU runs as the unprivileged user `cluster init` picks (docs/security.md).
    maguey_test_infra::kvm::ensure_qemu_user();
    let lab = TestLab::up_with(maguey_bin(), 2, &["--kvm"]);
    lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=64M",
        "-o",
        "lab-tiny",
        "-H",
        "kvm",
        "-n",
        "node2",
        // The console needs no network (and the lab's nodes may have no bridge).
        "--no-nics",
        "vm1",
    ])
    .ok();
    let ready = format!("{READY_MARKER} boot=1 disk=yes");
    assert!(
        wait_until(BOOT, || kvm::console(&lab, 2, "vm1").contains(&ready)),
        "no '{ready}' on the console:\n{}\n{}",
        kvm::console(&lab, 2, "vm1"),
        lab.logs()
    );

    // --log: the last output, without attaching.
    let r = lab.maguey(&["instance", "console", "vm1", "--log"]).ok();
    assert!(r.stdout.contains(&ready), "{}", r.stdout);
    let r = lab
        .maguey(&["instance", "console", "vm1", "--log", "--log-bytes", "40"])
        .ok();
    assert!(r.stdout.len() <= 41, "{:?}", r.stdout);

    // Scripted: a line typed comes back (the guest's tty echoes it), ticks stream out for
    // --timeout seconds after stdin ended.
    let token = format!("maguey-console-{}", std::process::id());
    let t = Instant::now();
    let r = console_with_input(
        &lab,
        &["instance", "console", "vm1", "--timeout", "3"],
        &format!("{token}\n"),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        r.stdout.contains(&token),
        "no echo of {token}:\n{}",
        r.stdout
    );
    let seen = ticks(&r.stdout);
    assert!(seen.len() >= 2, "ticks: {seen:?}\n{}", r.stdout);
    // Live and in order (the echo could land inside a tick's line: no gap-free check).
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");

    // One client at a time: while a console is attached, a second one is refused at once.
    // (The previous console's release travels CLI -> master -> node: retry if the node
    // still held it.)
    let mut first = None;
    for _ in 0..5 {
        let mut p = Proc::spawn(&lab, &["instance", "console", "vm1", "--timeout", "0"]);
        std::thread::sleep(Duration::from_secs(3));
        if p.running() {
            first = Some(p);
            break;
        }
    }
    let mut first = first.expect("a first console stays attached");
    let t = Instant::now();
    let second = console_with_input(
        &lab,
        &["instance", "console", "vm1"],
        "",
        Duration::from_secs(20),
    );
    assert_eq!(second.code, 1, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("in use"),
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    first.send("\n");
    let first = first.finish(Duration::from_secs(20));
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(ticks(&first.stdout).len() >= 2, "{}", first.stdout);

    // The node released the console: the command --show-cmd prints attaches again.
    let cmd = lab
        .maguey(&["instance", "console", "vm1", "--show-cmd"])
        .ok();
    let words: Vec<&str> = cmd.stdout.split_whitespace().collect();
    assert_eq!(words[0], maguey_bin().to_str().unwrap(), "{}", cmd.stdout);
    assert!(
        cmd.stdout.trim_end().ends_with("instance console vm1"),
        "{}",
        cmd.stdout
    );
    let mut again = Run {
        code: -1,
        stdout: String::new(),
        stderr: String::new(),
    };
    assert!(
        wait_until(Duration::from_secs(60), || {
            let o = Command::new(words[0])
                .args(&words[1..])
                .env_remove("MAGUEY_DIR")
                .env_remove("MAGUEY_CLUSTER")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            again = Run {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            };
            again.code == 0
        }),
        "{}\n{}",
        again.stdout,
        again.stderr
    );

    // Remotely, through the Remote API's port with a RAPI user (no state directory).
    let d = lab.dir.path().display().to_string();
    let env: BTreeMap<String, String> = lab
        .maguey(&["lab", "env", "--dir", &d])
        .ok()
        .stdout
        .lines()
        .filter_map(|x| x.strip_prefix("export "))
        .filter_map(|x| x.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let remote = |args: &[&str], password: &str| {
        let o = Command::new(maguey_bin())
            .arg("--cluster")
            .arg(&env["MAGUEY_RAPI_URL"])
            .args(args)
            .env("MAGUEY_DIR", "/nonexistent")
            .env("MAGUEY_RAPI_USER", &env["MAGUEY_RAPI_USER"])
            .env("MAGUEY_RAPI_PASSWORD", password)
            .env("MAGUEY_RAPI_CA", &env["MAGUEY_RAPI_CA"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let pw = env["MAGUEY_RAPI_PASSWORD"].clone();
    // (Retried like above: the previous console's release may still be on its way.)
    let mut r = remote(&["instance", "console", "vm1", "--timeout", "2"], &pw);
    for _ in 0..5 {
        if r.code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        r = remote(&["instance", "console", "vm1", "--timeout", "2"], &pw);
    }
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!ticks(&r.stdout).is_empty(), "{}", r.stdout);
    let r = remote(&["instance", "console", "vm1", "--log"], &pw);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&ready), "{}", r.stdout);
    let r = remote(&["instance", "console", "vm1", "--show-cmd"], &pw);
    assert!(
        r.stdout
            .contains(&format!("--cluster {}", env["MAGUEY_RAPI_URL"])),
        "{}",
        r.stdout
    );
    let r = remote(&["instance", "console", "vm1"], "wrong");
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("401"), "{}", r.stderr);

    // Only the master opens consoles on nodes: node2's own certificate is refused by node2.
    let id = maguey_rpc::ca::NodeIdentity::load(&lab.node_dir(2)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = maguey_rpc::console::console_http_client(&id).unwrap();
    let url = format!("https://{}:1811/console/vm1?hypervisor=kvm", lab.node_ip(2));
    match rt.block_on(maguey_rpc::console::connect(&http, &url)) {
        Err(maguey_rpc::console::ConsoleError::Refused { status, message }) => {
            assert_eq!(status, 403, "{message}");
            assert!(message.contains("only the master"), "{message}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("node2 opened its console for a non-master certificate"),
    }

    // Unknown instance: bad input (2). Stopped instance: refused (1), --log still works.
    let r = lab.maguey(&["instance", "console", "nosuch"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    lab.maguey(&["instance", "shutdown", "--timeout", "30", "vm1"])
        .ok();
    let r = lab.maguey(&["instance", "console", "vm1"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not running"), "{}", r.stderr);
    let r = lab.maguey(&["instance", "console", "vm1", "--log"]).ok();
    assert!(r.stdout.contains(&ready), "{}", r.stdout);
}
