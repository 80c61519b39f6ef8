//! The built-in `image` OS provider (`-o image`): writes a local disk image onto the
//! instance's disk 0, and optionally a cloud-init NoCloud seed. No OS definition directory is
//! needed; it is valid on every node that has `qemu-img`.
//!
//! OS parameters ([`PARAMETERS`]):
//! * `image` (required): absolute path of a local raw or qcow2 image (file or block device).
//! * `image_format`: `raw` or `qcow2`; detected with `qemu-img info --output=json` when unset.
//! * `cloud_init`: `true` also writes a cloud-init NoCloud seed: an ISO9660 image labelled
//!   `cidata` (`xorriso -as mkisofs`, Debian package `xorriso`, or `genisoimage`) holding
//!   `user-data`, `meta-data` and `network-config` (version 2), next to disk 0
//!   (`DISK0.cidata.iso`; for templates without a file, `STATE_DIR/cidata/INSTANCE.iso`).
//! * `hostname`: the guest's host name (default: the instance name).
//! * `ssh_authorized_keys`: SSH public keys, comma- or newline-separated.
//! * `network`: `dhcp` (default) or `IP/PREFIX,GATEWAY` (static, on the first NIC, matched by
//!   its MAC address).
//!
//! Create and reinstall do the same: `qemu-img convert -n -f FORMAT -O raw IMAGE DISK0` onto
//! the existing disk (an image whose virtual size is larger than the disk is refused before
//! anything is written).
//!
//! `instance_os_add` answers an [`ImageInstallOutput`] (a JSON object) for this provider,
//! where OS definitions answer their script's output as a string. Its `cdrom_image_path` is
//! the seed to attach: the master sets the instance's kvm hvparam `cdrom_image_path` to it.

use crate::error::{NodeError, NodeResult};
use crate::exec::{Cmd, CommandRunner};
use crate::storage::{self, StorageContext};
use maguey_rpc::{NicRuntime, OsInfo, OsInstall};
use serde_json::Value;
use std::io::{Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The provider's OS name.
pub const IMAGE_OS: &str = "image";
/// Its OS parameters, `(name, description)`.
pub const PARAMETERS: &[(&str, &str)] = &[
    (
        "image",
        "absolute path of a local raw or qcow2 image written onto disk 0 (required)",
    ),
    (
        "image_format",
        "raw or qcow2 (default: detected with qemu-img info)",
    ),
    (
        "cloud_init",
        "true: also write a cloud-init NoCloud seed (ISO9660, label cidata) to attach as the CD-ROM (cdrom_image_path)",
    ),
    (
        "hostname",
        "cloud-init: the guest's host name (default: the instance name)",
    ),
    (
        "ssh_authorized_keys",
        "cloud-init: SSH public keys, comma- or newline-separated",
    ),
    (
        "network",
        "cloud-init: dhcp (default) or static IP/PREFIX,GATEWAY on the first NIC",
    ),
];
/// Image formats accepted.
pub const FORMATS: &[&str] = &["raw", "qcow2"];

/// What `instance_os_add` answers for the `image` provider.
pub use maguey_rpc::ImageInstallOutput;

/// The provider as `os_diagnose` lists it.
pub fn os_info() -> OsInfo {
    OsInfo {
        name: IMAGE_OS.to_string(),
        path: "(built-in)".to_string(),
        valid: true,
        status: String::new(),
        variants: Vec::new(),
        parameters: PARAMETERS
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect(),
        api_versions: vec![20],
    }
}

/// The guest network of the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedNetwork {
    Dhcp,
    Static {
        /// `IP/PREFIX`.
        address: String,
        gateway: Option<IpAddr>,
    },
}

/// cloud-init settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInit {
    pub hostname: String,
    pub ssh_authorized_keys: Vec<String>,
    pub network: SeedNetwork,
}

/// The provider's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageParams {
    pub image: PathBuf,
    pub format: Option<String>,
    pub cloud_init: Option<CloudInit>,
}

fn param_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn parse_bool(name: &str, v: &Value) -> NodeResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            other => Err(NodeError::bad_request(format!(
                "OS parameter {name}: '{other}' is not a boolean (true or false)"
            ))),
        },
        other => Err(NodeError::bad_request(format!(
            "OS parameter {name}: {other} is not a boolean (true or false)"
        ))),
    }
}

/// Parses `network`: `dhcp`, or `IP/PREFIX[,GATEWAY]`.
pub fn parse_network(s: &str) -> NodeResult<SeedNetwork> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("dhcp") {
        return Ok(SeedNetwork::Dhcp);
    }
    let bad = || {
        NodeError::bad_request(format!(
            "OS parameter network: '{s}' is neither dhcp nor IP/PREFIX,GATEWAY"
        ))
    };
    let (addr, gw) = match s.split_once(',') {
        Some((a, g)) => (a.trim(), Some(g.trim())),
        None => (s, None),
    };
    let (ip, prefix) = addr.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    let gateway = match gw {
        None | Some("") => None,
        Some(g) => {
            let g: IpAddr = g.parse().map_err(|_| bad())?;
            if g.is_ipv4() != ip.is_ipv4() {
                return Err(bad());
            }
            Some(g)
        }
    };
    Ok(SeedNetwork::Static {
        address: format!("{ip}/{prefix}"),
        gateway,
    })
}

/// Checks the provider's OS parameters of `install`.
pub fn parse_params(install: &OsInstall) -> NodeResult<ImageParams> {
    let p = &install.osparams;
    if let Some(unknown) = p.keys().find(|k| !PARAMETERS.iter().any(|(n, _)| n == k)) {
        let known: Vec<&str> = PARAMETERS.iter().map(|(n, _)| *n).collect();
        return Err(NodeError::bad_request(format!(
            "OS image has no parameter '{unknown}' (parameters: {})",
            known.join(", ")
        )));
    }
    let image = p.get("image").map(param_str).unwrap_or_default();
    if image.trim().is_empty() {
        return Err(NodeError::bad_request(format!(
            "OS image needs the OS parameter image (the path of a raw or qcow2 image on the node) for instance {}",
            install.instance_name
        )));
    }
    let image = PathBuf::from(image);
    if !image.is_absolute() {
        return Err(NodeError::bad_request(format!(
            "OS parameter image: '{}' must be an absolute path",
            image.display()
        )));
    }
    let format = match p.get("image_format").map(param_str) {
        None => None,
        Some(f) if f.trim().is_empty() => None,
        Some(f) => {
            let f = f.trim().to_ascii_lowercase();
            if !FORMATS.contains(&f.as_str()) {
                return Err(NodeError::unsupported(format!(
                    "OS parameter image_format: '{f}' is not supported ({})",
                    FORMATS.join(" or ")
                )));
            }
            Some(f)
        }
    };
    let cloud_init = match p.get("cloud_init") {
        Some(v) => parse_bool("cloud_init", v)?,
        None => false,
    };
    let cloud_init = if cloud_init {
        let hostname = match p.get("hostname").map(param_str) {
            Some(h) if !h.trim().is_empty() => h.trim().to_string(),
            _ => install.instance_name.clone(),
        };
        maguey_model::names::validate_hostname(&hostname)
            .map_err(|e| NodeError::bad_request(format!("OS parameter hostname: {e}")))?;
        let keys: Vec<String> = p
            .get("ssh_authorized_keys")
            .map(param_str)
            .unwrap_or_default()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        for k in &keys {
            if k.chars().any(char::is_control) || k.split_whitespace().count() < 2 {
                return Err(NodeError::bad_request(format!(
                    "OS parameter ssh_authorized_keys: '{k}' is not an SSH public key (TYPE KEY [COMMENT])"
                )));
            }
        }
        let network = parse_network(&p.get("network").map(param_str).unwrap_or_default())?;
        Some(CloudInit {
            hostname,
            ssh_authorized_keys: keys,
            network,
        })
    } else {
        None
    };
    Ok(ImageParams {
        image,
        format,
        cloud_init,
    })
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn yq(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The seed's files: `(user-data, meta-data, network-config)`.
pub fn seed_files(instance: &str, ci: &CloudInit, nics: &[NicRuntime]) -> (String, String, String) {
    let short = ci.hostname.split('.').next().unwrap_or(&ci.hostname);
    let mut user = format!(
        "#cloud-config\n# Written by Maguey's image OS provider.\nhostname: {}\n",
        yq(short)
    );
    if ci.hostname.contains('.') {
        user.push_str(&format!("fqdn: {}\n", yq(&ci.hostname)));
    }
    user.push_str("preserve_hostname: false\n");
    if !ci.ssh_authorized_keys.is_empty() {
        user.push_str("ssh_authorized_keys:\n");
        for k in &ci.ssh_authorized_keys {
            user.push_str(&format!("  - {}\n", yq(k)));
        }
    }
    let meta = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yq(instance),
        yq(&ci.hostname)
    );
    let net = crate::image_network::network_config(&ci.network, nics);
    (user, meta, net)
}

/// Where the seed of an instance whose disk 0 is at `disk0` goes.
pub fn seed_path_for(disk0: &Path) -> PathBuf {
    let mut name = disk0
        .file_name()
        .map(|f| f.to_os_string())
        .unwrap_or_else(|| "disk0".into());
    name.push(".cidata.iso");
    disk0.with_file_name(name)
}

/// Finds a program in the OS scripts' `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    crate::os::OS_SCRIPT_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

async fn run_tool(
    runner: &dyn CommandRunner,
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> NodeResult<Vec<u8>> {
    let cmd = Cmd::program(program, args)
        .clean_env([("PATH", crate::os::OS_SCRIPT_PATH), ("LC_ALL", "C")])
        .timeout(timeout);
    let shown = format!("{} {}", program.display(), args.join(" "));
    let out = runner
        .run_async(&cmd)
        .await
        .map_err(|e| NodeError::io(format!("cannot run {}: {}", program.display(), e.reason())))?;
    if out.timed_out {
        return Err(NodeError::timeout(format!(
            "'{shown}' timed out after {}s",
            timeout.as_secs()
        )));
    }
    if out.success() {
        Ok(out.stdout.into_bytes())
    } else {
        Err(NodeError::command_failed(format!(
            "'{shown}' failed ({}): {}",
            out.status_text(),
            out.stderr.trim()
        )))
    }
}

fn qemu_img() -> NodeResult<PathBuf> {
    find_program("qemu-img").ok_or_else(|| {
        NodeError::not_found("qemu-img is not installed (Debian package qemu-utils)".to_string())
    })
}

/// `(format, virtual size in bytes)` of an image, as `qemu-img info` reports it.
pub async fn image_info(
    runner: &dyn CommandRunner,
    image: &Path,
    format: Option<&str>,
    timeout: Duration,
) -> NodeResult<(String, u64)> {
    // Always an explicit format: qemu's probing is never asked (docs/security.md).
    let format = match format {
        Some(f) => f.to_string(),
        None => crate::image_safety::sniff_format(image)?,
    };
    if !FORMATS.contains(&format.as_str()) {
        // Not handed to qemu at all (vmdk descriptors, for one, name other files).
        return Ok((format, 0));
    }
    let mut args = vec!["info".to_string(), "--output=json".to_string()];
    args.extend(["-f".to_string(), format]);
    args.push(image.display().to_string());
    let out = run_tool(runner, &qemu_img()?, &args, timeout).await?;
    let v: Value = serde_json::from_slice(&out).map_err(|e| {
        NodeError::io(format!(
            "cannot read qemu-img info of {}: {e}",
            image.display()
        ))
    })?;
    crate::image_safety::refuse_external_files(image, &v)?;
    let fmt = v["format"].as_str().unwrap_or_default().to_string();
    let size = v["virtual-size"].as_u64().ok_or_else(|| {
        NodeError::command_failed(format!(
            "qemu-img info gives no virtual size for {}",
            image.display()
        ))
    })?;
    Ok((fmt, size))
}

/// Size in bytes of a file or block device.
fn device_size(path: &Path) -> NodeResult<u64> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| NodeError::io(format!("cannot open {}: {e}", path.display())))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| NodeError::io(format!("cannot size {}: {e}", path.display())))
}

fn is_image_source(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() || m.file_type().is_block_device())
}

/// Writes the NoCloud seed (ISO9660, volume id `cidata`) to `path`, atomically.
pub async fn write_seed(
    runner: &dyn CommandRunner,
    path: &Path,
    files: &(String, String, String),
    timeout: Duration,
) -> NodeResult<()> {
    // xorriso (maintained) first; genisoimage/mkisofs take the same options.
    let (tool, prefix): (PathBuf, Vec<String>) = if let Some(p) = find_program("xorriso") {
        (p, vec!["-as".into(), "mkisofs".into()])
    } else if let Some(p) = find_program("genisoimage") {
        (p, vec![])
    } else if let Some(p) = find_program("mkisofs") {
        (p, vec![])
    } else {
        return Err(NodeError::not_found(
            "cloud_init needs xorriso (Debian package xorriso) or genisoimage on the node",
        ));
    };
    let dir = path
        .parent()
        .ok_or_else(|| NodeError::bad_request(format!("invalid seed path {}", path.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::io(format!("cannot create {}: {e}", dir.display())))?;
    let base = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp_dir = dir.join(format!(".{base}.files-{}-{stamp}", std::process::id()));
    let tmp_iso = dir.join(format!(".{base}.tmp-{}-{stamp}", std::process::id()));
    let result = async {
        std::fs::create_dir(&tmp_dir)
            .map_err(|e| NodeError::io(format!("cannot create {}: {e}", tmp_dir.display())))?;
        let mut names = Vec::new();
        for (name, content) in [
            ("user-data", &files.0),
            ("meta-data", &files.1),
            ("network-config", &files.2),
        ] {
            let p = tmp_dir.join(name);
            std::fs::write(&p, content)
                .map_err(|e| NodeError::io(format!("cannot write {}: {e}", p.display())))?;
            names.push(p.display().to_string());
        }
        let mut args = prefix.clone();
        args.extend(
            [
                "-o",
                &tmp_iso.display().to_string(),
                "-V",
                "cidata",
                "-J",
                "-R",
                "-quiet",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(names);
        run_tool(runner, &tool, &args, timeout).await?;
        let f = std::fs::File::open(&tmp_iso)
            .map_err(|e| NodeError::io(format!("cannot open {}: {e}", tmp_iso.display())))?;
        f.sync_all()
            .map_err(|e| NodeError::io(format!("cannot sync {}: {e}", tmp_iso.display())))?;
        std::fs::rename(&tmp_iso, path)
            .map_err(|e| NodeError::io(format!("cannot write {}: {e}", path.display())))
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp_dir);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_iso);
    }
    result
}

/// Runs the provider for `install` (create and reinstall are the same). `log_dir` keeps a log
/// of every run.
pub async fn install(
    install: &OsInstall,
    reinstall: bool,
    ctx: &StorageContext,
    log_dir: &Path,
    node: &str,
    timeout: Duration,
) -> NodeResult<ImageInstallOutput> {
    let name = &install.instance_name;
    maguey_model::names::validate_hostname(name)
        .map_err(|e| NodeError::bad_request(format!("invalid instance name: {e}")))?;
    let r = run(install, reinstall, ctx, node, timeout).await;
    let _ = std::fs::create_dir_all(log_dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let text = match &r {
        Ok(out) => out.output.clone(),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = std::fs::write(
        log_dir.join(format!("add-{IMAGE_OS}-{name}-{stamp}.log")),
        text,
    );
    r
}

async fn run(
    install: &OsInstall,
    reinstall: bool,
    ctx: &StorageContext,
    node: &str,
    timeout: Duration,
) -> NodeResult<ImageInstallOutput> {
    let name = &install.instance_name;
    let (_, variant) = crate::os::split_os_name(&install.os);
    if let Some(v) = variant {
        return Err(NodeError::bad_request(format!(
            "OS image has no variants (asked: '{v}')"
        )));
    }
    let params = parse_params(install)?;
    let disk = install.disks.first().ok_or_else(|| {
        NodeError::bad_request({
            format!("instance {name} has no disk to write the image onto (OS image needs disk 0)")
        })
    })?;
    let imp = storage::for_disk(disk)?;
    if imp.find(ctx, disk)?.is_none() {
        return Err(NodeError::not_found(format!(
            "disk {} of instance {name} is missing on node {node}",
            disk.iv_name
        )));
    }
    let target = imp.device_path(ctx, disk)?;
    let image = &params.image;
    crate::hostpaths::check_host_path(
        &ctx.state_dir,
        ctx.checked_file_storage_path().ok().as_deref(),
        "image",
        &image.display().to_string(),
    )?;
    if !is_image_source(image) {
        return Err(NodeError::not_found(format!(
            "image {} (OS parameter image of instance {name}) does not exist on node {node}",
            image.display()
        )));
    }
    let (format, size) = image_info(ctx.runner(), image, params.format.as_deref(), timeout)
        .await
        .map_err(|e| NodeError::io(format!("cannot read image {}: {e}", image.display())))?;
    if !FORMATS.contains(&format.as_str()) {
        return Err(NodeError::bad_request(format!(
            "image {} is in format '{format}'; the image OS provider takes {}",
            image.display(),
            FORMATS.join(" or ")
        )));
    }
    let disk_size = device_size(&target)?;
    const MIB: u64 = 1024 * 1024;
    if size > disk_size {
        return Err(NodeError::bad_request(format!(
            "image {} has a virtual size of {} MiB ({size} bytes), larger than disk {} of instance {name} ({} MiB, {disk_size} bytes): grow the disk or use a smaller image",
            image.display(),
            size.div_ceil(MIB),
            disk.iv_name,
            disk_size / MIB
        )));
    }
    let mut output = String::new();
    let what = if reinstall {
        "reinstalling"
    } else {
        "installing"
    };
    output.push_str(&format!(
        "{what} instance {name} from image {} ({format}, {} MiB) onto disk {} ({})\n",
        image.display(),
        size.div_ceil(MIB),
        disk.iv_name,
        target.display()
    ));
    let args: Vec<String> = [
        "convert",
        "-n",
        "-f",
        &format,
        "-O",
        "raw",
        &image.display().to_string(),
        &target.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_tool(ctx.runner(), &qemu_img()?, &args, timeout)
        .await
        .map_err(|e| {
            NodeError::io({
                format!(
                    "cannot write image {} onto disk {} of instance {name}: {e}",
                    image.display(),
                    disk.iv_name
                )
            })
        })?;
    output.push_str("image written\n");
    let mut cdrom = None;
    if let Some(ci) = &params.cloud_init {
        let seed = match &disk.logical_id {
            maguey_model::LogicalId::File { .. } | maguey_model::LogicalId::Sharedfile { .. } => {
                seed_path_for(&target)
            }
            _ => storage::normalize(&ctx.state_dir.join("cidata").join(format!("{name}.iso"))),
        };
        let files = seed_files(name, ci, &install.nics);
        write_seed(ctx.runner(), &seed, &files, timeout).await?;
        let net = crate::image_network::describe(&ci.network, &install.nics);
        output.push_str(&format!(
            "cloud-init NoCloud seed written to {} (hostname {}, {} SSH key(s), network {net}); attach it as the CD-ROM (hvparam cdrom_image_path)\n",
            seed.display(),
            ci.hostname,
            ci.ssh_authorized_keys.len()
        ));
        cdrom = Some(seed.display().to_string());
    }
    Ok(ImageInstallOutput {
        output,
        image_format: format,
        image_size: size,
        cdrom_image_path: cdrom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn inst(params: &[(&str, Value)]) -> OsInstall {
        OsInstall {
            instance_name: "vm1.example.com".into(),
            os: "image".into(),
            hypervisor: "kvm".into(),
            osparams: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            disks: vec![],
            nics: vec![],
            file_storage_dir: String::new(),
            debug_level: 0,
        }
    }

    #[test]
    fn params() {
        let p = parse_params(&inst(&[("image", "/srv/i.qcow2".into())])).unwrap();
        assert_eq!(p.image, PathBuf::from("/srv/i.qcow2"));
        assert_eq!((p.format, p.cloud_init), (None, None));
        let e = parse_params(&inst(&[])).unwrap_err().to_string();
        assert!(e.contains("needs the OS parameter image"), "{e}");
        let e = parse_params(&inst(&[("image", "rel.img".into())]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = parse_params(&inst(&[("image", "/i".into()), ("imag", "x".into())]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no parameter 'imag'"), "{e}");
        let e = parse_params(&inst(&[
            ("image", "/i".into()),
            ("image_format", "vmdk".into()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("vmdk"), "{e}");
        let p = parse_params(&inst(&[
            ("image", "/i".into()),
            ("image_format", "QCOW2".into()),
            ("cloud_init", "yes".into()),
            (
                "ssh_authorized_keys",
                "ssh-ed25519 AAAA a@b, ssh-rsa BBBB c@d\nssh-ed25519 CCCC".into(),
            ),
        ]))
        .unwrap();
        assert_eq!(p.format.as_deref(), Some("qcow2"));
        let ci = p.cloud_init.unwrap();
        assert_eq!(ci.hostname, "vm1.example.com");
        assert_eq!(ci.ssh_authorized_keys.len(), 3);
        assert_eq!(ci.network, SeedNetwork::Dhcp);
        let e = parse_params(&inst(&[
            ("image", "/i".into()),
            ("cloud_init", true.into()),
            ("ssh_authorized_keys", "nospace".into()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an SSH public key"), "{e}");
        let e = parse_params(&inst(&[
            ("image", "/i".into()),
            ("cloud_init", "maybe".into()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("boolean"), "{e}");
        let e = parse_params(&inst(&[
            ("image", "/i".into()),
            ("cloud_init", true.into()),
            ("hostname", "bad_name".into()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("hostname"), "{e}");
    }

    #[test]
    fn networks() {
        assert_eq!(parse_network("").unwrap(), SeedNetwork::Dhcp);
        assert_eq!(parse_network("DHCP").unwrap(), SeedNetwork::Dhcp);
        assert_eq!(
            parse_network("192.0.2.10/24, 192.0.2.1").unwrap(),
            SeedNetwork::Static {
                address: "192.0.2.10/24".into(),
                gateway: Some("192.0.2.1".parse().unwrap())
            }
        );
        assert_eq!(
            parse_network("2001:db8::5/64").unwrap(),
            SeedNetwork::Static {
                address: "2001:db8::5/64".into(),
                gateway: None
            }
        );
        for bad in [
            "static",
            "192.0.2.10",
            "192.0.2.10/33",
            "192.0.2.10/24,nope",
            "192.0.2.10/24,2001:db8::1",
        ] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seed_contents() {
        let ci = CloudInit {
            hostname: "web1.example.com".into(),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA \"quoted\" me@host".into()],
            network: SeedNetwork::Static {
                address: "192.0.2.10/24".into(),
                gateway: Some("192.0.2.1".parse().unwrap()),
            },
        };
        let nics = vec![NicRuntime {
            mac: "AA:00:00:12:34:56".into(),
            ip: None,
            mode: maguey_model::NicMode::Bridged,
            link: "br0".into(),
            network: None,
        }];
        let (user, meta, net) = seed_files("web1.example.com", &ci, &nics);
        assert!(user.starts_with("#cloud-config\n"), "{user}");
        assert!(user.contains("hostname: \"web1\"\n"), "{user}");
        assert!(user.contains("fqdn: \"web1.example.com\"\n"), "{user}");
        assert!(
            user.contains(
                "ssh_authorized_keys:\n  - \"ssh-ed25519 AAAA \\\"quoted\\\" me@host\"\n"
            ),
            "{user}"
        );
        assert_eq!(
            meta,
            "instance-id: \"web1.example.com\"\nlocal-hostname: \"web1.example.com\"\n"
        );
        assert_eq!(
            net,
            "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"aa:00:00:12:34:56\"\n    dhcp4: false\n    addresses:\n      - \"192.0.2.10/24\"\n    routes:\n      - to: \"0.0.0.0/0\"\n        via: \"192.0.2.1\"\n"
        );
        let dhcp = CloudInit {
            network: SeedNetwork::Dhcp,
            ssh_authorized_keys: vec![],
            ..ci
        };
        let (user, _, net) = seed_files("x", &dhcp, &[]);
        assert!(!user.contains("ssh_authorized_keys"));
        assert!(
            net.contains("name: \"e*\"") && net.contains("dhcp4: true"),
            "{net}"
        );
        assert_eq!(
            seed_path_for(Path::new("/s/vm1/disk0")),
            PathBuf::from("/s/vm1/disk0.cidata.iso")
        );
        let info = os_info();
        assert!(info.valid && info.parameters.iter().any(|(n, _)| n == "image"));
    }
}
