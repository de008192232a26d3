//! The sections of the `make demo` tour.

pub mod flow;
pub mod frontier;
pub mod go;
pub mod migration;
pub mod socket;
pub mod wire;
