//! `maguey rapi-user add|remove|list`: Remote API users, kept in the config and written by the
//! master to its RAPI users file (`{HA1}` hashes, mode 0600).

use crate::args::Format;
use crate::input::usage;
use crate::master::client;
use crate::CliResult;
use clap::Subcommand;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum RapiUserCmd {
    /// Adds a user (or sets a user's password and access). The password comes from
    /// --password-file, else from a prompt on the terminal, else from the first line of
    /// standard input.
    Add {
        name: String,
        /// May also change the cluster (the users file's `write` option); else read-only.
        #[arg(long)]
        write: bool,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Removes a user; its requests get 401 from then on.
    Remove { name: String },
    /// Lists the users and their access.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string()
}

/// Reads a line from the terminal without echoing it.
fn prompt_hidden(question: &str) -> CliResult<String> {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let fd = 0;
    // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed termios that tcgetattr fills.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    let have = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
    if have {
        let mut t = old;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    println!();
    r.map_err(|e| usage(format!("reading the password: {e}")))?;
    Ok(first_line(&line))
}

fn password(file: Option<PathBuf>) -> CliResult<String> {
    let p = match file {
        Some(f) => first_line(
            &std::fs::read_to_string(&f).map_err(|e| usage(format!("{}: {e}", f.display())))?,
        ),
        None if std::io::stdin().is_terminal() => {
            let a = prompt_hidden("Password: ")?;
            let b = prompt_hidden("Repeat the password: ")?;
            if a != b {
                return Err(usage("the passwords differ"));
            }
            a
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| usage(format!("reading the password: {e}")))?;
            first_line(&line)
        }
    };
    if p.is_empty() {
        return Err(usage("the password is empty"));
    }
    Ok(p)
}

pub async fn run(dir: &Path, cmd: RapiUserCmd) -> CliResult<u8> {
    let c = client(dir)?;
    match cmd {
        RapiUserCmd::Add {
            name,
            write,
            password_file,
        } => {
            let pw = password(password_file)?;
            c.add_rapi_user(&name, &pw, write).await?;
            println!(
                "RAPI user {name} set ({})",
                if write { "read, write" } else { "read" }
            );
        }
        RapiUserCmd::Remove { name } => {
            c.remove_rapi_user(&name).await?;
            println!("RAPI user {name} removed");
        }
        RapiUserCmd::List { output } => {
            let users = c.rapi_users().await?;
            if output == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&users).unwrap_or_default()
                );
            } else {
                println!("User Access");
                for u in users.as_array().into_iter().flatten() {
                    println!(
                        "{} {}",
                        u["name"].as_str().unwrap_or("?"),
                        if u["write"] == true {
                            "read,write"
                        } else {
                            "read"
                        }
                    );
                }
            }
        }
    }
    Ok(0)
}
