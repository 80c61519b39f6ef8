//! Renewing this node's certificate in place (`maguey cluster renew-crypto`): the three
//! steps of [`maguey_rpc::renew`], off the async workers.

use crate::error::{NodeError, NodeResult};
use crate::NodeRuntime;
use maguey_model::Ssconf;
use std::net::IpAddr;

fn cert_error(e: maguey_rpc::CertError) -> NodeError {
    NodeError::bad_request(e.to_string())
}

/// `certificate_prepare`: a new key kept aside; answers its CSR.
pub async fn prepare(rt: &NodeRuntime) -> NodeResult<String> {
    let (dir, name) = (rt.cfg.state_dir.clone(), rt.cfg.node_name.clone());
    NodeRuntime::blocking(move || maguey_rpc::renew::prepare(&dir, &name).map_err(cert_error)).await
}

/// `certificate_sign`: on the master, the CA signs a node's CSR.
pub async fn sign(
    rt: &NodeRuntime,
    csr: String,
    node_name: String,
    ips: Vec<String>,
    next_ca: bool,
    lifetime_secs: u64,
) -> NodeResult<String> {
    let lifetime = (lifetime_secs > 0).then(|| std::time::Duration::from_secs(lifetime_secs));
    maguey_model::names::validate_hostname(&node_name)
        .map_err(|e| NodeError::bad_request(format!("invalid node name: {e}")))?;
    let ips = ips
        .iter()
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| NodeError::bad_request(format!("invalid address '{ip}': {e}")))
        })
        .collect::<NodeResult<Vec<_>>>()?;
    let dir = rt.cfg.state_dir.clone();
    NodeRuntime::blocking(move || {
        if next_ca {
            maguey_rpc::ca_roll::sign_next(&dir, &csr, &node_name, &ips, lifetime)
                .map_err(cert_error)
        } else {
            maguey_rpc::renew::sign_for(&dir, &csr, &node_name, &ips, lifetime).map_err(cert_error)
        }
    })
    .await
}

/// `certificate_install`: `ssconf` first (when given), then the new certificate; answers its
/// fingerprint.
pub async fn install(
    rt: &NodeRuntime,
    certificate: String,
    ssconf: Option<Ssconf>,
) -> NodeResult<String> {
    let (dir, name) = (rt.cfg.state_dir.clone(), rt.cfg.node_name.clone());
    let cert = certificate.clone();
    let key = NodeRuntime::blocking(move || {
        maguey_rpc::renew::check(&dir, &name, &cert).map_err(cert_error)
    })
    .await?;
    // Only a certificate that will be installed changes whom this node obeys.
    if let Some(ss) = &ssconf {
        super::node::write_ssconf(rt, ss).await?;
    }
    let dir = rt.cfg.state_dir.clone();
    let fp = NodeRuntime::blocking(move || {
        maguey_rpc::renew::commit(&dir, &certificate, &key).map_err(cert_error)
    })
    .await?;
    tracing::info!("installed the renewed node certificate {fp}");
    Ok(fp)
}

/// `admin_certificate_renew`: on the master, a new admin certificate.
pub async fn renew_admin(rt: &NodeRuntime) -> NodeResult<String> {
    let dir = rt.cfg.state_dir.clone();
    let fp =
        NodeRuntime::blocking(move || maguey_rpc::rotate::renew_admin(&dir).map_err(cert_error))
            .await?;
    tracing::info!("issued a new admin certificate {fp}");
    Ok(fp)
}

/// `rapi_certificate_renew`: on the master, a new Remote API certificate (`rapi.pem`).
pub async fn renew_rapi(
    rt: &NodeRuntime,
    file: Option<String>,
    ips: Vec<String>,
) -> NodeResult<String> {
    let ips = ips
        .iter()
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| NodeError::bad_request(format!("invalid address '{ip}': {e}")))
        })
        .collect::<NodeResult<Vec<_>>>()?;
    if let Some(f) = &file {
        if !std::path::Path::new(f).is_absolute() {
            return Err(NodeError::bad_request(format!(
                "the RAPI certificate file must be an absolute path on the master: {f}"
            )));
        }
    }
    let (dir, name) = (rt.cfg.state_dir.clone(), rt.cfg.node_name.clone());
    let fp = NodeRuntime::blocking(move || {
        let given = match &file {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
                NodeError::bad_request(format!("reading the RAPI certificate {f}: {e}"))
            })?),
            None => None,
        };
        maguey_rpc::rotate::renew_rapi(&dir, given.as_deref(), &name, &ips).map_err(cert_error)
    })
    .await?;
    tracing::info!("installed a new Remote API certificate {fp}");
    Ok(fp)
}

/// `ca_prepare`: on the master, a new CA kept aside; answers its certificate.
pub async fn ca_prepare(rt: &NodeRuntime) -> NodeResult<String> {
    let dir = rt.cfg.state_dir.clone();
    let cluster = crate::read_ssconf(&dir)
        .map(|ss| ss.cluster_name)
        .unwrap_or_default();
    NodeRuntime::blocking(move || maguey_rpc::ca_roll::prepare(&dir, &cluster).map_err(cert_error))
        .await
}

/// `ca_trust` (`finish` false) and `ca_finish` (true) of a CA roll.
pub async fn ca_step(rt: &NodeRuntime, ca: String, finish: bool) -> NodeResult<()> {
    let dir = rt.cfg.state_dir.clone();
    NodeRuntime::blocking(move || {
        if finish {
            maguey_rpc::ca_roll::finish(&dir, &ca).map_err(cert_error)
        } else {
            maguey_rpc::ca_roll::trust(&dir, &ca).map_err(cert_error)
        }
    })
    .await?;
    tracing::info!(
        "CA roll: {}",
        if finish {
            "trusting the new CA alone"
        } else {
            "trusting the new CA beside the current one"
        }
    );
    Ok(())
}
