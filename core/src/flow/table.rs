//! Streams by id, in slots.
//!
//! Lookups by id go through a small open-addressing hash index (linear probing, a fixed
//! multiplicative hash, so the same calls always build the same table): every admission and
//! every report names streams, and an ordered map's pointer chasing was most of their cost with a
//! thousand streams. Requests keep the slots of the streams they charged for direct access.
//! Iteration follows slot order, which depends only on the sequence of calls.

use alloc::vec;
use alloc::vec::Vec;

use super::stream::Stream;
use super::types::StreamId;

/// The known streams.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamTable {
    /// Hash index: (id, slot), a power-of-two number of buckets, at most half full.
    buckets: Vec<Option<(StreamId, usize)>>,
    slots: Vec<Option<(StreamId, Stream)>>,
    free: Vec<usize>,
    len: usize,
}

/// Fibonacci hashing of both halves of the id.
fn hash(id: &StreamId) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    (id.tenant.wrapping_mul(K).rotate_left(32) ^ id.store).wrapping_mul(K)
}

impl StreamTable {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    fn home(&self, id: &StreamId) -> usize {
        let bits = self.buckets.len().trailing_zeros();
        if bits == 0 {
            return 0;
        }
        (hash(id) >> (64 - bits)) as usize
    }

    /// The bucket holding `id`, if any.
    fn find(&self, id: &StreamId) -> Option<usize> {
        let mask = self.mask();
        let mut i = self.home(id);
        for _ in 0..self.buckets.len() {
            match self.buckets.get(i)? {
                None => return None,
                Some((k, _)) if k == id => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
    }

    pub fn slot_of(&self, id: &StreamId) -> Option<usize> {
        let bucket = self.find(id)?;
        self.buckets.get(bucket)?.map(|(_, slot)| slot)
    }

    pub fn get(&self, id: &StreamId) -> Option<&Stream> {
        self.at(self.slot_of(id)?)
    }

    pub fn get_mut(&mut self, id: &StreamId) -> Option<&mut Stream> {
        self.at_mut(self.slot_of(id)?)
    }

    pub fn at(&self, slot: usize) -> Option<&Stream> {
        self.slots.get(slot)?.as_ref().map(|(_, s)| s)
    }

    pub fn at_mut(&mut self, slot: usize) -> Option<&mut Stream> {
        self.slots.get_mut(slot)?.as_mut().map(|(_, s)| s)
    }

    /// Adds a stream that is not in the table yet.
    pub fn insert(&mut self, id: StreamId, stream: Stream) {
        debug_assert!(self.find(&id).is_none(), "insert of a known stream");
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(place) = self.slots.get_mut(slot) {
                    *place = Some((id, stream));
                }
                slot
            }
            None => {
                self.slots.push(Some((id, stream)));
                self.slots.len() - 1
            }
        };
        self.place(id, slot);
        self.len += 1;
    }

    pub fn remove(&mut self, id: &StreamId) -> Option<Stream> {
        let bucket = self.find(id)?;
        let (_, slot) = self.buckets.get_mut(bucket)?.take()?;
        self.len -= 1;
        self.close_gap(bucket);
        self.free.push(slot);
        self.slots.get_mut(slot)?.take().map(|(_, s)| s)
    }

    /// Every stream, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (StreamId, &Stream)> {
        self.slots.iter().flatten().map(|(id, s)| (*id, s))
    }

    fn place(&mut self, id: StreamId, slot: usize) {
        let mask = self.mask();
        let mut i = self.home(&id);
        while let Some(bucket) = self.buckets.get_mut(i) {
            if bucket.is_none() {
                *bucket = Some((id, slot));
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(16);
        let old = core::mem::replace(&mut self.buckets, vec![None; size]);
        for (id, slot) in old.into_iter().flatten() {
            self.place(id, slot);
        }
    }

    /// Backward-shift deletion: moves later entries of the probe run into the hole when their
    /// home position allows it, so lookups never stop early at a stale gap.
    fn close_gap(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut j = (hole + 1) & mask;
        while let Some(Some((id, slot))) = self.buckets.get(j).copied() {
            let from_home = j.wrapping_sub(self.home(&id)) & mask;
            let from_hole = j.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                if let Some(h) = self.buckets.get_mut(hole) {
                    *h = Some((id, slot));
                }
                if let Some(b) = self.buckets.get_mut(j) {
                    *b = None;
                }
                hole = j;
            }
            j = (j + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::types::LogPosition;

    fn stream() -> Stream {
        Stream::new([16, 8], LogPosition::default(), 0)
    }

    #[test]
    fn agrees_with_an_ordered_map_through_inserts_and_removals() {
        let mut table = StreamTable::default();
        let mut model = alloc::collections::BTreeMap::new();
        // A deterministic pseudo-random walk over a small id space forces long probe runs.
        let mut x: u64 = 7;
        for step in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = StreamId::new((x >> 60) % 3, (x >> 33) % 200);
            let known = model.contains_key(&id);
            if known && step % 3 != 0 {
                assert!(table.remove(&id).is_some());
                model.remove(&id);
            } else if !known {
                table.insert(id, stream());
                model.insert(id, ());
            }
            assert_eq!(table.len(), model.len());
        }
        for tenant in 0..3 {
            for store in 0..200 {
                let id = StreamId::new(tenant, store);
                assert_eq!(table.get(&id).is_some(), model.contains_key(&id), "{id:?}");
            }
        }
        assert_eq!(table.iter().count(), model.len());
    }
}
