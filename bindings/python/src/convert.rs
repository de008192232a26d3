//! Conversions the machine modules share: bytes in, durations out, Python reprs.

use std::time::Duration;

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString};

/// The bytes of a `bytes`, `bytearray` or `memoryview`: `bytes` shared without a copy, the
/// others copied once.
pub(crate) fn bytes_in(data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(backed) = data.extract::<PyBackedBytes>() {
        return Ok(Bytes::from_owner(backed));
    }
    let buffer = PyBuffer::<u8>::get(data)
        .map_err(|_| PyTypeError::new_err("expected bytes, bytearray or memoryview"))?;
    Ok(Bytes::from(buffer.to_vec(data.py())?))
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Python's `repr` of a string.
pub(crate) fn str_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_string())
}

/// Python's `repr` of bytes.
pub(crate) fn bytes_repr(py: Python<'_>, data: &[u8]) -> PyResult<String> {
    Ok(PyBytes::new(py, data).repr()?.to_string())
}

/// Python's `repr` of a bool.
pub(crate) fn bool_repr(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}
