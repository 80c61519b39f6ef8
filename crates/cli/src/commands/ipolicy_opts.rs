//! Ganeti's textual forms of instance-policy options: `--ipolicy-bounds-specs
//! min:memory-size=128,cpu-count=1/max:memory-size=4096//min:...` (pairs separated by `//`)
//! or the same list as JSON, and `--ipolicy-std-specs memory-size=128,cpu-count=1`; the
//! cluster's options (gnt-cluster modify) are the group's plus the std spec.

use crate::commands::group::IPolicyOpts;
use crate::input::usage;
use crate::CliResult;
use clap::Args;
use maguey_model::{IPolicyChange, ISpec, MinMax, OrDefault};

/// `key=N,key=N` with Ganeti's spec keys.
pub fn parse_ispec(s: &str) -> Result<ISpec, String> {
    let mut spec = ISpec::default();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not key=value"))?;
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| format!("{k}={v}: not a non-negative integer"))?;
        if spec.get(k.trim()).is_some() {
            return Err(format!("key '{k}' given twice"));
        }
        if !spec.set(k.trim(), Some(n)) {
            return Err(format!(
                "unknown spec key '{k}' (known: {})",
                maguey_model::ISPEC_KEYS.join(", ")
            ));
        }
    }
    Ok(spec)
}

/// The min/max list, as JSON or in Ganeti's `min:k=v,.../max:k=v,...//...` form.
pub fn parse_bounds(s: &str) -> Result<Vec<MinMax>, String> {
    let t = s.trim();
    if t.starts_with('[') {
        return serde_json::from_str(t).map_err(|e| e.to_string());
    }
    let mut out = Vec::new();
    for pair in t.split("//") {
        let mut mm = MinMax::default();
        let (mut min, mut max) = (false, false);
        for part in pair.split('/') {
            let (ident, rest) = part
                .split_once(':')
                .ok_or_else(|| format!("'{part}' is not min:... or max:..."))?;
            let spec = parse_ispec(rest)?;
            match ident.trim() {
                "min" if !min => (mm.min, min) = (spec, true),
                "max" if !max => (mm.max, max) = (spec, true),
                "min" | "max" => return Err(format!("{ident} given twice in '{pair}'")),
                other => return Err(format!("'{other}' is neither min nor max")),
            }
        }
        if !(min && max) {
            return Err(format!("'{pair}' needs both min: and max:"));
        }
        out.push(mm);
    }
    Ok(out)
}

/// `gnt-cluster modify`'s policy options: the group's, and the std spec.
#[derive(Debug, Args, Clone, Default)]
pub struct ClusterIPolicyOpts {
    #[command(flatten)]
    pub base: IPolicyOpts,
    /// The standard spec (capacity planning), `memory-size=N,cpu-count=N,...`, or `default`.
    #[arg(long = "ipolicy-std-specs")]
    pub std: Option<String>,
}

impl ClusterIPolicyOpts {
    pub fn change(&self) -> CliResult<IPolicyChange> {
        let mut c = self.base.change()?;
        if let Some(s) = &self.std {
            if c.std.is_some() {
                return Err(usage(
                    "--specs-*=std and --ipolicy-std-specs cannot be combined",
                ));
            }
            c.std = Some(if s == "default" {
                OrDefault::Default
            } else {
                OrDefault::Value(
                    parse_ispec(s).map_err(|e| usage(format!("--ipolicy-std-specs: {e}")))?,
                )
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ganeti_bounds_form_and_json_give_the_same_list() {
        let g = parse_bounds(
            "min:memory-size=128,cpu-count=1/max:memory-size=4096,cpu-count=4//\
             min:memory-size=4096/max:memory-size=65536",
        )
        .unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].min.memory_size, Some(128));
        assert_eq!(g[0].max.cpu_count, Some(4));
        assert_eq!(g[1].max.memory_size, Some(65536));
        assert_eq!(g[1].min.cpu_count, None);
        let j = parse_bounds(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(g, j);
        for bad in [
            "min:memory-size=1",
            "min:mem=1/max:mem=2",
            "min:memory-size=x/max:memory-size=2",
            "low:memory-size=1/max:memory-size=2",
            "min:memory-size=1/min:memory-size=2",
        ] {
            assert!(parse_bounds(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ispec("disk-count=2").unwrap().disk_count, Some(2));
        assert!(parse_ispec("disk-count=2,disk-count=3").is_err());
    }
}
