//! RAPI users: Ganeti's users file and HTTP Basic authentication.
//!
//! Each line of the file is `user password [options]`; options are comma-separated (`read`,
//! `write`); empty lines and `#` comments are ignored. The password is cleartext, `{cleartext}`
//! followed by cleartext, or `{HA1}` followed by `md5(user:Ganeti Remote API:password)` in hex.
//! The file is re-read whenever its modification time or size changes (checked per request).

use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ganeti's authentication realm; part of `{HA1}` hashes.
pub const REALM: &str = "Ganeti Remote API";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// As written in the file (with its scheme prefix, if any).
    pub password: String,
    pub access: Access,
}

/// Parses a users file; malformed lines are skipped (and reported).
pub fn parse_users(text: &str) -> (BTreeMap<String, User>, Vec<String>) {
    let mut users = BTreeMap::new();
    let mut problems = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 2 || parts.len() > 3 {
            problems.push(format!(
                "line {}: expected 'user password [options]'",
                no + 1
            ));
            continue;
        }
        let mut access = Access::default();
        if let Some(opts) = parts.get(2) {
            for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                match o.to_ascii_lowercase().as_str() {
                    "read" => access.read = true,
                    "write" => access.write = true,
                    other => problems.push(format!("line {}: unknown option '{other}'", no + 1)),
                }
            }
        }
        // Ganeti: a user without options may read.
        if !access.read && !access.write {
            access.read = true;
        }
        users.insert(
            parts[0].to_string(),
            User {
                name: parts[0].to_string(),
                password: parts[1].to_string(),
                access,
            },
        );
    }
    (users, problems)
}

/// Checks `password` against the users file's `expected` entry (Ganeti's schemes).
pub fn verify_password(user: &str, password: &str, expected: &str) -> bool {
    let expected = if expected.starts_with('{') {
        expected.to_string()
    } else {
        format!("{{CLEARTEXT}}{expected}")
    };
    let Some(end) = expected.find('}') else {
        return false;
    };
    if end <= 1 {
        return false;
    }
    let scheme = expected[..=end].to_ascii_uppercase();
    let value = &expected[end + 1..];
    match scheme.as_str() {
        "{CLEARTEXT}" => same_secret(password.as_bytes(), value.as_bytes()),
        "{HA1}" => {
            // The file's hash is hex in either case; anything else matches no password.
            let mut stored = [0u8; 16];
            if hex::decode_to_slice(value, &mut stored).is_err() {
                return false;
            }
            ha1_digest(user, password).ct_eq(&stored).into()
        }
        _ => false,
    }
}

/// `{HA1}` form of a password, for writing users files.
pub fn ha1(user: &str, password: &str) -> String {
    format!("{{HA1}}{}", hex::encode(ha1_digest(user, password)))
}

/// Ganeti's HA1: `md5(user:realm:password)`.
fn ha1_digest(user: &str, password: &str) -> [u8; 16] {
    Md5::digest(format!("{user}:{REALM}:{password}").as_bytes()).into()
}

/// Whether two secrets are equal, compared as SHA-256 digests in constant time: the time taken
/// depends neither on where they differ nor on their lengths.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let given: [u8; 32] = Sha256::digest(given).into();
    let expected: [u8; 32] = Sha256::digest(expected).into();
    given.ct_eq(&expected).into()
}

/// Credentials of an `Authorization: Basic ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// A header that is not valid Basic credentials.
    Malformed,
    Basic {
        user: String,
        password: String,
    },
}

pub fn parse_authorization(header: Option<&str>) -> Credentials {
    let Some(h) = header else {
        return Credentials::None;
    };
    let mut parts = h.trim().splitn(2, char::is_whitespace);
    let scheme = parts.next().unwrap_or("");
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Malformed;
    }
    let Some(data) = parts.next() else {
        return Credentials::Malformed;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(data.trim()) else {
        return Credentials::Malformed;
    };
    let Ok(s) = String::from_utf8(raw) else {
        return Credentials::Malformed;
    };
    match s.split_once(':') {
        Some((u, p)) => Credentials::Basic {
            user: u.to_string(),
            password: p.to_string(),
        },
        None => Credentials::Malformed,
    }
}

/// The users file, re-read when it changes.
pub struct UsersFile {
    path: PathBuf,
    cache: Mutex<Cache>,
    /// Per user name: first failure of the window, failures, the turn of throttled attempts.
    failures: Mutex<HashMap<String, Failures>>,
}

/// A user name's failed logins: since when, how many, the turn of its throttled attempts.
type Failures = (Instant, u32, Arc<tokio::sync::Mutex<()>>);

/// Failed logins of one user name within [`FAILURE_WINDOW`] before its further attempts are
/// refused (unchecked) until the window ends.
pub const MAX_FAILED_LOGINS: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a throttled failed attempt holds its user name's turn.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(250);
/// Checked for unknown users, so that they cost what a known user costs.
const UNKNOWN_USER_ENTRY: &str = "{HA1}00000000000000000000000000000000";

#[derive(Default)]
struct Cache {
    stamp: Option<(SystemTime, u64)>,
    users: BTreeMap<String, User>,
}

impl UsersFile {
    pub fn new(path: PathBuf) -> Self {
        UsersFile {
            path,
            cache: Mutex::new(Cache::default()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user `name` if the password matches.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<Access> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp != c.stamp {
            c.users = match std::fs::read_to_string(&self.path) {
                Ok(text) => {
                    let (users, problems) = parse_users(&text);
                    for p in problems {
                        tracing::warn!("RAPI users file {}: {p}", self.path.display());
                    }
                    users
                }
                Err(_) => BTreeMap::new(),
            };
            c.stamp = stamp;
        }
        let (entry, access) = match c.users.get(name) {
            Some(u) => (u.password.clone(), Some(u.access)),
            None => (UNKNOWN_USER_ENTRY.to_string(), None),
        };
        drop(c);
        // The same work whoever asks: both schemes' digests, known user or not.
        let ok = verify_password(name, password, &entry);
        std::hint::black_box((
            same_secret(password.as_bytes(), entry.as_bytes()),
            ha1_digest(name, password),
        ));
        access.filter(|_| ok)
    }

    /// [`UsersFile::authenticate`], throttled for a user name with too many recent failures
    /// ([`MAX_FAILED_LOGINS`] within [`FAILURE_WINDOW`]): its attempts then take turns, and
    /// each failed one holds the turn for [`FAILED_LOGIN_DELAY`], so that guesses come at
    /// most four a second whatever the parallelism, while the right password still gets in.
    pub async fn login(&self, name: &str, password: &str) -> Option<Access> {
        let gate = {
            let now = Instant::now();
            let mut f = lock(&self.failures);
            f.retain(|_, (since, _, _)| now.duration_since(*since) < FAILURE_WINDOW);
            match f.get(name) {
                Some((_, n, gate)) if *n >= MAX_FAILED_LOGINS => Some(gate.clone()),
                _ => None,
            }
        };
        let Some(gate) = gate else {
            let r = self.authenticate(name, password);
            if r.is_none() {
                self.failed(name);
            }
            return r;
        };
        let _turn = gate.lock().await;
        let r = self.authenticate(name, password);
        if r.is_none() {
            self.failed(name);
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        }
        r
    }

    fn failed(&self, name: &str) {
        let mut f = lock(&self.failures);
        // Bounded memory: names tried by a flood are forgotten beyond this.
        if f.len() < 10_000 || f.contains_key(name) {
            f.entry(name.to_string())
                .or_insert_with(|| (Instant::now(), 0, Arc::default()))
                .1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_schemes() {
        assert!(verify_password("jack", "abc123", "abc123"));
        assert!(verify_password("jack", "abc123", "{cleartext}abc123"));
        assert!(verify_password("jack", "abc123", "{CLEARTEXT}abc123"));
        assert!(verify_password(
            "jack",
            "abc123",
            "{HA1}54c12257ee9be413f2f3182435514aae"
        ));
        assert!(verify_password(
            "jack",
            "abc123",
            "{ha1}54C12257EE9BE413F2F3182435514AAE"
        ));
        assert!(!verify_password(
            "jack",
            "abc124",
            "{HA1}54c12257ee9be413f2f3182435514aae"
        ));
        assert!(!verify_password(
            "jill",
            "abc123",
            "{HA1}54c12257ee9be413f2f3182435514aae"
        ));
        assert!(!verify_password("jack", "abc123", "{HA2}abc123"));
        assert!(!verify_password("jack", "abc123", "{}abc123"));
        assert!(!verify_password("jack", "", "abc123"));
        assert_eq!(
            ha1("jack", "abc123"),
            "{HA1}54c12257ee9be413f2f3182435514aae"
        );
    }

    #[test]
    fn near_misses_are_refused() {
        // Prefixes, extensions and same-length changes of a cleartext password.
        for wrong in ["abc12", "abc1234", "abc124", "Abc123", "", "abc123 "] {
            assert!(!verify_password("jack", wrong, "abc123"), "{wrong:?}");
        }
        assert!(verify_password("jack", "", "{cleartext}"));
        // An {HA1} entry that is not 32 hex digits matches nothing, its own text included.
        let hash = "54c12257ee9be413f2f3182435514aae";
        for entry in [
            &hash[..31],
            &format!("{hash}0"),
            &hash.replace('5', "g"),
            "",
        ] {
            assert!(!verify_password(
                "jack",
                "abc123",
                &format!("{{HA1}}{entry}")
            ));
            assert!(!verify_password("jack", entry, &format!("{{HA1}}{entry}")));
        }
        // What `ha1` writes is what a users file entry checks.
        assert!(verify_password("jill", "s3cret", &ha1("jill", "s3cret")));
        assert!(!verify_password("jill", "s3cret", &ha1("jill", "s3cre")));
    }

    #[test]
    fn users_file_format() {
        let (u, problems) = parse_users(
            "# comment\n\njack abc123 write\njill {HA1}x read,write\nbob pw\nbad\nx y z w\n",
        );
        assert_eq!(u.len(), 3);
        assert!(u["jack"].access.write && !u["jack"].access.read);
        assert!(u["jill"].access.write && u["jill"].access.read);
        assert!(u["bob"].access.read && !u["bob"].access.write);
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn basic_header() {
        let enc = base64::engine::general_purpose::STANDARD.encode("jack:a:b");
        assert_eq!(
            parse_authorization(Some(&format!("Basic {enc}"))),
            Credentials::Basic {
                user: "jack".into(),
                password: "a:b".into()
            }
        );
        assert_eq!(parse_authorization(None), Credentials::None);
        assert_eq!(
            parse_authorization(Some("Basic !!!")),
            Credentials::Malformed
        );
        assert_eq!(
            parse_authorization(Some("Digest x")),
            Credentials::Malformed
        );
    }

    #[test]
    fn reread_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        let f = UsersFile::new(p.clone());
        assert!(f.authenticate("a", "b").is_none());
        std::fs::write(&p, "a b write\n").unwrap();
        assert!(f.authenticate("a", "b").unwrap().write);
        std::fs::write(&p, "a ccc read\n").unwrap();
        assert!(f.authenticate("a", "b").is_none());
        assert!(!f.authenticate("a", "ccc").unwrap().write);
    }

    #[tokio::test]
    async fn failed_logins_are_throttled_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        std::fs::write(&p, "a secret write\nb other\n").unwrap();
        let f = UsersFile::new(p);
        for _ in 0..MAX_FAILED_LOGINS {
            assert!(f.login("a", "guess").await.is_none());
        }
        // Throttled now: each further failure holds the user's turn; the right password
        // still gets in; other users are not throttled.
        let t1 = tokio::time::Instant::now();
        let guesses = wrong_guesses(&f, 2).await;
        assert!(guesses.iter().all(|g| g.is_none()));
        assert!(t1.elapsed() >= FAILED_LOGIN_DELAY * 2, "{:?}", t1.elapsed());
        assert!(f.login("a", "secret").await.unwrap().write);
        assert!(f.login("b", "other").await.is_some());
        assert!(f.login("zed", "x").await.is_none());
    }

    /// `n` wrong guesses for user `a`, one after the other.
    async fn wrong_guesses(f: &UsersFile, n: usize) -> Vec<Option<Access>> {
        let mut set = Vec::new();
        for _ in 0..n {
            set.push(f.login("a", "guess"));
        }
        let mut out = Vec::new();
        for fut in set {
            out.push(fut.await);
        }
        out
    }
}
