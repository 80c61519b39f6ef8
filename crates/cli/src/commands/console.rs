//! `maguey instance console NAME`: the instance's serial console, through the master (which
//! connects to the instance's primary node), over the cluster's mutual TLS.
//!
//! On a terminal the console is interactive: the terminal goes raw (keys, Ctrl-C included,
//! go to the guest) and `Ctrl-]` quits. Otherwise stdin is copied to the console and the
//! console to stdout until stdin ends, then for `--timeout` more seconds, so that scripts can
//! send a line and read the answer.

use crate::{CliError, CliResult};
use clap::Args;
use maguey_model::{names::validate_hostname, Ssconf};
use maguey_rpc::ca::NodeIdentity;
use maguey_rpc::console::{self as wire, ConsoleError};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The escape key of an interactive console: Ctrl-] (like telnet's and virsh's).
pub const ESCAPE: u8 = 0x1d;

/// `maguey instance console`.
#[derive(Debug, Args)]
#[command(after_help = "\
Interactive on a terminal (raw mode; Ctrl-] quits and restores the terminal). With stdin not \
a terminal, stdin is sent to the console and the console's output printed until stdin ends, \
then for --timeout more seconds. One client at a time per instance (QEMU's limit): a second \
one is refused. Works through the master, also remotely (--cluster URL: a RAPI user with \
write access; --log needs read access).
Exit codes: 0 the console ended, 1 the instance is not running or its node refused, 2 unknown \
instance or bad usage, 3 the master cannot be reached.")]
pub struct ConsoleArgs {
    /// The instance.
    pub name: String,
    /// Print the command that attaches to the console instead of running it.
    #[arg(long, conflicts_with = "log")]
    pub show_cmd: bool,
    /// Print the console's last output (also of a stopped instance) instead of attaching.
    #[arg(long)]
    pub log: bool,
    /// With --log: at most this many bytes (the end of the output).
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub log_bytes: u64,
    /// Without a terminal: seconds to keep printing the console's output after stdin ended.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub timeout: f64,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Runs `maguey instance console`; `cluster` is `--cluster URL` (the Remote API), if given.
pub async fn run(dir: &Path, cluster: Option<String>, a: ConsoleArgs) -> CliResult<u8> {
    validate_hostname(&a.name).map_err(|e| usage(format!("invalid instance name: {e}")))?;
    if !a.timeout.is_finite() || a.timeout < 0.0 || a.timeout > 86400.0 {
        return Err(usage("--timeout must be between 0 and 86400 seconds"));
    }
    if a.show_cmd {
        println!("{}", show_cmd(dir, cluster.as_deref(), &a.name));
        return Ok(0);
    }
    let conn = match cluster {
        Some(url) => Connection::remote(&url)?,
        None => Connection::local(dir)?,
    };
    if a.log {
        return print_log(&conn, &a.name, a.log_bytes).await;
    }
    let url = format!("{}/luxi/instances/{}/console", conn.base, a.name);
    let stream = wire::connect_request(conn.get(&url), &url)
        .await
        .map_err(console_error)?;
    if std::io::stdin().is_terminal() {
        interactive(stream, &a.name).await
    } else {
        scripted(stream, Duration::from_secs_f64(a.timeout)).await
    }
}

/// How the CLI reaches the master's console endpoints.
struct Connection {
    http: reqwest::Client,
    /// `https://MASTER:PORT`.
    base: String,
    /// HTTP Basic credentials (remote mode, through the Remote API's port).
    basic: Option<(String, String)>,
}

impl Connection {
    /// Mutual TLS with the admin certificate of the directory `dir`.
    fn local(dir: &Path) -> CliResult<Connection> {
        let identity = NodeIdentity::load_admin(dir).map_err(|e| {
            CliError::Unreachable(format!(
                "cannot reach the master: no admin certificate in {} ({e}); set MAGUEY_DIR \
                 to the master's state directory",
                dir.display()
            ))
        })?;
        let ssconf: Ssconf = std::fs::read(dir.join("ssconf.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                CliError::Unreachable(format!(
                    "cannot reach the master: no readable ssconf.json in {}",
                    dir.display()
                ))
            })?;
        let http =
            wire::console_http_client(&identity).map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Connection {
            http,
            base: format!("https://{}:{}", ssconf.master_ip, ssconf.rpc_port),
            basic: None,
        })
    }

    /// `--cluster URL`: the master's Remote API port with a RAPI user (write access), from the
    /// same variables as every remote command.
    fn remote(url: &str) -> CliResult<Connection> {
        use maguey_client::client::{
            ENV_RAPI_CA, ENV_RAPI_CREDENTIALS, ENV_RAPI_PASSWORD, ENV_RAPI_USER,
        };
        maguey_client::client::require_https(url).map_err(usage)?;
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (user, password) = match (var(ENV_RAPI_USER), var(ENV_RAPI_PASSWORD)) {
            (Some(u), Some(p)) => (u, p),
            _ => {
                let Some(file) = var(ENV_RAPI_CREDENTIALS) else {
                    return Err(usage(format!(
                        "remote mode needs credentials: set {ENV_RAPI_USER} and \
                         {ENV_RAPI_PASSWORD}, or {ENV_RAPI_CREDENTIALS} to a file 'user password'"
                    )));
                };
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| usage(format!("reading {file}: {e}")))?;
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .unwrap_or("");
                match line.split_once(char::is_whitespace) {
                    Some((u, p)) => (u.to_string(), p.trim().to_string()),
                    None => return Err(usage(format!("{file}: expected a line 'user password'"))),
                }
            }
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .default_headers(maguey_rpc::version::request_headers(
                maguey_rpc::version::PROTOCOL_VERSION,
            ));
        if let Some(f) = var(ENV_RAPI_CA) {
            let pem = std::fs::read(&f).map_err(|e| usage(format!("reading {f}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| usage(format!("invalid CA certificate {f}: {e}")))?;
            b = b.add_root_certificate(cert).tls_built_in_root_certs(false);
        }
        let http = b
            .build()
            .map_err(|e| CliError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Connection {
            http,
            base: url.trim_end_matches('/').to_string(),
            basic: Some((user, password)),
        })
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.get(url);
        match &self.basic {
            Some((user, password)) => r.basic_auth(user, Some(password)),
            None => r,
        }
    }
}

/// Exit codes of a refused console: unknown instance, bad request or credentials 2, master
/// unreachable 3, anything else (not running, in use, node unreachable) 1.
fn console_error(e: ConsoleError) -> CliError {
    match e {
        ConsoleError::Unreachable(m) => {
            CliError::Unreachable(format!("cannot reach the master: {m}"))
        }
        ConsoleError::Refused { status, message } if [400, 401, 404].contains(&status) => {
            CliError::Usage(format!("{message} (HTTP {status})"))
        }
        ConsoleError::Refused { message, .. } => CliError::Other(message),
        ConsoleError::Protocol(m) => CliError::Other(m),
    }
}

/// `--log`: the console's last output.
async fn print_log(conn: &Connection, name: &str, max: u64) -> CliResult<u8> {
    let url = format!(
        "{}/luxi/instances/{name}/console-log?max_bytes={max}",
        conn.base
    );
    let resp = conn
        .get(&url)
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .map_err(|e| {
            CliError::Unreachable(format!("cannot reach the master: {url}: {}", chain(&e)))
        })?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| CliError::Other(format!("{url}: invalid answer: {e}")))?;
    if !status.is_success() {
        let message = ["error", "explain", "message"]
            .iter()
            .find_map(|k| body.get(*k).and_then(serde_json::Value::as_str))
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Err(console_error(ConsoleError::Refused {
            status: status.as_u16(),
            message,
        }));
    }
    let output = body
        .get("output")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(output.as_bytes());
    if !output.is_empty() && !output.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
    Ok(0)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(err) = src {
        let s = err.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        src = err.source();
    }
    msg
}

/// The command `--show-cmd` prints: this very binary, the state directory (or the remote
/// master's URL; credentials stay in the environment), the instance.
fn show_cmd(dir: &Path, cluster: Option<&str>, name: &str) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("maguey"));
    let (opt, place) = match cluster {
        Some(url) => ("--cluster", url.to_string()),
        None => (
            "--state-dir",
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .to_string_lossy()
                .into_owned(),
        ),
    };
    [
        exe.to_string_lossy().as_ref(),
        opt,
        &place,
        "instance",
        "console",
        name,
    ]
    .iter()
    .map(|w| shell_quote(w))
    .collect::<Vec<_>>()
    .join(" ")
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Reads stdin on a thread of its own (a blocking read must not hold up the runtime when the
/// console ends first): chunks, then the channel closes at the end of stdin.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

fn write_out(out: &mut std::io::Stdout, data: &[u8]) -> CliResult {
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Other(format!("writing the console output: {e}")))
}

/// Stdin not a terminal: stdin → console, console → stdout, until stdin ended `grace` ago
/// (or the console closed).
async fn scripted(stream: wire::ConsoleStream, grace: Duration) -> CliResult<u8> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut input = stdin_chunks();
    let mut stdin_open = true;
    let deadline = tokio::time::sleep(Duration::from_secs(86400 * 365));
    tokio::pin!(deadline);
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            chunk = input.recv(), if stdin_open => match chunk {
                Some(data) => {
                    wr.write_all(&data).await.map_err(closed)?;
                    wr.flush().await.map_err(closed)?;
                }
                None => {
                    stdin_open = false;
                    deadline.as_mut().reset(tokio::time::Instant::now() + grace);
                }
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) => {
                    eprintln!("maguey: the console was closed");
                    return Ok(0);
                }
                Ok(n) => write_out(&mut out, &buf[..n])?,
                Err(e) => return Err(closed(e)),
            },
            () = &mut deadline, if !stdin_open => return Ok(0),
        }
    }
}

fn closed(e: std::io::Error) -> CliError {
    CliError::Other(format!("the console connection failed: {e}"))
}

/// The terminal in raw mode until dropped.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> std::io::Result<RawTerminal> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0 or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let saved = t;
        // SAFETY: a valid termios.
        unsafe { libc::cfmakeraw(&mut t) };
        // SAFETY: fd 0 and a valid termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: fd 0 and the termios saved by `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

/// Stdin a terminal: raw mode, keys to the console, output to the terminal, Ctrl-] quits.
async fn interactive(stream: wire::ConsoleStream, name: &str) -> CliResult<u8> {
    let raw = RawTerminal::enter()
        .map_err(|e| CliError::Other(format!("cannot set the terminal to raw mode: {e}")))?;
    eprint!("Connected to the console of {name}. Escape character is '^]'.\r\n");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut input = stdin_chunks();
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    let result = loop {
        tokio::select! {
            chunk = input.recv() => match chunk {
                Some(data) => {
                    let (keys, quit) = match data.iter().position(|&b| b == ESCAPE) {
                        Some(i) => (&data[..i], true),
                        None => (&data[..], false),
                    };
                    if !keys.is_empty() {
                        if let Err(e) = wr.write_all(keys).await {
                            break Err(closed(e));
                        }
                        if let Err(e) = wr.flush().await {
                            break Err(closed(e));
                        }
                    }
                    if quit {
                        break Ok(0);
                    }
                }
                // The terminal went away.
                None => break Ok(0),
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) => {
                    eprint!("\r\nmaguey: the console was closed\r\n");
                    break Ok(0);
                }
                Ok(n) => {
                    if let Err(e) = write_out(&mut out, &buf[..n]) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(closed(e)),
            },
        }
    };
    drop(raw);
    eprintln!();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/maguey"), "/usr/bin/maguey");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
