//! weir's kinds of refusal as JS `Error`s with a `code` string.
//!
//! ```js
//! const { mux } = require('weir')
//! try { new mux.Session('client').read(7n) } catch (error) { console.log(error.code) } // 'WEIR_USAGE'
//! ```

use std::fmt::Display;

use weir::error::{ErrorKind, Kind};

/// The `code` of an `Error` thrown by the native module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Local misuse: a call the machine cannot do in its state, or a bad argument.
    Usage,
    /// A limit from the machine's configuration was reached; nothing changed.
    Limit,
    /// The machine is closed.
    Closed,
    /// Bytes that break the DRPC wire format (the codec functions).
    RemoteProtocol,
    /// A result of the core that this version of the binding has no JS form for.
    Unknown,
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        match self {
            Code::Usage => "WEIR_USAGE",
            Code::Limit => "WEIR_LIMIT",
            Code::Closed => "WEIR_CLOSED",
            Code::RemoteProtocol => "WEIR_REMOTE_PROTOCOL",
            Code::Unknown => "WEIR_UNKNOWN",
        }
    }
}

/// What every fallible function of the module returns: the error becomes a thrown `Error`
/// whose `code` is the [`Code`]'s string.
pub type Result<T> = napi::Result<T, Code>;

/// An error with `code` and `message`.
pub(crate) fn error(code: Code, message: impl Into<String>) -> napi::Error<Code> {
    napi::Error::new(code, message.into())
}

/// A `WEIR_USAGE` error.
pub(crate) fn usage(message: impl Into<String>) -> napi::Error<Code> {
    error(Code::Usage, message)
}

/// The error for a refused call: its code follows the error's kind.
pub(crate) fn refused<E: Kind + Display>(e: E) -> napi::Error<Code> {
    let code = match e.kind() {
        ErrorKind::Usage => Code::Usage,
        ErrorKind::Limit => Code::Limit,
        ErrorKind::Closed => Code::Closed,
    };
    error(code, e.to_string())
}

/// A `bigint` argument as a `u64`: `WEIR_USAGE` when it is negative or does not fit.
pub(crate) fn to_u64(what: &str, value: &napi::bindgen_prelude::BigInt) -> Result<u64> {
    let (signed, value, lossless) = value.get_u64();
    if signed || !lossless {
        return Err(usage(format!("{what} must be a bigint in 0..2**64")));
    }
    Ok(value)
}

/// A `bigint` argument as an `i64`: `WEIR_USAGE` when it does not fit.
pub(crate) fn to_i64(what: &str, value: &napi::bindgen_prelude::BigInt) -> Result<i64> {
    let (value, lossless) = value.get_i64();
    if !lossless {
        return Err(usage(format!("{what} must be a bigint in -(2**63)..2**63")));
    }
    Ok(value)
}

/// A `number` argument as a `usize`: `WEIR_USAGE` unless it is a non-negative integer.
pub(crate) fn to_usize(what: &str, value: f64) -> Result<usize> {
    if value.fract() != 0.0 || !(0.0..=9_007_199_254_740_991.0).contains(&value) {
        return Err(usage(format!("{what} must be a non-negative integer")));
    }
    Ok(value as usize)
}
