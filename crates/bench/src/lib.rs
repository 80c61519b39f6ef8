//! Maguey's benchmarks, one binary each (see docs/benchmarks.md): `maguey-bench` (the control
//! plane on a lab), `maguey-kvm-bench`, `maguey-rapi-bench`, `maguey-drbd-bench` (node VMs) and
//! `placement-bench` (the placement engine against Ganeti's htools). Nothing here is linked by
//! a product binary.
