//! Owned byte keys, stored inline when short.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::cmp::Ordering;
use core::hash::{Hash, Hasher};

/// The longest key kept inline, without a heap allocation.
const INLINE: usize = 14;

/// An immutable owned key: short keys live inline (most encoded table keys are short), longer ones
/// in a shared allocation so that cloning a key never copies its bytes.
///
/// The frontier copies every key it is given into a `Key`, so a caller that mutates its own buffer
/// afterwards cannot disturb the ordering of the structure.
#[derive(Clone)]
pub(crate) enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<Vec<u8>>),
}

impl Key {
    /// The empty key, used to release the bytes of a freed slot.
    pub(crate) const EMPTY: Key = Key::Inline {
        len: 0,
        bytes: [0; INLINE],
    };

    #[inline]
    pub(crate) fn from_slice(key: &[u8]) -> Key {
        if key.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Shared(Arc::new(key.to_vec()))
        }
    }

    pub(crate) fn from_vec(key: Vec<u8>) -> Key {
        if key.len() <= INLINE {
            Key::from_slice(&key)
        } else {
            Key::Shared(Arc::new(key))
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Shared(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for Key {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    #[inline]
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    #[inline]
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            // Zero-padded bytes, then the length, in one integer: the same order as the slices,
            // without a call to memcmp. Most keys are inline, so B-tree searches mostly take this.
            (Key::Inline { len: a, bytes: x }, Key::Inline { len: b, bytes: y }) => {
                packed(x, *a).cmp(&packed(y, *b))
            }
            _ => self.as_slice().cmp(other.as_slice()),
        }
    }
}

#[inline]
fn packed(bytes: &[u8; INLINE], len: u8) -> u128 {
    let mut word = [0; 16];
    word[..INLINE].copy_from_slice(bytes);
    word[INLINE] = len;
    u128::from_be_bytes(word)
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_keys_round_trip() {
        for len in [0, 1, INLINE, INLINE + 1, 100] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(Key::from_slice(&bytes).as_slice(), &bytes[..]);
            assert_eq!(Key::from_vec(bytes.clone()).as_slice(), &bytes[..]);
        }
    }

    #[test]
    fn order_is_bytewise_whatever_the_storage() {
        let short = Key::from_slice(b"abc");
        let long = Key::from_slice(b"abcdefghijklmnopqrstuvwxyz");
        assert!(short < long);
        assert!(Key::from_slice(b"b") > long);
        assert!(Key::from_slice(b"abc") == Key::from_vec(b"abc".to_vec()));
    }

    #[test]
    fn inline_order_matches_slice_order() {
        let keys: [&[u8]; 9] = [
            b"",
            b"\x00",
            b"\x00\x00",
            b"a",
            b"a\x00",
            b"a\x00b",
            b"ab",
            b"b",
            b"\xff",
        ];
        for x in keys {
            for y in keys {
                let (kx, ky) = (Key::from_slice(x), Key::from_slice(y));
                assert_eq!(kx.cmp(&ky), x.cmp(y), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn a_key_fits_in_sixteen_bytes() {
        assert_eq!(core::mem::size_of::<Key>(), 16);
    }
}
