//! Invoke metadata: key/value pairs encoded as protobuf `repeated Entry{bytes key = 1; bytes value = 2}`.

use alloc::collections::btree_map::{self, BTreeMap};

use bytes::{BufMut, Bytes};

use super::varint::{put_varint, read_varint, varint_len};
use super::WireError;

const ENTRY_TAG: u8 = 0x0a; // field 1, length-delimited
const KEY_TAG: u8 = 0x0a; // field 1, length-delimited
const VALUE_TAG: u8 = 0x12; // field 2, length-delimited

/// The metadata sent ahead of an Invoke: a map from key to value, both raw bytes.
///
/// Encoding is deterministic: entries go out sorted by key. Decoding is as strict as Go's
/// `drpcmetadata.Decode`: each entry must hold exactly a key field and then a value field; a
/// duplicate key keeps the last value. Decoded keys and values slice the input without copying.
///
/// ```
/// use bytes::Bytes;
/// use weir::mux::wire::Metadata;
///
/// let metadata = Metadata::from_iter([("k", "v")]);
/// let mut wire = Vec::new();
/// metadata.encode(&mut wire).unwrap();
/// assert_eq!(wire, [0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
/// let decoded = Metadata::decode(&Bytes::from(wire)).unwrap();
/// assert_eq!(decoded.get(b"k").map(|v| &v[..]), Some(&b"v"[..]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: BTreeMap<Bytes, Bytes>,
}

impl Metadata {
    /// No entries.
    pub const fn new() -> Metadata {
        Metadata {
            entries: BTreeMap::new(),
        }
    }

    /// Set `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Option<Bytes> {
        self.entries.insert(key.into(), value.into())
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&Bytes> {
        self.entries.get(key.as_ref())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> btree_map::Iter<'_, Bytes, Bytes> {
        self.entries.iter()
    }

    /// The number of bytes [`Metadata::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        self.iter()
            .map(|(key, value)| {
                let inner = field_len(key) + field_len(value);
                1 + varint_len(inner as u64) + inner
            })
            .sum()
    }

    /// Append the entries, sorted by key, or write nothing and fail if `dst` lacks room.
    pub fn encode(&self, dst: &mut impl BufMut) -> Result<(), WireError> {
        let needed = self.encoded_len();
        let available = dst.remaining_mut();
        if available < needed {
            return Err(WireError::BufferTooSmall { needed, available });
        }
        for (key, value) in self.iter() {
            dst.put_u8(ENTRY_TAG);
            put_varint(dst, (field_len(key) + field_len(value)) as u64);
            dst.put_u8(KEY_TAG);
            put_varint(dst, key.len() as u64);
            dst.put_slice(key);
            dst.put_u8(VALUE_TAG);
            put_varint(dst, value.len() as u64);
            dst.put_slice(value);
        }
        Ok(())
    }

    /// Decode metadata as strictly as Go does.
    ///
    /// Errors: [`WireError::VarintTooLong`] for a too-long length, [`WireError::InvalidMetadata`]
    /// for anything else out of shape (Go's `invalid data`). Empty input is empty metadata.
    pub fn decode(data: &Bytes) -> Result<Metadata, WireError> {
        let mut metadata = Metadata::new();
        let mut at = 0;
        while at < data.len() {
            let entry = field(data, at, ENTRY_TAG)?;
            let (key, value) = entry_fields(&data.slice(entry.clone()))?;
            metadata.entries.insert(key, value);
            at = entry.end;
        }
        Ok(metadata)
    }
}

impl<K: Into<Bytes>, V: Into<Bytes>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Metadata {
        let mut metadata = Metadata::new();
        for (key, value) in pairs {
            metadata.insert(key, value);
        }
        metadata
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a Bytes, &'a Bytes);
    type IntoIter = btree_map::Iter<'a, Bytes, Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The encoded size of one length-delimited field holding `bytes`.
fn field_len(bytes: &[u8]) -> usize {
    1 + varint_len(bytes.len() as u64) + bytes.len()
}

/// The range of the contents of a length-delimited field with `tag` at `at` in `buf`.
fn field(buf: &[u8], at: usize, tag: u8) -> Result<core::ops::Range<usize>, WireError> {
    if buf.get(at) != Some(&tag) {
        return Err(WireError::InvalidMetadata);
    }
    let rest = buf.get(at + 1..).unwrap_or_default();
    let (len, used) = read_varint(rest)?.ok_or(WireError::InvalidMetadata)?;
    let start = at + 1 + used;
    let available = buf.len() - start;
    match usize::try_from(len) {
        Ok(len) if len <= available => Ok(start..start + len),
        _ => Err(WireError::InvalidMetadata),
    }
}

/// The key and value of one entry, which must hold those two fields and nothing else.
fn entry_fields(entry: &Bytes) -> Result<(Bytes, Bytes), WireError> {
    let key = field(entry, 0, KEY_TAG)?;
    let value = field(entry, key.end, VALUE_TAG)?;
    if value.end != entry.len() {
        return Err(WireError::InvalidMetadata);
    }
    Ok((entry.slice(key), entry.slice(value)))
}
