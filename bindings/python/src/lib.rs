//! The native module `weir._weir`: weir's machines for Python.
//!
//! Type and error conversion only; the protocol logic is the `weir` crate's. The Python package
//! (`python/weir/`) re-exports these classes from `weir.flow`, `weir.frontier`, `weir.mux`,
//! `weir.transfer` and `weir.wire`.

use pyo3::prelude::*;

mod convert;
mod errors;
mod flow;
mod frontier;
mod mux;
mod transfer;
mod wire;

#[pymodule]
fn _weir(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    flow::register(m)?;
    frontier::register(m)?;
    mux::register(m)?;
    transfer::register(m)?;
    wire::register(m)?;
    Ok(())
}
