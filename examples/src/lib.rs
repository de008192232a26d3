//! Runnable programs built on weir, and the pieces they share with the tests.
//!
//! - `demo` (`make demo`): the tour, one section per machine, each a short story with real bytes.
//! - `flow_sim`: CockroachDB's flow-control scenarios replayed on a virtual clock, with CSV and
//!   SVG output.
//! - `proxy`: the migrating PostgreSQL proxy, with flags for its backends and policies.

pub mod flow_sim;
pub mod proxy_cli;
pub mod tour;
