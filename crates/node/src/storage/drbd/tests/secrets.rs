//! The disk's shared secret never appears in what a failed DRBD command leaves: the error
//! (hence the job result and the logs) shows the command with the secret redacted.

use super::*;

#[test]
fn a_failed_drbd_command_does_not_show_the_secret() {
    let (ctx, r) = ctx84("drbd84/proc_drbd_empty");
    expect_activate(&r);
    r.expect_ok(&["drbdsetup", "new-resource", "resource0"], "");
    r.expect_ok(&["drbdsetup", "new-minor", "resource0", "0", "0"], "");
    r.expect_ok(&attach84(), "");
    // drbdsetup fails and echoes its command line (secret included) on stderr.
    let argv = with(
        argv(&["drbdsetup", "connect", "resource0", LOCAL, REMOTE]),
        net_opts(false),
    );
    let echoed = format!("drbdsetup: invalid arguments: {}", argv.join(" "));
    r.expect(&argv, CmdOutput::fail(10, &echoed));
    let e = drbd_attach_net(&ctx, &drbd_disk(1024), NetRole::Primary)
        .expect_err("connect fails")
        .to_string();
    let secret = SECRET_OPT.split_once('=').unwrap().1;
    assert!(!e.contains(secret), "the secret leaked: {e}");
    assert!(e.contains("--shared-secret=<redacted>"), "{e}");
    assert!(e.contains("drbdsetup connect resource0"), "{e}");
    // The recorded command itself (what runs) still has it.
    assert!(r
        .argvs()
        .iter()
        .any(|a| a.contains(&SECRET_OPT.to_string())));
    // As does nothing that displays a command or a disk.
    let cmd = crate::exec::Cmd::new("drbdsetup", &["net-options", "--shared-secret", secret]);
    assert!(!cmd.to_string().contains(secret), "{cmd}");
    let disk = drbd_disk(1024);
    assert!(!format!("{disk:?}").contains(secret));
    assert!(!format!("{:?}", disk.logical_id).contains(secret));
}
