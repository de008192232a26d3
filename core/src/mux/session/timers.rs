//! (Server) The connection's timers: the peer's first whole frame, and time with no stream.
//!
//! They start at the first `now` the session sees, from any call that takes one; an adapter
//! calls [`Session::handle_timeout`] as soon as the connection exists, so that a peer that
//! sends nothing is timed too.

use super::output::CloseReason;
use super::{Role, Session};
use crate::time::Instant;

#[derive(Debug, Default)]
pub(super) struct Timers {
    /// The first `now` has been seen.
    started: bool,
    /// When the handshake times out, until the peer's first whole frame.
    handshake: Option<Instant>,
    /// Since when the session has held no stream.
    idle_since: Option<Instant>,
}

impl Session {
    /// When [`Session::handle_timeout`] wants to be called next, or `None` for no timer (a
    /// client, or a server whose timers are off or not started).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outputs.closed {
            return None;
        }
        let idle = self.idle_deadline();
        match (self.timers.handshake, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time has passed: starts the timers on the first call, and fails the connection with
    /// [`CloseReason::HandshakeTimeout`] or [`CloseReason::IdleTimeout`] once one has run
    /// out. Does nothing once the connection has failed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outputs.closed {
            return;
        }
        self.tick(now);
        let now = self.now();
        if self.timers.handshake.is_some_and(|at| at <= now) {
            let after = self.config.handshake_timeout.unwrap_or_default();
            self.close_with(CloseReason::HandshakeTimeout(after));
        } else if self.idle_deadline().is_some_and(|at| at <= now) {
            let after = self.config.idle_timeout.unwrap_or_default();
            self.close_with(CloseReason::IdleTimeout(after));
        }
    }

    /// Take in the caller's `now`: time that goes backwards means no time passed. The first
    /// one starts the timers.
    pub(super) fn tick(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        if self.timers.started {
            return;
        }
        self.timers.started = true;
        if self.role == Role::Server {
            self.timers.handshake = self.config.handshake_timeout.map(|after| now + after);
        }
        if self.streams.is_empty() {
            self.timers.idle_since = Some(now);
        }
    }

    /// A whole frame arrived: the handshake is over.
    pub(super) fn frame_arrived(&mut self) {
        self.timers.handshake = None;
    }

    /// The session holds a stream: it is not idle.
    pub(super) fn busy(&mut self) {
        self.timers.idle_since = None;
    }

    /// The session's last stream is gone: it is idle from now.
    pub(super) fn idle(&mut self) {
        if self.timers.started {
            self.timers.idle_since = Some(self.now());
        }
    }

    fn idle_deadline(&self) -> Option<Instant> {
        if self.role != Role::Server {
            return None;
        }
        let after = self.config.idle_timeout?;
        Some(self.timers.idle_since? + after)
    }
}
