//! A lab cluster of real daemons in a temporary directory on its own random loopback subnet
//! (so tests run in parallel), started with `maguey lab up` and the CLI run against it.

use crate::Run;
use maguey_lab::Lab;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running lab cluster, stopped when dropped.
pub struct TestLab {
    pub dir: tempfile::TempDir,
    pub maguey: PathBuf,
    pub prefix: String,
    pub nodes: usize,
}

impl TestLab {
    /// Starts an `nodes`-node lab with the given `maguey` binary (its `magueyd` sits beside it).
    pub fn up(maguey: &Path, nodes: usize) -> TestLab {
        Self::up_with(maguey, nodes, &[])
    }

    pub fn up_with(maguey: &Path, nodes: usize, extra: &[&str]) -> TestLab {
        let dir = tempfile::Builder::new()
            .prefix("maguey-lab-")
            .tempdir()
            .expect("temp dir");
        let prefix = format!(
            "127.{}.{}",
            1 + rand::random::<u8>() % 250,
            1 + rand::random::<u8>() % 250
        );
        let lab = TestLab {
            dir,
            maguey: maguey.to_path_buf(),
            prefix,
            nodes,
        };
        let dir_s = lab.dir.path().display().to_string();
        let n = nodes.to_string();
        let mut args = vec![
            "lab",
            "up",
            "--nodes",
            &n,
            "--dir",
            &dir_s,
            "--address-prefix",
            &lab.prefix,
        ];
        args.extend_from_slice(extra);
        let r = lab.run_raw(&args);
        assert_eq!(
            r.code,
            0,
            "lab up failed\n{}\n{}\n{}",
            r.stdout,
            r.stderr,
            lab.logs()
        );
        lab
    }

    /// State directory of node `i` (1-based).
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    pub fn master_dir(&self) -> PathBuf {
        self.node_dir(1)
    }

    /// Address of node `i` (as the lab chose it: 10.A.B.i with network namespaces).
    pub fn node_ip(&self, i: usize) -> String {
        let lab = Lab::load(self.dir.path()).ok();
        if let Some(n) = lab.as_ref().and_then(|l| l.nodes.get(i.wrapping_sub(1))) {
            return n.ip.clone();
        }
        let prefix = lab
            .and_then(|l| l.nodes.first().map(|n| n.ip.clone()))
            .and_then(|ip| ip.rsplit_once('.').map(|(p, _)| p.to_string()))
            .unwrap_or_else(|| self.prefix.clone());
        format!("{prefix}.{i}")
    }

    /// Whether each node runs in its own network namespace.
    pub fn has_netns(&self) -> bool {
        Lab::load(self.dir.path())
            .map(|l| l.host_bridge.is_some())
            .unwrap_or(false)
    }

    /// Cuts node `i` off the network (its link down), or brings it back.
    pub fn set_link(&self, i: usize, up: bool) {
        maguey_lab::set_node_link(self.dir.path(), i, up).expect("set the node's link");
    }

    /// Kills node `i`'s daemon and VMs at once, like a power loss.
    pub fn kill_node(&self, i: usize) {
        maguey_lab::kill_node(self.dir.path(), i).expect("kill the node");
    }

    /// Runs `maguey ARGS` with node `i`'s state directory (its ssconf and, on a master
    /// candidate, the admin certificate the leader handed it): the CLI as run on that node.
    pub fn maguey_on(&self, i: usize, args: &[&str]) -> Run {
        let o = Command::new(&self.maguey)
            .args(args)
            .env("MAGUEY_DIR", self.node_dir(i))
            .output()
            .expect("running maguey");
        Run::from(o)
    }

    /// The master as node `i` names it (`cluster getmaster`; empty when it names none).
    pub fn getmaster(&self, i: usize) -> String {
        self.maguey_on(i, &["cluster", "getmaster"])
            .stdout
            .trim()
            .to_string()
    }

    /// Node `i`'s daemon log (empty when it has none yet).
    pub fn daemon_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("magueyd.log")).unwrap_or_default()
    }

    fn run_raw(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.maguey);
        cmd.args(args).env("MAGUEY_DIR", self.master_dir());
        // The daemons a lab starts run no periodic watcher pass (tests stay deterministic)
        // unless the test sets MAGUEY_WATCHER_INTERVAL itself (crates/cli/tests/kvm_watcher.rs).
        if std::env::var_os("MAGUEY_WATCHER_INTERVAL").is_none() {
            cmd.env("MAGUEY_WATCHER_INTERVAL", "0");
        }
        let o = cmd.output().expect("running maguey");
        Run::from(o)
    }

    /// Runs `maguey ARGS` against the lab's master.
    pub fn maguey(&self, args: &[&str]) -> Run {
        self.run_raw(args)
    }

    /// The config serial, read through the CLI.
    pub fn serial(&self) -> u64 {
        let r = self.maguey(&["cluster", "info", "--output", "json"]).ok();
        r.json()["Config serial"].as_u64().expect("serial")
    }

    /// All daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.nodes)
            .map(|i| {
                let p = self.node_dir(i).join("magueyd.log");
                format!(
                    "--- node{i} ---\n{}",
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// PID of node `i`'s daemon.
    pub fn pid(&self, i: usize) -> Option<i32> {
        std::fs::read_to_string(self.node_dir(i).join("magueyd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let d = self.dir.path().display().to_string();
        let _ = self.run_raw(&["lab", "down", "--dir", &d]);
    }
}
