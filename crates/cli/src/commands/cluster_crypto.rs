//! `maguey cluster renew-crypto` (gnt-cluster renew-crypto): new node certificates while
//! instances run (docs/security.md).

use crate::args::JobOpts;
use crate::input::usage;
use crate::master::{client, run_job};
use crate::CliResult;
use clap::Args;
use maguey_model::{OpClusterRenewCrypto, OpCode};
use std::path::Path;

#[derive(Debug, Args)]
pub struct RenewCryptoArgs {
    /// New certificates for every online node (signed by the cluster CA; the old ones
    /// command nothing afterwards).
    #[arg(long)]
    pub new_node_certificates: bool,
    #[command(flatten)]
    pub job: JobOpts,
}

pub async fn run(dir: &Path, a: RenewCryptoArgs) -> CliResult<u8> {
    if !a.new_node_certificates {
        return Err(usage(
            "say what to renew: --new-node-certificates (the cluster CA, the RAPI certificate \
             and DRBD secrets cannot be renewed in place yet)",
        ));
    }
    let c = client(dir)?;
    run_job(
        &c,
        vec![OpCode::ClusterRenewCrypto(OpClusterRenewCrypto {
            node_certificates: true,
        })],
        a.job,
    )
    .await?;
    Ok(0)
}
