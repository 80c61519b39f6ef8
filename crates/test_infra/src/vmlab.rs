//! Fixture for tests on a cluster of node VMs (real LVM, DRBD 8.4, nested KVM): see
//! [`maguey_lab::vmnodes`].
//!
//! ```no_run
//! # use maguey_test_infra::vmlab::VmLab;
//! # let maguey = std::path::Path::new("target/debug/maguey");
//! let lab = VmLab::up(maguey, 2);                   // VMs die with this thread, or on drop
//! lab.maguey(&["node", "list"]).ok();               // the host's CLI against the master
//! let out = lab.run_ok(2, "lvs --reportformat json"); // a script in node2 (1-based)
//! ```
//!
//! Nodes are numbered from 1, like their cluster names (`node1` is the master, at
//! `10.77.S.1`); [`VmLab::testbed`] gives the testbed itself (0-based) for anything else.

use crate::Run;
use maguey_lab::vmnodes::{self, VmLabState, VmOptions};
use maguey_lab::Lab;
use maguey_testbed::Testbed;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running cluster of node VMs in a temporary directory, torn down when dropped (VMs,
/// network namespace, veth).
pub struct VmLab {
    pub dir: tempfile::TempDir,
    pub maguey: PathBuf,
    pub lab: Lab,
    pub state: VmLabState,
    tb: Option<Testbed>,
}

impl VmLab {
    /// Boots `nodes` node VMs and forms their cluster from this process: the VMs die with the
    /// calling thread even if the test process is killed.
    pub fn up(maguey: &Path, nodes: usize) -> VmLab {
        Self::up_with(maguey, VmOptions::new(nodes, "/unused"))
    }

    /// [`VmLab::up`] with options (memory, disk size, more files for the image); `dir` is
    /// replaced by a temporary directory.
    pub fn up_with(maguey: &Path, mut o: VmOptions) -> VmLab {
        let dir = temp_dir();
        o.dir = dir.path().to_path_buf();
        o.kill_with_parent = true;
        // No periodic watcher pass (tests stay deterministic) unless the test asks for one
        // with MAGUEY_WATCHER_INTERVAL or sets the option itself.
        if o.watcher_interval.is_none() {
            let env = std::env::var("MAGUEY_WATCHER_INTERVAL").ok();
            o.watcher_interval = Some(env.and_then(|v| v.parse().ok()).unwrap_or(0));
        }
        if o.magueyd.is_none() {
            o.magueyd = maguey
                .parent()
                .map(|p| p.join("magueyd"))
                .filter(|p| p.is_file());
        }
        let (lab, tb) = match vmnodes::up_blocking(&o) {
            Ok(x) => x,
            Err(e) => panic!("lab up --vm-nodes {} failed: {e:#}", o.nodes),
        };
        let state = VmLabState::load(dir.path()).expect("vmlab.json");
        let t = &state.timings;
        eprintln!(
            "VmLab: {} node VMs up in {:.1} s (image {:.1} s, boot {:.1} s, xenvg {:.1} s, cluster {:.1} s)",
            o.nodes,
            t.total_seconds,
            t.image_build_seconds,
            t.boot_seconds,
            t.vg_seconds,
            t.cluster_seconds
        );
        VmLab {
            dir,
            maguey: maguey.to_path_buf(),
            lab,
            state,
            tb,
        }
    }

    /// Boots the lab with the CLI, `maguey lab up --vm-nodes N --dir TMP` (the VMs outlive
    /// that command; dropping this value runs `maguey lab down`).
    pub fn up_cli(maguey: &Path, nodes: usize) -> VmLab {
        let dir = temp_dir();
        let d = dir.path().display().to_string();
        let n = nodes.to_string();
        let o = Command::new(maguey)
            .args(["lab", "up", "--vm-nodes", &n, "--dir", &d])
            .output()
            .expect("running maguey lab up");
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        if r.code != 0 {
            let _ = vmnodes::down(dir.path());
            panic!("lab up --vm-nodes failed\n{}\n{}", r.stdout, r.stderr);
        }
        let state = VmLabState::load(dir.path()).expect("vmlab.json");
        let lab = Lab::load(dir.path()).expect("lab.json");
        let tb = Testbed::attach(&state.testbed_dir).expect("testbed.json");
        VmLab {
            dir,
            maguey: maguey.to_path_buf(),
            lab,
            state,
            tb: Some(tb),
        }
    }

    /// The testbed (node indices from 0: node `n` is index `n - 1`).
    pub fn testbed(&self) -> &Testbed {
        self.tb.as_ref().expect("the lab is down")
    }

    pub fn testbed_mut(&mut self) -> &mut Testbed {
        self.tb.as_mut().expect("the lab is down")
    }

    /// Runs `maguey ARGS` on the host against the master (`MAGUEY_DIR` = the client dir).
    pub fn maguey(&self, args: &[&str]) -> Run {
        let o = Command::new(&self.maguey)
            .args(args)
            .env("MAGUEY_DIR", &self.state.client_dir)
            .env_remove("MAGUEY_CLUSTER")
            .output()
            .expect("running maguey");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `maguey ARGS` that must succeed (panics with its output and the nodes' logs); returns
    /// its stdout and prints how long it took.
    pub fn ok(&self, args: &[&str]) -> String {
        let t = std::time::Instant::now();
        let r = self.maguey(args);
        assert_eq!(
            r.code,
            0,
            "maguey {args:?}:\n{}\n{}\n{}",
            r.stdout,
            r.stderr,
            self.logs()
        );
        eprintln!(
            "timing: maguey {} {:.1}s",
            args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
            t.elapsed().as_secs_f64()
        );
        r.stdout
    }

    /// The `instance list` row of `name` (fields name, pnode, snodes, status, disk_template).
    pub fn instance(&self, name: &str) -> serde_json::Value {
        let list = self
            .maguey(&[
                "instance",
                "list",
                "-o",
                "name,pnode,snodes,status,disk_template",
                "--output",
                "json",
            ])
            .ok()
            .json();
        list.as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
    }

    /// `lvs` of node `node` as (vg/lv, tags, size in bytes).
    pub fn lvs(&self, node: usize) -> Vec<(String, String, u64)> {
        let out = self.run_ok(
            node,
            "lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_tags,lv_size 2>/dev/null",
        );
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("node{node} lvs: {e}\n{out}"));
        v["report"][0]["lv"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
                (
                    format!("{}/{}", s("vg_name"), s("lv_name")),
                    s("lv_tags"),
                    s("lv_size").parse().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The LVs of node `node` tagged as instance `inst`'s (vg/lv, size in bytes).
    pub fn instance_lvs(&self, node: usize, inst: &str) -> Vec<(String, u64)> {
        let tag = format!("originstname+{inst}");
        self.lvs(node)
            .into_iter()
            .filter(|(_, tags, _)| tags.split(',').any(|t| t == tag))
            .map(|(lv, _, size)| (lv, size))
            .collect()
    }

    /// The `/proc/drbd` line of `minor` on node `node` (`cs:... ro:... ds:...`), or `None`
    /// when the minor is not configured there.
    pub fn drbd_line(&self, node: usize, minor: u32) -> Option<String> {
        let out = self.run_ok(node, "cat /proc/drbd");
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{minor}: cs:")))
            .map(|l| l.trim().to_string())
    }

    /// The minors configured on node `node` (from `/proc/drbd`).
    pub fn drbd_minors(&self, node: usize) -> Vec<u32> {
        let out = self.run_ok(node, "cat /proc/drbd");
        out.lines()
            .filter(|l| l.contains(": cs:"))
            .filter_map(|l| l.trim().split(':').next()?.parse().ok())
            .collect()
    }

    /// The minor of node `node`'s only DRBD device in the given role (`Primary`, `Secondary`).
    pub fn minor_in_role(&self, node: usize, role: &str) -> u32 {
        let out = self.run_ok(node, "cat /proc/drbd");
        let line = out
            .lines()
            .find(|l| l.contains(&format!("ro:{role}/")))
            .unwrap_or_else(|| panic!("node{node}: no {role} DRBD device:\n{out}"));
        line.trim_start()
            .split(':')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("node{node}: {line}"))
    }

    /// `/dev/<vg>/<uuid>.disk<index>_data` of `inst` on node `node` (a DRBD disk's data LV), or
    /// the plain LV `<uuid>.disk<index>`.
    pub fn data_lv(&self, node: usize, inst: &str, index: usize) -> String {
        let lvs = self.instance_lvs(node, inst);
        let drbd = format!(".disk{index}_data");
        let plain = format!(".disk{index}");
        lvs.iter()
            .find(|(lv, _)| lv.ends_with(&drbd))
            .or_else(|| lvs.iter().find(|(lv, _)| lv.ends_with(&plain)))
            .map(|(lv, _)| format!("/dev/{lv}"))
            .unwrap_or_else(|| panic!("node{node}: no data LV of {inst} disk {index}: {lvs:?}"))
    }

    /// Writes records `from..to` to `dev` on node `node` (see [`records_writer`]); returns when
    /// all are acknowledged (their numbers are appended to `/tmp/acks` in the node).
    pub fn write_records(&self, node: usize, dev: &str, from: u32, to: u32) {
        let t = std::time::Instant::now();
        let (code, out) = self.run(node, &records_writer(dev, from, to, "/tmp/acks"));
        assert_eq!(
            code,
            0,
            "node{node}: writing records {from}..{to} to {dev}:\n{out}\n{}",
            self.run(node, "cat /tmp/w.err; tail -3 /tmp/acks; cat /proc/drbd")
                .1
        );
        eprintln!(
            "timing: node{node} records {from}..{to} written to {dev} in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }

    /// Reads records `from..to` from `dev` on node `node` (O_DIRECT) and compares them byte for
    /// byte with what [`records_writer`] wrote; panics with the first bad record.
    pub fn check_records(&self, node: usize, dev: &str, from: u32, to: u32) {
        let t = std::time::Instant::now();
        let script = format!(
            "rm -f /tmp/exp /tmp/got
n={from}
while [ $n -lt {to} ]; do yes \"maguey-rec $n\" | head -c 4096 >> /tmp/exp; n=$((n+1)); done
dd if={dev} of=/tmp/got bs=4096 skip={from} count={count} iflag=direct 2>/dev/null || exit 2
if cmp /tmp/exp /tmp/got >/tmp/cmp.out 2>&1; then echo same; exit 0; fi
cat /tmp/cmp.out
off=$(sed -n 's/.*char \\([0-9]*\\).*/\\1/p' /tmp/cmp.out)
[ -n \"$off\" ] && echo \"first bad record: $(( {from} + (off - 1) / 4096 ))\" && \\
  dd if=/tmp/got bs=4096 skip=$(( (off - 1) / 4096 )) count=1 2>/dev/null | head -c 64
exit 1",
            count = to - from
        );
        let (code, out) = self.run(node, &script);
        assert_eq!(
            code, 0,
            "node{node}: records {from}..{to} on {dev} differ from what was written:\n{out}"
        );
        eprintln!(
            "checked: node{node} records {from}..{to} ({} writes) on {dev} in {:.1}s",
            to - from,
            t.elapsed().as_secs_f64()
        );
    }

    /// Waits (up to 120 s) until `minor` on node `node` is Connected and UpToDate on both
    /// sides; panics with the last `/proc/drbd` line otherwise.
    pub fn wait_in_sync(&self, node: usize, minor: u32, what: &str) {
        let t = std::time::Instant::now();
        let mut last = String::new();
        let synced = poll(Duration::from_secs(120), || {
            last = self.drbd_line(node, minor).unwrap_or_default();
            last.contains("cs:Connected") && last.contains("ds:UpToDate/UpToDate")
        });
        assert!(
            synced,
            "{what}: node{node} minor {minor} never back to Connected UpToDate/UpToDate: {last}\n{}",
            self.logs()
        );
        eprintln!(
            "timing: {what}: connected and in sync after {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }

    /// The `MAGUEY_DIR` of the host's CLI.
    pub fn client_dir(&self) -> &Path {
        &self.state.client_dir
    }

    fn index(&self, node: usize) -> usize {
        assert!(
            node >= 1 && node <= self.state.nodes,
            "no node {node}: nodes are numbered 1..={}",
            self.state.nodes
        );
        node - 1
    }

    /// Runs a shell script (dash) in node `node` (1-based) through its agent: exit code and
    /// output (stdout and stderr together). Panics if the agent fails or it times out (120 s).
    pub fn run(&self, node: usize, script: &str) -> (i32, String) {
        let i = self.index(node);
        match self.testbed().run(i, script) {
            Ok(r) => r,
            Err(e) => panic!("node{node}: {e:#}"),
        }
    }

    /// [`VmLab::run`] that panics unless the script exits 0; returns its output.
    pub fn run_ok(&self, node: usize, script: &str) -> String {
        let (code, out) = self.run(node, script);
        assert_eq!(code, 0, "node{node}: {script:?} exited with {code}:\n{out}");
        out
    }

    /// Runs a script with a timeout; the output says whether it timed out.
    pub fn exec(
        &self,
        node: usize,
        script: &str,
        timeout: Duration,
    ) -> anyhow::Result<maguey_testbed::agent::Output> {
        let i = self.index(node);
        self.testbed().exec(i, script, timeout)
    }

    /// Node `node`'s cluster name (`nodeN`).
    pub fn node_name(&self, node: usize) -> String {
        format!("node{}", self.index(node) + 1)
    }

    /// Node `node`'s address (primary and secondary IP).
    pub fn node_ip(&self, node: usize) -> String {
        self.state.node_ip(self.index(node) + 1)
    }

    /// Kills node `node`'s VM at once (power cut). Its disks stay: `xenvg` on `/dev/vda`, and
    /// `magueyd`'s state (and `file` disks) on `/dev/vdb`; what was only in its memory (DRBD
    /// devices, running instances, `/var/log`) is gone.
    pub fn power_off(&mut self, node: usize) {
        let i = self.index(node);
        if let Err(e) = self.testbed_mut().power_off(i) {
            panic!("power off node{node}: {e:#}");
        }
    }

    /// Boots node `node` again (same disks), waits for its agent and starts its `magueyd`
    /// (as a real node's init would); returns the boot time in seconds.
    pub fn power_on(&mut self, node: usize) -> f64 {
        let s = self.power_on_without_daemon(node);
        self.start_daemon_listening(node);
        s
    }

    /// Boots node `node` again without starting `magueyd`.
    pub fn power_on_without_daemon(&mut self, node: usize) -> f64 {
        let i = self.index(node);
        match self.testbed_mut().power_on(i) {
            Ok(s) => s,
            Err(e) => panic!("power on node{node}: {e:#}"),
        }
    }

    /// Power cycle: [`VmLab::power_off`] then [`VmLab::power_on`].
    pub fn reboot(&mut self, node: usize) -> f64 {
        self.power_off(node);
        self.power_on(node)
    }

    /// Kills node `node`'s `magueyd` with SIGKILL (its QEMUs, in their own sessions, run
    /// on), starts it again and waits until it listens: a master restart.
    pub fn restart_daemon(&self, node: usize) {
        self.run_ok(
            node,
            "pids() { ps -o pid,args | grep '[/]usr/sbin/magueyd' | awk '{print $1}'; }\n\
             for p in $(pids); do kill -9 $p; done\n\
             i=0; while [ -n \"$(pids)\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
             [ -z \"$(pids)\" ]",
        );
        self.start_daemon_listening(node);
    }

    /// [`VmLab::start_daemon`] as a member, then waits (60 s at most) until it listens.
    fn start_daemon_listening(&self, node: usize) {
        self.start_daemon(node, &[]);
        let listening = vmnodes::wait_daemon_listening(
            self.testbed(),
            node,
            self.state.port,
            std::time::Duration::from_secs(60),
        );
        if let Err(e) = listening {
            panic!("{e:#}");
        }
    }

    /// Starts `magueyd` in node `node` (in the background, logging to `/var/log/magueyd.log`;
    /// mounts the state disk first if needed). `args`: extra flags (none for a member).
    pub fn start_daemon(&self, node: usize, args: &[String]) {
        let mut args = args.to_vec();
        args.extend(self.state.daemon_args());
        if let Err(e) = vmnodes::start_daemon(self.testbed(), node, &args) {
            panic!("{e:#}");
        }
    }

    /// Cuts node `node`'s network (its tap goes down).
    pub fn cut_link(&self, node: usize) {
        let i = self.index(node);
        if let Err(e) = self.testbed().cut_link(i) {
            panic!("cut link of node{node}: {e:#}");
        }
    }

    pub fn restore_link(&self, node: usize) {
        let i = self.index(node);
        if let Err(e) = self.testbed().restore_link(i) {
            panic!("restore link of node{node}: {e:#}");
        }
    }

    /// Limits the traffic towards node `node` to `kbit` kbit/s (`None`: no limit); the limit
    /// stays across power cycles (see [`Testbed::limit_link`]).
    pub fn limit_link(&self, node: usize, kbit: Option<u32>) {
        let i = self.index(node);
        if let Err(e) = self.testbed().limit_link(i, kbit) {
            panic!("limit link of node{node}: {e:#}");
        }
    }

    /// The end of every node's magueyd log, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.state.nodes)
            .map(|n| vmnodes::node_log_tail(self.testbed(), n))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Tears the lab down now (as dropping it does), reporting errors.
    pub fn down(mut self) -> anyhow::Result<usize> {
        self.teardown()
    }

    fn teardown(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        if let Some(tb) = self.tb.take() {
            n = (0..tb.nodes())
                .filter(|&i| tb.pid(i).is_some_and(maguey_testbed::pid_alive))
                .count();
            // Kills (and reaps) the VMs, deletes the namespace.
            tb.down()?;
        }
        if vmnodes::is_vm_lab(self.dir.path()) {
            vmnodes::down(self.dir.path())?;
        }
        Ok(n)
    }
}

/// Polls `f` every 500 ms (each poll may run scripts in node VMs) until it returns true or
/// `limit` passes; returns whether it became true.
pub fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

/// A shell loop (for a node VM) that writes numbered 4 KiB records `from..to` to `dev`
/// (record N is `maguey-rec N` repeated, at offset N * 4096), one `dd oflag=direct
/// conv=fsync` per record, appending each acknowledged record's number to `acks` after its
/// `dd` returned. It stands in for a guest that fsyncs its writes.
pub fn records_writer(dev: &str, from: u32, to: u32, acks: &str) -> String {
    format!(
        "n={from}
while [ $n -lt {to} ]; do
  yes \"maguey-rec $n\" | head -c 4096 > /tmp/w.rec
  dd if=/tmp/w.rec of={dev} bs=4096 seek=$n count=1 oflag=direct conv=fsync 2>/tmp/w.err || exit 1
  echo $n >> {acks}
  n=$((n+1))
done"
    )
}

/// Builds `target/debug/maguey` and `magueyd` with the workspace's cargo (the node VMs run
/// this `magueyd`) and returns the path of `maguey`, found beside the calling test binary.
pub fn build_maguey() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "-p",
            "maguey-cli",
            "-p",
            "maguey-daemon",
            "--bin",
            "maguey",
            "--bin",
            "magueyd",
        ])
        .status()
        .expect("running cargo build");
    assert!(st.success(), "building maguey and magueyd failed");
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("maguey"))
        .find(|p| p.is_file())
        .expect("target/debug/maguey")
}

fn temp_dir() -> tempfile::TempDir {
    // Short: QEMU's unix socket paths must fit in 107 bytes.
    tempfile::Builder::new()
        .prefix("mgvl-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

impl Drop for VmLab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("VmLab teardown: {e:#}");
        }
    }
}
