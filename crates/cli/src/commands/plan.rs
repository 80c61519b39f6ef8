//! `maguey plan`: the placement engine (htools), on a text file or on the live cluster.

use crate::master::client;
use crate::{CliError, CliResult};
use std::path::Path;

pub async fn run(dir: &Path, mut p: maguey_placement::cli::PlanCommand) -> CliResult<u8> {
    // Without --text, plan on the live cluster: its description goes through the
    // placement engine's own loader and text writer into a temporary htools file.
    let live = tempfile::NamedTempFile::new().map_err(|e| CliError::Other(e.to_string()))?;
    if let Some(text @ None) = maguey_placement::cli::text_arg(&mut p) {
        let c = client(dir)?;
        let desc = c.cluster_description().await?;
        let mut cluster = maguey_placement::ialloc::parse_cluster(&desc.to_string())
            .map_err(|e| CliError::Other(format!("reading the live cluster: {e}")))?;
        // The iallocator description has no master flag; hroller's plan needs it
        // (the text format writes it as `M`).
        let cfg = c.config().await?;
        if let Some(m) = cfg.master_node() {
            for n in cluster.nodes.iter_mut().filter(|n| n.name == m.name) {
                n.master = true;
            }
        }
        std::fs::write(live.path(), maguey_placement::text::write_text(&cluster))
            .map_err(|e| CliError::Other(e.to_string()))?;
        *text = Some(live.path().to_path_buf());
    }
    let mut out = std::io::stdout();
    let code =
        maguey_placement::cli::run(p, &mut out).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    Ok(u8::try_from(code).unwrap_or(1))
}
