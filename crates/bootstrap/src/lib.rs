//! A node's state directory and how a node comes to life: the files in the directory
//! ([`files`]), `cluster init` writing the first node's CA, certificate and config ([`init`]),
//! and starting `magueyd` on a directory ([`spawn`]). Used by the CLI, the daemon and the lab;
//! it holds no server code.

pub mod files;
pub mod init;
pub mod spawn;
pub mod systemd;

pub use spawn::{magueyd_path, spawn_daemon, spawn_daemon_in};
