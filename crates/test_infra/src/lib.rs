//! What Maguey's tests share (Cloud Hypervisor's `test_infra`): lab clusters of real daemons,
//! in-process node runtimes, builders of config objects. A dev-dependency only: no production
//! binary links this crate.
pub mod inprocess;
