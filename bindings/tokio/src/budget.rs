//! The bytes the connections of one server buffer together, against
//! [`crate::ServeConfig::max_buffered_bytes`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// While the server is over its budget, a connection holding less than this still reads, and
/// at most up to it, so that small calls are answered.
pub(crate) const FLOOR: u64 = 64 << 10;

/// What the connections a [`crate::Router`] serves over TCP buffer, from
/// [`crate::Router::serve_metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeMetrics {
    /// Bytes received and held now, across connections: partial frames, unfinished packets
    /// and messages the application has not read.
    pub buffered_bytes: u64,
    /// The most `buffered_bytes` has been.
    pub peak_buffered_bytes: u64,
    /// Connections closed as soon as they were accepted because the server was over
    /// [`crate::ServeConfig::max_buffered_bytes`].
    pub connections_over_budget: u64,
}

/// The counters every listener of one router shares.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    used: AtomicU64,
    peak: AtomicU64,
    refused: AtomicU64,
    /// The connection allowed past the budget (see [`Account::may_read`]); 0 for none.
    overdraft: AtomicU64,
    next_id: AtomicU64,
    /// Woken when the total falls under a budget or the overdraft is given back.
    changed: Notify,
}

impl Gauge {
    pub fn metrics(&self) -> ServeMetrics {
        ServeMetrics {
            buffered_bytes: self.used.load(Ordering::Relaxed),
            peak_buffered_bytes: self.peak.load(Ordering::Relaxed),
            connections_over_budget: self.refused.load(Ordering::Relaxed),
        }
    }

    /// False, counting the refusal, while the total is over `limit`.
    pub fn admits(&self, limit: u64) -> bool {
        if self.used.load(Ordering::Relaxed) < limit {
            return true;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// How much one connection may read, as far as the server's budget goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowance {
    /// Under the budget, or the connection holds the overdraft.
    Any,
    /// Over the budget: this many bytes, to reach [`FLOOR`].
    UpTo(u64),
    /// Over the budget: nothing until it has room again.
    None,
}

/// One connection's share of the budget, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Account {
    gauge: Arc<Gauge>,
    limit: u64,
    id: u64,
    held: u64,
}

impl Account {
    pub fn new(gauge: Arc<Gauge>, limit: u64) -> Account {
        let id = gauge.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        Account {
            gauge,
            limit,
            id,
            held: 0,
        }
    }

    /// The connection holds `held` bytes now.
    pub fn set(&mut self, held: u64) {
        let gauge = &self.gauge;
        if held == self.held {
            return;
        }
        if held > self.held {
            let total =
                gauge.used.fetch_add(held - self.held, Ordering::Relaxed) + held - self.held;
            gauge.peak.fetch_max(total, Ordering::Relaxed);
        } else {
            let before = gauge.used.fetch_sub(self.held - held, Ordering::Relaxed);
            if before >= self.limit && before - (self.held - held) < self.limit {
                gauge.changed.notify_waiters();
            }
        }
        self.held = held;
    }

    /// What the connection may read now. Over the budget, one connection at a time whose
    /// application waits for a message it holds in part (`completing`) reads on, so that
    /// the messages the budget's holders wait for finish one after another rather than none
    /// ever; the others read up to [`FLOOR`] at most.
    pub fn may_read(&self, completing: bool) -> Allowance {
        let gauge = &self.gauge;
        let holder = gauge.overdraft.load(Ordering::Relaxed) == self.id;
        if holder && !(completing && self.held > 0) {
            self.give_back();
        }
        if gauge.used.load(Ordering::Relaxed) < self.limit {
            return Allowance::Any;
        }
        if completing
            && self.held > 0
            && (holder
                || gauge
                    .overdraft
                    .compare_exchange(0, self.id, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok())
        {
            return Allowance::Any;
        }
        match FLOOR.checked_sub(self.held) {
            Some(room) if room > 0 => Allowance::UpTo(room),
            _ => Allowance::None,
        }
    }

    /// The server's counters, to wait on [`Gauge::changed`] (registered before
    /// [`Account::may_read`] is asked, so that no change between the two is missed).
    pub fn gauge(&self) -> Arc<Gauge> {
        self.gauge.clone()
    }

    fn give_back(&self) {
        if self
            .gauge
            .overdraft
            .compare_exchange(self.id, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.gauge.changed.notify_waiters();
        }
    }
}

impl Gauge {
    /// Resolves on the next change that may give a connection room: the total fell under a
    /// budget, or the overdraft was given back.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.set(0);
        self.give_back();
    }
}
