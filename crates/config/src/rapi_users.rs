//! Remote API users in the config: the checks of `SetRapiUser` and `RemoveRapiUser`.

use crate::ConfigError;
use maguey_model::{ConfigData, RapiUser};

/// Checks a user name for the users file: 1 to 64 of `[A-Za-z0-9._@-]`.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid RAPI user name '{name}' (1 to 64 letters, digits, '.', '_', '@', '-')"
        )))
    }
}

pub(crate) fn validate_set(u: &RapiUser) -> Result<(), ConfigError> {
    check_name(&u.name)?;
    let hex = u.password.strip_prefix("{HA1}").unwrap_or("");
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::Invalid(format!(
            "the password of RAPI user '{}' must be stored as {{HA1}} and 32 hex digits",
            u.name
        )));
    }
    Ok(())
}

pub(crate) fn validate_remove(state: &ConfigData, name: &str) -> Result<(), ConfigError> {
    if state.rapi_users.contains_key(name) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!("no RAPI user '{name}'")))
    }
}
