//! The sections of the `make demo` tour.

pub mod wire;
