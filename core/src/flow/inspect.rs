//! Reading a controller's state: pools, queue, invariants and metrics.

use super::controller::FlowControl;
use super::error::InvariantViolation;
use super::metrics::Metrics;
use super::types::{Class, StreamId};

impl FlowControl {
    /// Tokens available on `stream` in `class`'s pool (negative in debt); `None` for an unknown
    /// stream or control traffic.
    pub fn available(&self, stream: StreamId, class: Class) -> Option<i64> {
        Some(self.streams.get(&stream)?.available(class.pool()?))
    }

    /// Tokens deducted from `stream`'s pool for `class` and not yet returned (held by admitted
    /// requests or tracked at log positions).
    pub fn tracked(&self, stream: StreamId, class: Class) -> Option<u64> {
        Some(self.streams.get(&stream)?.outstanding(class.pool()?))
    }

    /// Whether `stream` is connected; `None` if unknown.
    pub fn is_connected(&self, stream: StreamId) -> Option<bool> {
        self.streams.get(&stream).map(|s| s.connected)
    }

    /// Requests waiting for tokens.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Bytes waiting requests ask for.
    pub fn waiting_bytes(&self) -> u64 {
        self.queue.bytes()
    }

    /// Admitted requests not yet bound to a position or released.
    pub fn unbound(&self) -> usize {
        self.held.len()
    }

    /// Checks the accounting: for every stream and pool, available + tracked = limit; no pool is
    /// deeper in debt than its own class's requests can take it; the queue's books add up.
    ///
    /// The debt bounds: work of a class is admitted only while its pool is positive and asks
    /// for at most the pool size, so the regular pool never drops below `1 - regular_tokens`.
    /// Regular work also draws on the elastic pool without waiting on it, so the elastic pool's
    /// floor is lower by what regular work can hold: `2 - 2 * regular_tokens - elastic_tokens`.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let r = i128::from(self.config.regular_tokens);
        let e = i128::from(self.config.elastic_tokens);
        let floors = [1 - r, 2 - 2 * r - e];
        for (stream, s) in self.streams.iter() {
            for (pool, class) in Class::TOKEN_CLASSES.into_iter().enumerate() {
                let available = s.available(pool);
                if !s.conserves(pool) {
                    return Err(InvariantViolation::Conservation {
                        stream,
                        class,
                        available,
                        tracked: s.outstanding(pool),
                        limit: s.limit(pool),
                    });
                }
                if floors
                    .get(pool)
                    .is_some_and(|&floor| i128::from(available) < floor)
                {
                    return Err(InvariantViolation::Debt {
                        stream,
                        class,
                        available,
                    });
                }
            }
        }
        if !self.queue.consistent() || self.queue.bytes() > self.config.max_waiting_bytes {
            return Err(InvariantViolation::Queue);
        }
        Ok(())
    }

    /// A snapshot of the counters and gauges.
    pub fn metrics(&self) -> Metrics {
        let mut classes = self.counters.clone();
        for (pool, m) in classes.iter_mut().enumerate() {
            m.requests_waiting = self.queue.len_of(pool) as u64;
            for (_, s) in self.streams.iter().filter(|(_, s)| s.connected) {
                m.stream_count += 1;
                m.tokens_available += s.available(pool);
                if !s.has_tokens(pool) {
                    m.blocked_stream_count += 1;
                }
            }
        }
        let [regular, elastic] = classes;
        Metrics {
            regular,
            elastic,
            control_requests: self.control_requests,
            waiting_bytes: self.queue.bytes(),
        }
    }
}
