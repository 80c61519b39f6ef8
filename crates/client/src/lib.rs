//! The master API's client side: its wire types ([`api`]) and [`MasterClient`], the client the
//! CLI and the lab use. The daemon serves the same types; it is not a dependency of this crate.

pub mod api;
pub mod client;

pub use client::{ClientError, MasterClient};
/// The query wire types (`POST /luxi/query`), defined with the query engine in `maguey-ops`.
pub use maguey_ops::query::{QueryRequest, QueryResult, Resource};
