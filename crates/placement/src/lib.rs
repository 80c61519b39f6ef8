//! Maguey's placement engine: an htools-compatible scorer, allocator
//! (hail), balancer (hbal), capacity planner (hspace) and rolling-reboot
//! planner (hroller), working on Ganeti's text backend and iallocator
//! formats.

#![allow(clippy::type_complexity, clippy::large_enum_variant)]

pub mod alloc;
pub mod balance;
pub mod capacity;
pub mod cli;
mod drbd_bases;
pub mod ialloc;
mod ialloc_fast;
pub mod jobs;
pub mod model;
pub mod moves;
mod prune;
pub mod roll;
pub mod score;
pub mod text;
pub mod types;

pub use model::{Cluster, Instance, LoadOptions, Node};
pub use types::{Error, Result};
