//! Helpers shared by the session's unit tests.

use alloc::vec::Vec;

use super::{Output, Session};
use crate::mux::wire::{Frame, Id, Kind};
use crate::time::Instant;

pub const NOW: Instant = Instant::ZERO;

/// One frame with `done` set, encoded.
pub fn frame(kind: Kind, control: bool, stream: u64, message: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let frame = Frame {
        kind,
        done: true,
        control,
        id: Id::new(stream, message),
        data,
    };
    frame.encode(&mut out).unwrap();
    out
}

/// Every pending output, `Transmit`s included; the transport takes each `Transmit` at once.
pub fn outputs(session: &mut Session) -> Vec<Output> {
    core::iter::from_fn(|| {
        let output = session.poll_output()?;
        if let Output::Transmit(bytes) = &output {
            session.handle_written(bytes.len());
        }
        Some(output)
    })
    .collect()
}

/// Every pending report (every output but `Transmit`), dropping the bytes.
pub fn events(session: &mut Session) -> Vec<Output> {
    outputs(session)
        .into_iter()
        .filter(|o| !matches!(o, Output::Transmit(_)))
        .collect()
}

/// Every pending byte for the peer, dropping the reports.
pub fn drain(session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    for output in outputs(session) {
        if let Output::Transmit(bytes) = output {
            out.extend_from_slice(&bytes);
        }
    }
    out
}
