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
) -> NodeResult<String> {
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
        maguey_rpc::renew::sign(&dir, &csr, &node_name, &ips).map_err(cert_error)
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
