//! Requests about OS definitions: validation, installation, rename scripts and the
//! built-in `image` provider.

use crate::error::NodeResult;
use crate::{image, os, NodeRuntime};
use maguey_rpc::{NodeReply, OsInfo, OsInstall};
use std::path::PathBuf;

impl NodeRuntime {
    /// Where OS scripts' outputs are logged.
    fn os_log_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("log").join("os")
    }
}

/// `os_validate`: the definition's `verify parameters` output (nothing for built-ins, which
/// check their parameters when they run).
pub async fn validate(rt: &NodeRuntime, install: &OsInstall) -> NodeResult<String> {
    let (name, _) = os::split_os_name(&install.os);
    if os::is_builtin(name) {
        return Ok(String::new());
    }
    let ctx = rt.storage_ctx(&install.file_storage_dir);
    let def = os::find_os(&rt.cfg.os_search_path, name, &rt.cfg.node_name)?;
    os::run_verify(&def, install, &ctx, &rt.os_log_dir(), rt.os_timeout).await
}

/// `instance_run_rename`: the definition's `rename` output (nothing for built-ins, which
/// keep nothing that names the instance).
pub async fn rename(rt: &NodeRuntime, install: &OsInstall, old_name: &str) -> NodeResult<String> {
    let (name, _) = os::split_os_name(&install.os);
    if os::is_builtin(name) {
        return Ok(String::new());
    }
    let ctx = rt.storage_ctx(&install.file_storage_dir);
    let def = os::find_os(&rt.cfg.os_search_path, name, &rt.cfg.node_name)?;
    os::run_rename(
        &def,
        install,
        old_name,
        &ctx,
        &rt.os_log_dir(),
        rt.os_timeout,
    )
    .await
}

/// `instance_os_add`: the `create` (or `reinstall`) script's output, or what the `image`
/// provider did.
pub async fn add(rt: &NodeRuntime, install: &OsInstall, reinstall: bool) -> NodeResult<NodeReply> {
    let (name, _) = os::split_os_name(&install.os);
    let ctx = rt.storage_ctx(&install.file_storage_dir);
    let log_dir = rt.os_log_dir();
    if os::is_builtin(name) {
        let out = image::install(
            install,
            reinstall,
            &ctx,
            &log_dir,
            &rt.cfg.node_name,
            rt.os_timeout,
        )
        .await?;
        return Ok(NodeReply::ImageInstall(out));
    }
    let def = os::find_os(&rt.cfg.os_search_path, name, &rt.cfg.node_name)?;
    let out = os::run_create(&def, install, reinstall, &ctx, &log_dir, rt.os_timeout).await?;
    Ok(NodeReply::Text(out))
}

/// `os_diagnose`: the definitions found on this node, built-ins included.
pub async fn diagnose(rt: &NodeRuntime) -> NodeResult<Vec<OsInfo>> {
    let path = rt.cfg.os_search_path.clone();
    NodeRuntime::blocking(move || Ok(os::diagnose_with_builtins(&path))).await
}
