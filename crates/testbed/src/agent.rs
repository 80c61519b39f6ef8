//! Host side of the node command agent (see `init.sh`): one request at a time over a QEMU
//! `-chardev socket` bound to a virtio-serial port.
//!
//! Request: `ID TIMEOUT BASE64(script)\n`. Reply: `MAGUEY-OUT ID LEN\n`, LEN bytes of output
//! (stdout and stderr together), `MAGUEY-RC ID RC TIMEDOUT\n`. Replies with another id (left
//! over from a request whose caller gave up) are skipped.

use anyhow::{bail, Context, Result};
use base64::Engine;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The result of one script run by a node's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The script's exit code (137 when the agent killed it at its timeout).
    pub code: i32,
    /// Its standard output and standard error, interleaved as written.
    pub out: String,
    /// True when the agent killed the script at its timeout.
    pub timed_out: bool,
}

/// Extra time the host waits beyond a script's own timeout before giving up on the agent.
const HOST_GRACE: Duration = Duration::from_secs(30);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// A connection to one agent port.
pub struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(path: &Path) -> Result<Conn> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        Ok(Conn::from_stream(stream))
    }

    fn from_stream(stream: UnixStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out waiting for the agent");
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => bail!("the agent connection closed (is the VM still running?)"),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                bail!("timed out waiting for the agent")
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn line(&mut self, deadline: Instant) -> Result<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&c| c == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&l[..pos]).into_owned());
            }
            self.fill(deadline)?;
        }
    }

    fn exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Runs `script` with the agent's `/bin/sh`, killed after `timeout` (whole seconds, at
    /// least 1).
    pub fn run(&mut self, script: &str, timeout: Duration) -> Result<Output> {
        let id = next_id();
        let secs = timeout.as_secs().max(1);
        let b64 = base64::engine::general_purpose::STANDARD.encode(script);
        self.stream
            .write_all(format!("{id} {secs} {b64}\n").as_bytes())
            .context("sending to the agent")?;
        let deadline = Instant::now() + Duration::from_secs(secs) + HOST_GRACE;
        loop {
            let l = self.line(deadline)?;
            let Some(rest) = l.strip_prefix("MAGUEY-OUT ") else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let (rid, len) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
            let len: usize = len
                .parse()
                .with_context(|| format!("bad agent header {l:?}"))?;
            let out = self.exact(len, deadline)?;
            let rc_line = self.line(deadline)?;
            let rc_rest = rc_line
                .strip_prefix("MAGUEY-RC ")
                .with_context(|| format!("bad agent trailer {rc_line:?}"))?;
            let mut f = rc_rest.split_whitespace();
            let rid2 = f.next().unwrap_or_default();
            let code: i32 = f
                .next()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("bad agent trailer {rc_line:?}"))?;
            let timed_out = f.next() == Some("1");
            if rid != id || rid2 != id {
                continue; // a late reply to an abandoned request
            }
            return Ok(Output {
                code,
                out: String::from_utf8_lossy(&out).into_owned(),
                timed_out,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// A fake agent: answers one request with a stale reply first, then the real one, whose
    /// output contains the protocol's own markers (framing is by length).
    #[test]
    fn framing_and_stale_replies() {
        let (host, node) = UnixStream::pair().expect("pair");
        let agent = std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(node.try_clone().expect("clone"));
            let mut line = String::new();
            r.read_line(&mut line).expect("request");
            let mut f = line.split_whitespace();
            let (id, tmo, b64) = (
                f.next().expect("id").to_string(),
                f.next().expect("timeout").to_string(),
                f.next().expect("script").to_string(),
            );
            let script = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            let out = b"line 1\nMAGUEY-RC x 0 0\nno newline";
            let mut w = node;
            w.write_all(b"noise from a previous session\nMAGUEY-OUT old 3\nabcMAGUEY-RC old 9 0\n")
                .expect("stale");
            w.write_all(format!("MAGUEY-OUT {id} {}\n", out.len()).as_bytes())
                .expect("header");
            w.write_all(out).expect("out");
            w.write_all(format!("MAGUEY-RC {id} 3 1\n").as_bytes())
                .expect("trailer");
            (tmo, String::from_utf8(script).expect("utf8"))
        });
        let mut c = Conn::from_stream(host);
        let o = c
            .run("echo 'hi there'\nexit 3\n", Duration::from_millis(1500))
            .expect("run");
        assert_eq!(
            o,
            Output {
                code: 3,
                out: "line 1\nMAGUEY-RC x 0 0\nno newline".into(),
                timed_out: true,
            }
        );
        let (tmo, script) = agent.join().expect("agent");
        assert_eq!(tmo, "1");
        assert_eq!(script, "echo 'hi there'\nexit 3\n");
    }

    #[test]
    fn closed_connection_is_an_error() {
        let (host, node) = UnixStream::pair().expect("pair");
        drop(node);
        let mut c = Conn::from_stream(host);
        assert!(c.run("true", Duration::from_secs(1)).is_err());
    }
}
