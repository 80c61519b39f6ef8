//! The cluster: `/`, `/version`, `/openapi.json`, `/2/info`, `/2/features`, `/2/os` and the
//! cluster's tags.

use super::request::{no_dry_run, Body};
use super::tags::{self, CLUSTER};
use super::{submit_op, unrouted};
use crate::openapi;
use crate::{ApiError, ApiResult, Rapi, Req, RAPI_VERSION};
use axum::http::{Method, StatusCode};
use maguey_model::ConfigData;
use serde_json::{json, Value};

/// Ganeti's feature strings this RAPI implements.
const FEATURES: &[&str] = &[
    "instance-create-reqv1",
    "instance-reinstall-reqv1",
    "node-migrate-reqv1",
    "node-evac-res1",
];

pub(super) async fn route(rapi: &Rapi, req: &Req, segs: &[&str]) -> ApiResult {
    let get = req.method == Method::GET;
    match segs {
        [] | ["2"] if get => Ok(Value::Null),
        ["version"] if get => Ok(json!(RAPI_VERSION)),
        ["openapi.json"] if get => Ok(openapi::document()),
        ["2", "info"] if get => Ok(cluster_info(&rapi.inner.master.config.snapshot())),
        ["2", "features"] if get => Ok(json!(FEATURES)),
        ["2", "os"] if get => os_list(rapi, req).await,
        ["2", "modify"] if req.method == Method::PUT => modify(rapi, req),
        ["2", "tags"] if get => Ok(json!(rapi.inner.master.config.snapshot().cluster.tags)),
        ["2", "tags"] if req.method == Method::PUT || req.method == Method::DELETE => {
            tags::change(rapi, req, CLUSTER, None)
        }
        _ => Err(unrouted(req)),
    }
}

/// Fields of Ganeti's OpClusterSetParams Maguey keeps.
const MODIFY_FIELDS: &[&str] = &[
    "vg_name",
    "enabled_hypervisors",
    "enabled_disk_templates",
    "hvparams",
    "beparams",
    "nicparams",
    "ndparams",
    "candidate_pool_size",
    "drbd_helper",
    "mac_prefix",
    "file_storage_dir",
    "shared_file_storage_dir",
    "reserved_lvs",
    "default_iallocator",
    "ipolicy",
];

/// Fields of Ganeti's OpClusterSetParams Maguey does not keep (501 when given a value).
const MODIFY_UNSUPPORTED: &[&str] = &[
    "os_hvp",
    "osparams",
    "osparams_private_cluster",
    "diskparams",
    "max_running_jobs",
    "max_tracked_jobs",
    "uid_pool",
    "add_uids",
    "remove_uids",
    "maintain_node_health",
    "prealloc_wipe_disks",
    "default_iallocator_params",
    "master_netdev",
    "master_netmask",
    "hidden_os",
    "blacklisted_os",
    "use_external_mip_script",
    "modify_etc_hosts",
    "gluster_storage_dir",
    "install_image",
    "instance_communication_network",
    "zeroing_image",
    "compression_tools",
    "enabled_user_shutdown",
    "enabled_data_collectors",
    "data_collector_interval",
    "hv_state",
    "disk_state",
    "force",
];

/// `PUT /2/modify`: Ganeti's OP_CLUSTER_SET_PARAMS; values are checked by the job (a bad
/// one fails it and changes nothing), types here (400).
fn modify(rapi: &Rapi, req: &Req) -> ApiResult {
    no_dry_run(req)?;
    let b = Body::parse(
        req,
        "OP_CLUSTER_SET_PARAMS",
        MODIFY_FIELDS,
        MODIFY_UNSUPPORTED,
    )?;
    submit_op(
        rapi,
        maguey_model::OpCode::ClusterSetParams(maguey_model::OpClusterSetParams {
            vg_name: b.opt("vg_name")?,
            enabled_hypervisors: b.opt("enabled_hypervisors")?,
            enabled_disk_templates: b.opt("enabled_disk_templates")?,
            hvparams: b.opt("hvparams")?,
            beparams: b.opt("beparams")?,
            nicparams: b.opt("nicparams")?,
            ndparams: b.opt("ndparams")?,
            candidate_pool_size: b.opt("candidate_pool_size")?,
            drbd_helper: b.opt("drbd_helper")?,
            mac_prefix: b.opt("mac_prefix")?,
            file_storage_dir: b.opt("file_storage_dir")?,
            shared_file_storage_dir: b.opt("shared_file_storage_dir")?,
            reserved_lvs: b.opt("reserved_lvs")?,
            default_iallocator: b.opt("default_iallocator")?,
            ipolicy: b.opt("ipolicy")?,
            // The floating master IP is the admin's CLI's only (docs/master-ip.md): a RAPI
            // user could otherwise claim any address of the network.
            master_ip: None,
            master_netdev: None,
            master_netmask: None,
        }),
    )
}

/// Ganeti's QueryClusterInfo.
fn cluster_info(cfg: &ConfigData) -> Value {
    let c = &cfg.cluster;
    let master = cfg.master_node().map(|n| n.name.clone());
    json!({
        "software_version": maguey_model::VERSION,
        "protocol_version": 2_160_000,
        "config_version": maguey_model::CONFIG_VERSION,
        "os_api_version": 20,
        "export_version": 0,
        "vcs_version": format!("maguey-{}", maguey_model::VERSION),
        "architecture": [if cfg!(target_pointer_width = "64") { "64bit" } else { "32bit" }, std::env::consts::ARCH],
        "name": c.cluster_name,
        "master": master,
        "default_hypervisor": c.enabled_hypervisors.first(),
        "enabled_hypervisors": c.enabled_hypervisors,
        "hvparams": c.hvparams,
        "os_hvp": {},
        "beparams": c.beparams,
        "osparams": c.osparams,
        "ipolicy": cfg.ipolicy_for_group(None),
        "nicparams": c.nicparams,
        "ndparams": c.ndparams,
        "diskparams": {},
        "candidate_pool_size": c.candidate_pool_size,
        "max_running_jobs": 20,
        "master_netdev": c.master_ip.as_ref().map(|m| m.netdev.as_str()).unwrap_or(""),
        "master_netmask": c.master_ip.as_ref().map(|m| m.netmask).unwrap_or(32),
        "master_ip": c.master_ip.as_ref().map(|m| m.ip.to_string()),
        "use_external_mip_script": false,
        "volume_group_name": c.vg_name,
        "drbd_usermode_helper": c.drbd_usermode_helper,
        "file_storage_dir": c.file_storage_dir,
        "shared_file_storage_dir": c.shared_file_storage_dir,
        "maintain_node_health": false,
        "ctime": c.ctime,
        "mtime": c.mtime,
        "uuid": c.uuid,
        "tags": c.tags,
        "uid_pool": [],
        "default_iallocator": c.default_iallocator,
        "default_iallocator_params": {},
        "reserved_lvs": c.reserved_lvs,
        "primary_ip_version": 4,
        "prealloc_wipe_disks": false,
        "hidden_os": [],
        "blacklisted_os": [],
        "enabled_disk_templates": c.enabled_disk_templates,
        "mac_prefix": c.mac_prefix,
    })
}

async fn os_list(rapi: &Rapi, req: &Req) -> ApiResult {
    let bulk = req.flag("bulk", false)?;
    let oses = maguey_ops::os_diagnose::diagnose(&rapi.inner.master)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot get the OS list: {e}"),
            )
        })?;
    if bulk {
        return Ok(Value::Array(
            oses.iter()
                .map(|o| {
                    json!({
                        "name": o.name,
                        "valid": o.valid,
                        "variants": o.variants,
                        "parameters": o.parameters.iter()
                            .map(|(n, d)| json!({"name": n, "description": d}))
                            .collect::<Vec<_>>(),
                        "api_versions": o.api_versions,
                        "blacklisted": o.blacklisted,
                        "hidden": o.hidden,
                        "trusted": o.trusted,
                    })
                })
                .collect(),
        ));
    }
    // Ganeti's CalculateOSNames: valid OSes, with their variants as NAME+VARIANT.
    let mut out = Vec::new();
    for o in oses
        .iter()
        .filter(|o| o.valid && !o.hidden && !o.blacklisted)
    {
        if o.variants.is_empty() {
            out.push(o.name.clone());
        } else {
            out.extend(o.variants.iter().map(|v| format!("{}+{v}", o.name)));
        }
    }
    Ok(json!(out))
}
