//! Metadata and Error bodies: decoding never panics, and whatever decodes re-encodes to bytes that
//! decode to the same value.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::mux::wire::{ErrorBody, Metadata};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);

    if let Ok(metadata) = Metadata::decode(&input) {
        let mut wire = Vec::new();
        metadata.encode(&mut wire).expect("a Vec has room");
        assert_eq!(wire.len(), metadata.encoded_len());
        assert!(
            wire.len() <= data.len(),
            "duplicates and over-long varints only shrink"
        );
        assert_eq!(Metadata::decode(&Bytes::from(wire)), Ok(metadata));
    }

    let body = ErrorBody::decode(input);
    let mut wire = Vec::new();
    body.encode(&mut wire).expect("a Vec has room");
    if data.len() >= 8 {
        assert_eq!(wire, data, "a well-formed body re-encodes exactly");
    }
    assert_eq!(ErrorBody::decode(Bytes::from(wire)), body);
});
