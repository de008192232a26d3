//! Runnable programs built on weir, and the pieces they share with the tests.
//!
//! - `demo` (`make demo`): the tour, one section per machine, each a short story with real bytes.

pub mod tour;
