//! DRBD's usermode helper. The kernel runs it on state changes (`before-resync-source`, ...);
//! the default `/sbin/drbdadm` fails without a `drbd.conf` entry and makes DRBD drop the
//! connection, so nodes driving `drbdsetup` directly load the module with
//! `usermode_helper=/bin/true` (Ganeti's `drbd_usermode_helper`, checked by cluster verify).

use crate::storage::runner::{read_optional, CommandRunner, StorageError};
use std::path::Path;

/// Where the loaded module shows its helper.
pub const USERMODE_HELPER_PARAM: &str = "/sys/module/drbd/parameters/usermode_helper";
/// Ganeti's default helper.
pub const DEFAULT_USERMODE_HELPER: &str = "/bin/true";

/// The helper the loaded module runs; `None` when the module is not loaded.
pub fn current_usermode_helper(runner: &dyn CommandRunner) -> Result<Option<String>, StorageError> {
    Ok(read_optional(runner, Path::new(USERMODE_HELPER_PARAM))?.map(|s| s.trim().to_string()))
}

/// Cluster verify's check (ENODEDRBDHELPER): the module is loaded and runs `expected`
/// (empty: [`DEFAULT_USERMODE_HELPER`]). The error says what is wrong and how to fix it.
pub fn check_usermode_helper(
    runner: &dyn CommandRunner,
    expected: &str,
) -> Result<(), StorageError> {
    let expected = if expected.trim().is_empty() {
        DEFAULT_USERMODE_HELPER
    } else {
        expected.trim()
    };
    match current_usermode_helper(runner)? {
        None => Err(StorageError::Invalid(format!(
            "the drbd kernel module is not loaded (load it with: {})",
            modprobe_argv(expected).join(" ")
        ))),
        Some(h) if h == expected => Ok(()),
        Some(h) => Err(StorageError::Invalid(format!(
            "wrong drbd usermode helper: '{h}', expected '{expected}' (reload the module with: \
             {})",
            modprobe_argv(expected).join(" ")
        ))),
    }
}

/// `modprobe drbd usermode_helper=HELPER` (empty: [`DEFAULT_USERMODE_HELPER`]).
pub fn modprobe_argv(helper: &str) -> Vec<String> {
    let helper = if helper.trim().is_empty() {
        DEFAULT_USERMODE_HELPER
    } else {
        helper.trim()
    };
    vec![
        "modprobe".to_string(),
        "drbd".to_string(),
        format!("usermode_helper={helper}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::runner::ScriptedRunner;
    use crate::storage::test_support::data;

    #[test]
    fn helper_checks() {
        let r = ScriptedRunner::new();
        let e = check_usermode_helper(&r, "").expect_err("not loaded");
        assert!(e.to_string().contains("not loaded"), "{e}");
        assert!(
            e.to_string()
                .contains("modprobe drbd usermode_helper=/bin/true"),
            "{e}"
        );
        r.file(
            USERMODE_HELPER_PARAM,
            &data("drbd84/usermode_helper_default"),
        );
        r.file(USERMODE_HELPER_PARAM, &data("drbd84/usermode_helper_true"));
        let e = check_usermode_helper(&r, "/bin/true").expect_err("drbdadm");
        assert!(e.to_string().contains("'/sbin/drbdadm'"), "{e}");
        check_usermode_helper(&r, "/bin/true").expect("true");
        check_usermode_helper(&r, "").expect("default is /bin/true");
        assert!(check_usermode_helper(&r, "/usr/local/bin/helper").is_err());
        assert_eq!(
            modprobe_argv(""),
            vec!["modprobe", "drbd", "usermode_helper=/bin/true"]
        );
        assert_eq!(
            modprobe_argv("/usr/lib/maguey/drbd-helper")[2],
            "usermode_helper=/usr/lib/maguey/drbd-helper"
        );
    }
}
