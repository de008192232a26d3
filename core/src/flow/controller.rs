//! The flow controller: admission, deduction, returns and the waiting queue.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

use super::config::Config;
use super::error::{FlowError, Rejection};
use super::metrics::ClassMetrics;
use super::output::{Deduction, Grant, Output};
use super::queue::{WaitQueue, Waiter};
use super::stream::{Refund, Stream};
use super::table::StreamTable;
use super::types::{Class, LogPosition, RequestId, StreamId, Targets, ELASTIC, REGULAR};
use crate::time::{Instant, Monotonic};

/// Tokens an admitted request holds until it is bound to a log position or released.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pool: usize,
    bytes: u64,
    /// Slots of the streams charged, with each stream's connection epoch at the time, so a
    /// disconnect in between (which already returned everything) is not returned twice.
    charges: Vec<(usize, u64)>,
}

/// A sans-IO flow controller for replication traffic. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct FlowControl {
    pub(super) config: Config,
    pub(super) streams: StreamTable,
    /// Scratch space for a request's replicating targets (slot, index in the targets), kept to
    /// spare an allocation per admission.
    replicating: Vec<(usize, usize)>,
    pub(super) queue: WaitQueue,
    pub(super) held: BTreeMap<RequestId, Held>,
    outputs: VecDeque<Output>,
    pub(super) counters: [ClassMetrics; 2],
    pub(super) control_requests: u64,
    /// Handed out at every connect, so tokens held across a disconnect are never returned to a
    /// later connection of the same stream.
    epochs: u64,
    clock: Monotonic,
}

impl FlowControl {
    /// A controller with no streams.
    pub fn new(config: Config) -> FlowControl {
        FlowControl {
            config,
            streams: StreamTable::default(),
            replicating: Vec::new(),
            queue: WaitQueue::default(),
            held: BTreeMap::new(),
            outputs: VecDeque::new(),
            counters: Default::default(),
            control_requests: 0,
            epochs: 0,
            clock: Monotonic::default(),
        }
    }

    /// The configuration (a copy).
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    // ---- streams ---------------------------------------------------------------------------

    /// Connects `stream` with full pools; its receiver resumes after `position`, so reports at or
    /// below it are stale. Works for a new stream and for a disconnected one.
    pub fn connect_stream(
        &mut self,
        now: Instant,
        stream: StreamId,
        position: LogPosition,
    ) -> Result<(), FlowError> {
        let epoch = self.epochs.wrapping_add(1);
        match self.streams.get_mut(&stream) {
            Some(s) if s.connected => return Err(FlowError::AlreadyConnected(stream)),
            Some(s) => s.reconnect(position, epoch),
            None => {
                if self.streams.len() >= self.config.max_streams {
                    return Err(FlowError::TooManyStreams(self.config.max_streams));
                }
                let limits = [self.config.regular_tokens, self.config.elastic_tokens];
                self.streams
                    .insert(stream, Stream::new(limits, position, epoch));
            }
        }
        self.epochs = epoch;
        self.clock.observe(now);
        // A new replicating stream can complete a quorum.
        self.serve(None);
        Ok(())
    }

    /// Disconnects `stream`: every token it tracked comes back, and requests waiting on it are
    /// served again without it. Disconnecting a disconnected stream does nothing.
    pub fn disconnect_stream(&mut self, now: Instant, stream: StreamId) -> Result<(), FlowError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(FlowError::UnknownStream(stream))?;
        self.clock.observe(now);
        if !s.connected {
            return Ok(());
        }
        s.connected = false;
        let refund = s.reset();
        self.count_refund(refund, true);
        self.serve(Some(stream));
        Ok(())
    }

    /// Removes `stream` altogether, returning its tokens as a disconnect does.
    pub fn remove_stream(&mut self, now: Instant, stream: StreamId) -> Result<(), FlowError> {
        let mut s = self
            .streams
            .remove(&stream)
            .ok_or(FlowError::UnknownStream(stream))?;
        self.clock.observe(now);
        let refund = s.reset();
        self.count_refund(refund, true);
        self.serve(Some(stream));
        Ok(())
    }

    // ---- admission -------------------------------------------------------------------------

    /// Asks to send `bytes` of `class` work to `targets`. The outcome comes out of
    /// [`poll_output`](Self::poll_output), at once: [`Output::Admitted`], [`Output::Queued`] or
    /// [`Output::Rejected`] for `id`.
    ///
    /// Refused with [`FlowError::Undrained`] while earlier outputs are undrained, and with a
    /// usage error for a malformed request; either way nothing changes. A request turned away at
    /// a configured limit is not an error: it is counted, and its outcome is
    /// [`Output::Rejected`].
    ///
    /// Control work is admitted at once and never touches a pool. Regular work is admitted when
    /// a quorum of its replicating targets, including every replicating must-have, has regular
    /// tokens; elastic work when every replicating target has elastic tokens. Within a class,
    /// a request never overtakes an earlier waiter that shares one of its streams.
    ///
    /// Admission deducts at once, from every replicating target that has tokens, and only from
    /// pools that have tokens: so after any single admission a pool is at most that request's
    /// bytes in debt, and no later request of its class gets in until returns lift it above
    /// zero. Over-admission per stream is bounded by one request.
    pub fn admit(
        &mut self,
        now: Instant,
        id: RequestId,
        class: Class,
        bytes: u64,
        targets: &Targets,
    ) -> Result<(), FlowError> {
        if !self.outputs.is_empty() {
            return Err(FlowError::Undrained);
        }
        let Some(pool) = class.pool() else {
            self.clock.observe(now);
            self.control_requests += 1;
            let grant = Grant {
                class,
                bytes,
                charged: Vec::new(),
                deferred: Vec::new(),
                waited: Duration::ZERO,
            };
            self.outputs.push_back(Output::Admitted { id, grant });
            return Ok(());
        };
        self.validate(pool, class, bytes, targets)?;
        if self.held.contains_key(&id) || self.queue.contains(id) {
            return Err(FlowError::DuplicateRequest(id.0));
        }
        let now = self.clock.observe(now);
        if self.held.len() + self.queue.len() >= self.config.max_in_flight {
            self.reject(id, pool, Rejection::TooManyInFlight);
            return Ok(());
        }
        if !self.queue.behind_earlier(pool, targets) {
            if let Some(grant) = self.try_grant(id, pool, class, bytes, targets, Duration::ZERO) {
                self.outputs.push_back(Output::Admitted { id, grant });
                return Ok(());
            }
        }
        if self.queue.len() >= self.config.max_waiting {
            self.reject(id, pool, Rejection::QueueFull);
            return Ok(());
        }
        if self.queue.bytes().saturating_add(bytes) > self.config.max_waiting_bytes {
            self.reject(id, pool, Rejection::QueueBytesFull);
            return Ok(());
        }
        let deadline = now + self.config.max_wait;
        self.queue.push(Waiter {
            id,
            pool,
            bytes,
            targets: targets.clone(),
            since: now,
            deadline,
        });
        self.outputs.push_back(Output::Queued { id, deadline });
        Ok(())
    }

    /// Gives up on a waiting request. It produces no more output.
    pub fn cancel(&mut self, now: Instant, id: RequestId) -> Result<(), FlowError> {
        let waiter = self
            .queue
            .remove(id)
            .ok_or(FlowError::UnknownRequest(id.0))?;
        self.clock.observe(now);
        self.counter(waiter.pool).requests_errored += 1;
        // Its place in line may have held others back.
        self.serve(None);
        Ok(())
    }

    /// The admitted request `id` was appended to the log at `position`: its tokens are now
    /// tracked there until the receivers report that position admitted.
    pub fn bind(
        &mut self,
        now: Instant,
        id: RequestId,
        position: LogPosition,
    ) -> Result<(), FlowError> {
        let refund = self.settle(id, |s, pool, bytes| s.bind(pool, bytes, position))?;
        self.clock.observe(now);
        self.count_refund(refund, false);
        self.serve(None);
        Ok(())
    }

    /// The admitted request `id` will never be sent: its tokens come back.
    pub fn release(&mut self, now: Instant, id: RequestId) -> Result<(), FlowError> {
        let refund = self.settle(id, |s, pool, bytes| s.unhold(pool, bytes))?;
        self.clock.observe(now);
        self.count_refund(refund, true);
        self.serve(None);
        Ok(())
    }

    /// Take the held request `id` off the books, applying `settle` to each stream it charged
    /// that is still on the connection it charged; returns what came back.
    fn settle(
        &mut self,
        id: RequestId,
        mut settle: impl FnMut(&mut Stream, usize, u64) -> Refund,
    ) -> Result<Refund, FlowError> {
        let held = self
            .held
            .remove(&id)
            .ok_or(FlowError::UnknownRequest(id.0))?;
        let mut refund = Refund::default();
        for (slot, epoch) in held.charges {
            if let Some(s) = self.streams.at_mut(slot) {
                if s.connected && s.epoch == epoch {
                    let r = settle(s, held.pool, held.bytes);
                    refund.unblocked |= r.unblocked;
                    refund.bytes[held.pool] += r.bytes[held.pool];
                }
            }
        }
        Ok(refund)
    }

    /// Deducts `bytes` for the entry at `position` on one stream, outside admission: the entries
    /// a [`Grant`] deferred, or any other send the caller paces itself. Deducts only when the
    /// class's pool has tokens, so the one-request debt bound holds here too.
    ///
    /// The answer is returned rather than put out through [`poll_output`](Self::poll_output):
    /// a deduction never waits and never admits anyone, so it is complete when the call returns
    /// and nothing follows from it.
    pub fn deduct(
        &mut self,
        now: Instant,
        stream: StreamId,
        class: Class,
        position: LogPosition,
        bytes: u64,
    ) -> Result<Deduction, FlowError> {
        let pool = class.pool().ok_or(FlowError::ControlClass)?;
        self.validate_bytes(pool, class, bytes)?;
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(FlowError::UnknownStream(stream))?;
        if !s.connected {
            return Err(FlowError::NotConnected(stream));
        }
        self.clock.observe(now);
        if !s.has_tokens(pool) {
            return Ok(Deduction::NoTokens);
        }
        if !s.deduct(pool, bytes, position) {
            return Ok(Deduction::AlreadyAdmitted);
        }
        self.counter(pool).tokens_deducted += bytes;
        Ok(Deduction::Deducted)
    }

    // ---- returns ---------------------------------------------------------------------------

    /// The receiver behind `stream` reports every `class` entry up to `up_to` admitted. The
    /// report is absolute: repeating it, or receiving an older one late, changes nothing.
    /// Reports for unknown or disconnected streams are ignored (they hold no tokens).
    ///
    /// Returns the bytes that came back, a fact complete when the call returns; waiting requests
    /// those bytes admit come out of [`poll_output`](Self::poll_output).
    pub fn handle_admitted(
        &mut self,
        now: Instant,
        stream: StreamId,
        class: Class,
        up_to: LogPosition,
    ) -> Result<u64, FlowError> {
        let pool = class.pool().ok_or(FlowError::ControlClass)?;
        self.clock.observe(now);
        let refund = match self.streams.get_mut(&stream) {
            Some(s) if s.connected => s.admit_up_to(pool, up_to),
            _ => return Ok(0),
        };
        self.count_refund(refund, false);
        if refund.unblocked {
            self.serve(None);
        }
        Ok(refund.bytes[pool])
    }

    // ---- time and output -------------------------------------------------------------------

    /// Rejects every waiter whose deadline has passed; each comes out of
    /// [`poll_output`](Self::poll_output) as [`Output::Rejected`] with [`Rejection::TimedOut`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        let expired = self.queue.take_expired(now);
        if expired.is_empty() {
            return;
        }
        for w in expired {
            self.counter(w.pool).requests_errored += 1;
            self.outputs.push_back(Output::Rejected {
                id: w.id,
                reason: Rejection::TimedOut,
            });
        }
        self.serve(None);
    }

    /// The next output, in the order produced. Drain until `None` after every call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: the earliest
    /// deadline of a waiting request, or `None` when nothing waits. Read after draining.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.earliest_deadline()
    }

    // ---- internals -------------------------------------------------------------------------

    fn counter(&mut self, pool: usize) -> &mut ClassMetrics {
        let [regular, elastic] = &mut self.counters;
        if pool == REGULAR {
            regular
        } else {
            elastic
        }
    }

    fn reject(&mut self, id: RequestId, pool: usize, reason: Rejection) {
        self.counter(pool).requests_errored += 1;
        self.outputs.push_back(Output::Rejected { id, reason });
    }

    fn validate_bytes(&self, pool: usize, class: Class, bytes: u64) -> Result<(), FlowError> {
        let limit = self.config.limit(pool);
        if bytes == 0 {
            Err(FlowError::ZeroBytes)
        } else if bytes > limit {
            Err(FlowError::TooLarge {
                class,
                bytes,
                limit,
            })
        } else {
            Ok(())
        }
    }

    fn validate(
        &self,
        pool: usize,
        class: Class,
        bytes: u64,
        targets: &Targets,
    ) -> Result<(), FlowError> {
        self.validate_bytes(pool, class, bytes)?;
        let replicas = targets.replicas();
        if replicas.is_empty() {
            return Err(FlowError::NoTargets);
        }
        if replicas.len() > self.config.max_targets {
            return Err(FlowError::TooManyTargets {
                count: replicas.len(),
                limit: self.config.max_targets,
            });
        }
        for (i, t) in replicas.iter().enumerate() {
            if replicas.iter().skip(i + 1).any(|u| u.stream == t.stream) {
                return Err(FlowError::DuplicateTarget(t.stream));
            }
        }
        let quorum = targets.quorum();
        if quorum == 0 || quorum > replicas.len() {
            return Err(FlowError::InvalidQuorum {
                quorum,
                replicas: replicas.len(),
            });
        }
        Ok(())
    }

    /// Admits the request if its class's rule allows it now: deducts, records the held tokens
    /// and counts the admission.
    fn try_grant(
        &mut self,
        id: RequestId,
        pool: usize,
        class: Class,
        bytes: u64,
        targets: &Targets,
        waited: Duration,
    ) -> Option<Grant> {
        self.replicating.clear();
        let mut ready = 0usize;
        for (i, t) in targets.replicas().iter().enumerate() {
            let Some(slot) = self.streams.slot_of(&t.stream) else {
                continue; // unknown: paces nothing
            };
            let Some(s) = self.streams.at(slot).filter(|s| s.connected) else {
                continue; // not replicating: paces nothing
            };
            self.replicating.push((slot, i));
            if s.has_tokens(pool) {
                ready += 1;
            } else if pool == ELASTIC || t.must_have {
                return None;
            }
        }
        if pool == REGULAR && ready < targets.quorum() {
            return None;
        }
        let mut charged = Vec::with_capacity(ready);
        let mut charges = Vec::with_capacity(ready);
        let mut deferred = Vec::new();
        for &(slot, i) in &self.replicating {
            let (Some(s), Some(t)) = (self.streams.at_mut(slot), targets.replicas().get(i)) else {
                continue;
            };
            if s.has_tokens(pool) {
                s.hold(pool, bytes);
                charged.push(t.stream);
                charges.push((slot, s.epoch));
            } else {
                deferred.push(t.stream);
            }
        }
        self.held.insert(
            id,
            Held {
                pool,
                bytes,
                charges,
            },
        );
        let m = self.counter(pool);
        m.requests_admitted += 1;
        m.tokens_deducted += bytes * charged.len() as u64;
        m.wait_duration_ns.record_duration(waited);
        Some(Grant {
            class,
            bytes,
            charged,
            deferred,
            waited,
        })
    }

    /// Admits every waiter that can go now, regular class first, each class in order: a waiter
    /// that cannot go holds back later waiters of its class on the streams it targets.
    /// `bypass` names a stream that just left, to count waiters it was holding back.
    fn serve(&mut self, bypass: Option<StreamId>) {
        if self.queue.len() == 0 {
            return;
        }
        for class in Class::TOKEN_CLASSES {
            let Some(pool) = class.pool() else { continue };
            let waiting = self.queue.take_class(pool);
            let mut kept = VecDeque::with_capacity(waiting.len());
            let mut blocked = BTreeSet::new();
            for w in waiting {
                let held_back = w
                    .targets
                    .replicas()
                    .iter()
                    .any(|t| blocked.contains(&t.stream));
                let waited = self.clock.now().duration_since(w.since);
                let grant = if held_back {
                    None
                } else {
                    self.try_grant(w.id, pool, class, w.bytes, &w.targets, waited)
                };
                match grant {
                    Some(grant) => {
                        self.queue.forget(&w);
                        if bypass.is_some_and(|s| w.targets.contains(s)) {
                            self.counter(pool).requests_bypassed += 1;
                        }
                        self.outputs.push_back(Output::Admitted { id: w.id, grant });
                    }
                    None => {
                        blocked.extend(w.targets.replicas().iter().map(|t| t.stream));
                        kept.push_back(w);
                    }
                }
            }
            self.queue.restore(pool, kept);
        }
    }

    /// Counts returned tokens; `unaccounted` when no receiver report vouched for them.
    fn count_refund(&mut self, refund: Refund, unaccounted: bool) {
        for pool in [REGULAR, ELASTIC] {
            let bytes = refund.bytes.get(pool).copied().unwrap_or(0);
            let m = self.counter(pool);
            m.tokens_returned += bytes;
            if unaccounted {
                m.tokens_unaccounted += bytes;
            }
        }
    }
}
