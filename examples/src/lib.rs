//! Runnable programs built on weir, and the pieces they share with the tests.

pub mod flow_sim;
