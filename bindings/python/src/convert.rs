//! Conversions the machine modules share: durations out, Python reprs.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Python's `repr` of a string.
pub(crate) fn str_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_string())
}

/// Python's `repr` of a bool.
pub(crate) fn bool_repr(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}
