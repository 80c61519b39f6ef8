//! Validation of raw flag values shared by several commands.

use crate::{CliError, CliResult};
use maguey_model::{names::validate_hostname, parse_kv_list, Params};

/// A word of the model's vocabulary (template, mode, ...); an unknown one is a usage error
/// with the model's message.
pub fn word<T: std::str::FromStr<Err = maguey_model::VocabError>>(s: &str) -> Result<T, CliError> {
    s.parse()
        .map_err(|e: maguey_model::VocabError| usage(e.to_string()))
}

pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

pub fn kv(s: &Option<String>, what: &str) -> CliResult<Params> {
    match s {
        None => Ok(Params::new()),
        Some(s) => parse_kv_list(s).map_err(|e| usage(format!("{what}: {e}"))),
    }
}

pub fn name_ok(kind: &str, name: &str) -> CliResult {
    validate_hostname(name).map_err(|e| usage(format!("invalid {kind} name: {e}")))
}

/// Asks the user on the terminal, as Ganeti does before destructive operations; without a
/// terminal the answer is no (use -f).
pub fn confirm(question: &str) -> CliResult {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{question}\nno terminal to ask on: add -f to confirm"
        )));
    }
    print!("{question} y/[n]: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| usage(format!("reading the answer: {e}")))?;
    match line.trim() {
        "y" | "yes" | "Y" => Ok(()),
        _ => Err(usage("aborted")),
    }
}
