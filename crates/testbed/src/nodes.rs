//! Working on the node VMs of a [`Testbed`]: running scripts through the agent, copying
//! files in, addresses and namespaces, powering nodes off and on, cutting their links.

use super::*;

impl Testbed {
    fn node(&self, i: usize) -> Result<&NodeState> {
        self.state
            .nodes
            .get(i)
            .with_context(|| format!("no node {i} (there are {})", self.state.nodes.len()))
    }

    fn exec_on(
        &self,
        conns: &[Mutex<Option<agent::Conn>>],
        socket: &Path,
        i: usize,
        script: &str,
        timeout: Duration,
    ) -> Result<Output> {
        self.node(i)?;
        let mut guard = conns[i]
            .lock()
            .map_err(|_| anyhow::anyhow!("agent lock poisoned"))?;
        if guard.is_none() {
            *guard = Some(agent::Conn::connect(socket)?);
        }
        let Some(conn) = guard.as_mut() else {
            bail!("no agent connection");
        };
        let r = conn.run(script, timeout);
        if r.is_err() {
            // Start over with a fresh connection next time (late replies are skipped by id).
            *guard = None;
        }
        r.with_context(|| format!("node {i}: running {:?}", short(script)))
    }

    /// Runs `script` (with `/bin/sh`, i.e. dash, in `/root`) on node `i` and returns its exit
    /// code and output (stdout and stderr together). It is killed after [`DEFAULT_TIMEOUT`].
    pub fn run(&self, i: usize, script: &str) -> Result<(i32, String)> {
        let o = self.exec(i, script, DEFAULT_TIMEOUT)?;
        if o.timed_out {
            bail!("node {i}: {:?} timed out; output: {}", short(script), o.out);
        }
        Ok((o.code, o.out))
    }

    /// Like [`Testbed::run`], but fails unless the exit code is 0; returns the output.
    pub fn run_ok(&self, i: usize, script: &str) -> Result<String> {
        let (code, out) = self.run(i, script)?;
        if code != 0 {
            bail!("node {i}: {:?} exited with {code}: {out}", short(script));
        }
        Ok(out)
    }

    /// Runs `script` on node `i` with a timeout (whole seconds), reporting a timeout in the
    /// result instead of failing.
    pub fn exec(&self, i: usize, script: &str, timeout: Duration) -> Result<Output> {
        let sock = self.node(i)?.agent_socket.clone();
        self.exec_on(&self.agents, &sock, i, script, timeout)
    }

    /// Runs `script` on node `i` through its second (diagnostics) agent port, usable while a
    /// long command holds the first one.
    pub fn diag(&self, i: usize, script: &str, timeout: Duration) -> Result<Output> {
        let sock = self.node(i)?.diag_socket.clone();
        self.exec_on(&self.diags, &sock, i, script, timeout)
    }

    /// Runs `script` on every node in parallel; results in node order.
    pub fn run_all(&self, script: &str) -> Result<Vec<(i32, String)>> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..self.state.nodes.len())
                .map(|i| s.spawn(move || self.run(i, script)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("run thread panicked")))
                })
                .collect()
        })
    }

    /// Creates the volume group [`VG_NAME`] on `/dev/vda` of every node (in parallel).
    pub fn setup_vg(&self) -> Result<()> {
        let script = format!(
            "set -e\npvcreate -q -f /dev/vda\nvgcreate -q {VG_NAME} /dev/vda\nvgs --noheadings -o vg_name {VG_NAME}\n"
        );
        for (i, (code, out)) in self.run_all(&script)?.into_iter().enumerate() {
            if code != 0 {
                bail!("node {i}: creating {VG_NAME} failed ({code}): {out}");
            }
        }
        Ok(())
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.state.nodes.len()
    }

    /// Node `i`'s address on the testbed network (`10.77.S.(i+1)`).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.state
            .nodes
            .get(i)
            .map(|n| n.ip)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// Node `i`'s hostname (`nodeI`); every node's `/etc/hosts` lists all nodes and `host`.
    pub fn node_name(&self, i: usize) -> &str {
        self.state
            .nodes
            .get(i)
            .map(|n| n.name.as_str())
            .unwrap_or("")
    }

    /// The address of the namespace's side of the bridge (`10.77.S.254`).
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.state.subnet, 254)
    }

    /// The network namespace holding the bridge and taps.
    pub fn netns(&self) -> &str {
        &self.state.netns
    }

    /// `ip netns exec NETNS program`: a host command that can reach the nodes.
    pub fn netns_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.state.netns]).arg(program);
        c
    }

    /// Runs `f` on a thread that joined the testbed's network namespace, so the sockets it
    /// opens (a TCP client to a node, a tokio runtime built in it) reach the nodes. Sockets
    /// stay in that namespace when handed to other threads.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.state.netns);
        let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|s| {
            s.spawn(move || -> Result<T> {
                use std::os::fd::AsRawFd;
                // SAFETY: setns on this thread only, with a namespace fd we hold open.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("entering {path}"));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the netns thread panicked")))
        })
    }

    /// Copies the host file `src` to `dest` on node `i` over the testbed network (busybox
    /// `nc` in the node, a TCP client in the namespace): tens of MB/s, for pushing a rebuilt
    /// binary without a reboot. The mode bits are kept.
    pub fn put_file(&self, i: usize, src: &Path, dest: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let port = 20000 + PUT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 20000;
        let tmp = format!("{dest}.put-{port}");
        let parent = Path::new(dest)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        self.run_ok(
            i,
            &format!(
                "mkdir -p {}\n(nc -l -p {port} > {} 2>/dev/null &)\n",
                sh_quote(&parent),
                sh_quote(&tmp)
            ),
        )?;
        let addr = std::net::SocketAddr::from((self.node_ip(i), port));
        let src_path = src.to_path_buf();
        self.in_netns(move || -> Result<()> {
            use std::io::Read;
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut c = loop {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => {
                        return Err(e).context("connecting to the node's nc")
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            let mut f = std::fs::File::open(&src_path)?;
            std::io::copy(&mut f, &mut c)?;
            c.shutdown(std::net::Shutdown::Write)?;
            // nc closes the connection once it has written everything and exits.
            c.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut rest = Vec::new();
            c.read_to_end(&mut rest)?;
            Ok(())
        })??;
        let size = meta.len();
        // nc's stdin is /dev/null, so it shuts its sending side at once: the client's EOF above
        // does not mean that nc has written everything yet. Wait (bounded) for the whole file.
        self.run_ok(
            i,
            &format!(
                "set -e\nn=0\nwhile [ \"$(wc -c < {t})\" -lt {size} ] && [ $n -lt 600 ]; do usleep 100000; n=$((n+1)); done\n[ \"$(wc -c < {t})\" -eq {size} ]\nchmod {mode:o} {t}\nmv -f {t} {d}\n",
                t = sh_quote(&tmp),
                d = sh_quote(dest)
            ),
        )
        .with_context(|| format!("node {i}: {dest} is incomplete"))?;
        Ok(())
    }

    /// The serial console log of node `i` (kept after teardown).
    pub fn console_log(&self, i: usize) -> Option<&Path> {
        self.state.nodes.get(i).map(|n| n.console_log.as_path())
    }

    /// QEMU pid of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<i32> {
        self.state.nodes.get(i).and_then(|n| n.pid)
    }

    /// The testbed's state (paths, pids, timings).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Bring-up timings.
    pub fn timings(&self) -> &Timings {
        &self.state.timings
    }

    pub(crate) fn kill_node(&mut self, i: usize) {
        let Some(n) = self.state.nodes.get_mut(i) else {
            return;
        };
        if let Some(pid) = n.pid.take() {
            // Only a QEMU of ours (the pid could have been reused since).
            if cmdline_mentions(pid, &n.pidfile) {
                kill_hard(pid);
            }
        }
        if let Some(m) = self.agents.get(i) {
            if let Ok(mut g) = m.lock() {
                *g = None;
            }
        }
        if let Some(m) = self.diags.get(i) {
            if let Ok(mut g) = m.lock() {
                *g = None;
            }
        }
    }

    /// Kills node `i`'s QEMU at once (power cut). Its disk stays.
    pub fn power_off(&mut self, i: usize) -> Result<()> {
        self.node(i)?;
        self.kill_node(i);
        self.save()
    }

    /// Boots node `i` again (same disk) and waits for its agent.
    pub fn power_on(&mut self, i: usize) -> Result<f64> {
        if self.node(i)?.pid.is_some_and(pid_alive) {
            bail!("node {i} is running");
        }
        let t = Instant::now();
        self.start_qemu(i)?;
        self.save()?;
        self.wait_agent(i, t)
    }

    /// Clean shutdown of node `i`: runs `command` in the node (e.g. `systemctl poweroff` on
    /// a Debian node) and waits up to `timeout` for its QEMU to exit (QEMU runs with
    /// `-no-reboot`). Returns the seconds it took. The disks stay; [`Testbed::power_on`]
    /// boots the node again.
    pub fn shutdown_node(&mut self, i: usize, command: &str, timeout: Duration) -> Result<f64> {
        let pid = self.node(i)?.pid.context("the node is not running")?;
        let t = Instant::now();
        // The agent dies with the node: its answer may never come.
        let _ = self.exec(
            i,
            &format!("({command}) >/dev/null 2>&1 &"),
            Duration::from_secs(10),
        );
        while pid_alive(pid) {
            if t.elapsed() > timeout {
                bail!("node {i} did not power off within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let took = t.elapsed().as_secs_f64();
        // Reaps the exited QEMU and forgets the agent connections.
        self.kill_node(i);
        self.save()?;
        Ok(took)
    }

    /// Power cycle: [`Testbed::power_off`] then [`Testbed::power_on`]. Returns the boot time.
    pub fn reboot_node(&mut self, i: usize) -> Result<f64> {
        self.power_off(i)?;
        self.power_on(i)
    }

    /// Takes node `i`'s tap down: the node's network is cut (its own link stays up).
    pub fn cut_link(&self, i: usize) -> Result<()> {
        let n = self.node(i)?;
        ip(&["-n", &self.state.netns, "link", "set", &n.tap, "down"])
    }

    /// Brings node `i`'s tap back up.
    pub fn restore_link(&self, i: usize) -> Result<()> {
        let n = self.node(i)?;
        ip(&["-n", &self.state.netns, "link", "set", &n.tap, "up"])
    }

    /// Limits the traffic towards node `i` (its tap's egress: what the bridge sends to the
    /// node) to `kbit` kbit/s with a token bucket (`tc ... tbf`), or lifts the limit
    /// (`None`). The tap outlives power cycles, and so does the limit: a test can slow a
    /// node's resync before the node boots.
    pub fn limit_link(&self, i: usize, kbit: Option<u32>) -> Result<()> {
        let n = self.node(i)?;
        let ns = &self.state.netns;
        let (args, what): (Vec<String>, _) = match kbit {
            Some(k) => (
                [
                    "-n", ns, "qdisc", "replace", "dev", &n.tap, "root", "tbf", "rate",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    format!("{k}kbit"),
                    "burst".into(),
                    "64kb".into(),
                    "latency".into(),
                    "100ms".into(),
                ])
                .collect(),
                "limiting",
            ),
            None => (
                ["-n", ns, "qdisc", "del", "dev", &n.tap, "root"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                "unlimiting",
            ),
        };
        let o = Command::new("tc")
            .args(&args)
            .output()
            .context("running tc (iproute2)")?;
        if !o.status.success() {
            bail!(
                "{what} the link of node {i}: tc {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(())
    }
}

static PUT_SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// `s` as one single-quoted shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn short(script: &str) -> String {
    let s: String = script.chars().take(80).collect();
    if s.len() < script.len() {
        format!("{s}...")
    } else {
        s
    }
}
