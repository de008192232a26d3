//! The bounded queue of requests waiting for tokens: FIFO per class, with per-stream books so a
//! newcomer can tell at once whether an earlier waiter shares one of its streams.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

use super::types::{RequestId, StreamId, Targets};
use crate::time::Instant;

/// A request waiting for tokens.
#[derive(Clone, Debug)]
pub(crate) struct Waiter {
    pub id: RequestId,
    /// The pool index of its class.
    pub pool: usize,
    pub bytes: u64,
    pub targets: Targets,
    pub since: Instant,
    pub deadline: Instant,
}

/// Waiting requests, per class, in arrival order.
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitQueue {
    classes: [VecDeque<Waiter>; 2],
    bytes: u64,
    ids: BTreeSet<RequestId>,
    /// How many waiters of a class target a stream.
    on_stream: BTreeMap<(usize, StreamId), u32>,
}

impl WaitQueue {
    /// Requests waiting, all classes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Requests waiting in the class with pool index `pool`.
    pub fn len_of(&self, pool: usize) -> usize {
        self.classes.get(pool).map_or(0, VecDeque::len)
    }

    /// Bytes asked for by all waiting requests.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn contains(&self, id: RequestId) -> bool {
        self.ids.contains(&id)
    }

    /// Whether an earlier waiter of the same class targets one of `targets`' streams, in which
    /// case a newcomer must queue behind it.
    pub fn behind_earlier(&self, pool: usize, targets: &Targets) -> bool {
        !self.on_stream.is_empty()
            && targets
                .replicas()
                .iter()
                .any(|t| self.on_stream.contains_key(&(pool, t.stream)))
    }

    /// Appends a waiter at the back of its class.
    pub fn push(&mut self, waiter: Waiter) {
        self.note(&waiter);
        if let Some(class) = self.classes.get_mut(waiter.pool) {
            class.push_back(waiter);
        }
    }

    /// Takes the waiters of one class out, in order, to be served; their books stay until each
    /// is either `forget`-ten or handed back with `restore`.
    pub fn take_class(&mut self, pool: usize) -> VecDeque<Waiter> {
        self.classes
            .get_mut(pool)
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// Puts back the waiters of a class that are still waiting, in order.
    pub fn restore(&mut self, pool: usize, waiters: VecDeque<Waiter>) {
        if let Some(class) = self.classes.get_mut(pool) {
            debug_assert!(class.is_empty(), "restore after take_class");
            *class = waiters;
        }
    }

    /// Drops the books of a waiter that left the queue.
    pub fn forget(&mut self, waiter: &Waiter) {
        self.ids.remove(&waiter.id);
        self.bytes -= waiter.bytes;
        for t in waiter.targets.replicas() {
            let key = (waiter.pool, t.stream);
            if let Some(count) = self.on_stream.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.on_stream.remove(&key);
                }
            }
        }
    }

    /// Removes the waiter `id`, wherever it is.
    pub fn remove(&mut self, id: RequestId) -> Option<Waiter> {
        if !self.ids.contains(&id) {
            return None;
        }
        let (class, at) = self.classes.iter().enumerate().find_map(|(class, queue)| {
            queue.iter().position(|w| w.id == id).map(|at| (class, at))
        })?;
        let waiter = self.classes.get_mut(class)?.remove(at)?;
        self.forget(&waiter);
        Some(waiter)
    }

    /// Removes and returns every waiter whose deadline is at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> VecDeque<Waiter> {
        let mut expired = VecDeque::new();
        for pool in 0..self.classes.len() {
            let waiting = self.take_class(pool);
            let (gone, kept): (VecDeque<Waiter>, VecDeque<Waiter>) =
                waiting.into_iter().partition(|w| w.deadline <= now);
            for w in &gone {
                self.forget(w);
            }
            self.restore(pool, kept);
            expired.extend(gone);
        }
        expired
    }

    /// The earliest deadline of any waiter. Deadlines are arrival time plus a constant and
    /// arrivals are in time order, so the front of each class holds its earliest.
    pub fn earliest_deadline(&self) -> Option<Instant> {
        self.classes
            .iter()
            .filter_map(|class| class.front().map(|w| w.deadline))
            .min()
    }

    /// Whether the books agree with the waiters.
    pub fn consistent(&self) -> bool {
        let waiters = || self.classes.iter().flatten();
        let mut on_stream = BTreeMap::new();
        for w in waiters() {
            for t in w.targets.replicas() {
                *on_stream.entry((w.pool, t.stream)).or_insert(0u32) += 1;
            }
        }
        waiters().map(|w| w.bytes).sum::<u64>() == self.bytes
            && waiters().count() == self.ids.len()
            && waiters().all(|w| self.ids.contains(&w.id))
            && on_stream == self.on_stream
    }

    fn note(&mut self, waiter: &Waiter) {
        self.ids.insert(waiter.id);
        self.bytes += waiter.bytes;
        for t in waiter.targets.replicas() {
            *self.on_stream.entry((waiter.pool, t.stream)).or_insert(0) += 1;
        }
    }
}
