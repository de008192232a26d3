//! The span frontier: the timestamp every tracked key has reached.

use alloc::collections::btree_map::{self, BTreeMap};
use alloc::vec::Vec;
use core::mem;
use core::ops::Bound::{Excluded, Included, Unbounded};

use super::key::Key;
use super::{FrontierError, Span, Timestamp};

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
#[derive(Clone)]
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
/// keyed by timestamp holds, per distinct timestamp, a doubly linked list of the entries at it.
/// [`forward`](Frontier::forward) of a span that is exactly one entry (the changefeed case) costs
/// one descent of each B-tree; a wider span costs `O(log n)` to find its ends plus `O(log d)` per
/// entry it moves (`d` distinct timestamps) and per entry that merges away. The frontier and the
/// span that holds it are read in `O(1)`. Keys of up to 14 bytes are stored inline, so with them
/// a forward allocates nothing beyond B-tree nodes and slab growth.
///
/// Memory per entry: a 56-byte slot (two 16-byte keys, inline up to 14 bytes, plus the timestamp
/// and list links for the HLC [`Timestamp`](super::Timestamp)) and a start-key B-tree slot.
///
/// `T` is any totally ordered timestamp; [`Timestamp`] (the HLC one) is the default.
///
/// Every reader returns owned values (a timestamp, a [`Span`], a pair of both), cloned out of the
/// frontier. The two that walk entries, [`entries`](Frontier::entries) and
/// [`entries_in`](Frontier::entries_in), return an iterator that borrows the frontier while it
/// yields owned pairs, so that walking a million entries does not first copy them all; collect it
/// for a list that outlives the borrow.
#[derive(Clone)]
pub struct Frontier<T = Timestamp> {
    by_start: BTreeMap<Key, u32>,
    by_ts: BTreeMap<T, u32>,
    slots: Vec<Slot<T>>,
    free: u32,
    /// The slot at the head of the lowest timestamp's list, refreshed after every change.
    min: u32,
    max_entries: usize,
    /// Reused between calls for the entries a merge absorbs.
    scratch: Vec<u32>,
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
            scratch: Vec::new(),
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
    pub fn frontier(&self) -> Option<T> {
        self.lowest().cloned()
    }

    /// An entry at the frontier timestamp: a span that holds the frontier back.
    pub fn frontier_span(&self) -> Option<(Span, T)> {
        self.slots.get(self.min as usize).map(entry)
    }

    /// The highest timestamp of any tracked key: the leading edge.
    pub fn newest(&self) -> Option<T> {
        self.by_ts.last_key_value().map(|(ts, _)| ts.clone())
    }

    /// The frontier, borrowed, for comparisons inside the crate.
    pub(super) fn lowest(&self) -> Option<&T> {
        self.slots.get(self.min as usize).map(|slot| &slot.ts)
    }

    /// The number of entries: maximal runs of tracked keys at one timestamp.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// Every entry in key order. The iterator borrows the frontier; the pairs are owned.
    pub fn entries(&self) -> impl Iterator<Item = (Span, T)> + '_ {
        self.by_start
            .values()
            .map(move |&i| entry(&self.slots[i as usize]))
    }

    /// The entries that overlap `span`, in key order, clipped to it. The iterator borrows the
    /// frontier and `span`; the pairs are owned.
    pub fn entries_in<'a>(&'a self, span: &'a Span) -> impl Iterator<Item = (Span, T)> + 'a {
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
                (start < end).then(|| (Span::from_keys(start, end), slot.ts.clone()))
            })
    }

    /// The timestamp of `key`, if it is tracked.
    pub fn get(&self, key: &[u8]) -> Option<T> {
        let (_, &i) = self
            .by_start
            .range::<[u8], _>((Unbounded, Included(key)))
            .next_back()?;
        let slot = &self.slots[i as usize];
        (key < slot.end.as_slice()).then(|| slot.ts.clone())
    }

    /// Moves the timestamp of every tracked key in `span` up to `ts`; keys already at or above
    /// `ts`, and keys not tracked, are left alone. Returns whether the frontier advanced.
    pub fn forward(&mut self, span: &Span, ts: T) -> Result<bool, FrontierError> {
        let before = self.frontier();
        match self.exact(span) {
            // The common case: the span is exactly one entry.
            Some((left, i, right)) => {
                if self.slots[i as usize].ts >= ts {
                    return Ok(false);
                }
                self.set_ts(i, ts);
                let survivor = match left {
                    Some(l) if touch_and_match(&self.slots, l, i) => {
                        self.absorb(l, i);
                        l
                    }
                    _ => i,
                };
                if let Some(r) = right.filter(|&r| touch_and_match(&self.slots, survivor, r)) {
                    self.absorb(survivor, r);
                }
            }
            None => {
                let cuts = self.cuts(span, &ts);
                self.check_room(cuts.iter().flatten().count())?;
                self.forward_range(span, &ts, cuts);
            }
        }
        self.refresh_min();
        Ok(matches!((before, self.lowest()), (Some(b), Some(a)) if *a > b))
    }

    /// Starts tracking `span` at `ts`: keys not yet tracked start at `ts`, tracked keys are
    /// forwarded to it (a timestamp is never lowered).
    pub fn add(&mut self, span: &Span, ts: T) -> Result<(), FrontierError> {
        let gaps = self.gaps(span);
        let cuts = self.cuts(span, &ts);
        self.check_room(gaps.len() + cuts.iter().flatten().count())?;
        for (start, end) in gaps {
            self.insert(start, end, ts.clone());
        }
        // New entries never straddle the span's ends, so the cuts found above still hold.
        self.forward_range(span, &ts, cuts);
        self.merge_around(span);
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

    /// If `span` is exactly one entry: that entry with its neighbours, found in one descent of the
    /// B-tree (the entry starting at the span's end, if any, comes first walking backwards).
    fn exact(&self, span: &Span) -> Option<(Option<u32>, u32, Option<u32>)> {
        let mut walk = self
            .by_start
            .range::<Key, _>((Unbounded, Included(span.end_key())))
            .rev();
        let (mut key, mut i) = walk.next()?;
        let mut right = None;
        if key == span.end_key() {
            right = Some(*i);
            (key, i) = walk.next()?;
        }
        let i = *i;
        let exact = key == span.start_key() && self.slots[i as usize].end == *span.end_key();
        exact.then(|| (walk.next().map(|(_, &l)| l), i, right))
    }

    /// Moves the keys of entry `right` into entry `left`, its touching left neighbour.
    fn absorb(&mut self, left: u32, right: u32) {
        let end = mem::replace(&mut self.slots[right as usize].end, Key::EMPTY);
        self.slots[left as usize].end = end;
        self.remove(right);
    }

    /// The entries that forwarding `span` to `ts` must cut in two: one at each end of the span
    /// that falls strictly inside an entry below `ts`.
    fn cuts(&self, span: &Span, ts: &T) -> [Option<u32>; 2] {
        let cut = |at: &[u8]| {
            self.by_start
                .range::<[u8], _>((Unbounded, Excluded(at)))
                .next_back()
                .map(|(_, &i)| i)
                .filter(|&i| {
                    let slot = &self.slots[i as usize];
                    at < slot.end.as_slice() && slot.ts < *ts
                })
        };
        [cut(span.start()), cut(span.end())]
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

    /// Forwards every entry inside `span` after cutting the entries found by [`Self::cuts`].
    ///
    /// The B-tree ordered by start key is walked once, without changes, while the moved entries
    /// are chained and spliced into their new timestamp's list in one step; merging follows.
    fn forward_range(&mut self, span: &Span, ts: &T, cuts: [Option<u32>; 2]) {
        let [at_start, at_end] = cuts;
        if let Some(i) = at_start {
            let right = self.split(i, span.start_key().clone());
            // One entry may straddle both ends: the end cut then falls in its right-hand piece.
            if at_end == Some(i) {
                self.split(right, span.end_key().clone());
            }
        }
        if let Some(i) = at_end.filter(|&i| Some(i) != at_start) {
            self.split(i, span.end_key().clone());
        }
        let (mut head, mut tail) = (NIL, NIL);
        let range = (Included(span.start()), Excluded(span.end()));
        for (_, &i) in self.by_start.range::<[u8], _>(range) {
            if self.slots[i as usize].ts >= *ts {
                continue;
            }
            unlink(&mut self.slots, &mut self.by_ts, i);
            let slot = &mut self.slots[i as usize];
            slot.ts = ts.clone();
            slot.prev = NIL;
            slot.next = head;
            if head == NIL {
                tail = i;
            } else {
                self.slots[head as usize].prev = i;
            }
            head = i;
        }
        if head == NIL {
            return;
        }
        match self.by_ts.entry(ts.clone()) {
            btree_map::Entry::Vacant(v) => {
                v.insert(head);
            }
            btree_map::Entry::Occupied(mut o) => {
                let old = mem::replace(o.get_mut(), head);
                self.slots[tail as usize].next = old;
                self.slots[old as usize].prev = tail;
            }
        }
        self.merge_around(span);
    }

    /// Merges every pair of touching entries with equal timestamps from the entry before `span`
    /// through the entry that starts at its end.
    fn merge_around(&mut self, span: &Span) {
        let from = self
            .by_start
            .range::<[u8], _>((Unbounded, Excluded(span.start())))
            .next_back()
            .map_or(span.start_key(), |(k, _)| k);
        let mut absorbed = mem::take(&mut self.scratch);
        let mut current = NIL;
        let range = (Included(from.as_slice()), Included(span.end()));
        for (_, &i) in self.by_start.range::<[u8], _>(range) {
            if current != NIL && touch_and_match(&self.slots, current, i) {
                let end = mem::replace(&mut self.slots[i as usize].end, Key::EMPTY);
                self.slots[current as usize].end = end;
                absorbed.push(i);
            } else {
                current = i;
            }
        }
        for i in absorbed.drain(..) {
            self.remove(i);
        }
        self.scratch = absorbed;
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
        unlink(&mut self.slots, &mut self.by_ts, i);
        let slot = &mut self.slots[i as usize];
        let start = mem::replace(&mut slot.start, Key::EMPTY);
        slot.end = Key::EMPTY;
        slot.next = self.free;
        self.free = i;
        self.by_start.remove(&start);
    }

    fn set_ts(&mut self, i: u32, ts: T) {
        unlink(&mut self.slots, &mut self.by_ts, i);
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

    fn refresh_min(&mut self) {
        self.min = self.by_ts.first_key_value().map_or(NIL, |(_, &i)| i);
    }
}

fn touch_and_match<T: Eq>(slots: &[Slot<T>], left: u32, right: u32) -> bool {
    let (l, r) = (&slots[left as usize], &slots[right as usize]);
    l.end == r.start && l.ts == r.ts
}

/// Takes entry `i` out of the list for its timestamp. A free function so that it can run while the
/// start-key index is borrowed.
fn unlink<T: Ord>(slots: &mut [Slot<T>], by_ts: &mut BTreeMap<T, u32>, i: u32) {
    let Slot { prev, next, .. } = slots[i as usize];
    if next != NIL {
        slots[next as usize].prev = prev;
    }
    if prev != NIL {
        slots[prev as usize].next = next;
    } else if next != NIL {
        if let Some(head) = by_ts.get_mut(&slots[i as usize].ts) {
            *head = next;
        }
    } else {
        by_ts.remove(&slots[i as usize].ts);
    }
}

fn entry<T: Clone>(slot: &Slot<T>) -> (Span, T) {
    (
        Span::from_keys(slot.start.clone(), slot.end.clone()),
        slot.ts.clone(),
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
