//! The span frontier: the timestamp every tracked key has reached.

use alloc::collections::btree_map::{self, BTreeMap};
use alloc::vec::Vec;
use core::mem;
use core::ops::Bound::{Excluded, Included, Unbounded};

use super::key::Key;
use super::{FrontierError, Span};

/// Marks the end of a same-timestamp list and of the free list.
const NIL: u32 = u32::MAX;

/// Limits of a [`Frontier`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct FrontierConfig {
    /// The most entries (maximal runs of keys at one timestamp) the frontier holds. A call that
    /// could need more, counted before adjacent entries merge, is refused with
    /// [`FrontierError::TooManyEntries`]. Default 16,777,216; at most `u32::MAX - 1`.
    pub max_entries: usize,
}

impl FrontierConfig {
    /// This configuration with [`max_entries`](Self::max_entries) set.
    pub fn with_max_entries(mut self, max_entries: usize) -> FrontierConfig {
        self.max_entries = max_entries;
        self
    }
}

impl Default for FrontierConfig {
    fn default() -> FrontierConfig {
        FrontierConfig {
            max_entries: 1 << 24,
        }
    }
}

/// One entry: a span and its timestamp, plus its links in the list of entries that share that
/// timestamp. Freed slots are chained through `next`.
struct Slot<T> {
    start: Key,
    end: Key,
    ts: T,
    prev: u32,
    next: u32,
}

/// A set of tracked key spans, each at a timestamp that only moves up, and their minimum: the
/// frontier.
///
/// Entries partition the tracked keys into maximal runs at one timestamp (two adjacent entries never
/// share a timestamp). They live in a slab; a B-tree keyed by start key orders them, and a B-tree
/// keyed by timestamp holds, per distinct timestamp, a doubly linked list of the entries at it. So
/// [`forward`](Frontier::forward) costs `O(log n + log d)` per entry it touches (`d` distinct
/// timestamps), and the frontier and the span that holds it are read in `O(1)`.
///
/// `T` is any totally ordered timestamp; [`Timestamp`](super::Timestamp) is the HLC one.
pub struct Frontier<T> {
    by_start: BTreeMap<Key, u32>,
    by_ts: BTreeMap<T, u32>,
    slots: Vec<Slot<T>>,
    free: u32,
    /// The slot at the head of the lowest timestamp's list, refreshed after every change.
    min: u32,
    max_entries: usize,
}

impl<T: Ord + Clone> Default for Frontier<T> {
    fn default() -> Frontier<T> {
        Frontier::new(FrontierConfig::default())
    }
}

impl<T: Ord + Clone> Frontier<T> {
    /// An empty frontier: it tracks nothing, and its frontier is `None`.
    pub fn new(config: FrontierConfig) -> Frontier<T> {
        Frontier {
            by_start: BTreeMap::new(),
            by_ts: BTreeMap::new(),
            slots: Vec::new(),
            free: NIL,
            min: NIL,
            max_entries: config.max_entries.min(NIL as usize - 1),
        }
    }

    /// A frontier tracking the union of `spans`, all at `ts`.
    ///
    /// The spans may overlap and come in any order; building this way packs the index densely.
    pub fn from_spans(
        config: FrontierConfig,
        spans: impl IntoIterator<Item = Span>,
        ts: T,
    ) -> Result<Frontier<T>, FrontierError> {
        let mut spans: Vec<Span> = spans.into_iter().collect();
        spans.sort_unstable();
        let mut runs: Vec<(Key, Key)> = Vec::new();
        for span in spans {
            match runs.last_mut() {
                Some((_, end)) if span.start_key() <= end => {
                    if span.end_key() > end {
                        *end = span.end_key().clone();
                    }
                }
                _ => runs.push((span.start_key().clone(), span.end_key().clone())),
            }
        }
        let mut frontier = Frontier::new(config);
        if runs.len() > frontier.max_entries {
            return Err(FrontierError::TooManyEntries {
                limit: frontier.max_entries,
            });
        }
        frontier.slots.reserve_exact(runs.len());
        for (start, end) in runs {
            frontier.slots.push(Slot {
                start,
                end,
                ts: ts.clone(),
                prev: NIL,
                next: NIL,
            });
        }
        // One list holds every entry, in key order.
        let n = frontier.slots.len() as u32;
        for (i, slot) in frontier.slots.iter_mut().enumerate() {
            let i = i as u32;
            slot.prev = if i == 0 { NIL } else { i - 1 };
            slot.next = if i + 1 == n { NIL } else { i + 1 };
        }
        frontier.by_start = frontier
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| (slot.start.clone(), i as u32))
            .collect();
        if n > 0 {
            frontier.by_ts.insert(ts, 0);
        }
        frontier.refresh_min();
        Ok(frontier)
    }

    /// The frontier: the lowest timestamp of any tracked key, or `None` when nothing is tracked.
    pub fn frontier(&self) -> Option<&T> {
        self.slots.get(self.min as usize).map(|slot| &slot.ts)
    }

    /// An entry at the frontier timestamp: a span that holds the frontier back.
    pub fn frontier_span(&self) -> Option<(Span, &T)> {
        self.slots.get(self.min as usize).map(entry)
    }

    /// The highest timestamp of any tracked key: the leading edge.
    pub fn newest(&self) -> Option<&T> {
        self.by_ts.last_key_value().map(|(ts, _)| ts)
    }

    /// The number of entries: maximal runs of tracked keys at one timestamp.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// Every entry in key order.
    pub fn entries(&self) -> impl Iterator<Item = (Span, &T)> + '_ {
        self.by_start
            .values()
            .map(move |&i| entry(&self.slots[i as usize]))
    }

    /// The entries that overlap `span`, in key order, clipped to it.
    pub fn entries_in<'a>(&'a self, span: &'a Span) -> impl Iterator<Item = (Span, &'a T)> + 'a {
        let first = self.first_overlapping(span.start(), span.end());
        let from = first.map(|i| self.slots[i as usize].start.as_slice());
        from.into_iter()
            .flat_map(move |from| {
                self.by_start
                    .range::<[u8], _>((Included(from), Excluded(span.end())))
            })
            .filter_map(move |(_, &i)| {
                let slot = &self.slots[i as usize];
                let start = slot.start.clone().max(span.start_key().clone());
                let end = slot.end.clone().min(span.end_key().clone());
                (start < end).then(|| (Span::from_keys(start, end), &slot.ts))
            })
    }

    /// The timestamp of `key`, if it is tracked.
    pub fn get(&self, key: &[u8]) -> Option<&T> {
        let (_, &i) = self
            .by_start
            .range::<[u8], _>((Unbounded, Included(key)))
            .next_back()?;
        let slot = &self.slots[i as usize];
        (key < slot.end.as_slice()).then_some(&slot.ts)
    }

    /// Moves the timestamp of every tracked key in `span` up to `ts`; keys already at or above
    /// `ts`, and keys not tracked, are left alone. Returns whether the frontier advanced.
    pub fn forward(&mut self, span: &Span, ts: T) -> Result<bool, FrontierError> {
        let splits = self.splits_needed(span, &ts);
        self.check_room(splits)?;
        let before = self.frontier().cloned();
        self.forward_unchecked(span, &ts);
        self.refresh_min();
        Ok(matches!((before, self.frontier()), (Some(b), Some(a)) if *a > b))
    }

    /// Starts tracking `span` at `ts`: keys not yet tracked start at `ts`, tracked keys are
    /// forwarded to it (a timestamp is never lowered).
    pub fn add(&mut self, span: &Span, ts: T) -> Result<(), FrontierError> {
        let needed = self.gaps(span).len() + self.splits_needed(span, &ts);
        self.check_room(needed)?;
        for (start, end) in self.gaps(span) {
            let i = self.insert(start, end, ts.clone());
            let i = self.merge_left(i);
            self.merge_right(i);
        }
        self.forward_unchecked(span, &ts);
        self.refresh_min();
        Ok(())
    }

    pub(super) fn check_room(&self, new_entries: usize) -> Result<(), FrontierError> {
        if self.len().saturating_add(new_entries) > self.max_entries {
            return Err(FrontierError::TooManyEntries {
                limit: self.max_entries,
            });
        }
        Ok(())
    }

    /// How many entries forwarding `span` to `ts` splits: one at each end of the span that falls
    /// strictly inside an entry below `ts`.
    fn splits_needed(&self, span: &Span, ts: &T) -> usize {
        let cut = |at: &[u8]| {
            self.by_start
                .range::<[u8], _>((Unbounded, Excluded(at)))
                .next_back()
                .is_some_and(|(_, &i)| {
                    let slot = &self.slots[i as usize];
                    at < slot.end.as_slice() && slot.ts < *ts
                })
        };
        usize::from(cut(span.start())) + usize::from(cut(span.end()))
    }

    /// The untracked runs of keys inside `span`.
    fn gaps(&self, span: &Span) -> Vec<(Key, Key)> {
        let mut gaps = Vec::new();
        let mut cursor = span.start_key().clone();
        while let Some(i) = self.first_overlapping(cursor.as_slice(), span.end()) {
            let slot = &self.slots[i as usize];
            if slot.start > cursor {
                gaps.push((cursor, slot.start.clone()));
            }
            cursor = slot.end.clone();
            if cursor >= *span.end_key() {
                return gaps;
            }
        }
        gaps.push((cursor, span.end_key().clone()));
        gaps
    }

    fn forward_unchecked(&mut self, span: &Span, ts: &T) {
        let end = span.end();
        let mut cursor = span.start_key().clone();
        while let Some(mut i) = self.first_overlapping(cursor.as_slice(), end) {
            if self.slots[i as usize].ts < *ts {
                if self.slots[i as usize].start < cursor {
                    i = self.split(i, cursor);
                }
                if self.slots[i as usize].end.as_slice() > end {
                    self.split(i, span.end_key().clone());
                }
                self.set_ts(i, ts.clone());
                i = self.merge_left(i);
                self.merge_right(i);
            }
            let slot_end = &self.slots[i as usize].end;
            if slot_end.as_slice() >= end {
                return;
            }
            cursor = slot_end.clone();
        }
    }

    /// The entry holding `from`, or else the first entry that starts after it and before `to`.
    fn first_overlapping(&self, from: &[u8], to: &[u8]) -> Option<u32> {
        if let Some((_, &i)) = self
            .by_start
            .range::<[u8], _>((Unbounded, Included(from)))
            .next_back()
        {
            if from < self.slots[i as usize].end.as_slice() {
                return Some(i);
            }
        }
        self.by_start
            .range::<[u8], _>((Excluded(from), Excluded(to)))
            .next()
            .map(|(_, &i)| i)
    }

    /// Cuts entry `i` at `at`, which lies strictly inside it; returns the new right-hand entry.
    fn split(&mut self, i: u32, at: Key) -> u32 {
        let slot = &mut self.slots[i as usize];
        debug_assert!(slot.start < at && at < slot.end);
        let end = mem::replace(&mut slot.end, at.clone());
        let ts = slot.ts.clone();
        self.insert(at, end, ts)
    }

    /// Folds entry `i` into its left neighbour if they touch and share a timestamp; returns the
    /// entry that now holds `i`'s keys.
    fn merge_left(&mut self, i: u32) -> u32 {
        let slot = &self.slots[i as usize];
        let left = self
            .by_start
            .range::<[u8], _>((Unbounded, Excluded(slot.start.as_slice())))
            .next_back()
            .map(|(_, &l)| l);
        match left {
            Some(l) if self.touch_and_match(l, i) => {
                let end = mem::replace(&mut self.slots[i as usize].end, Key::EMPTY);
                self.slots[l as usize].end = end;
                self.remove(i);
                l
            }
            _ => i,
        }
    }

    /// Folds the right neighbour of entry `i` into it if they touch and share a timestamp.
    fn merge_right(&mut self, i: u32) {
        let right = self
            .by_start
            .get(self.slots[i as usize].end.as_slice())
            .copied();
        if let Some(r) = right {
            if self.touch_and_match(i, r) {
                let end = mem::replace(&mut self.slots[r as usize].end, Key::EMPTY);
                self.slots[i as usize].end = end;
                self.remove(r);
            }
        }
    }

    fn touch_and_match(&self, left: u32, right: u32) -> bool {
        let (l, r) = (&self.slots[left as usize], &self.slots[right as usize]);
        l.end == r.start && l.ts == r.ts
    }

    /// Adds an entry to the slab and both indexes.
    fn insert(&mut self, start: Key, end: Key, ts: T) -> u32 {
        let slot = Slot {
            start: start.clone(),
            end,
            ts,
            prev: NIL,
            next: NIL,
        };
        let i = if self.free == NIL {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        } else {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            self.slots[i as usize] = slot;
            i
        };
        self.by_start.insert(start, i);
        self.link(i);
        i
    }

    /// Drops entry `i` from both indexes and frees its slot.
    fn remove(&mut self, i: u32) {
        self.unlink(i);
        let slot = &mut self.slots[i as usize];
        let start = mem::replace(&mut slot.start, Key::EMPTY);
        slot.end = Key::EMPTY;
        slot.next = self.free;
        self.free = i;
        self.by_start.remove(&start);
    }

    fn set_ts(&mut self, i: u32, ts: T) {
        self.unlink(i);
        self.slots[i as usize].ts = ts;
        self.link(i);
    }

    /// Pushes entry `i` onto the front of the list for its timestamp.
    fn link(&mut self, i: u32) {
        let ts = self.slots[i as usize].ts.clone();
        match self.by_ts.entry(ts) {
            btree_map::Entry::Vacant(v) => {
                v.insert(i);
                let slot = &mut self.slots[i as usize];
                slot.prev = NIL;
                slot.next = NIL;
            }
            btree_map::Entry::Occupied(mut o) => {
                let head = mem::replace(o.get_mut(), i);
                self.slots[head as usize].prev = i;
                let slot = &mut self.slots[i as usize];
                slot.prev = NIL;
                slot.next = head;
            }
        }
    }

    /// Takes entry `i` out of the list for its timestamp.
    fn unlink(&mut self, i: u32) {
        let Slot { prev, next, .. } = self.slots[i as usize];
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else if next != NIL {
            if let Some(head) = self.by_ts.get_mut(&self.slots[i as usize].ts) {
                *head = next;
            }
        } else {
            self.by_ts.remove(&self.slots[i as usize].ts);
        }
    }

    fn refresh_min(&mut self) {
        self.min = self.by_ts.first_key_value().map_or(NIL, |(_, &i)| i);
    }
}

fn entry<T>(slot: &Slot<T>) -> (Span, &T) {
    (
        Span::from_keys(slot.start.clone(), slot.end.clone()),
        &slot.ts,
    )
}

impl<T: core::fmt::Debug> core::fmt::Debug for Frontier<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.by_start.values().map(|&i| {
                let slot = &self.slots[i as usize];
                (
                    Span::from_keys(slot.start.clone(), slot.end.clone()),
                    &slot.ts,
                )
            }))
            .finish()
    }
}
