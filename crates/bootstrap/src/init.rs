//! `maguey cluster init`: creates the cluster CA, the first node's certificate and the config.

use crate::files::{config_path, DaemonFile};
use anyhow::{bail, Context, Result};
use maguey_config::{Command, ConfigStore};
use maguey_model::{
    names::validate_hostname, new_uuid, now, AllocPolicy, Cluster, DiskTemplate, Hypervisor, Node,
    NodeGroup, ParamKind, Params, Ssconf, CONFIG_VERSION, DEFAULT_VG_NAME,
};
use maguey_rpc::ca::ClusterCa;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Everything `cluster init` needs.
#[derive(Debug, Clone)]
pub struct InitParams {
    pub state_dir: PathBuf,
    pub cluster_name: String,
    pub node_name: String,
    pub primary_ip: IpAddr,
    pub secondary_ip: Option<IpAddr>,
    pub port: u16,
    pub file_storage_dir: String,
    /// Absolute: the directory every node sees for `sharedfile` disks.
    pub shared_file_storage_dir: String,
    pub enabled_hypervisors: Vec<Hypervisor>,
    pub enabled_disk_templates: Vec<DiskTemplate>,
    /// Cluster-level hypervisor parameters (`-H kvm:k=v`), checked against each hypervisor's.
    pub hvparams: BTreeMap<Hypervisor, Params>,
    pub mac_prefix: String,
    pub beparams: Params,
    pub nicparams: Params,
    pub fake_memory_mib: Option<u64>,
    pub fake_cpus: Option<u32>,
}

/// The unprivileged user QEMU runs as on hosts installed from the packages (their
/// postinst creates it; docs/security.md).
pub const QEMU_USER: &str = "maguey-qemu";

/// Whether [`QEMU_USER`] exists on this host (a packaged install).
fn qemu_user_exists() -> bool {
    std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.split(':').next() == Some(QEMU_USER)))
        .unwrap_or(false)
}

/// The `-H` parameters, with `kvm` running QEMU as [`QEMU_USER`] (`security_model=user`)
/// when that user exists and the admin did not choose a security model.
fn with_qemu_user(
    given: &BTreeMap<Hypervisor, Params>,
    enabled: &[Hypervisor],
    user_exists: bool,
) -> BTreeMap<Hypervisor, Params> {
    let mut out = given.clone();
    if user_exists && enabled.contains(&Hypervisor::Kvm) {
        let kvm = out.entry(Hypervisor::Kvm).or_default();
        if !kvm.contains_key("security_model") {
            kvm.insert("security_model".into(), "user".into());
            kvm.insert("security_domain".into(), QEMU_USER.into());
        }
    }
    out
}

/// Writes the new cluster's files into the state directory. Refuses to touch an existing one.
/// The LVM volume group is Ganeti's default, `xenvg`.
pub fn init_cluster(p: &InitParams) -> Result<()> {
    init_cluster_with_vg(p, DEFAULT_VG_NAME)
}

/// [`init_cluster`] with the cluster's LVM volume group (`cluster init --vg-name`).
pub fn init_cluster_with_vg(p: &InitParams, vg_name: &str) -> Result<()> {
    maguey_model::names::validate_vg_name(vg_name).map_err(anyhow::Error::msg)?;
    validate_hostname(&p.cluster_name).context("invalid cluster name")?;
    validate_hostname(&p.node_name).context("invalid node name")?;
    let enabled_hypervisors = p.enabled_hypervisors.clone();
    if p.enabled_hypervisors.is_empty() {
        bail!("at least one hypervisor must be enabled");
    }
    let enabled_disk_templates = p.enabled_disk_templates.clone();
    maguey_model::names::validate_mac_prefix(&p.mac_prefix).map_err(anyhow::Error::msg)?;
    let beparams = ParamKind::Be
        .validate(&p.beparams)
        .map_err(anyhow::Error::msg)?;
    let nicparams = ParamKind::Nic
        .validate(&p.nicparams)
        .map_err(anyhow::Error::msg)?;
    let mut hvparams = BTreeMap::new();
    let given = with_qemu_user(&p.hvparams, &p.enabled_hypervisors, qemu_user_exists());
    for (hv, params) in &given {
        let v = ParamKind::Hv(*hv)
            .validate(params)
            .map_err(anyhow::Error::msg)?;
        hvparams.insert(hv.as_str().to_string(), v);
    }
    std::fs::create_dir_all(&p.state_dir)
        .with_context(|| format!("creating {}", p.state_dir.display()))?;
    if config_path(&p.state_dir).exists() || DaemonFile::path(&p.state_dir).exists() {
        bail!(
            "{} already holds a cluster; destroy it first (maguey cluster destroy)",
            p.state_dir.display()
        );
    }

    let ca = ClusterCa::generate(&p.cluster_name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut ips = vec![p.primary_ip];
    if let Some(s) = p.secondary_ip {
        if s != p.primary_ip {
            ips.push(s);
        }
    }
    let identity = ca
        .issue(&p.node_name, &ips)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ca.save(&p.state_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    identity
        .save(&p.state_dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The CLI's identity, separate from every node certificate (root only: 0600).
    ca.issue_admin()
        .and_then(|admin| admin.save_admin(&p.state_dir))
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let ts = now();
    let group = NodeGroup {
        uuid: new_uuid(),
        name: "default".into(),
        alloc_policy: AllocPolicy::Preferred,
        serial_no: 1,
        ctime: ts,
        mtime: ts,
        ..Default::default()
    };
    let node = Node {
        uuid: new_uuid(),
        name: p.node_name.clone(),
        primary_ip: p.primary_ip.to_string(),
        secondary_ip: p.secondary_ip.unwrap_or(p.primary_ip).to_string(),
        group: group.uuid.clone(),
        master_candidate: true,
        master_capable: true,
        vm_capable: true,
        serial_no: 1,
        ctime: ts,
        mtime: ts,
        certificate_fingerprint: identity.fingerprint(),
        ..Default::default()
    };
    let cluster = Cluster {
        uuid: new_uuid(),
        cluster_name: p.cluster_name.clone(),
        master_node: node.uuid.clone(),
        rpc_port: p.port,
        mac_prefix: p.mac_prefix.to_ascii_lowercase(),
        file_storage_dir: p.file_storage_dir.clone(),
        shared_file_storage_dir: p.shared_file_storage_dir.clone(),
        vg_name: vg_name.to_string(),
        reserved_lvs: Vec::new(),
        enabled_hypervisors,
        enabled_disk_templates,
        default_iallocator: String::new(),
        candidate_pool_size: 10,
        hvparams,
        beparams: BTreeMap::from([("default".to_string(), beparams)]),
        nicparams: BTreeMap::from([("default".to_string(), nicparams)]),
        ndparams: Params::new(),
        osparams: BTreeMap::new(),
        ca_fingerprint: ca.fingerprint(),
        tags: Vec::new(),
        serial_no: 1,
        ctime: ts,
        mtime: ts,
        watcher_pause: None,
        drbd_usermode_helper: maguey_model::DEFAULT_DRBD_HELPER.to_string(),
        ipolicy: Default::default(),
        master_term: 0,
        master_ip: None,
        replicated: false,
        cut_off_nodes: Vec::new(),
        // Node certificates live a year, renewed by the master after eight months.
        node_certificate_lifetime: maguey_model::DEFAULT_NODE_CERTIFICATE_LIFETIME,
        node_certificates_renewed: ts,
    };
    let store =
        ConfigStore::open(&config_path(&p.state_dir)).context("creating the config store")?;
    store
        .apply(Command::InitCluster {
            cluster,
            group,
            master: node,
        })
        .context("initialising the config")?;
    let mut cfg = (*store.snapshot()).clone();
    cfg.version = CONFIG_VERSION;
    let ssconf = Ssconf::from_config(&cfg);
    maguey_node::write_atomic(
        &p.state_dir.join("ssconf.json"),
        &serde_json::to_vec_pretty(&ssconf)?,
    )
    .map_err(anyhow::Error::msg)?;
    DaemonFile {
        node_name: p.node_name.clone(),
        listen: SocketAddr::new(p.primary_ip, p.port),
        fake_memory_mib: p.fake_memory_mib,
        fake_cpus: p.fake_cpus,
        witness: false,
    }
    .save(&p.state_dir)?;
    Ok(())
}

#[cfg(test)]
mod qemu_user_tests {
    use super::*;

    #[test]
    fn packaged_hosts_run_qemu_unprivileged_unless_the_admin_chose() {
        let kvm = [Hypervisor::Kvm];
        let none = BTreeMap::new();
        let p = with_qemu_user(&none, &kvm, true);
        assert_eq!(p[&Hypervisor::Kvm]["security_model"], "user");
        assert_eq!(p[&Hypervisor::Kvm]["security_domain"], QEMU_USER);
        // Without the user (the lab, a host not installed from the packages): unchanged.
        assert!(with_qemu_user(&none, &kvm, false).is_empty());
        // Without kvm enabled: unchanged.
        assert!(with_qemu_user(&none, &[Hypervisor::Fake], true).is_empty());
        // The admin's choice wins.
        let mut chosen = BTreeMap::new();
        let mut k = Params::new();
        k.insert("security_model".into(), "none".into());
        chosen.insert(Hypervisor::Kvm, k);
        let p = with_qemu_user(&chosen, &kvm, true);
        assert_eq!(p[&Hypervisor::Kvm]["security_model"], "none");
        assert!(!p[&Hypervisor::Kvm].contains_key("security_domain"));
    }
}
