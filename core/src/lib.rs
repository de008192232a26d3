//! weir: sans-IO protocol cores for distributed SQL plumbing.
//!
//! Every machine in this crate takes bytes and events in and gives actions out. It never reads a
//! socket, a clock or a random number generator: the caller passes time in as a [`time::Instant`],
//! feeds input through `handle_*` methods and drains output through `poll_*` methods until they
//! return `None`.
//!
//! The crate is `#![no_std]` with `alloc`; the `std` feature (on by default) only adds
//! `std::error::Error` implementations.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod frontier;
pub mod time;
