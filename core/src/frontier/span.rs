//! Half-open byte-key ranges.

use alloc::vec::Vec;
use core::fmt;

use super::key::Key;
use super::FrontierError;

/// A half-open range of byte keys, `[start, end)`, never empty.
///
/// A `Span` owns copies of its keys, so the caller's buffers can be reused freely.
///
/// ```
/// use weir::frontier::Span;
///
/// let table = Span::prefix(b"/t/1/")?;
/// assert_eq!(table.end(), b"/t/10");
/// assert!(table.contains(b"/t/1/42"));
/// assert!(Span::new(b"b", b"a").is_err());
/// # Ok::<(), weir::frontier::FrontierError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    start: Key,
    end: Key,
}

impl Span {
    /// The span `[start, end)`; an empty or inverted range is an error.
    pub fn new(start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Result<Span, FrontierError> {
        let (start, end) = (start.as_ref(), end.as_ref());
        check(start, end)?;
        Ok(Span::from_keys(
            Key::from_slice(start),
            Key::from_slice(end),
        ))
    }

    /// The span of exactly one key: `[key, key + 0x00)`.
    pub fn point(key: impl AsRef<[u8]>) -> Span {
        let start = key.as_ref();
        let mut end = Vec::with_capacity(start.len() + 1);
        end.extend_from_slice(start);
        end.push(0);
        Span::from_keys(Key::from_slice(start), Key::from_vec(end))
    }

    /// The span of every key that begins with `prefix`.
    ///
    /// Its end is the prefix with trailing `0xff` bytes dropped and the last byte incremented; a
    /// prefix with no such byte (empty, or all `0xff`) has no finite end and is an error.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Result<Span, FrontierError> {
        let prefix = prefix.as_ref();
        let last = prefix
            .iter()
            .rposition(|&b| b != 0xff)
            .ok_or(FrontierError::UnboundedPrefix)?;
        let mut end = prefix[..=last].to_vec();
        if let Some(byte) = end.last_mut() {
            *byte += 1;
        }
        Ok(Span::from_keys(Key::from_slice(prefix), Key::from_vec(end)))
    }

    #[inline]
    pub(crate) fn from_keys(start: Key, end: Key) -> Span {
        debug_assert!(start < end, "spans are never empty");
        Span { start, end }
    }

    #[inline]
    pub(crate) fn start_key(&self) -> &Key {
        &self.start
    }

    #[inline]
    pub(crate) fn end_key(&self) -> &Key {
        &self.end
    }

    /// The first key in the span.
    #[inline]
    pub fn start(&self) -> &[u8] {
        self.start.as_slice()
    }

    /// The first key after the span.
    #[inline]
    pub fn end(&self) -> &[u8] {
        self.end.as_slice()
    }

    /// Whether `key` lies in the span.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start() <= key && key < self.end()
    }

    /// Whether the two spans share at least one key.
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start() < other.end() && other.start() < self.end()
    }

    /// The keys both spans cover, if any.
    pub fn intersect(&self, other: &Span) -> Option<Span> {
        let start = self.start.clone().max(other.start.clone());
        let end = self.end.clone().min(other.end.clone());
        (start < end).then(|| Span::from_keys(start, end))
    }

    /// The bytes of both keys: what this span costs in a checkpoint budget.
    pub fn key_bytes(&self) -> usize {
        self.start().len() + self.end().len()
    }
}

fn check(start: &[u8], end: &[u8]) -> Result<(), FrontierError> {
    match start.cmp(end) {
        core::cmp::Ordering::Less => Ok(()),
        core::cmp::Ordering::Equal => Err(FrontierError::EmptySpan),
        core::cmp::Ordering::Greater => Err(FrontierError::InvertedSpan),
    }
}

/// Writes a key as text, escaping bytes outside printable ASCII.
fn write_key(f: &mut fmt::Formatter<'_>, key: &[u8]) -> fmt::Result {
    for &b in key {
        if b.is_ascii_graphic() || b == b' ' {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        write_key(f, self.start())?;
        f.write_str(", ")?;
        write_key(f, self.end())?;
        f.write_str(")")
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct RawRef<'a> {
        start: &'a [u8],
        end: &'a [u8],
    }

    #[derive(Deserialize)]
    struct Raw {
        start: Vec<u8>,
        end: Vec<u8>,
    }

    impl Serialize for Span {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            RawRef {
                start: self.start(),
                end: self.end(),
            }
            .serialize(serializer)
        }
    }

    /// Deserialising checks the span like [`Span::new`]: an empty or inverted span is rejected.
    impl<'de> Deserialize<'de> for Span {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Span, D::Error> {
            let raw = Raw::deserialize(deserializer)?;
            check(&raw.start, &raw.end).map_err(serde::de::Error::custom)?;
            Ok(Span::from_keys(
                Key::from_vec(raw.start),
                Key::from_vec(raw.end),
            ))
        }
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Span {
    /// Always a valid span: the two keys in order, with a `0x00` appended to the end key if they
    /// are equal.
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Span> {
        let a: Vec<u8> = u.arbitrary()?;
        let b: Vec<u8> = u.arbitrary()?;
        Ok(match a.cmp(&b) {
            core::cmp::Ordering::Less => Span::from_keys(Key::from_vec(a), Key::from_vec(b)),
            core::cmp::Ordering::Greater => Span::from_keys(Key::from_vec(b), Key::from_vec(a)),
            core::cmp::Ordering::Equal => Span::point(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn empty_and_inverted_spans_are_errors() {
        assert_eq!(Span::new(b"a", b"a"), Err(FrontierError::EmptySpan));
        assert_eq!(Span::new(b"b", b"a"), Err(FrontierError::InvertedSpan));
        assert_eq!(Span::new(b"", b""), Err(FrontierError::EmptySpan));
        assert!(Span::new(b"", b"\x00").is_ok());
    }

    #[test]
    fn point_covers_exactly_one_key() {
        let p = Span::point(b"k");
        assert!(p.contains(b"k"));
        assert!(!p.contains(b"k\x00"));
        assert!(!p.contains(b"j\xff"));
        assert_eq!(p.end(), b"k\x00");
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(Span::prefix(b"a\xff\xff").unwrap().end(), b"b");
        assert_eq!(Span::prefix(b"\x01\xfe").unwrap().end(), b"\x01\xff");
        assert_eq!(Span::prefix(b"\xff"), Err(FrontierError::UnboundedPrefix));
        assert_eq!(Span::prefix(b""), Err(FrontierError::UnboundedPrefix));
    }

    #[test]
    fn overlap_and_intersection() {
        let ac = Span::new(b"a", b"c").unwrap();
        let bd = Span::new(b"b", b"d").unwrap();
        let cd = Span::new(b"c", b"d").unwrap();
        assert!(ac.overlaps(&bd));
        assert!(
            !ac.overlaps(&cd),
            "half-open spans that touch do not overlap"
        );
        assert_eq!(ac.intersect(&bd), Some(Span::new(b"b", b"c").unwrap()));
        assert_eq!(ac.intersect(&cd), None);
    }

    #[test]
    fn display_escapes_binary_keys() {
        let s = Span::new(b"a\x00", b"\xffz").unwrap();
        assert_eq!(s.to_string(), "[a\\x00, \\xffz)");
    }

    #[test]
    fn caller_buffers_are_copied() {
        let mut buf = b"key".to_vec();
        let s = Span::point(&buf);
        buf[0] = b'z';
        assert_eq!(s.start(), b"key");
    }
}
