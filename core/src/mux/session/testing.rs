//! Helpers shared by the session's unit tests.

use alloc::vec::Vec;

use super::{Event, Session};
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

/// Every pending event.
pub fn events(session: &mut Session) -> Vec<Event> {
    core::iter::from_fn(|| session.poll_event()).collect()
}

/// Every pending byte for the peer.
pub fn drain(session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = session.poll_transmit() {
        out.extend_from_slice(&bytes);
    }
    out
}
