//! weir's three kinds of refusal as Python exceptions.

use std::fmt::Display;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use weir::error::{ErrorKind, Kind};

create_exception!(
    _weir,
    WeirError,
    PyException,
    "The base of every error weir raises."
);
create_exception!(
    _weir,
    UsageError,
    WeirError,
    "Local misuse: a call the machine cannot do in its state (an unknown stream, a bad argument)."
);
create_exception!(
    _weir,
    LimitError,
    WeirError,
    "A limit from the machine's configuration was reached; nothing changed, retry later."
);
create_exception!(
    _weir,
    ClosedError,
    WeirError,
    "The machine is closed (the peer broke the protocol, or it was closed); it takes no more input."
);
create_exception!(
    _weir,
    RemoteProtocolError,
    WeirError,
    "The peer broke the protocol (raised by IO adapters)."
);

/// The Python exception for a refused call: its class follows the error's kind.
pub(crate) fn to_py<E: Kind + Display>(error: E) -> PyErr {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Usage => UsageError::new_err(message),
        ErrorKind::Limit => LimitError::new_err(message),
        ErrorKind::Closed => ClosedError::new_err(message),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WeirError", py.get_type::<WeirError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("LimitError", py.get_type::<LimitError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("RemoteProtocolError", py.get_type::<RemoteProtocolError>())?;
    Ok(())
}
