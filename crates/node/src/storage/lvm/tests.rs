use super::*;
use crate::storage::runner::CmdOutput;
use crate::storage::test_support::{argv, data, node_a_ctx, plain_disk, DISK_UUID};

const LV: &str = "3f2b8c1e-5d4a-4c61-9a0e-2b7f6d1c9e44.disk0";

fn lvs_argv(target: &str) -> Vec<String> {
    argv(&[
        "lvs",
        "--reportformat",
        "json",
        "--units",
        "m",
        "--nosuffix",
        "-o",
        "lv_name,vg_name,lv_size,lv_attr,lv_tags",
        target,
    ])
}

fn lvcreate_argv(size: &str) -> Vec<String> {
    argv(&[
        "lvcreate",
        "--yes",
        "-Wy",
        "-L",
        size,
        "-n",
        LV,
        "--addtag",
        "originstname+db1.example.com",
        "xenvg",
    ])
}

/// `lvcreate` of an LV that exists (LVM 2.03's refusal).
fn exists() -> CmdOutput {
    CmdOutput::fail(5, &data("lvm/lvcreate_exists.stderr"))
}

#[test]
fn create_runs_lvcreate_with_tag_and_lvm_env() {
    let (ctx, r) = node_a_ctx();
    // A new LV: lvcreate at once, no lvs before it.
    r.expect_ok(&lvcreate_argv("1024m"), "  Logical volume \"x\" created.\n");
    let disk = plain_disk("xenvg", LV, 1024);
    let info = LvmStorage.create(&ctx, &disk).expect("created");
    assert_eq!(info.path, format!("/dev/xenvg/{LV}"));
    assert_eq!(info.size, 1024);
    r.finish().expect("all commands ran");
    for call in r.calls() {
        assert!(call
            .env
            .contains(&("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into())));
        assert!(call.env.contains(&("LC_ALL".into(), "C".into())));
    }
}

#[test]
fn create_of_an_existing_lv_is_idempotent_but_not_when_smaller() {
    let (ctx, r) = node_a_ctx();
    let full = format!("xenvg/{LV}");
    r.expect(&lvcreate_argv("1024m"), exists());
    r.expect_ok(&lvs_argv(&full), &data("lvm/lvs_one.json"));
    let id = LvId::new("xenvg", LV).expect("valid");
    let made = create(ctx.runner(), &id, 1024, Some("db1.example.com")).expect("exists already");
    assert!(!made, "an existing LV is not created again");
    r.expect(&lvcreate_argv("2048m"), exists());
    r.expect_ok(&lvs_argv(&full), &data("lvm/lvs_one.json"));
    let e = LvmStorage
        .create(&ctx, &plain_disk("xenvg", LV, 2048))
        .expect_err("too small")
        .to_string();
    assert!(e.contains("already exists with size 1024 MiB"), "{e}");
    // Refused as existing, but gone when read: lvcreate's refusal is the error.
    r.expect(&lvcreate_argv("1024m"), exists());
    r.expect(
        &lvs_argv(&full),
        CmdOutput::fail(5, &data("lvm/lvs_missing.stderr")),
    );
    let e = LvmStorage
        .create(&ctx, &plain_disk("xenvg", LV, 1024))
        .expect_err("vanished")
        .to_string();
    assert!(e.contains("already exists in volume group"), "{e}");
    r.finish().expect("exact commands");
}

#[test]
fn create_failure_names_the_command_and_stderr() {
    let (ctx, r) = node_a_ctx();
    r.expect(
        &lvcreate_argv("4096m"),
        CmdOutput::fail(5, &data("lvm/lvcreate_nospace.stderr")),
    );
    let e = LvmStorage
        .create(&ctx, &plain_disk("xenvg", LV, 4096))
        .expect_err("no space")
        .to_string();
    assert!(e.contains("`lvcreate --yes -Wy -L 4096m"), "{e}");
    assert!(e.contains("exit code 5"), "{e}");
    assert!(e.contains("insufficient free space"), "{e}");
}

#[test]
fn remove_tolerates_missing_lv_and_vg() {
    let (ctx, r) = node_a_ctx();
    let full = format!("xenvg/{LV}");
    r.expect_ok(&argv(&["lvremove", "-f", &full]), "");
    r.expect(
        &argv(&["lvremove", "-f", &full]),
        CmdOutput::fail(5, &data("lvm/lvs_missing.stderr")),
    );
    LvmStorage
        .remove(&ctx, &plain_disk("xenvg", LV, 1))
        .expect("removed");
    LvmStorage
        .remove(&ctx, &plain_disk("xenvg", LV, 1))
        .expect("missing is fine");
    r.expect(
        &argv(&["lvremove", "-f", "nosuchvg/x"]),
        CmdOutput::fail(5, &data("lvm/vg_missing.stderr")),
    );
    LvmStorage
        .remove(&ctx, &plain_disk("nosuchvg", "x", 1))
        .expect("missing vg is fine");
    r.expect(
        &argv(&["lvremove", "-f", &full]),
        CmdOutput::fail(5, "  Logical volume xenvg/x in use.\n"),
    );
    let e = LvmStorage
        .remove(&ctx, &plain_disk("xenvg", LV, 1))
        .expect_err("in use")
        .to_string();
    assert!(e.contains("in use"), "{e}");
    r.finish().expect("all ran");
}

#[test]
fn find_list_info_and_device_path() {
    let (ctx, r) = node_a_ctx();
    let disk = plain_disk("xenvg", LV, 1024);
    r.expect_ok(&lvs_argv(&format!("xenvg/{LV}")), &data("lvm/lvs_one.json"));
    let found = LvmStorage.find(&ctx, &disk).expect("ok").expect("present");
    assert_eq!(found.size, 1024);
    r.expect(
        &lvs_argv(&format!("xenvg/{LV}")),
        CmdOutput::fail(5, &data("lvm/lvs_missing.stderr")),
    );
    assert_eq!(LvmStorage.find(&ctx, &disk).expect("ok"), None);
    r.expect_ok(&lvs_argv("xenvg"), &data("lvm/lvs_vg.json"));
    let names = LvmStorage.list(&ctx).expect("listed");
    assert_eq!(names.len(), 7);
    assert!(names.contains(&format!("xenvg/{DISK_UUID}.disk0_meta")));
    r.expect_ok(
        &argv(&[
            "vgs",
            "--reportformat",
            "json",
            "--units",
            "m",
            "--nosuffix",
            "-o",
            "vg_name,vg_size,vg_free",
            "xenvg",
        ]),
        &data("lvm/vgs_xenvg.json"),
    );
    let info = LvmStorage.info(&ctx).expect("info");
    assert_eq!(
        (info.storage_type.as_str(), info.name.as_str()),
        ("lvm-vg", "xenvg")
    );
    assert_eq!((info.storage_size, info.storage_free), (4092, 2939));
    assert_eq!(
        LvmStorage.device_path(&ctx, &disk).expect("path"),
        PathBuf::from(format!("/dev/xenvg/{LV}"))
    );
    r.finish().expect("all ran");
}

#[test]
fn garbage_lvs_output_is_an_error() {
    let (ctx, r) = node_a_ctx();
    r.expect_ok(&lvs_argv(&format!("xenvg/{LV}")), "  WARNING: something\n{");
    let e = LvmStorage
        .find(&ctx, &plain_disk("xenvg", LV, 1))
        .expect_err("garbage")
        .to_string();
    assert!(e.contains("cannot parse lvs report"), "{e}");
}

#[test]
fn grow_and_snapshot() {
    let (ctx, r) = node_a_ctx();
    let disk = plain_disk("xenvg", LV, 1024);
    let full = format!("xenvg/{LV}");
    r.expect_ok(&argv(&["lvextend", "-L", "+512m", &full]), "");
    LvmStorage.grow(&ctx, &disk, 512).expect("grown");
    LvmStorage.grow(&ctx, &disk, 0).expect("nothing to do");
    r.expect_ok(
        &argv(&[
            "lvcreate",
            "--yes",
            "-s",
            "-L",
            "256m",
            "-n",
            &format!("{LV}.snap"),
            &full,
        ]),
        "",
    );
    let snap = LvmStorage.snapshot(&ctx, &disk, 256).expect("snapshot");
    assert_eq!(snap.full_name(), format!("xenvg/{LV}.snap"));
    r.finish().expect("all ran");
}

#[test]
fn names_are_validated_before_any_command() {
    let (ctx, r) = node_a_ctx();
    for (vg, lv) in [
        ("xenvg", "-rf"),
        ("xenvg", "a/b"),
        ("xenvg", ""),
        ("xen vg", "a"),
        ("..", "a"),
        ("xenvg", "a;b"),
    ] {
        let disk = plain_disk(vg, lv, 1);
        assert!(LvmStorage.create(&ctx, &disk).is_err(), "{vg}/{lv}");
        assert!(LvmStorage.remove(&ctx, &disk).is_err(), "{vg}/{lv}");
    }
    assert!(r.calls().is_empty());
    let ctx_no_vg = StorageContext::new(std::path::Path::new("/tmp"), "");
    assert!(LvmStorage.info(&ctx_no_vg).is_err());
}

#[test]
fn owner_tags_are_sanitised_and_bounded() {
    assert_eq!(
        owner_tag("web1.example.com"),
        "originstname+web1.example.com"
    );
    assert_eq!(owner_tag("we b;1"), "originstname+we_b_1");
    assert_eq!(owner_tag(&"x".repeat(300)).len(), MAX_TAG_LEN);
}

#[test]
fn orphans_skip_expected_and_reserved_lvs() {
    let lvs = report::parse_lvs(&data("lvm/lvs_vg.json")).expect("parses");
    let expected: BTreeSet<String> = [
        format!("xenvg/{DISK_UUID}.disk0_data"),
        format!("xenvg/{DISK_UUID}.disk0_meta"),
        "xenvg/3f2b8c1e-5d4a-4c61-9a0e-2b7f6d1c9e44.disk0".to_string(),
    ]
    .into_iter()
    .collect();
    let reserved = ReservedLvs::new(&["xenvg/root", "xenvg/swap", r".*\.snap"]).expect("valid");
    assert_eq!(
        orphans(&lvs, &expected, &reserved),
        vec!["xenvg/leftover.disk1".to_string()]
    );
    let none = ReservedLvs::new::<&str>(&[]).expect("valid");
    assert_eq!(orphans(&lvs, &expected, &none).len(), 4);
    assert!(ReservedLvs::new(&["xenvg/(root"]).is_err());
}

#[test]
fn list_all_reads_every_vg() {
    let (ctx, r) = node_a_ctx();
    r.expect_ok(
        &argv(&[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "m",
            "--nosuffix",
            "-o",
            "lv_name,vg_name,lv_size,lv_attr,lv_tags",
        ]),
        &data("lvm/lvs_vg.json"),
    );
    let all = list_all(ctx.runner()).expect("listed");
    assert_eq!(all.len(), 7);
    r.expect(
        &argv(&[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "m",
            "--nosuffix",
            "-o",
            "lv_name,vg_name,lv_size,lv_attr,lv_tags",
        ]),
        CmdOutput::fail(5, "  No volume groups found.\n"),
    );
    let e = list_all(ctx.runner()).expect_err("fails").to_string();
    assert!(e.to_string().contains("No volume groups found"), "{e}");
    r.finish().expect("exact commands");
}

#[test]
fn create_activates_an_existing_inactive_lv() {
    let (ctx, r) = node_a_ctx();
    let inactive = data("lvm/lvs_one.json").replace("-wi-a-----", "-wi-------");
    r.expect(&lvcreate_argv("1024m"), exists());
    r.expect_ok(&lvs_argv(&format!("xenvg/{LV}")), &inactive);
    r.expect_ok(&argv(&["lvchange", "-ay", &format!("xenvg/{LV}")]), "");
    LvmStorage
        .create(&ctx, &plain_disk("xenvg", LV, 1024))
        .expect("exists, now active");
    r.finish().expect("exact commands");
}

#[test]
fn rename_and_owner_tags() {
    let (ctx, r) = node_a_ctx();
    let id = LvId::new("xenvg", LV).expect("valid");
    r.expect_ok(
        &argv(&[
            "lvrename",
            "xenvg",
            LV,
            &format!("{LV}_replaced-1764158400"),
        ]),
        "  Renamed \"x\" to \"y\" in volume group \"xenvg\"\n",
    );
    let new = rename(ctx.runner(), &id, &format!("{LV}_replaced-1764158400")).expect("renamed");
    assert_eq!(new.lv, format!("{LV}_replaced-1764158400"));
    assert!(rename(ctx.runner(), &id, "bad/name").is_err());

    // web1.example.com → web2: old owner tag off, new one on.
    r.expect_ok(&lvs_argv(&format!("xenvg/{LV}")), &data("lvm/lvs_one.json"));
    r.expect_ok(
        &argv(&[
            "lvchange",
            "--deltag",
            "originstname+web1.example.com",
            "--addtag",
            "originstname+web2",
            &format!("xenvg/{LV}"),
        ]),
        "",
    );
    set_owner(ctx.runner(), &id, "web2").expect("retagged");
    // Already tagged: nothing to run.
    r.expect_ok(&lvs_argv(&format!("xenvg/{LV}")), &data("lvm/lvs_one.json"));
    set_owner(ctx.runner(), &id, "web1.example.com").expect("nothing to do");
    r.expect(
        &lvs_argv(&format!("xenvg/{LV}")),
        CmdOutput::fail(5, &data("lvm/lvs_missing.stderr")),
    );
    assert!(set_owner(ctx.runner(), &id, "web2").is_err());
    r.finish().expect("exact commands");
}
