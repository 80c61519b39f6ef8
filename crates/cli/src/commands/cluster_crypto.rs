//! `maguey cluster renew-crypto` (gnt-cluster renew-crypto): new node certificates, a new
//! Remote API certificate, new DRBD secrets and a new admin certificate while instances run
//! (docs/security.md).

use crate::args::JobOpts;
use crate::input::usage;
use crate::master::{client, priority};
use crate::wait::finish;
use crate::CliError;
use crate::CliResult;
use clap::Args;
use maguey_model::{OpClusterRenewCrypto, OpCode};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct RenewCryptoArgs {
    /// New certificates for every online node (signed by the cluster CA; the old ones
    /// command nothing afterwards).
    #[arg(long)]
    pub new_node_certificates: bool,
    /// A new cluster CA: every online node and the admin get certificates from it (both CAs
    /// trusted during the roll), then certificates of the old CA are refused.
    #[arg(long)]
    pub new_cluster_certificate: bool,
    /// A new Remote API certificate, issued by the cluster CA for the master.
    #[arg(long, conflicts_with = "rapi_certificate")]
    pub new_rapi_certificate: bool,
    /// Install this Remote API certificate: a PEM file on the master with the certificate
    /// (chain) and its private key.
    #[arg(long, value_name = "FILE")]
    pub rapi_certificate: Option<PathBuf>,
    /// A new admin client certificate (admin.pem, admin.key); the old one is refused
    /// afterwards: copy the new one wherever the admin works from.
    #[arg(long)]
    pub new_admin_certificate: bool,
    /// A new shared secret for every DRBD disk, applied to running pairs one instance at a
    /// time (reconnect and resync; the guests keep running).
    #[arg(long)]
    pub new_drbd_secrets: bool,
    /// Node certificates live SECONDS (at least 60) from this renewal on, renewed by the
    /// master once two thirds of it have passed (implies --new-node-certificates).
    #[arg(long, value_name = "SECONDS")]
    pub node_certificate_lifetime: Option<u64>,
    #[command(flatten)]
    pub job: JobOpts,
}

pub async fn run(dir: &Path, a: RenewCryptoArgs) -> CliResult<u8> {
    if !(a.new_node_certificates
        || a.new_cluster_certificate
        || a.new_rapi_certificate
        || a.rapi_certificate.is_some()
        || a.new_admin_certificate
        || a.new_drbd_secrets
        || a.node_certificate_lifetime.is_some())
    {
        return Err(usage(
            "say what to renew: --new-cluster-certificate, --new-node-certificates, \
             --new-rapi-certificate, --rapi-certificate FILE, --new-admin-certificate, \
             --new-drbd-secrets",
        ));
    }
    let rapi_cert_file = match &a.rapi_certificate {
        Some(f) => {
            let abs = std::path::absolute(f)
                .map_err(|e| usage(format!("--rapi-certificate {}: {e}", f.display())))?;
            Some(abs.display().to_string())
        }
        None => None,
    };
    let op = OpClusterRenewCrypto {
        node_certificates: a.new_node_certificates,
        new_cluster_cert: a.new_cluster_certificate,
        new_rapi_cert: a.new_rapi_certificate,
        rapi_cert_file,
        new_admin_cert: a.new_admin_certificate,
        new_drbd_secrets: a.new_drbd_secrets,
        node_certificate_lifetime: a.node_certificate_lifetime,
    };
    let c = client(dir)?;
    let id = c
        .submit(
            vec![OpCode::ClusterRenewCrypto(op)],
            priority(a.job.priority),
        )
        .await?;
    if a.job.submit {
        println!("{id}");
        return Ok(0);
    }
    match finish(&c, id).await {
        Ok(_) => Ok(0),
        // The job replaced the admin certificate this client presents: the master refuses
        // it now; follow the job with the new one.
        Err(e)
            if (a.new_admin_certificate || a.new_cluster_certificate)
                && !matches!(e, CliError::JobFailed(_)) =>
        {
            let _ = e;
            eprintln!("switching to the new admin certificate");
            finish(&client(dir)?, id).await.map(|_| 0)
        }
        Err(e) => Err(e),
    }
}
