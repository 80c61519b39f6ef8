//! The built-in `image` OS provider: real images (qemu-img, qemu-io) written onto file disks,
//! the cloud-init NoCloud seed (read back with xorriso) and the seed as a kvm CD-ROM.

use maguey_model::params::{Hypervisor as Hv, ParamKind};
use maguey_model::{Disk, LogicalId};
use maguey_node::image::{ImageInstallOutput, IMAGE_OS};
use maguey_node::qmp::Qmp;
use maguey_node::{os, NodeConfig, NodeResult, NodeRuntime};
use maguey_rpc::{InstanceRuntime, NicRuntime, NodeRequest, OsInstall};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: usize = 1024 * 1024;

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn runtime(dir: &Path) -> NodeRuntime {
    NodeRuntime::new(NodeConfig {
        state_dir: dir.to_path_buf(),
        node_name: "node1".into(),
        fake_memory_mib: Some(1024),
        fake_cpus: Some(2),
        os_search_path: vec![dir.join("os")],
    })
    .unwrap()
}

fn disk(name: &str, size: u64) -> Disk {
    Disk {
        uuid: format!("uuid-{name}"),
        name: None,
        dev_type: maguey_model::DevType::File,
        size,
        mode: maguey_model::DiskMode::ReadWrite,
        logical_id: LogicalId::File {
            driver: "loop".into(),
            path: format!("{name}/disk0"),
        },
        children: vec![],
        nodes: vec![],
        iv_name: "disk/0".into(),
        serial_no: 1,
        ctime: 0.0,
        mtime: 0.0,
    }
}

fn install(name: &str, size: u64, params: &[(&str, Value)]) -> OsInstall {
    OsInstall {
        instance_name: name.into(),
        os: IMAGE_OS.into(),
        hypervisor: "kvm".into(),
        osparams: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        disks: vec![disk(name, size)],
        nics: vec![NicRuntime {
            mac: "aa:00:00:12:34:56".into(),
            ip: None,
            mode: maguey_model::NicMode::Bridged,
            link: "br0".into(),
            network: None,
        }],
        file_storage_dir: "file-storage".into(),
        debug_level: 0,
    }
}

/// Creates the instance's disk 0 (MiB) filled with 0xee.
async fn make_disk(rt: &NodeRuntime, dir: &Path, name: &str, size: u64) -> PathBuf {
    rt.handle(NodeRequest::BlockdevCreate {
        disk: disk(name, size),
        instance_name: name.into(),
        file_storage_dir: "file-storage".into(),
    })
    .await
    .unwrap();
    let path = dir.join(format!("file-storage/{name}/disk0"));
    std::fs::write(&path, vec![0xee; size as usize * MIB]).unwrap();
    path
}

async fn os_add(rt: &NodeRuntime, inst: OsInstall, reinstall: bool) -> NodeResult<Value> {
    rt.handle(NodeRequest::InstanceOsAdd {
        install: inst,
        reinstall,
    })
    .await
}

fn all(data: &[u8], byte: u8) -> bool {
    data.iter().all(|b| *b == byte)
}

#[tokio::test]
async fn qcow2_image_written_onto_disk0_and_reinstalled() {
    let dir = tempfile::tempdir().unwrap();
    // Source images outside the node's state directory (refused there: docs/security.md).
    let imgs = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let target = make_disk(&rt, dir.path(), "vm1", 8).await;
    // A 4 MiB qcow2 image: 1 MiB of 0x5a at 0, 64 KiB of 0xa5 at 3 MiB, zeroes elsewhere.
    let img = imgs.path().join("base.qcow2");
    let img_s = img.to_str().unwrap();
    run("qemu-img", &["create", "-q", "-f", "qcow2", img_s, "4M"]);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -q -P 0x5a 0 1M", img_s],
    );
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -q -P 0xa5 3M 64k", img_s],
    );

    let v = os_add(&rt, install("vm1", 8, &[("image", img_s.into())]), false)
        .await
        .unwrap();
    let out: ImageInstallOutput = serde_json::from_value(v).unwrap();
    assert_eq!(out.image_format, "qcow2");
    assert_eq!(out.image_size, 4 * MIB as u64);
    assert_eq!(out.cdrom_image_path, None);
    assert!(out.output.contains("base.qcow2"), "{}", out.output);
    let data = std::fs::read(&target).unwrap();
    assert_eq!(data.len(), 8 * MIB, "the disk keeps its size");
    assert!(all(&data[..MIB], 0x5a));
    assert!(
        all(&data[MIB..3 * MIB], 0),
        "unallocated clusters become zeroes"
    );
    assert!(all(&data[3 * MIB..3 * MIB + 65536], 0xa5));
    assert!(all(&data[3 * MIB + 65536..4 * MIB], 0));
    assert!(all(&data[4 * MIB..], 0xee), "past the image: untouched");
    // A log is kept.
    assert!(
        std::fs::read_dir(dir.path().join("log/os"))
            .unwrap()
            .count()
            >= 1
    );

    // Reinstall from a raw image (format detected) does the same.
    let raw = imgs.path().join("pattern.raw");
    let pattern: Vec<u8> = (0..2 * MIB).map(|i| (i % 251) as u8).collect();
    std::fs::write(&raw, &pattern).unwrap();
    let v = os_add(
        &rt,
        install("vm1", 8, &[("image", raw.to_str().unwrap().into())]),
        true,
    )
    .await
    .unwrap();
    assert_eq!(v["image_format"], "raw");
    let data = std::fs::read(&target).unwrap();
    assert_eq!(&data[..2 * MIB], &pattern[..]);
    assert!(all(&data[2 * MIB..3 * MIB], 0), "old image content stays");

    // A given format is used as is (a qcow2 file read as raw is the qcow2 bytes).
    let v = os_add(
        &rt,
        install(
            "vm1",
            8,
            &[("image", img_s.into()), ("image_format", "raw".into())],
        ),
        true,
    )
    .await
    .unwrap();
    assert_eq!(v["image_format"], "raw");
    let data = std::fs::read(&target).unwrap();
    assert_eq!(&data[..4], b"QFI\xfb");

    // A variant is refused.
    let mut inst = install("vm1", 8, &[("image", img_s.into())]);
    inst.os = "image+x".into();
    let e = os_add(&rt, inst, false).await.unwrap_err().to_string();
    assert!(e.contains("no variants"), "{e}");
}

#[tokio::test]
async fn too_large_and_missing_images_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // Source images outside the node's state directory (refused there: docs/security.md).
    let imgs = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let target = make_disk(&rt, dir.path(), "vm2", 4).await;
    let big = imgs.path().join("big.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", big.to_str().unwrap(), "16M"],
    );
    let e = os_add(
        &rt,
        install("vm2", 4, &[("image", big.to_str().unwrap().into())]),
        false,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("virtual size of 16 MiB")
            && e.contains("larger than disk disk/0 of instance vm2 (4 MiB"),
        "{e}"
    );
    assert!(
        all(&std::fs::read(&target).unwrap(), 0xee),
        "nothing written"
    );

    let missing = imgs.path().join("nope.qcow2");
    let e = os_add(
        &rt,
        install("vm2", 4, &[("image", missing.to_str().unwrap().into())]),
        false,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "image {} (OS parameter image of instance vm2) does not exist on node node1",
            missing.display()
        )
    );
    let e = os_add(&rt, install("vm2", 4, &[]), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs the OS parameter image"), "{e}");

    // A missing disk.
    let raw = imgs.path().join("small.raw");
    std::fs::write(&raw, vec![1u8; MIB]).unwrap();
    let e = os_add(
        &rt,
        install("vm3", 4, &[("image", raw.to_str().unwrap().into())]),
        false,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("disk/0 of instance vm3 is missing"), "{e}");

    // Not raw or qcow2.
    let vmdk = imgs.path().join("x.vmdk");
    run(
        "qemu-img",
        &["create", "-q", "-f", "vmdk", vmdk.to_str().unwrap(), "1M"],
    );
    let e = os_add(
        &rt,
        install("vm2", 4, &[("image", vmdk.to_str().unwrap().into())]),
        false,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("format 'vmdk'"), "{e}");
}

/// One file of an ISO9660 image, read back with xorriso.
fn iso_file(iso: &Path, name: &str) -> String {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join(name);
    run(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            &format!("/{name}"),
            dest.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(dest).unwrap()
}

#[tokio::test]
async fn cloud_init_seed_written_and_attached_as_cdrom() {
    let dir = tempfile::tempdir().unwrap();
    // Source images outside the node's state directory (refused there: docs/security.md).
    let imgs = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    make_disk(&rt, dir.path(), "web1.example.com", 4).await;
    let raw = imgs.path().join("img.raw");
    std::fs::write(&raw, vec![7u8; MIB]).unwrap();
    let keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 alice@example.com,\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB bob";
    let v = os_add(
        &rt,
        install(
            "web1.example.com",
            4,
            &[
                ("image", raw.to_str().unwrap().into()),
                ("cloud_init", "true".into()),
                ("ssh_authorized_keys", keys.into()),
                ("network", "192.0.2.10/24,192.0.2.1".into()),
            ],
        ),
        false,
    )
    .await
    .unwrap();
    let out: ImageInstallOutput = serde_json::from_value(v).unwrap();
    let seed = PathBuf::from(out.cdrom_image_path.expect("a seed"));
    assert_eq!(
        seed,
        dir.path()
            .join("file-storage/web1.example.com/disk0.cidata.iso")
    );
    let iso = seed.to_str().unwrap();
    let d = String::from_utf8(run("xorriso", &["-indev", iso, "-pvd_info"])).unwrap();
    assert!(
        d.lines()
            .any(|l| l.starts_with("Volume Id") && l.ends_with(": cidata")),
        "{d}"
    );
    let listing =
        String::from_utf8(run("xorriso", &["-indev", iso, "-find", "/", "-type", "f"])).unwrap();
    let mut names: Vec<&str> = listing.lines().map(|l| l.trim_matches('\'')).collect();
    names.sort();
    assert_eq!(names, ["/meta-data", "/network-config", "/user-data"]);
    assert_eq!(
        iso_file(&seed, "user-data"),
        "#cloud-config\n# Written by Maguey's image OS provider.\nhostname: \"web1\"\nfqdn: \"web1.example.com\"\npreserve_hostname: false\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 alice@example.com\"\n  - \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB bob\"\n"
    );
    assert_eq!(
        iso_file(&seed, "meta-data"),
        "instance-id: \"web1.example.com\"\nlocal-hostname: \"web1.example.com\"\n"
    );
    assert_eq!(
        iso_file(&seed, "network-config"),
        "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"aa:00:00:12:34:56\"\n    dhcp4: false\n    addresses:\n      - \"192.0.2.10/24\"\n    routes:\n      - to: \"0.0.0.0/0\"\n        via: \"192.0.2.1\"\n"
    );
    // No temporary files are left beside it.
    let left: Vec<String> = std::fs::read_dir(seed.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["disk0", "disk0.cidata.iso"]);

    // Reinstall with another host name and DHCP rewrites the seed.
    let v = os_add(
        &rt,
        install(
            "web1.example.com",
            4,
            &[
                ("image", raw.to_str().unwrap().into()),
                ("cloud_init", true.into()),
                ("hostname", "other".into()),
            ],
        ),
        true,
    )
    .await
    .unwrap();
    assert_eq!(v["cdrom_image_path"], seed.to_str().unwrap());
    assert!(iso_file(&seed, "user-data").contains("hostname: \"other\"\n"));
    assert!(iso_file(&seed, "network-config").contains("dhcp4: true\n"));

    // The seed as the CD-ROM of a kvm instance (hvparam cdrom_image_path): read-only.
    struct Kill(PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            maguey_node::hypervisor::kvm::kill_all(&self.0);
        }
    }
    let _kill = Kill(dir.path().to_path_buf());
    let mut hv = ParamKind::Hv(Hv::Kvm).defaults();
    hv.insert(
        "kvm_path".into(),
        std::env::var("MAGUEY_QEMU")
            .unwrap_or_else(|_| "qemu-system-x86_64".into())
            .into(),
    );
    hv.insert("kernel_path".into(), "".into());
    hv.insert("accel".into(), "tcg".into());
    hv.insert("cdrom_image_path".into(), seed.to_str().unwrap().into());
    let inst = InstanceRuntime {
        name: "web1.example.com".into(),
        uuid: "6a1f8f9e-3a56-4f4b-9f1e-0c3d2b1a0f9e".into(),
        hypervisor: "kvm".into(),
        memory: 64,
        vcpus: 1,
        hvparams: hv.clone(),
        disks: vec![disk("web1.example.com", 4)],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
    };
    rt.handle(NodeRequest::InstanceStart { instance: inst })
        .await
        .unwrap();
    let qmp = dir.path().join("run/kvm/web1.example.com.qmp");
    let mut q = Qmp::connect(&qmp).await.unwrap();
    let blocks: Value = q.execute("query-block", None::<()>).await.unwrap();
    let cd = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["inserted"]["node-name"] == "cdrom0")
        .unwrap_or_else(|| panic!("no cdrom0 in {blocks}"));
    assert_eq!(cd["removable"], true, "{cd}");
    assert_eq!(cd["inserted"]["ro"], true, "{cd}");
    assert_eq!(cd["inserted"]["file"], seed.to_str().unwrap(), "{cd}");
    drop(q);
    rt.handle(NodeRequest::InstanceShutdown {
        name: "web1.example.com".into(),
        hypervisor: "kvm".into(),
        timeout: 0,
    })
    .await
    .unwrap();

    // A missing CD-ROM image is a clear error.
    hv.insert(
        "cdrom_image_path".into(),
        dir.path()
            .join("file-storage/gone.iso")
            .to_str()
            .unwrap()
            .into(),
    );
    let inst = InstanceRuntime {
        name: "web1.example.com".into(),
        uuid: String::new(),
        hypervisor: "kvm".into(),
        memory: 64,
        vcpus: 1,
        hvparams: hv,
        disks: vec![],
        nics: vec![],
        file_storage_dir: "file-storage".into(),
    };
    let e = rt
        .handle(NodeRequest::InstanceStart { instance: inst })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gone.iso") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn image_is_listed_as_a_valid_builtin_provider() {
    let dir = tempfile::tempdir().unwrap();
    let search = dir.path().join("os");
    os::write_noop_os(&search).unwrap();
    let list = os::diagnose_with_builtins(std::slice::from_ref(&search));
    let names: Vec<&str> = list.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["image", "noop"]);
    let image = &list[0];
    assert!(image.valid && image.status.is_empty(), "{image:?}");
    let params: Vec<&str> = image.parameters.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        params,
        [
            "image",
            "image_format",
            "cloud_init",
            "hostname",
            "ssh_authorized_keys",
            "network"
        ]
    );
    assert!(os::is_builtin("image") && !os::is_builtin("noop"));
}
