//! The built-in `image` OS provider through the whole stack: a qcow2 image written onto the
//! instance's disk, a cloud-init NoCloud seed attached as the VM's CD-ROM, removed with it.

mod common;
use common::*;
use std::process::Command;

#[test]
fn image_provider_writes_the_disk_and_attaches_the_seed() {
    // QEMU runs as the unprivileged user `cluster init` picks (docs/security.md).
    maguey_test_infra::kvm::ensure_qemu_user();
    let lab = TestLab::up_with(maguey_bin(), 1, &["--kvm"]);
    let dir = lab.dir.path();
    // A 32 MiB raw image with a recognisable pattern, converted to qcow2.
    let raw = dir.join("src.raw");
    let pattern: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8 + 1).collect();
    let mut data = vec![0u8; 32 << 20];
    data[4 << 20..5 << 20].copy_from_slice(&pattern);
    std::fs::write(&raw, &data).unwrap();
    let qcow = dir.join("src.qcow2");
    let o = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let osp = format!(
        "image={},cloud_init=true,hostname=web1,ssh_authorized_keys=ssh-ed25519 AAAAC3 admin@x",
        qcow.display()
    );
    let r = lab
        .maguey(&[
            "instance",
            "add",
            "-t",
            "file",
            "--disk",
            "0:size=64M",
            "-o",
            "image",
            "-O",
            &osp,
            "-H",
            "kvm",
            "--no-start",
            "-n",
            "node1",
            "img1",
        ])
        .ok();
    assert!(r.stdout.contains("attached as the CD-ROM"), "{}", r.stdout);
    let mut files = Vec::new();
    find_files(&lab.node_dir(1).join("file-storage/img1"), &mut files);
    let disk = files
        .iter()
        .find(|f| !f.to_string_lossy().ends_with(".iso"))
        .expect("disk file");
    let seed = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(".cidata.iso"))
        .expect("seed iso")
        .clone();
    let written = std::fs::read(disk).unwrap();
    assert_eq!(
        &written[..32 << 20],
        &data[..],
        "the image is not on the disk"
    );
    assert!(written[32 << 20..].iter().all(|b| *b == 0));

    // Started, QEMU has the seed as its CD-ROM.
    lab.maguey(&["instance", "start", "img1"]).ok();
    let rt = std::fs::read_to_string(lab.node_dir(1).join("run/kvm/img1.runtime.json")).unwrap();
    assert!(rt.contains(&seed.display().to_string()), "{rt}");
    // A missing image: a clear error, no instance left.
    let serial = lab.serial();
    let r = lab.maguey(&[
        "instance",
        "add",
        "-t",
        "file",
        "--disk",
        "0:size=64M",
        "-o",
        "image",
        "-O",
        "image=/nonexistent/x.qcow2",
        "-H",
        "kvm",
        "-n",
        "node1",
        "img2",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent/x.qcow2"), "{}", r.stderr);
    assert_eq!(lab.serial(), serial);
    assert!(!lab.node_dir(1).join("file-storage/img2").exists());

    // Removed: the seed goes with the disk.
    lab.maguey(&["instance", "remove", "-f", "img1"]).ok();
    assert!(!seed.exists());
}
