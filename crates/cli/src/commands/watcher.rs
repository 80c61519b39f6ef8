//! `maguey cluster watcher pause [DURATION]|continue|info|run` (gnt-cluster watcher).

use crate::input::usage;
use crate::master::client;
use crate::CliResult;
use clap::Subcommand;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum WatcherCmd {
    /// Pauses the watcher for DURATION (seconds, or with a suffix s, m, h, d, w), or until
    /// `continue`; the pause is kept in the config and survives a master restart.
    Pause {
        /// How long, e.g. 3600, 90m, 2h; none: until `continue`.
        duration: Option<String>,
    },
    /// Ends a pause.
    Continue,
    /// Shows whether the watcher is paused, and until when.
    Info,
    /// Runs one pass of the watcher now and prints what it did.
    Run,
}

/// Seconds in `s`: a number with an optional unit (s, m, h, d, w), as Ganeti's `ParseTimespec`.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1.0),
        Some('m') => (&s[..s.len() - 1], 60.0),
        Some('h') => (&s[..s.len() - 1], 3600.0),
        Some('d') => (&s[..s.len() - 1], 86400.0),
        Some('w') => (&s[..s.len() - 1], 604800.0),
        _ => (s, 1.0),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n as f64 * mult),
        _ => Err(format!(
            "invalid duration '{s}': a positive whole number with an optional unit s, m, h, d or w"
        )),
    }
}

fn print_pause(answer: &Value) {
    match answer.get("pause").filter(|p| !p.is_null()) {
        None => println!("The watcher is not paused."),
        Some(p) => match p.get("until").and_then(Value::as_f64) {
            Some(u) => println!(
                "The watcher is paused until {u:.0} (unix time, {:.0} s from now).",
                (u - maguey_model::now()).max(0.0)
            ),
            None => println!("The watcher is paused until `maguey cluster watcher continue`."),
        },
    }
}

pub async fn run(dir: &Path, cmd: WatcherCmd) -> CliResult<u8> {
    let (action, seconds) = match &cmd {
        WatcherCmd::Pause { duration } => (
            "pause",
            duration
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(usage)?,
        ),
        WatcherCmd::Continue => ("continue", None),
        WatcherCmd::Info => ("info", None),
        WatcherCmd::Run => ("run", None),
    };
    let c = client(dir)?;
    let answer = c.watcher(action, seconds).await?;
    if let WatcherCmd::Run = cmd {
        let lines: Vec<&str> = answer
            .get("lines")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if lines.is_empty() {
            println!("nothing to do");
        }
        for l in &lines {
            println!("{l}");
        }
        let failed = answer
            .get("events")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|e| e.get("error").is_some_and(|x| !x.is_null()))
            });
        return Ok(u8::from(failed));
    }
    print_pause(&answer);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90.0));
        assert_eq!(parse_duration("2h"), Ok(7200.0));
        assert_eq!(parse_duration("3m"), Ok(180.0));
        assert_eq!(parse_duration("1w"), Ok(604800.0));
        for bad in ["", "0", "-5", "1.5h", "h", "5y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
