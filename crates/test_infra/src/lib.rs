//! What Maguey's tests share (Cloud Hypervisor's `test_infra`): lab clusters of real daemons,
//! in-process node runtimes, builders of config objects. A dev-dependency only: no production
//! binary links this crate.
//!
//! The lab fixtures ([`lab::TestLab`], [`vmlab::VmLab`]) need the `lab` feature: crates whose
//! tests only need the plain helpers do not build the lab.

pub mod bins;
pub mod inprocess;
pub mod process;
pub mod run;

#[cfg(feature = "lab")]
pub mod kvm;
#[cfg(feature = "lab")]
pub mod lab;
#[cfg(feature = "lab")]
pub mod nemesis;
#[cfg(feature = "lab")]
pub mod vmlab;

pub use run::{wait_until, Run};

#[cfg(feature = "lab")]
pub use lab::TestLab;
