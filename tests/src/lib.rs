//! Cross-module and end-to-end tests of weir; the tests themselves live in `tests/tests/`.
//!
//! The library holds what several test suites (here and in `bindings/`) share: the Go-recorded
//! DRPC transcripts and the small helpers that read them, and throwaway PostgreSQL clusters.

pub mod drpc;
pub mod postgres;
