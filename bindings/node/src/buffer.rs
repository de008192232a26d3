//! `Buffer`: bytes handed to JS as a Node `Buffer`, and taken from any `Uint8Array`.
//!
//! Out: data under [`SHARE_MIN`] bytes is copied into a new `Buffer` (cheaper than tracking an
//! external one); longer data is shared with JS without a copy, and freed when JS drops the
//! `Buffer`. In: the bytes of a `Buffer` or `Uint8Array` are copied once.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue};
use napi::{check_status, sys, ValueType};

/// Data of at least this many bytes is shared with JS rather than copied.
pub const SHARE_MIN: usize = 16 * 1024;

/// Bytes for JS (the TypeScript type is `Buffer`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buffer(pub bytes::Bytes);

impl From<bytes::Bytes> for Buffer {
    fn from(bytes: bytes::Bytes) -> Buffer {
        Buffer(bytes)
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(bytes: Vec<u8>) -> Buffer {
        Buffer(bytes.into())
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl TypeName for Buffer {
    fn type_name() -> &'static str {
        "Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ValidateNapiValue for Buffer {}

unsafe extern "C" fn free_shared(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the box `to_napi_value` leaked for this buffer, freed only here.
    drop(unsafe { Box::from_raw(hint.cast::<bytes::Bytes>()) });
}

impl ToNapiValue for Buffer {
    unsafe fn to_napi_value(env: sys::napi_env, val: Buffer) -> napi::Result<sys::napi_value> {
        let mut value = ptr::null_mut();
        let len = val.0.len();
        if len >= SHARE_MIN {
            let owner = Box::new(val.0);
            let data = owner.as_ptr().cast_mut().cast::<c_void>();
            let owner = Box::into_raw(owner);
            // SAFETY: `data` stays valid until the finalizer frees `owner`, which holds it.
            let status = unsafe {
                sys::napi_create_external_buffer(
                    env,
                    len,
                    data,
                    Some(free_shared),
                    owner.cast(),
                    &mut value,
                )
            };
            if status == sys::Status::napi_ok {
                return Ok(value);
            }
            // Not created: the bytes are still ours, to copy as below.
            // SAFETY: the finalizer was not registered, so `owner` is still only ours.
            let owner = unsafe { Box::from_raw(owner) };
            return unsafe { copy(env, &owner, len) };
        }
        unsafe { copy(env, &val.0, len) }
    }
}

/// A new `Buffer` holding a copy of `data`.
unsafe fn copy(env: sys::napi_env, data: &[u8], len: usize) -> napi::Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    let source = if len == 0 {
        ptr::null()
    } else {
        data.as_ptr().cast::<c_void>()
    };
    // SAFETY: `source` points at `len` readable bytes (or is null for none).
    check_status!(
        unsafe { sys::napi_create_buffer_copy(env, len, source, ptr::null_mut(), &mut value) },
        "could not create a Buffer"
    )?;
    Ok(value)
}

impl FromNapiValue for Buffer {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Buffer> {
        // SAFETY: napi checks that `value` is a typed array before handing out its bytes.
        let bytes = unsafe { <&[u8]>::from_napi_value(env, value)? };
        Ok(Buffer(bytes::Bytes::copy_from_slice(bytes)))
    }
}
