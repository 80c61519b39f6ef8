//! kvm NICs on this host: real bridges, taps, routes and QEMU (TCG, no guest kernel: SeaBIOS
//! idles, which is enough to hold the taps). Needs root (CI runs as root).

use maguey_model::params::{Hypervisor as Hv, ParamKind};
use maguey_node::network;
use maguey_node::{NodeConfig, NodeRuntime};
use maguey_rpc::{InstanceRunInfo, InstanceRuntime, NicRuntime, NodeRequest};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn qemu() -> String {
    std::env::var("MAGUEY_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// `ip -j ARGS` as JSON (`None` when ip fails, e.g. a missing device).
fn ip_json(args: &[&str]) -> Option<Value> {
    let out = Command::new("ip").arg("-j").args(args).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Some(Value::Array(vec![]));
    }
    Some(serde_json::from_str(&text).unwrap())
}

/// The `ip -j -d link show dev NAME` entry, if the interface exists.
fn link(name: &str) -> Option<Value> {
    ip_json(&["-d", "link", "show", "dev", name]).and_then(|v| v.get(0).cloned())
}

fn flags(l: &Value) -> Vec<String> {
    l["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A unique short suffix per test process.
fn suffix() -> String {
    format!("{:05}", std::process::id() % 100_000)
}

/// Removes what a test created (QEMU, taps, bridges) also when it panics.
struct Cleanup {
    state_dir: PathBuf,
    node: String,
    instances: Vec<String>,
    bridges: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        maguey_node::hypervisor::kvm::kill_all(&self.state_dir);
        for i in &self.instances {
            let _ = network::remove_taps(&self.node, i);
        }
        for b in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", "dev", b]).output();
        }
    }
}

fn runtime(dir: &Path, node: &str) -> NodeRuntime {
    NodeRuntime::new(NodeConfig {
        state_dir: dir.to_path_buf(),
        node_name: node.into(),
        fake_memory_mib: Some(1024),
        fake_cpus: Some(2),
        os_search_path: vec![],
    })
    .unwrap()
}

fn instance(name: &str, nics: Vec<NicRuntime>) -> InstanceRuntime {
    let mut hv = ParamKind::Hv(Hv::Kvm).defaults();
    hv.insert("kvm_path".into(), qemu().into());
    hv.insert("kernel_path".into(), "".into());
    hv.insert("accel".into(), "tcg".into());
    InstanceRuntime {
        name: name.into(),
        uuid: "6a1f8f9e-3a56-4f4b-9f1e-0c3d2b1a0f9e".into(),
        hypervisor: "kvm".into(),
        memory: 64,
        vcpus: 1,
        hvparams: hv,
        disks: vec![],
        nics,
        file_storage_dir: "file-storage".into(),
    }
}

fn nic(mac: &str, mode: &str, link: &str, ip: Option<&str>) -> NicRuntime {
    NicRuntime {
        mac: mac.into(),
        ip: ip.map(String::from),
        mode: mode.parse().expect("a NIC mode"),
        link: link.into(),
        network: None,
    }
}

async fn info(rt: &NodeRuntime, name: &str) -> Option<InstanceRunInfo> {
    let v = rt
        .handle(NodeRequest::InstanceInfo {
            name: name.into(),
            hypervisor: "kvm".into(),
        })
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

async fn stop(rt: &NodeRuntime, name: &str) {
    rt.handle(NodeRequest::InstanceShutdown {
        name: name.into(),
        hypervisor: "kvm".into(),
        timeout: 0,
    })
    .await
    .unwrap();
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn poll<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

#[tokio::test]
async fn bridged_nic_tap_on_the_bridge_removed_on_stop_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let s = suffix();
    let node = format!("netb{s}");
    let bridge = format!("mgtb{s}");
    let name = format!("bridged{s}");
    let _cleanup = Cleanup {
        state_dir: dir.path().to_path_buf(),
        node: node.clone(),
        instances: vec![name.clone()],
        bridges: vec![bridge.clone()],
    };
    ip(&["link", "add", "name", &bridge, "type", "bridge"]);
    ip(&["link", "set", "dev", &bridge, "up"]);
    let rt = runtime(dir.path(), &node);
    let mac = "aa:00:00:5e:00:01";
    let inst = instance(&name, vec![nic(mac, "bridged", &bridge, None)]);
    let tap = network::tap_name(&node, &name, 0);
    assert!(tap.len() <= 15);

    rt.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    let pid = info(&rt, &name).await.expect("running").pid.unwrap();
    let l = link(&tap).expect("the tap exists");
    assert_eq!(l["linkinfo"]["info_kind"], "tun", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["type"], "tap", "{l}");
    assert_eq!(l["master"], bridge.as_str(), "{l}");
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
    assert_eq!(
        l["ifalias"],
        network::tap_alias(&node, &name).as_str(),
        "{l}"
    );
    // QEMU holds the tap: it has a carrier.
    assert!(
        poll(Duration::from_secs(10), || link(&tap)
            .is_some_and(|l| flags(&l).contains(&"LOWER_UP".to_string())))
        .await,
        "{:?}",
        link(&tap)
    );
    let argv = cmdline(pid);
    let netdev = argv
        .iter()
        .find(|a| a.starts_with("tap,"))
        .expect("a tap netdev");
    assert!(
        netdev.contains(&format!("ifname={tap},")) && netdev.contains("script=no,downscript=no"),
        "{netdev}"
    );
    assert!(
        argv.iter()
            .any(|a| a.ends_with(&format!("netdev=net0,mac={mac}"))),
        "{argv:?}"
    );
    // The bridge lists the tap as its port.
    let ports = ip_json(&["link", "show", "master", &bridge]).unwrap();
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["ifname"] == tap.as_str()),
        "{ports}"
    );

    // A restarted magueyd finds the instance; a stop removes the tap.
    drop(rt);
    let rt = runtime(dir.path(), &node);
    assert_eq!(info(&rt, &name).await.unwrap().pid, Some(pid));
    stop(&rt, &name).await;
    assert!(link(&tap).is_none(), "{:?}", link(&tap));

    // QEMU exiting by itself: the next look at the instance removes its tap.
    rt.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    let pid = info(&rt, &name).await.unwrap().pid.unwrap();
    assert!(link(&tap).is_some());
    // SAFETY: kill(2) on the QEMU this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(
        poll(Duration::from_secs(10), || !Path::new(&format!(
            "/proc/{pid}/cmdline"
        ))
        .exists()
            || cmdline(pid).is_empty())
        .await
    );
    let list = rt
        .handle(NodeRequest::InstanceList {
            hypervisor: "kvm".into(),
        })
        .await
        .unwrap();
    assert_eq!(list, serde_json::json!([]));
    assert!(link(&tap).is_none(), "{:?}", link(&tap));
    assert!(!dir
        .path()
        .join(format!("run/kvm/{name}.runtime.json"))
        .exists());

    // A missing bridge: a clear error naming it, no tap, nothing running.
    let missing = format!("mgtx{s}");
    let bad = instance(
        &name,
        vec![
            nic(mac, "bridged", &bridge, None),
            nic("aa:00:00:5e:00:02", "bridged", &missing, None),
        ],
    );
    let e = rt
        .handle(NodeRequest::InstanceStart { instance: bad })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("bridge '{missing}' does not exist")),
        "{e}"
    );
    assert!(link(&tap).is_none());
    assert!(link(&network::tap_name(&node, &name, 1)).is_none());
    assert!(info(&rt, &name).await.is_none());

    // QEMU failing to start (after the taps were made): the taps go too.
    let mut broken = instance(&name, vec![nic(mac, "bridged", &bridge, None)]);
    broken
        .hvparams
        .insert("kvm_extra".into(), "-no-such-option".into());
    let e = rt
        .handle(NodeRequest::InstanceStart { instance: broken })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("QEMU failed to start"), "{e}");
    assert!(link(&tap).is_none(), "{:?}", link(&tap));
    assert!(info(&rt, &name).await.is_none());

    // openvswitch is refused, before anything is created.
    let ovs = instance(&name, vec![nic(mac, "openvswitch", "ovs0", None)]);
    let e = rt
        .handle(NodeRequest::InstanceStart { instance: ovs })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("openvswitch") && e.contains("not supported"),
        "{e}"
    );
    assert!(link(&tap).is_none());
}

#[tokio::test]
async fn routed_nic_host_route_and_proxy_arp() {
    let dir = tempfile::tempdir().unwrap();
    let s = suffix();
    let node = format!("netr{s}");
    let name = format!("routed{s}");
    let _cleanup = Cleanup {
        state_dir: dir.path().to_path_buf(),
        node: node.clone(),
        instances: vec![name.clone()],
        bridges: vec![],
    };
    let pid_n = std::process::id();
    // Documentation ranges (never routed anywhere), unique per test process.
    let ip0 = format!("198.51.100.{}", pid_n % 250 + 1);
    let ip1 = format!("203.0.113.{}", pid_n % 250 + 1);
    let table = format!("{}", 40_000 + pid_n % 10_000);
    let rt = runtime(dir.path(), &node);
    let inst = instance(
        &name,
        vec![
            nic("aa:00:00:5e:01:01", "routed", "", Some(&ip0)),
            nic("aa:00:00:5e:01:02", "routed", &table, Some(&ip1)),
        ],
    );
    let (tap0, tap1) = (
        network::tap_name(&node, &name, 0),
        network::tap_name(&node, &name, 1),
    );
    rt.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(info(&rt, &name).await.is_some());
    for tap in [&tap0, &tap1] {
        let l = link(tap).expect("the tap exists");
        assert!(flags(&l).contains(&"UP".to_string()), "{l}");
        assert!(l.get("master").is_none(), "{l}");
        let proxy =
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{tap}/proxy_arp")).unwrap();
        assert_eq!(proxy.trim(), "1");
    }
    // nic0: main table (its link is no routing table); nic1: the table named by its link.
    let r = ip_json(&["route", "show", &format!("{ip0}/32")]).unwrap();
    assert_eq!(r[0]["dev"], tap0.as_str(), "{r}");
    let r = ip_json(&["route", "show", "table", &table]).unwrap();
    assert!(
        r.as_array()
            .unwrap()
            .iter()
            .any(|e| e["dst"] == ip1.as_str() && e["dev"] == tap1.as_str()),
        "{r}"
    );
    let main = ip_json(&["route", "show", &format!("{ip1}/32")]).unwrap();
    assert_eq!(main, serde_json::json!([]), "{main}");

    stop(&rt, &name).await;
    assert!(link(&tap0).is_none() && link(&tap1).is_none());
    let r = ip_json(&["route", "show", &format!("{ip0}/32")]).unwrap();
    assert_eq!(r, serde_json::json!([]));
    let r = ip_json(&["route", "show", "table", &table]).unwrap_or(serde_json::json!([]));
    assert!(
        !r.as_array()
            .unwrap()
            .iter()
            .any(|e| e["dst"] == ip1.as_str()),
        "{r}"
    );

    // Routed needs an IP: refused before anything is created.
    let bad = instance(&name, vec![nic("aa:00:00:5e:01:01", "routed", "", None)]);
    let e = rt
        .handle(NodeRequest::InstanceStart { instance: bad })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("routed mode needs an IP"), "{e}");
    assert!(link(&tap0).is_none());
    assert!(info(&rt, &name).await.is_none());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn accept(rt: &NodeRuntime, inst: &InstanceRuntime, port: u16) {
    rt.handle(NodeRequest::AcceptInstance {
        instance: inst.clone(),
        address: "127.0.0.1".into(),
        port,
        nbd_port: None,
        tls_peer: None,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn migration_moves_the_taps() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s = suffix();
    let (node_a, node_b) = (format!("netma{s}"), format!("netmb{s}"));
    let bridge = format!("mgtm{s}");
    let name = format!("migr{s}");
    let _cleanup_a = Cleanup {
        state_dir: dir_a.path().to_path_buf(),
        node: node_a.clone(),
        instances: vec![name.clone()],
        bridges: vec![bridge.clone()],
    };
    let _cleanup_b = Cleanup {
        state_dir: dir_b.path().to_path_buf(),
        node: node_b.clone(),
        instances: vec![name.clone()],
        bridges: vec![],
    };
    ip(&["link", "add", "name", &bridge, "type", "bridge"]);
    ip(&["link", "set", "dev", &bridge, "up"]);
    let (a, b) = (
        runtime(dir_a.path(), &node_a),
        runtime(dir_b.path(), &node_b),
    );
    let inst = instance(
        &name,
        vec![nic("aa:00:00:5e:02:01", "bridged", &bridge, None)],
    );
    let (tap_a, tap_b) = (
        network::tap_name(&node_a, &name, 0),
        network::tap_name(&node_b, &name, 0),
    );
    assert_ne!(tap_a, tap_b, "two nodes on one host never share a tap name");
    let on_bridge = |tap: &str| link(tap).is_some_and(|l| l["master"] == bridge.as_str());
    a.handle(NodeRequest::InstanceStart {
        instance: inst.clone(),
    })
    .await
    .unwrap();
    assert!(on_bridge(&tap_a));

    // The target creates its taps when it accepts; a failed migration removes them and the
    // source keeps its own.
    accept(&b, &inst, free_port()).await;
    assert!(on_bridge(&tap_b));
    b.handle(NodeRequest::FinalizeMigrationDst {
        instance: inst.clone(),
        success: false,
    })
    .await
    .unwrap();
    a.handle(NodeRequest::FinalizeMigrationSrc {
        name: name.clone(),
        hypervisor: "kvm".into(),
        success: false,
    })
    .await
    .unwrap();
    assert!(link(&tap_b).is_none(), "{:?}", link(&tap_b));
    assert!(on_bridge(&tap_a));
    assert!(info(&a, &name).await.is_some());

    // A successful migration: the source removes its taps, the target's carry the NIC.
    let port = free_port();
    accept(&b, &inst, port).await;
    a.handle(NodeRequest::InstanceMigrate {
        name: name.clone(),
        hypervisor: "kvm".into(),
        target: "127.0.0.1".into(),
        port,
        bandwidth: 1000,
        downtime: 300,
        nbd_port: None,
        tls_peer: None,
        caps: Vec::new(),
    })
    .await
    .unwrap();
    b.handle(NodeRequest::FinalizeMigrationDst {
        instance: inst.clone(),
        success: true,
    })
    .await
    .unwrap();
    a.handle(NodeRequest::FinalizeMigrationSrc {
        name: name.clone(),
        hypervisor: "kvm".into(),
        success: true,
    })
    .await
    .unwrap();
    assert!(link(&tap_a).is_none(), "{:?}", link(&tap_a));
    assert!(on_bridge(&tap_b));
    assert_eq!(info(&b, &name).await.expect("running").state, "running");
    assert!(
        flags(&link(&tap_b).unwrap()).contains(&"LOWER_UP".to_string()),
        "{:?}",
        link(&tap_b)
    );
    stop(&b, &name).await;
    assert!(link(&tap_b).is_none());
}
