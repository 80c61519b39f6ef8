//! Sizes as Ganeti's CLI takes them: `512`, `512M`, `2G`, `1T` (MiB by default).

/// Parses a size into MiB. A bare number is MiB; suffixes m/M, g/G, t/T are MiB, GiB, TiB.
pub fn parse_size_mib(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_lowercase() {
                'm' => 1,
                'g' => 1024,
                't' => 1024 * 1024,
                _ => return Err(format!("invalid size unit in '{s}' (use M, G or T)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size '{s}' (expected e.g. 512, 512M, 2G)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("invalid size '{s}'"));
    }
    let mib = (value * mult as f64).ceil();
    if mib > u64::MAX as f64 / 2.0 {
        return Err(format!("size '{s}' is too large"));
    }
    Ok(mib as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("512"), Ok(512));
        assert_eq!(parse_size_mib("64M"), Ok(64));
        assert_eq!(parse_size_mib("2G"), Ok(2048));
        assert_eq!(parse_size_mib("1.5g"), Ok(1536));
        assert_eq!(parse_size_mib("1T"), Ok(1048576));
        assert!(parse_size_mib("12Q").is_err());
        assert!(parse_size_mib("abc").is_err());
        assert!(parse_size_mib("-1").is_err());
    }
}
