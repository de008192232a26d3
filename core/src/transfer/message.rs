//! Parsers for the pgwire messages the machine reads, and builders for the ones it writes.
//!
//! Parsers take a message body (what follows the length field, as [`super::frame::Frame`] gives
//! it) and borrow from it. Builders return whole messages, header included.
//!
//! ```
//! use weir::transfer::message::{build_query, DataRow};
//!
//! let query = build_query("SELECT 1").unwrap();
//! assert_eq!(&query[..5], &[b'Q', 0, 0, 0, 13]);
//!
//! let body = [0, 2, 0, 0, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
//! let row = DataRow::parse(&body).unwrap();
//! assert_eq!(row.values, [Some(&b"t"[..]), None]);
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ParseError;
use super::frame::{header, CANCEL_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE};

/// Reads big-endian fields off a body, failing with the message name.
struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader { buf, message }
    }

    fn truncated(&self) -> ParseError {
        ParseError::Truncated {
            message: self.message,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if n > self.buf.len() {
            return Err(self.truncated());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        match self.take(N)?.first_chunk::<N>() {
            Some(a) => Ok(*a),
            None => Err(self.truncated()),
        }
    }

    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    fn i16(&mut self) -> Result<i16, ParseError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, ParseError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self) -> Result<&'a str, ParseError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.truncated())?;
        let text = self.take(end)?;
        self.take(1)?;
        core::str::from_utf8(text).map_err(|_| ParseError::NotUtf8 {
            message: self.message,
        })
    }

    fn count(&mut self) -> Result<usize, ParseError> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| ParseError::InvalidLength {
            message: self.message,
            value: n.into(),
        })
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes {
                message: self.message,
                extra: self.buf.len(),
            })
        }
    }
}

/// One column of a [`RowDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// The column name.
    pub name: &'a str,
    /// The table's OID, or 0.
    pub table_oid: u32,
    /// The column's attribute number in that table, or 0.
    pub column: i16,
    /// The data type's OID.
    pub type_oid: u32,
    /// The data type's size (negative for variable width).
    pub type_size: i16,
    /// The type modifier.
    pub type_modifier: i32,
    /// The format code: 0 text, 1 binary.
    pub format: i16,
}

/// `T`: the columns of the rows that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDescription<'a> {
    /// The columns, in order.
    pub fields: Vec<FieldDescription<'a>>,
}

impl<'a> RowDescription<'a> {
    /// Parse a RowDescription body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "RowDescription");
        let count = r.count()?;
        // Each field takes at least 19 bytes, so the count cannot make us over-allocate.
        let mut fields = Vec::with_capacity(count.min(body.len() / 19));
        for _ in 0..count {
            fields.push(FieldDescription {
                name: r.cstr()?,
                table_oid: r.u32()?,
                column: r.i16()?,
                type_oid: r.u32()?,
                type_size: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.finish()?;
        Ok(RowDescription { fields })
    }

    /// Whether the column names are exactly `names`, in order.
    pub fn has_columns(&self, names: &[&str]) -> bool {
        self.fields.len() == names.len() && self.fields.iter().zip(names).all(|(f, n)| f.name == *n)
    }
}

/// `D`: one row of values, `None` for SQL NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow<'a> {
    /// The values, in column order.
    pub values: Vec<Option<&'a [u8]>>,
}

impl<'a> DataRow<'a> {
    /// Parse a DataRow body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "DataRow");
        let count = r.count()?;
        let mut values = Vec::with_capacity(count.min(body.len() / 4));
        for _ in 0..count {
            let len = r.i32()?;
            values.push(match len {
                -1 => None,
                len => Some(r.take(usize::try_from(len).map_err(|_| {
                    ParseError::InvalidLength {
                        message: "DataRow",
                        value: len.into(),
                    }
                })?)?),
            });
        }
        r.finish()?;
        Ok(DataRow { values })
    }
}

/// `C`: parse a CommandComplete body into its tag.
pub fn parse_command_complete(body: &[u8]) -> Result<&str, ParseError> {
    let mut r = Reader::new(body, "CommandComplete");
    let tag = r.cstr()?;
    r.finish()?;
    Ok(tag)
}

/// The transaction status a ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

impl TransactionStatus {
    /// The status byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

/// `Z`: parse a ReadyForQuery body.
pub fn parse_ready_for_query(body: &[u8]) -> Result<TransactionStatus, ParseError> {
    let mut r = Reader::new(body, "ReadyForQuery");
    let status = match r.u8()? {
        b'I' => TransactionStatus::Idle,
        b'T' => TransactionStatus::InTransaction,
        b'E' => TransactionStatus::Failed,
        status => return Err(ParseError::UnknownStatus { status }),
    };
    r.finish()?;
    Ok(status)
}

/// `E` (or `N`): the fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// `(field code, value)` pairs in wire order.
    pub fields: Vec<(u8, &'a str)>,
}

impl<'a> ErrorFields<'a> {
    /// Parse an ErrorResponse or NoticeResponse body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "ErrorResponse");
        let mut fields = Vec::new();
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            fields.push((code, r.cstr()?));
        }
        r.finish()?;
        Ok(ErrorFields { fields })
    }

    /// The value of field `code`, if present.
    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| *v)
    }

    /// `SEVERITY SQLSTATE: message`, for logs and failure reasons.
    pub fn summary(&self) -> String {
        let severity = self.get(b'V').or(self.get(b'S')).unwrap_or("ERROR");
        let code = self.get(b'C').unwrap_or("?????");
        let message = self.get(b'M').unwrap_or("");
        alloc::format!("{severity} {code}: {message}")
    }
}

/// The summary of an ErrorResponse body, or a note that it did not parse.
pub fn error_summary(body: &[u8]) -> String {
    match ErrorFields::parse(body) {
        Ok(fields) => fields.summary(),
        Err(e) => e.to_string(),
    }
}

/// `K`: the key a client uses to cancel a running query on one server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BackendKey {
    /// The backend's process id.
    pub process_id: u32,
    /// The secret: 4 bytes in protocol 3.0, up to 256 in 3.2.
    pub secret: Vec<u8>,
}

impl BackendKey {
    /// Parse a BackendKeyData body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "BackendKeyData");
        let process_id = r.u32()?;
        let secret = r.rest();
        if !(4..=256).contains(&secret.len()) {
            return Err(ParseError::InvalidLength {
                message: "BackendKeyData",
                value: secret.len() as i64,
            });
        }
        Ok(BackendKey {
            process_id,
            secret: secret.to_vec(),
        })
    }
}

/// `S` from the server: a run-time parameter's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    /// The parameter name.
    pub name: &'a str,
    /// Its value.
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    /// Parse a ParameterStatus body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "ParameterStatus");
        let name = r.cstr()?;
        let value = r.cstr()?;
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }
}

/// `R`: an authentication request or result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authentication<'a> {
    /// 0: authentication succeeded.
    Ok,
    /// 2: Kerberos V5 (unsupported by modern servers).
    KerberosV5,
    /// 3: send the password in clear text.
    CleartextPassword,
    /// 5: send an MD5 hash of the password with this salt.
    Md5Password([u8; 4]),
    /// 7: start GSSAPI.
    Gss,
    /// 8: GSSAPI or SSPI data.
    GssContinue(&'a [u8]),
    /// 9: start SSPI.
    Sspi,
    /// 10: SASL, with the mechanisms offered.
    Sasl(Vec<&'a str>),
    /// 11: a SASL challenge.
    SaslContinue(&'a [u8]),
    /// 12: the SASL outcome.
    SaslFinal(&'a [u8]),
    /// Another code.
    Other(i32),
}

impl<'a> Authentication<'a> {
    /// Parse an Authentication body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "Authentication");
        let auth = match r.i32()? {
            0 => Authentication::Ok,
            2 => Authentication::KerberosV5,
            3 => Authentication::CleartextPassword,
            5 => Authentication::Md5Password(r.array()?),
            7 => Authentication::Gss,
            8 => return Ok(Authentication::GssContinue(r.rest())),
            9 => Authentication::Sspi,
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl(mechanisms)
            }
            11 => return Ok(Authentication::SaslContinue(r.rest())),
            12 => return Ok(Authentication::SaslFinal(r.rest())),
            code => return Ok(Authentication::Other(code)),
        };
        r.finish()?;
        Ok(auth)
    }
}

/// An untyped startup-phase packet, parsed from the body [`super::frame::Frame::Startup`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartupPacket {
    /// SSLRequest.
    SslRequest,
    /// GSSENCRequest.
    GssEncRequest,
    /// CancelRequest with the key of the backend to cancel.
    CancelRequest(BackendKey),
    /// StartupMessage: the protocol version and the parameters in wire order.
    Startup {
        /// The protocol version code (196608 for 3.0).
        version: u32,
        /// `(name, value)` pairs.
        params: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// Parse a startup-phase body (code and payload).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "StartupMessage");
        let code = r.u32()?;
        match code {
            SSL_REQUEST_CODE => {
                r.finish()?;
                Ok(StartupPacket::SslRequest)
            }
            super::frame::GSSENC_REQUEST_CODE => {
                r.finish()?;
                Ok(StartupPacket::GssEncRequest)
            }
            CANCEL_REQUEST_CODE => Ok(StartupPacket::CancelRequest(BackendKey::parse(r.rest())?)),
            version => {
                let mut params = Vec::new();
                loop {
                    let name = r.cstr()?;
                    if name.is_empty() {
                        break;
                    }
                    params.push((name.to_string(), r.cstr()?.to_string()));
                }
                r.finish()?;
                Ok(StartupPacket::Startup { version, params })
            }
        }
    }
}

fn no_nul(text: &str, message: &'static str) -> Result<(), ParseError> {
    if text.as_bytes().contains(&0) {
        Err(ParseError::ContainsNul { message })
    } else {
        Ok(())
    }
}

/// `Q`: a simple query. Fails if `sql` contains a NUL byte or is too long for pgwire.
pub fn build_query(sql: &str) -> Result<Bytes, ParseError> {
    no_nul(sql, "Query")?;
    let body_len = sql.len() + 1;
    if body_len > i32::MAX as usize - 4 {
        return Err(ParseError::TooLong {
            message: "Query",
            len: body_len,
            max: i32::MAX as usize - 4,
        });
    }
    let mut out = BytesMut::with_capacity(5 + body_len);
    out.put_slice(&header(b'Q', body_len as u32));
    out.put_slice(sql.as_bytes());
    out.put_u8(0);
    Ok(out.freeze())
}

/// A protocol 3.0 StartupMessage with these parameters, at most `max_len` bytes long.
pub fn build_startup_message<'p, I>(params: I, max_len: usize) -> Result<Bytes, ParseError>
where
    I: IntoIterator<Item = (&'p str, &'p str)>,
{
    let mut out = BytesMut::new();
    out.put_u32(0);
    out.put_u32(PROTOCOL_3_0);
    for (name, value) in params {
        no_nul(name, "StartupMessage")?;
        no_nul(value, "StartupMessage")?;
        out.put_slice(name.as_bytes());
        out.put_u8(0);
        out.put_slice(value.as_bytes());
        out.put_u8(0);
    }
    out.put_u8(0);
    if out.len() > max_len {
        return Err(ParseError::TooLong {
            message: "StartupMessage",
            len: out.len(),
            max: max_len,
        });
    }
    let len = (out.len() as u32).to_be_bytes();
    out[..4].copy_from_slice(&len);
    Ok(out.freeze())
}

/// A CancelRequest for `key`, to send on a fresh connection to the server that issued it.
pub fn build_cancel_request(key: &BackendKey) -> Bytes {
    let mut out = BytesMut::with_capacity(12 + key.secret.len());
    out.put_u32(12 + key.secret.len() as u32);
    out.put_u32(CANCEL_REQUEST_CODE);
    out.put_u32(key.process_id);
    out.put_slice(&key.secret);
    out.freeze()
}

/// `X`: Terminate, the polite end of a session.
pub fn build_terminate() -> Bytes {
    Bytes::from_static(&[b'X', 0, 0, 0, 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn row_description(names: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(names.len() as i16).to_be_bytes());
        for n in names {
            b.extend_from_slice(n.as_bytes());
            b.push(0);
            b.extend_from_slice(&[0; 18]);
        }
        b
    }

    #[test]
    fn parses_the_messages_the_machine_reads() {
        let t = row_description(&["error", "transfer_key"]);
        let desc = RowDescription::parse(&t).unwrap();
        assert!(desc.has_columns(&["error", "transfer_key"]));
        assert!(!desc.has_columns(&["error"]));
        assert_eq!(parse_command_complete(b"SELECT 1\0"), Ok("SELECT 1"));
        assert_eq!(
            parse_ready_for_query(b"T"),
            Ok(TransactionStatus::InTransaction)
        );
        assert_eq!(
            parse_ready_for_query(b"X"),
            Err(ParseError::UnknownStatus { status: b'X' })
        );
        let e = ErrorFields::parse(b"SERROR\0C42P01\0Mno such table\0\0").unwrap();
        assert_eq!(e.summary(), "ERROR 42P01: no such table");
        let key = BackendKey::parse(&[0, 0, 0, 7, 1, 2, 3, 4]).unwrap();
        assert_eq!(key.process_id, 7);
        assert!(BackendKey::parse(&[0, 0, 0, 7, 1]).is_err());
        let p = ParameterStatus::parse(b"TimeZone\0UTC\0").unwrap();
        assert_eq!((p.name, p.value), ("TimeZone", "UTC"));
        assert_eq!(Authentication::parse(&[0, 0, 0, 0]), Ok(Authentication::Ok));
        assert_eq!(
            Authentication::parse(b"\0\0\0\x0aSCRAM-SHA-256\0\0"),
            Ok(Authentication::Sasl(vec!["SCRAM-SHA-256"]))
        );
        assert_eq!(
            Authentication::parse(&[0, 0, 0, 5, 1, 2, 3, 4]),
            Ok(Authentication::Md5Password([1, 2, 3, 4]))
        );
    }

    #[test]
    fn rejects_malformed_bodies() {
        assert!(RowDescription::parse(&[0xff, 0xff]).is_err());
        assert!(RowDescription::parse(&[0x7f, 0xff]).is_err());
        assert!(DataRow::parse(&[0, 1, 0xff, 0xff, 0xff, 0xfe]).is_err());
        assert!(DataRow::parse(&[0, 1, 0, 0, 0, 9, 1]).is_err());
        assert!(DataRow::parse(&[0, 0, 1]).is_err());
        assert!(parse_command_complete(b"SELECT 1").is_err());
        assert!(parse_command_complete(b"\xff\0").is_err());
        assert!(ErrorFields::parse(b"Mx\0").is_err());
    }

    #[test]
    fn builders_roundtrip_through_parsers() {
        let startup =
            build_startup_message([("user", "alice"), ("database", "db")], 10_000).unwrap();
        assert_eq!(
            u32::from_be_bytes(startup[..4].try_into().unwrap()) as usize,
            startup.len()
        );
        match StartupPacket::parse(&startup[4..]).unwrap() {
            StartupPacket::Startup { version, params } => {
                assert_eq!(version, PROTOCOL_3_0);
                assert_eq!(params[0], ("user".into(), "alice".into()));
                assert_eq!(params.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(build_startup_message([("a", "b\0")], 10_000).is_err());
        assert!(build_startup_message([("a", "b")], 8).is_err());
        assert!(build_query("a\0b").is_err());
        let key = BackendKey {
            process_id: 9,
            secret: vec![1, 2, 3, 4],
        };
        let cancel = build_cancel_request(&key);
        assert_eq!(
            StartupPacket::parse(&cancel[4..]),
            Ok(StartupPacket::CancelRequest(key))
        );
    }
}
