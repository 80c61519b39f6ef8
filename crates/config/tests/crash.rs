//! A SIGKILL at any moment never loses an acknowledged change nor leaves a half-applied one.
//!
//! The test re-executes its own binary in a child mode (selected by an environment variable and
//! `--exact` test name). The child applies commands in a loop, with a small compaction interval
//! so that kills also land inside compactions, and prints every acknowledged serial. The parent
//! SIGKILLs it after a random delay, reopens the store and checks it, several rounds in a row on
//! the same file.

mod common;

use common::*;
use maguey_config::{Command, ConfigStore, StoreOptions};
use maguey_model::AdminState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "MAGUEY_CONFIG_CRASH_CHILD";
const TEST_NAME: &str = "sigkill_at_any_moment_loses_no_acknowledged_change";

fn random(below: u64) -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % below
}

/// Child mode: apply commands forever, printing `ACK <serial> <instance name or ->`.
fn child(path: &str) -> ! {
    let store = ConfigStore::open_with(path.as_ref(), StoreOptions { compact_every: 7 })
        .expect("child: open");
    let mut out = std::io::stdout();
    if !store.is_initialised() {
        let serial = store.apply(init()).expect("child: init");
        writeln!(out, "ACK {serial} -").unwrap();
        out.flush().unwrap();
    }
    // Instances are inst0, inst1, ... in order, so the next number is the count.
    let mut n = store.snapshot().instances.len() as u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let serial = store
            .apply(add_instance(n, MASTER_UUID))
            .expect("child: add");
        writeln!(out, "ACK {serial} {}", instance(n, MASTER_UUID).name).unwrap();
        out.flush().unwrap();
        if n % 3 == 2 {
            // Some updates in between the adds.
            let serial = store
                .apply(Command::SetInstanceAdminState {
                    uuid: instance(n, MASTER_UUID).uuid,
                    admin_state: AdminState::Down,
                })
                .expect("child: update");
            writeln!(out, "ACK {serial} -").unwrap();
            out.flush().unwrap();
        }
        n += 1;
    }
    std::process::exit(0)
}

/// Kills the child if the parent panics before doing so.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_at_any_moment_loses_no_acknowledged_change() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.redb");
    let exe = std::env::current_exe().unwrap();
    let mut acked_names: Vec<String> = Vec::new();
    let mut last_acked = 0u64;
    let rounds = 12;
    for round in 0..rounds {
        let child = Process::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<(u64, String)>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                // Only whole lines count: a line cut by the kill was never acknowledged.
                let Some(text) = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| l.strip_suffix('\n'))
                else {
                    continue;
                };
                let mut parts = text.split(' ');
                if parts.next() != Some("ACK") {
                    continue;
                }
                let serial: u64 = parts.next().unwrap().parse().unwrap();
                let name = parts.next().unwrap().to_string();
                if tx.send((serial, name)).is_err() {
                    break;
                }
            }
        });

        // Let it run for a random number of acknowledged changes, plus a random delay.
        let wanted = 3 + random(25) as usize;
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            let (serial, name) = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("round {round}: child gave {seen} acks: {e}"));
            assert!(
                serial > last_acked,
                "serials rise: {serial} after {last_acked}"
            );
            last_acked = serial;
            if name != "-" {
                acked_names.push(name);
            }
            seen += 1;
        }
        std::thread::sleep(Duration::from_micros(random(20_000)));
        let pid = child.0.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "child was killed");
        reader.join().unwrap();
        for (serial, name) in rx.try_iter() {
            assert!(serial > last_acked);
            last_acked = serial;
            if name != "-" {
                acked_names.push(name);
            }
        }

        // An independent replay of the file first (the store is not open).
        let (replayed, replayed_index) = replay_file(&path);
        let store = ConfigStore::open(&path).expect("the store opens after a SIGKILL");
        let state = store.snapshot();
        assert_eq!(
            *state, replayed,
            "round {round}: open equals a fresh replay"
        );
        assert_eq!(store.last_index(), replayed_index);
        maguey_config::verify(&state).unwrap();
        assert!(
            state.serial_no >= last_acked,
            "round {round}: serial {} < acknowledged {last_acked}",
            state.serial_no
        );
        // At most the one change in flight at the kill is durable without an ack.
        assert!(
            state.serial_no <= last_acked + 1,
            "round {round}: serial {} > acknowledged {last_acked} + 1",
            state.serial_no
        );
        for name in &acked_names {
            assert!(
                state.instance_by_name(name).is_some(),
                "round {round}: acknowledged {name} is missing"
            );
        }
        eprintln!(
            "round {round}: killed after {} acks, serial {}, log index {}, snapshot index {}",
            seen,
            state.serial_no,
            store.last_index(),
            store.snapshot_index()
        );
        // Start the next round from whatever really is in the store.
        last_acked = state.serial_no;
    }
    assert!(acked_names.len() >= rounds);
}
