//! Checkpoints: the spans ahead of the frontier, so that a restart does not lose their progress.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{Frontier, FrontierError, Span, Timestamp};

/// The spans ahead of the frontier, grouped by timestamp: restoring it forwards each span to its
/// own timestamp.
///
/// Groups come in descending timestamp order, spans in key order within a group, and spans of one
/// group never touch or overlap (they are merged).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Checkpoint<T = Timestamp> {
    /// One group per timestamp.
    pub groups: Vec<CheckpointGroup<T>>,
    /// Spans ahead of the frontier that the byte budget left out.
    #[cfg_attr(feature = "serde", serde(default))]
    pub omitted_spans: usize,
}

/// Spans that all reached one timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CheckpointGroup<T = Timestamp> {
    /// The timestamp every span of the group reached.
    pub timestamp: T,
    /// Spans in key order.
    pub spans: Vec<Span>,
}

/// The older, single-timestamp checkpoint: every span ahead of the frontier, merged across
/// timestamps and restored at the lowest timestamp among them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LegacyCheckpoint<T = Timestamp> {
    /// The lowest timestamp of the keys in `spans`; `None` when there are no spans.
    pub timestamp: Option<T>,
    /// Spans in key order.
    pub spans: Vec<Span>,
    /// Spans ahead of the frontier that the byte budget left out.
    #[cfg_attr(feature = "serde", serde(default))]
    pub omitted_spans: usize,
}

impl<T> Checkpoint<T> {
    /// A checkpoint with no spans: persisting it clears an older one.
    pub fn empty() -> Checkpoint<T> {
        Checkpoint {
            groups: Vec::new(),
            omitted_spans: 0,
        }
    }

    /// Whether it holds no span.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.spans.is_empty())
    }

    /// The number of spans over all groups.
    pub fn span_count(&self) -> usize {
        self.groups.iter().map(|g| g.spans.len()).sum()
    }

    /// The key bytes of every span: what the budget counts.
    pub fn key_bytes(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.spans)
            .map(Span::key_bytes)
            .sum()
    }
}

impl<T> LegacyCheckpoint<T> {
    /// The key bytes of every span: what the budget counts.
    pub fn key_bytes(&self) -> usize {
        self.spans.iter().map(Span::key_bytes).sum()
    }
}

/// Appends `span` to key-ordered `spans`, merging it into the last one if they touch or overlap.
/// Returns whether it was merged.
fn push_merged(spans: &mut Vec<Span>, span: Span) -> bool {
    if let Some(last) = spans.last_mut() {
        if span.start() <= last.end() {
            if span.end() > last.end() {
                *last = Span::from_keys(last.start_key().clone(), span.end_key().clone());
            }
            return true;
        }
    }
    spans.push(span);
    false
}

impl<T: Ord + Clone> Frontier<T> {
    /// The spans ahead of the frontier, grouped per timestamp, cut to `max_bytes` of key bytes.
    ///
    /// The budget rule keeps the spans furthest ahead, since restoring them saves the most work:
    /// spans are taken in descending timestamp order, then ascending key order, and each is kept
    /// if its key bytes fit in what is left of the budget (a span too large is skipped and smaller
    /// ones after it may still fit). The same frontier and budget always give the same checkpoint.
    pub fn checkpoint(&self, max_bytes: usize) -> Checkpoint<T> {
        let Some(high_water) = self.lowest() else {
            return Checkpoint::empty();
        };
        let mut ahead: BTreeMap<T, Vec<Span>> = BTreeMap::new();
        for (span, ts) in self.entries().filter(|(_, ts)| ts > high_water) {
            push_merged(ahead.entry(ts).or_default(), span);
        }
        let mut budget = max_bytes;
        let mut omitted_spans = 0;
        let mut groups = Vec::new();
        for (ts, spans) in ahead.into_iter().rev() {
            let total = spans.len();
            let kept: Vec<Span> = spans
                .into_iter()
                .filter(|span| take(&mut budget, span.key_bytes()))
                .collect();
            omitted_spans += total - kept.len();
            if !kept.is_empty() {
                groups.push(CheckpointGroup {
                    timestamp: ts,
                    spans: kept,
                });
            }
        }
        Checkpoint {
            groups,
            omitted_spans,
        }
    }

    /// The spans ahead of the frontier merged into one list at a single timestamp (the older
    /// format), cut to `max_bytes` of key bytes: spans are taken in key order and each is kept if
    /// it fits in what is left. The timestamp is the lowest of the keys kept.
    pub fn legacy_checkpoint(&self, max_bytes: usize) -> LegacyCheckpoint<T> {
        let mut runs: Vec<Span> = Vec::new();
        let mut lows: Vec<T> = Vec::new();
        if let Some(high_water) = self.lowest() {
            for (span, ts) in self.entries().filter(|(_, ts)| ts > high_water) {
                if push_merged(&mut runs, span) {
                    if let Some(low) = lows.last_mut() {
                        if ts < *low {
                            *low = ts;
                        }
                    }
                } else {
                    lows.push(ts);
                }
            }
        }
        let mut budget = max_bytes;
        let mut timestamp: Option<T> = None;
        let mut spans = Vec::new();
        let total = runs.len();
        for (span, low) in runs.into_iter().zip(lows) {
            if take(&mut budget, span.key_bytes()) {
                timestamp = Some(match timestamp {
                    Some(t) => t.min(low),
                    None => low,
                });
                spans.push(span);
            }
        }
        LegacyCheckpoint {
            timestamp,
            omitted_spans: total - spans.len(),
            spans,
        }
    }

    /// Forwards every span of `checkpoint` to its group's timestamp; returns whether the frontier
    /// advanced. Spans not tracked here are ignored.
    ///
    /// Refused, changing nothing, if the frontier could exceed its entry limit (counting two new
    /// entries per span, the most one forward can add).
    pub fn restore(&mut self, checkpoint: &Checkpoint<T>) -> Result<bool, FrontierError> {
        self.check_room(checkpoint.span_count().saturating_mul(2))?;
        let before = self.frontier();
        for group in &checkpoint.groups {
            for span in &group.spans {
                self.forward(span, group.timestamp.clone())?;
            }
        }
        Ok(matches!((before, self.lowest()), (Some(b), Some(a)) if *a > b))
    }

    /// Forwards every span of a legacy checkpoint to its single timestamp, as
    /// [`restore`](Frontier::restore) does. A checkpoint without a timestamp restores nothing.
    pub fn restore_legacy(
        &mut self,
        checkpoint: &LegacyCheckpoint<T>,
    ) -> Result<bool, FrontierError> {
        let Some(ts) = &checkpoint.timestamp else {
            return Ok(false);
        };
        self.check_room(checkpoint.spans.len().saturating_mul(2))?;
        let before = self.frontier();
        for span in &checkpoint.spans {
            self.forward(span, ts.clone())?;
        }
        Ok(matches!((before, self.lowest()), (Some(b), Some(a)) if *a > b))
    }
}

/// Takes `cost` out of `budget` if it fits.
fn take(budget: &mut usize, cost: usize) -> bool {
    match budget.checked_sub(cost) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}
