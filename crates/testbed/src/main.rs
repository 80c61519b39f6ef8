//! `maguey-testbed`: node VMs with real LVM, DRBD and nested KVM, for humans and scripts.
//!
//! ```text
//! maguey-testbed up --nodes 2 --dir /tmp/tb [--vg]   # boots, prints the nodes, leaves them running
//! maguey-testbed run --dir /tmp/tb 0 'vgs; cat /proc/drbd'
//! maguey-testbed down --dir /tmp/tb
//! ```

use anyhow::Result;
use clap::{Parser, Subcommand};
use maguey_testbed::{image, ExtraFile, Testbed, TestbedConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "maguey-testbed",
    version,
    about = "Node VMs for tests (LVM, DRBD 8.4, nested KVM)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Builds the image if needed, boots the nodes and leaves them running.
    Up {
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1536)]
        memory: u32,
        #[arg(long, default_value_t = 4)]
        disk_gib: u64,
        /// Network namespace name (default mtb-PID-N).
        #[arg(long)]
        netns: Option<String>,
        /// Third octet of 10.77.S.0/24.
        #[arg(long, default_value_t = 0)]
        subnet: u8,
        /// The magueyd binary to pack (default: $MAGUEYD or next to this binary).
        #[arg(long)]
        magueyd: Option<PathBuf>,
        /// Also create the xenvg volume group on every node.
        #[arg(long)]
        vg: bool,
        /// More files for the nodes: HOST_PATH:NODE_PATH (repeatable).
        #[arg(long = "extra", value_name = "SRC:DEST")]
        extra: Vec<String>,
        /// Real Debian nodes of this release (systemd; e.g. trixie) instead of the initramfs
        /// nodes; --extra files and magueyd go on the payload disk (/mnt/payload).
        #[arg(long)]
        debian: Option<String>,
    },
    /// Runs a shell script on a node; prints its output and exits with its code.
    Run {
        #[arg(long)]
        dir: PathBuf,
        node: usize,
        script: String,
        /// Seconds before the script is killed.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Use the diagnostics port (works while a long command holds the main one).
        #[arg(long)]
        diag: bool,
    },
    /// Kills every VM of the testbed in DIR and deletes its network namespace.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Builds (or finds in the cache) the base node image and prints where it is.
    Image,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Up {
            nodes,
            dir,
            memory,
            disk_gib,
            netns,
            subnet,
            magueyd,
            vg,
            extra,
            debian,
        } => {
            let mut cfg = TestbedConfig::new(nodes, dir);
            cfg.memory_mib = memory;
            cfg.disk_gib = disk_gib;
            cfg.netns_name = netns;
            cfg.subnet = subnet;
            // The VMs outlive this command.
            cfg.kill_with_parent = false;
            if debian.is_some() {
                cfg.magueyd = None;
            }
            if magueyd.is_some() {
                cfg.magueyd = magueyd;
            }
            cfg.debian = debian;
            for e in extra {
                let Some((src, dest)) = e.split_once(':') else {
                    anyhow::bail!("--extra wants HOST_PATH:NODE_PATH, got {e:?}");
                };
                cfg.extra_files.push(ExtraFile {
                    src: src.into(),
                    dest: dest.into(),
                });
            }
            let tb = Testbed::up(cfg)?;
            if vg {
                tb.setup_vg()?;
            }
            let t = tb.timings();
            println!(
                "netns {} (host side {}); image {:.1}s, boot {:.1}s",
                tb.netns(),
                tb.host_ip(),
                t.image_build_seconds,
                t.boot_seconds
            );
            for i in 0..tb.nodes() {
                println!(
                    "node {i}: {} {} pid {} console {}",
                    tb.node_name(i),
                    tb.node_ip(i),
                    tb.pid(i).unwrap_or(0),
                    tb.console_log(i)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
            tb.detach();
            Ok(())
        }
        Cmd::Run {
            dir,
            node,
            script,
            timeout,
            diag,
        } => {
            let tb = Testbed::attach(&dir)?;
            let t = Duration::from_secs(timeout);
            let o = if diag {
                tb.diag(node, &script, t)?
            } else {
                tb.exec(node, &script, t)?
            };
            print!("{}", o.out);
            if o.timed_out {
                eprintln!("maguey-testbed: timed out after {timeout}s");
            }
            std::process::exit(o.code);
        }
        Cmd::Down { dir } => Testbed::attach(&dir)?.down(),
        Cmd::Image => {
            let img = image::ensure_base(&image::cache_dir())?;
            println!("{}", serde_json::to_string_pretty(&img)?);
            Ok(())
        }
    }
}
