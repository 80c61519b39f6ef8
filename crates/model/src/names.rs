//! Validation of object names (nodes, instances, groups, clusters).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name '{0}' is too long (at most 253 characters)")]
    TooLong(String),
    #[error("name '{name}' is not a valid hostname: {why}")]
    Invalid { name: String, why: &'static str },
}

/// Checks that `name` is a valid DNS hostname (RFC 1123 labels separated by dots).
///
/// Shell metacharacters, spaces, slashes, empty labels and labels starting or ending with a
/// hyphen are refused, so a name can be used safely in paths and in argv.
pub fn validate_hostname(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 253 {
        return Err(NameError::TooLong(
            name.chars().take(40).collect::<String>() + "...",
        ));
    }
    let invalid = |why| NameError::Invalid {
        name: name.to_string(),
        why,
    };
    for label in name.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label cannot start or end with '-'"));
        }
    }
    Ok(())
}

/// Checks an LVM volume group name (LVM's rules: `[A-Za-z0-9+_.-]`, not starting with `-`,
/// not `.` or `..`, at most 127 characters).
pub fn validate_vg_name(vg: &str) -> Result<(), String> {
    let ok = !vg.is_empty()
        && vg.len() <= 127
        && !vg.starts_with('-')
        && vg != "."
        && vg != ".."
        && vg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid volume group name '{vg}'"))
    }
}

/// Checks a MAC prefix: three hex bytes, e.g. `aa:00:00`.
pub fn validate_mac_prefix(prefix: &str) -> Result<(), String> {
    let ok = prefix.split(':').count() == 3
        && prefix
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid MAC prefix '{prefix}' (expected three bytes, e.g. aa:00:00)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hostnames() {
        for n in ["node1", "inst-1.example.com", "a", "x1.y2"] {
            assert_eq!(validate_hostname(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for n in [
            "", "a;rm -rf", "a b", "$(x)", "a/b", "-a", "a-", "a..b", ".a", "a.", "`x`", "a|b",
        ] {
            assert!(validate_hostname(n).is_err(), "{n:?}");
        }
        assert!(validate_hostname(&"a".repeat(254)).is_err());
        assert!(validate_hostname(&"a".repeat(64)).is_err());
    }
}
