//! Host side of instance NICs for the kvm hypervisor: Ganeti's NIC modes `bridged` and
//! `routed` (what Ganeti's `kvm-ifup` scripts do).
//!
//! Every NIC gets a persistent tap (`ip tuntap add ... mode tap`) created before QEMU starts
//! and handed to it with `-netdev tap,ifname=TAP,script=no,downscript=no`. Tap names are
//! deterministic ([`tap_name`]: `mg` + a hash of node and instance name + the NIC index), so a
//! restarted magueyd finds them again, and every tap carries the alias
//! `maguey NODE INSTANCE` ([`tap_alias`]): a tap is only ever removed when its alias says it is
//! Maguey's tap of that instance.
//!
//! * `bridged`: the tap is enslaved to the bridge named by the NIC's `link` and set up. A
//!   missing bridge is refused before any tap is created.
//! * `routed`: the tap is set up, gets a host route to the NIC's IP (`ip route replace IP/32
//!   dev TAP`, in the routing table named by `link` when `link` is a table number or a name of
//!   `/etc/iproute2/rt_tables`, like Ganeti; the main table otherwise) and proxy ARP (proxy NDP
//!   for IPv6). The node itself must forward packets (`sysctl net.ipv4.ip_forward=1`): Maguey
//!   enables forwarding on the tap only, and logs a warning when the node does not forward.
//! * `openvswitch` is refused.
//!
//! Removing the tap (`ip link del`) also removes its routes.

use crate::error::{NodeError, NodeResult};
use crate::exec::Cmd;
use maguey_rpc::NicRuntime;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// First characters of every tap Maguey creates.
pub const TAP_PREFIX: &str = "mg";
/// Longest network interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Most NICs one instance may have here (tap names stay within [`MAX_IFNAME`]).
pub const MAX_NICS: usize = 100;
/// Hex digits of the node/instance hash in tap names.
const HASH_DIGITS: usize = 10;
/// Longest interface alias (IFALIASZ - 1).
const MAX_ALIAS: usize = 255;

/// What a NIC's host side is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicMode {
    /// Enslaved to this bridge.
    Bridged { bridge: String },
    /// A host route to `ip` through the tap, in `table` (`None`: the main table).
    Routed { ip: IpAddr, table: Option<String> },
}

/// One NIC of an instance as the node sets it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    pub index: usize,
    pub tap: String,
    pub mac: String,
    pub mode: NicMode,
}

/// 64-bit FNV-1a.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The tap names of `instance` on `node` start with this: `mg` + 10 hex digits.
pub fn tap_prefix(node: &str, instance: &str) -> String {
    let h = fnv1a(format!("{node}/{instance}").as_bytes());
    let hex = format!("{h:016x}");
    format!("{TAP_PREFIX}{}", &hex[..HASH_DIGITS])
}

/// The tap of NIC `index` of `instance` on `node`: `mg` + 10 hex digits + the index (at most
/// 14 characters), the same after a magueyd restart.
pub fn tap_name(node: &str, instance: &str, index: usize) -> String {
    format!("{}{index}", tap_prefix(node, instance))
}

/// The alias every tap of `instance` on `node` carries (its proof of ownership).
pub fn tap_alias(node: &str, instance: &str) -> String {
    let mut a = format!("maguey {node} {instance}");
    if a.len() > MAX_ALIAS {
        let mut end = MAX_ALIAS;
        while !a.is_char_boundary(end) {
            end -= 1;
        }
        a.truncate(end);
    }
    a
}

/// Network interface names: 1 to 15 characters, no `/`, whitespace, `:` or control
/// characters, not `.` or `..`, no leading `-`.
pub fn validate_ifname(name: &str) -> NodeResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(NodeError::bad_request(format!(
            "invalid network interface name '{name}'"
        )))
    }
}

fn validate_mac(mac: &str) -> NodeResult<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(NodeError::bad_request(format!(
            "invalid MAC address '{mac}'"
        )))
    }
}

/// Routing table files iproute2 reads (`NUMBER NAME` per line).
fn rt_tables_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for base in ["/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"] {
        files.push(Path::new(base).join("rt_tables"));
        if let Ok(entries) = std::fs::read_dir(Path::new(base).join("rt_tables.d")) {
            let mut more: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            more.sort();
            files.extend(more);
        }
    }
    files
}

/// Whether `name` is a routing table number or a name in `tables` (rt_tables contents).
pub fn is_routing_table(name: &str, tables: &[String]) -> bool {
    if name.parse::<u32>().is_ok_and(|n| n > 0) {
        return true;
    }
    tables.iter().any(|text| {
        text.lines().any(|l| {
            let l = l.split('#').next().unwrap_or("");
            let mut w = l.split_whitespace();
            matches!((w.next(), w.next()), (Some(num), Some(n)) if n == name && num.parse::<u32>().is_ok())
        })
    })
}

fn read_rt_tables() -> Vec<String> {
    rt_tables_files()
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Checks the NICs of `instance` and names their taps. Refuses unknown modes, `openvswitch`,
/// a `routed` NIC without an IP, and bad MACs or link names.
pub fn plan(node: &str, instance: &str, nics: &[NicRuntime]) -> NodeResult<Vec<TapSpec>> {
    if nics.len() > MAX_NICS {
        return Err(NodeError::unsupported(format!(
            "instance {instance} has {} NICs; at most {MAX_NICS} are supported",
            nics.len()
        )));
    }
    let tables = if nics.iter().any(|n| n.mode == maguey_model::NicMode::Routed) {
        read_rt_tables()
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (index, nic) in nics.iter().enumerate() {
        let what = format!("NIC {index} of instance {instance}");
        validate_mac(&nic.mac).map_err(|e| e.context(what.clone()))?;
        let mode = match nic.mode {
            maguey_model::NicMode::Bridged => {
                if nic.link.is_empty() {
                    return Err(NodeError::bad_request(format!(
                        "{what}: bridged mode needs a link (the bridge)"
                    )));
                }
                validate_ifname(&nic.link).map_err(|_| {
                    NodeError::bad_request(format!("{what}: invalid bridge name '{}'", nic.link))
                })?;
                NicMode::Bridged {
                    bridge: nic.link.clone(),
                }
            }
            maguey_model::NicMode::Routed => {
                let ip = nic
                    .ip
                    .as_deref()
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        NodeError::bad_request(format!("{what}: routed mode needs an IP address"))
                    })?;
                let ip: IpAddr = ip.trim().parse().map_err(|_| {
                    NodeError::bad_request(format!("{what}: invalid IP address '{ip}'"))
                })?;
                let link = nic.link.trim();
                let table =
                    (!link.is_empty() && is_routing_table(link, &tables)).then(|| link.to_string());
                NicMode::Routed { ip, table }
            }
            maguey_model::NicMode::Openvswitch => {
                let why = "NIC mode 'openvswitch' is not supported by Maguey";
                return Err(NodeError::unsupported(format!(
                    "{what}: {why} (use bridged or routed)"
                )));
            }
        };
        out.push(TapSpec {
            index,
            tap: tap_name(node, instance, index),
            mac: nic.mac.to_ascii_lowercase(),
            mode,
        });
    }
    Ok(out)
}

/// QEMU's `-netdev` value of a NIC.
pub fn netdev_arg(spec: &TapSpec, vhost: bool) -> String {
    let mut s = format!(
        "tap,id=net{},ifname={},script=no,downscript=no",
        spec.index, spec.tap
    );
    if vhost {
        s.push_str(",vhost=on");
    }
    s
}

/// QEMU's `-device` value of a NIC (`model`: `virtio-net-pci`, `e1000`, ...).
pub fn device_arg(spec: &TapSpec, model: &str) -> String {
    format!(
        "{model},id=nic{i},netdev=net{i},mac={mac}",
        i = spec.index,
        mac = spec.mac
    )
}

/// Whether QEMU can use vhost-net here.
pub fn vhost_available() -> bool {
    Path::new("/dev/vhost-net").exists()
}

/// The taps named in a QEMU command line (`-netdev tap,...,ifname=TAP,...`).
pub fn taps_in_argv(argv: &[String]) -> Vec<String> {
    argv.windows(2)
        .filter(|w| w[0] == "-netdev" && w[1].starts_with("tap,"))
        .filter_map(|w| {
            w[1].split(',')
                .find_map(|kv| kv.strip_prefix("ifname="))
                .map(str::to_string)
        })
        .collect()
}

/// The `ip` commands (argv after `ip`) that set up one NIC's tap, in order. The `/proc`
/// switches of routed NICs are written separately ([`setup_tap`]).
pub fn setup_commands(spec: &TapSpec, alias: &str) -> Vec<Vec<String>> {
    let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let tap = spec.tap.as_str();
    let mut cmds = vec![
        s(&["tuntap", "add", "dev", tap, "mode", "tap"]),
        s(&["link", "set", "dev", tap, "alias", alias]),
    ];
    match &spec.mode {
        NicMode::Bridged { bridge } => {
            cmds.push(s(&["link", "set", "dev", tap, "master", bridge, "up"]));
        }
        NicMode::Routed { ip, table } => {
            cmds.push(s(&["link", "set", "dev", tap, "up"]));
            let (family, dst) = match ip {
                IpAddr::V4(a) => ("-4", format!("{a}/32")),
                IpAddr::V6(a) => ("-6", format!("{a}/128")),
            };
            let mut r = s(&[family, "route", "replace", &dst]);
            if let Some(t) = table {
                r.extend(s(&["table", t]));
            }
            r.extend(s(&["proto", "static", "dev", tap]));
            cmds.push(r);
        }
    }
    cmds
}

/// The `ip` program (daemons may run with a short `PATH`).
fn ip_program() -> &'static str {
    for p in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] {
        if Path::new(p).is_file() {
            return p;
        }
    }
    "ip"
}

fn run_ip(args: &[String]) -> NodeResult<()> {
    let cmd = Cmd::program(Path::new(ip_program()), args);
    let out = crate::exec::system()
        .run(&cmd)
        .map_err(|e| NodeError::io(format!("cannot run ip: {}", e.reason())))?;
    if out.success() {
        Ok(())
    } else {
        Err(NodeError::command_failed(format!(
            "'ip {}' failed: {}",
            args.join(" "),
            out.stderr.trim()
        )))
    }
}

fn sys_net(name: &str) -> PathBuf {
    Path::new("/sys/class/net").join(name)
}

/// Whether a network interface `name` exists.
pub fn iface_exists(name: &str) -> bool {
    validate_ifname(name).is_ok() && sys_net(name).exists()
}

/// Whether `name` is an existing bridge.
pub fn is_bridge(name: &str) -> bool {
    validate_ifname(name).is_ok() && sys_net(name).join("bridge").is_dir()
}

fn iface_alias(name: &str) -> Option<String> {
    std::fs::read_to_string(sys_net(name).join("ifalias"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

fn write_proc(path: &str, value: &str) -> NodeResult<()> {
    std::fs::write(path, value).map_err(|e| NodeError::io(format!("cannot write {path}: {e}")))
}

/// Creates and configures one tap (it must not exist yet).
fn setup_tap(spec: &TapSpec, alias: &str) -> NodeResult<()> {
    for cmd in setup_commands(spec, alias) {
        run_ip(&cmd)?;
    }
    if let NicMode::Routed { ip, .. } = &spec.mode {
        let tap = &spec.tap;
        match ip {
            IpAddr::V4(_) => {
                write_proc(&format!("/proc/sys/net/ipv4/conf/{tap}/proxy_arp"), "1")?;
                write_proc(&format!("/proc/sys/net/ipv4/conf/{tap}/forwarding"), "1")?;
                if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                    .is_ok_and(|v| v.trim() == "0")
                {
                    tracing::warn!(
                        "routed NIC {tap}: this node does not forward IPv4 (net.ipv4.ip_forward=0); the instance is reachable from the node only"
                    );
                }
            }
            IpAddr::V6(_) => {
                write_proc(&format!("/proc/sys/net/ipv6/conf/{tap}/proxy_ndp"), "1")?;
                write_proc(&format!("/proc/sys/net/ipv6/conf/{tap}/forwarding"), "1")?;
            }
        }
    }
    Ok(())
}

/// Removes tap `tap` if it exists and its alias is `alias` (Maguey's tap of that instance).
fn remove_tap(tap: &str, alias: &str) -> NodeResult<()> {
    if !iface_exists(tap) {
        return Ok(());
    }
    match iface_alias(tap) {
        Some(a) if a == alias => run_ip(&["link".into(), "del".into(), "dev".into(), tap.into()]),
        _ => Ok(()),
    }
}

/// Creates the taps of `specs` for `instance` on `node`, before QEMU starts. Every bridge must
/// exist; a leftover tap of the same instance is replaced; an interface of the same name that
/// is not ours is refused. On failure, the taps created so far are removed.
pub fn create_taps(node: &str, instance: &str, specs: &[TapSpec]) -> NodeResult<()> {
    let alias = tap_alias(node, instance);
    for spec in specs {
        if let NicMode::Bridged { bridge } = &spec.mode {
            if !is_bridge(bridge) {
                return Err(NodeError::not_found(if iface_exists(bridge) {
                    format!(
                        "NIC {} of instance {instance}: '{bridge}' on node {node} is not a bridge",
                        spec.index
                    )
                } else {
                    format!(
                        "NIC {} of instance {instance}: bridge '{bridge}' does not exist on node {node}",
                        spec.index
                    )
                }));
            }
        }
        if iface_exists(&spec.tap) {
            match iface_alias(&spec.tap) {
                Some(a) if a == alias => remove_tap(&spec.tap, &alias)?,
                _ => {
                    return Err(NodeError::conflict(format!(
                        "NIC {} of instance {instance}: a network interface '{}' exists on node {node} and is not this instance's tap",
                        spec.index, spec.tap
                    )))
                }
            }
        }
    }
    for (n, spec) in specs.iter().enumerate() {
        if let Err(e) = setup_tap(spec, &alias) {
            for done in &specs[..=n] {
                let _ = remove_tap(&done.tap, &alias);
            }
            return Err(NodeError::io(format!(
                "NIC {} of instance {instance}: cannot set up tap {}: {e}",
                spec.index, spec.tap
            )));
        }
    }
    Ok(())
}

/// Removes every tap of `instance` on `node` (whatever the NIC count was); removing none
/// succeeds.
pub fn remove_taps(node: &str, instance: &str) -> NodeResult<()> {
    let prefix = tap_prefix(node, instance);
    let alias = tap_alias(node, instance);
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let ours = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
        if ours {
            if let Err(err) = remove_tap(&name, &alias) {
                errors.push(err.to_string());
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(NodeError::io(format!(
            "cannot remove the taps of instance {instance}: {}",
            errors.join("; ")
        )))
    }
}

/// Removes the taps named in a QEMU command line when they carry Maguey's alias for
/// `instance` (any node): for cleaning up without knowing the node's name.
pub fn remove_taps_of_argv(instance: &str, argv: &[String]) {
    remove_listed_taps(instance, &taps_in_argv(argv));
}

/// Removes the taps named in `taps` that are `instance`'s (by their alias), ignoring errors.
pub fn remove_listed_taps(instance: &str, taps: &[String]) {
    for tap in taps.iter().cloned() {
        if !iface_exists(&tap) {
            continue;
        }
        let ours = iface_alias(&tap)
            .is_some_and(|a| a.starts_with("maguey ") && a.ends_with(&format!(" {instance}")));
        if ours {
            let _ = run_ip(&["link".into(), "del".into(), "dev".into(), tap]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(mode: &str, link: &str, ip: Option<&str>) -> NicRuntime {
        NicRuntime {
            mac: "AA:00:00:12:34:56".into(),
            ip: ip.map(String::from),
            mode: mode.parse().expect("a NIC mode"),
            link: link.into(),
            network: None,
        }
    }

    #[test]
    fn tap_names_are_short_stable_and_distinct() {
        let a = tap_name("node1", "web1.example.com", 0);
        assert_eq!(a, tap_name("node1", "web1.example.com", 0));
        assert!(
            a.starts_with("mg") && a.ends_with('0') && a.len() == 13,
            "{a}"
        );
        assert_ne!(a, tap_name("node2", "web1.example.com", 0));
        assert_ne!(a, tap_name("node1", "web2.example.com", 0));
        assert_eq!(
            tap_name("node1", "web1.example.com", 7),
            format!("{}7", &a[..12])
        );
        let long = "x".repeat(253);
        assert!(tap_name(&long, &long, MAX_NICS - 1).len() <= MAX_IFNAME);
        assert!(validate_ifname(&tap_name("n", "i", 99)).is_ok());
        assert!(tap_alias(&long, &long).len() <= 255);
        assert_eq!(tap_alias("node1", "vm1"), "maguey node1 vm1");
    }

    #[test]
    fn plan_modes() {
        let specs = plan(
            "node1",
            "vm1",
            &[
                nic("bridged", "br0", None),
                nic("routed", "", Some("192.0.2.5")),
                nic("routed", "100", Some("2001:db8::5")),
            ],
        )
        .unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].mac, "aa:00:00:12:34:56");
        assert_eq!(
            specs[0].mode,
            NicMode::Bridged {
                bridge: "br0".into()
            }
        );
        assert_eq!(
            specs[1].mode,
            NicMode::Routed {
                ip: "192.0.2.5".parse().unwrap(),
                table: None
            }
        );
        assert_eq!(
            specs[2].mode,
            NicMode::Routed {
                ip: "2001:db8::5".parse().unwrap(),
                table: Some("100".into())
            }
        );
        let e = plan("n", "vm1", &[nic("openvswitch", "br0", None)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("openvswitch") && e.contains("not supported"),
            "{e}"
        );
        let e = plan("n", "vm1", &[nic("routed", "", None)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs an IP"), "{e}");
        let e = plan("n", "vm1", &[nic("routed", "", Some("nope"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid IP"), "{e}");
        let e = plan("n", "vm1", &[nic("bridged", "", None)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a link"), "{e}");
        for bad in ["a b", "-br0", "br/0", "..", "averyveryverylongbr"] {
            let e = plan("n", "vm1", &[nic("bridged", bad, None)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("invalid bridge"), "{e}");
        }
        // An unknown mode never reaches the plan: the request is refused when it is read.
        let e = serde_json::from_value::<NicRuntime>(serde_json::json!(
            {"mac": "aa:00:00:12:34:56", "ip": null, "mode": "bogus", "link": "br0"}
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown NIC mode 'bogus'"), "{e}");
        let mut bad = nic("bridged", "br0", None);
        bad.mac = "aa:00,file=/etc/x".into();
        assert!(plan("n", "vm1", &[bad])
            .unwrap_err()
            .to_string()
            .contains("MAC"));
    }

    #[test]
    fn routing_tables() {
        let tables = vec!["255\tlocal\n254 main # the main one\n100 guests\n".to_string()];
        assert!(is_routing_table("guests", &tables));
        assert!(is_routing_table("main", &tables));
        assert!(is_routing_table("42", &tables));
        assert!(!is_routing_table("br0", &tables));
        assert!(!is_routing_table("0", &tables));
        assert!(!is_routing_table("the", &tables));
    }

    #[test]
    fn argv_and_commands() {
        let specs = plan(
            "node1",
            "vm1",
            &[
                nic("bridged", "br0", None),
                nic("routed", "", Some("192.0.2.5")),
            ],
        )
        .unwrap();
        let t0 = specs[0].tap.clone();
        let t1 = specs[1].tap.clone();
        assert_eq!(
            netdev_arg(&specs[0], false),
            format!("tap,id=net0,ifname={t0},script=no,downscript=no")
        );
        assert!(netdev_arg(&specs[1], true).ends_with(",vhost=on"));
        assert_eq!(
            device_arg(&specs[1], "virtio-net-pci"),
            "virtio-net-pci,id=nic1,netdev=net1,mac=aa:00:00:12:34:56"
        );
        let argv: Vec<String> = ["kvm", "-netdev", &netdev_arg(&specs[0], false), "-m", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(taps_in_argv(&argv), vec![t0.clone()]);

        let j = |c: &Vec<String>| c.join(" ");
        let c = setup_commands(&specs[0], "maguey node1 vm1");
        assert_eq!(j(&c[0]), format!("tuntap add dev {t0} mode tap"));
        assert_eq!(
            j(&c[1]),
            format!("link set dev {t0} alias maguey node1 vm1")
        );
        assert_eq!(c[1].len(), 6, "the alias is one argument");
        assert_eq!(j(&c[2]), format!("link set dev {t0} master br0 up"));
        let c = setup_commands(&specs[1], "a");
        assert_eq!(j(&c[2]), format!("link set dev {t1} up"));
        assert_eq!(
            j(&c[3]),
            format!("-4 route replace 192.0.2.5/32 proto static dev {t1}")
        );
        let mut routed = specs[1].clone();
        routed.mode = NicMode::Routed {
            ip: "2001:db8::1".parse().unwrap(),
            table: Some("guests".into()),
        };
        let c = setup_commands(&routed, "a");
        assert_eq!(
            j(&c[3]),
            format!("-6 route replace 2001:db8::1/128 table guests proto static dev {t1}")
        );
    }
}
