//! The client's named prepared statements, kept as they pass so that a move can create them
//! again on the new server.
//!
//! The extended protocol's Parse creates a named statement and Close (`S`) drops it; SQL
//! `DEALLOCATE` and `DISCARD ALL` drop them too. A statement exists only once the server has
//! said so, so every Parse and Close waits here, in the order the client sent it, until its
//! answer arrives: ParseComplete or CloseComplete makes it count, and the ReadyForQuery that
//! ends its batch drops it if it got no answer (it failed, or the server skipped it after an
//! earlier error in the batch, as it skips everything up to the next Sync).
//!
//! Each waiting message belongs to a batch: the one whose ReadyForQuery is the next that the
//! client's Query, FunctionCall and Sync messages ask for after it. The batch is numbered
//! `answered + outstanding`: ReadyForQuery messages seen so far, plus those still owed when the
//! message went out ([`SafePoint::outstanding`](super::SafePoint::outstanding), which already
//! leaves out the Syncs a server ignores in copy-in mode).
//!
//! What the tracker cannot account for, it does not guess: an answer that matches no waiting
//! message, a `DEALLOCATE` whose statement it cannot tell (a lone `DEALLOCATE name` in a simple
//! Query is told; one among other statements, behind a comment, or through the extended
//! protocol is not), or more bytes than the limit. Then it drops what it kept and refuses
//! every move with a [`Failure`] that says why, until the server confirms that no statement is
//! left (`DISCARD ALL` or `DEALLOCATE ALL`).
//!
//! The unnamed statement is not kept: drivers parse it again before each use.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Failure;
use super::frame::header;
use super::message::parse_command_complete;

/// PostgreSQL keys prepared statements by their first 63 bytes (`NAMEDATALEN - 1`): two names
/// that agree that far name the same statement.
const NAME_KEY_LEN: usize = 63;
/// What each kept statement or waiting message costs beyond its bytes, for the limit.
pub(super) const ENTRY_OVERHEAD: usize = 64;
/// The longest Close body read whole (a type byte and a name).
pub(super) const MAX_CLOSE_LEN: u32 = 1024;
/// The longest Query body read whole, looking for a lone `DEALLOCATE name`.
pub(super) const MAX_DEALLOCATE_QUERY_LEN: u32 = 512;
/// The longest CommandComplete body read whole, for its tag.
pub(super) const MAX_TAG_LEN: u32 = 64;

/// Why the kept statements cannot be trusted, so that no move is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// They took more than the limit.
    OverLimit,
    /// Something happened to them that the tracker could not follow.
    Unknown(&'static str),
}

/// What the new server must run, after the deserialize query, to hold the same statements:
/// every kept Parse, then a Sync.
#[derive(Debug)]
pub(super) struct Replay {
    /// The Parse messages and the Sync, ready to write.
    pub(super) bytes: Bytes,
    /// How many ParseComplete messages to expect before the ReadyForQuery.
    pub(super) statements: usize,
}

/// A client message that waits for the server's answer.
#[derive(Debug)]
struct Waiting {
    /// The ReadyForQuery that ends its batch (see the module docs).
    batch: u64,
    op: Op,
}

#[derive(Debug)]
enum Op {
    /// Parse, named (with the whole message, to send again) or unnamed (`None`).
    Parse(Option<(Vec<u8>, Bytes)>),
    /// Close of a named statement, or of something the tracker need not follow (`None`): the
    /// unnamed statement or a portal.
    Close(Option<Vec<u8>>),
    /// A simple Query that is a lone `DEALLOCATE name`.
    Deallocate(Vec<u8>),
}

impl Op {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Op::Parse(Some((name, message))) => name.len() + message.len(),
                Op::Parse(None) | Op::Close(None) => 0,
                Op::Close(Some(name)) | Op::Deallocate(name) => name.len(),
            }
    }
}

/// The named statements a session holds on its server, and the messages that may change them.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Off for a dialect whose server carries prepared statements itself.
    enabled: bool,
    limit: usize,
    /// Statement key to its whole Parse message.
    kept: BTreeMap<Vec<u8>, Bytes>,
    waiting: VecDeque<Waiting>,
    /// What `kept` and `waiting` cost together, against `limit`.
    len: usize,
    /// ReadyForQuery messages the session's servers sent it.
    answered: u64,
    /// A Parse too long to read whole is streaming: its first body byte says whether it is
    /// named.
    streaming_parse: bool,
    lost: Option<Lost>,
}

impl Prepared {
    pub(super) fn new(enabled: bool, limit: usize) -> Prepared {
        Prepared {
            enabled,
            limit,
            kept: BTreeMap::new(),
            waiting: VecDeque::new(),
            len: 0,
            answered: 0,
            streaming_parse: false,
            lost: None,
        }
    }

    /// Whether statements are followed at all.
    pub(super) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The largest Parse body worth reading whole: one that fits the limit.
    pub(super) fn max_parse_len(&self) -> u32 {
        u32::try_from(self.limit).unwrap_or(u32::MAX)
    }

    /// Bytes kept and waiting, with their overhead.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many statements are kept.
    #[cfg(test)]
    fn kept_names(&self) -> Vec<&[u8]> {
        self.kept.keys().map(Vec::as_slice).collect()
    }

    /// A client message, whole (`body`) or only its header (`None`, a message too long to read
    /// whole), sent when `outstanding` ReadyForQuery messages were still owed.
    pub(super) fn client_message(&mut self, tag: u8, body: Option<&[u8]>, outstanding: u64) {
        if !self.enabled || self.lost.is_some() {
            return;
        }
        let batch = self.answered.saturating_add(outstanding);
        // Past these lengths a message is treated alike whether it came whole or in pieces.
        let body = match tag {
            b'C' => body.filter(|b| b.len() <= MAX_CLOSE_LEN as usize),
            b'Q' => body.filter(|b| b.len() <= MAX_DEALLOCATE_QUERY_LEN as usize),
            _ => body,
        };
        let op = match (tag, body) {
            (b'P', Some(body)) => Op::Parse(parse_message(body)),
            (b'P', None) => {
                // Unnamed, or named and over the limit: its first byte tells.
                self.streaming_parse = true;
                Op::Parse(None)
            }
            (b'C', Some(body)) => Op::Close(close_message(body)),
            (b'C', None) => return self.lose(Lost::Unknown("a Close too long to read")),
            (b'Q', Some(body)) => match deallocate_name(body) {
                Some(name) => Op::Deallocate(name),
                None => return,
            },
            _ => return,
        };
        let cost = op.cost();
        if self.len.saturating_add(cost) > self.limit {
            return self.lose(Lost::OverLimit);
        }
        self.len += cost;
        self.waiting.push_back(Waiting { batch, op });
    }

    /// A piece of the body of a client message that was too long to read whole.
    pub(super) fn client_part(&mut self, part: &[u8]) {
        if !core::mem::take(&mut self.streaming_parse) {
            return;
        }
        // A named statement that long cannot be kept.
        if part.first().is_some_and(|&b| b != 0) && self.enabled && self.lost.is_none() {
            self.lose(Lost::OverLimit);
        }
    }

    /// A server message relayed to the client (`body` may be empty for a message too long to
    /// read whole).
    pub(super) fn server_message(&mut self, tag: u8, body: &[u8]) {
        if !self.enabled {
            return;
        }
        if tag == b'Z' {
            self.answered = self.answered.wrapping_add(1);
            while self
                .waiting
                .front()
                .is_some_and(|w| w.batch < self.answered)
            {
                self.pop();
            }
            return;
        }
        if tag == b'C' {
            return self.command_complete(body);
        }
        if self.lost.is_some() {
            return;
        }
        match tag {
            b'1' => match self.pop_current() {
                Some(Op::Parse(Some((name, message)))) => {
                    let name_len = name.len();
                    self.len += ENTRY_OVERHEAD + name_len + message.len();
                    if let Some(old) = self.kept.insert(name, message) {
                        self.len -= ENTRY_OVERHEAD + name_len + old.len();
                    }
                }
                Some(Op::Parse(None)) => {}
                _ => self.lose(Lost::Unknown("a ParseComplete that matched no Parse")),
            },
            b'3' => match self.pop_current() {
                Some(Op::Close(Some(name))) => self.forget(&name),
                Some(Op::Close(None)) => {}
                _ => self.lose(Lost::Unknown("a CloseComplete that matched no Close")),
            },
            _ => {}
        }
    }

    /// What to run on a new server, `None` when nothing is kept, or why the session cannot
    /// move.
    pub(super) fn replay(&self) -> Result<Option<Replay>, Failure> {
        match self.lost {
            Some(Lost::OverLimit) => {
                return Err(Failure::PreparedStatementsOverLimit { limit: self.limit })
            }
            Some(Lost::Unknown(why)) => return Err(Failure::PreparedStatementsUnknown(why)),
            None => {}
        }
        if !self.waiting.is_empty() {
            return Err(Failure::PreparedStatementsUnknown(
                "statements are still being prepared",
            ));
        }
        if self.kept.is_empty() {
            return Ok(None);
        }
        let len = self.kept.values().map(Bytes::len).sum::<usize>() + 5;
        let mut bytes = BytesMut::with_capacity(len);
        for message in self.kept.values() {
            bytes.put_slice(message);
        }
        bytes.put_slice(&header(b'S', 0));
        Ok(Some(Replay {
            bytes: bytes.freeze(),
            statements: self.kept.len(),
        }))
    }

    fn command_complete(&mut self, body: &[u8]) {
        let Ok(tag) = parse_command_complete(body) else {
            return;
        };
        match tag {
            "DISCARD ALL" | "DEALLOCATE ALL" => {
                // While lost, nothing waits: what the client sent after the reset went by
                // unread, and an answer to it matches nothing and is lost again.
                self.lost = None;
                self.kept.clear();
                self.len = self.waiting.iter().map(|w| w.op.cost()).sum();
            }
            "DEALLOCATE" if self.lost.is_none() => match self.waiting.front() {
                Some(w) if w.batch == self.answered && matches!(w.op, Op::Deallocate(_)) => {
                    if let Some(Op::Deallocate(name)) = self.pop() {
                        self.forget(&name);
                    }
                }
                // It cannot have dropped a statement the tracker knows of.
                _ if self.kept.is_empty()
                    && !self
                        .waiting
                        .iter()
                        .any(|w| matches!(w.op, Op::Parse(Some(_)))) => {}
                _ => self.lose(Lost::Unknown(
                    "a DEALLOCATE of a statement that could not be told",
                )),
            },
            _ => {}
        }
    }

    /// The oldest waiting message, if it belongs to the batch the server is answering.
    fn pop_current(&mut self) -> Option<Op> {
        if self.waiting.front()?.batch != self.answered {
            return None;
        }
        self.pop()
    }

    fn pop(&mut self) -> Option<Op> {
        let w = self.waiting.pop_front()?;
        self.len -= w.op.cost();
        Some(w.op)
    }

    fn forget(&mut self, name: &[u8]) {
        if let Some(message) = self.kept.remove(name) {
            self.len -= ENTRY_OVERHEAD + name.len() + message.len();
        }
    }

    fn lose(&mut self, why: Lost) {
        self.lost = Some(why);
        self.kept.clear();
        self.waiting.clear();
        self.len = 0;
        self.streaming_parse = false;
    }
}

/// The key PostgreSQL files a statement name under.
fn key(name: &[u8]) -> Vec<u8> {
    name[..name.len().min(NAME_KEY_LEN)].to_vec()
}

/// A NUL-terminated string at the start of `body`, and what follows it.
fn cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = body.iter().position(|&b| b == 0)?;
    Some((&body[..end], &body[end + 1..]))
}

/// A Parse body's statement key and the whole message, or `None` for the unnamed statement or
/// a body that does not parse (which the server refuses).
fn parse_message(body: &[u8]) -> Option<(Vec<u8>, Bytes)> {
    let (name, rest) = cstr(body)?;
    if name.is_empty() {
        return None;
    }
    let (_query, rest) = cstr(rest)?;
    let (count, oids) = rest.split_first_chunk::<2>()?;
    let count = usize::try_from(i16::from_be_bytes(*count)).ok()?;
    if oids.len() != count * 4 {
        return None;
    }
    let len = u32::try_from(body.len()).ok()?;
    let mut message = BytesMut::with_capacity(body.len() + 5);
    message.put_slice(&header(b'P', len));
    message.put_slice(body);
    Some((key(name), message.freeze()))
}

/// The key of the named statement a Close body closes; `None` for a portal, the unnamed
/// statement or a body that does not parse.
fn close_message(body: &[u8]) -> Option<Vec<u8>> {
    let (&kind, rest) = body.split_first()?;
    let (name, rest) = cstr(rest)?;
    (kind == b'S' && !name.is_empty() && rest.is_empty()).then(|| key(name))
}

/// The statement key of a simple Query that is one `DEALLOCATE [PREPARE] name` and nothing
/// else (blanks and one `;` may follow). `DEALLOCATE ALL` and anything less plain are `None`.
fn deallocate_name(body: &[u8]) -> Option<Vec<u8>> {
    let (text, rest) = cstr(body)?;
    if !rest.is_empty() {
        return None;
    }
    let mut words = Words { text, pos: 0 };
    if !words.keyword("deallocate") {
        return None;
    }
    let first = words.identifier()?;
    let name = if first.quoted || first.name != b"prepare" {
        first
    } else {
        match words.identifier() {
            Some(name) => name,
            // `DEALLOCATE prepare`: a statement named prepare.
            None => first,
        }
    };
    if !name.quoted && name.name == b"all" {
        return None;
    }
    words.blanks();
    if words.text.get(words.pos) == Some(&b';') {
        words.pos += 1;
    }
    words.blanks();
    if words.pos != words.text.len() || name.name.is_empty() || name.name.len() > NAME_KEY_LEN {
        return None;
    }
    Some(name.name)
}

struct Identifier {
    name: Vec<u8>,
    quoted: bool,
}

/// A cursor over SQL text that reads the few tokens of a `DEALLOCATE`.
struct Words<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Words<'_> {
    fn blanks(&mut self) {
        while self
            .text
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'))
        {
            self.pos += 1;
        }
    }

    /// The keyword `word` (lowercase), in any case, followed by a blank or the end.
    fn keyword(&mut self, word: &str) -> bool {
        self.blanks();
        self.identifier()
            .is_some_and(|id| !id.quoted && id.name == word.as_bytes())
    }

    /// An identifier: unquoted (folded to lowercase, as PostgreSQL folds ASCII) or in double
    /// quotes (`""` inside is one quote).
    fn identifier(&mut self) -> Option<Identifier> {
        self.blanks();
        let start = self.pos;
        if self.text.get(self.pos) == Some(&b'"') {
            let mut name = Vec::new();
            self.pos += 1;
            loop {
                match self.text.get(self.pos)? {
                    b'"' if self.text.get(self.pos + 1) == Some(&b'"') => {
                        name.push(b'"');
                        self.pos += 2;
                    }
                    b'"' => {
                        self.pos += 1;
                        return Some(Identifier { name, quoted: true });
                    }
                    &b => {
                        name.push(b);
                        self.pos += 1;
                    }
                }
            }
        }
        let first = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
        if !self.text.get(self.pos).is_some_and(|&b| first(b)) {
            return None;
        }
        while self
            .text
            .get(self.pos)
            .is_some_and(|&b| first(b) || b.is_ascii_digit() || b == b'$')
        {
            self.pos += 1;
        }
        let name = self.text[start..self.pos].to_ascii_lowercase();
        Some(Identifier {
            name,
            quoted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::String;
    use alloc::{format, vec};

    use super::*;

    fn parse_body(name: &str, query: &str, oids: &[u32]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(query.as_bytes());
        body.push(0);
        body.extend_from_slice(&(oids.len() as i16).to_be_bytes());
        for oid in oids {
            body.extend_from_slice(&oid.to_be_bytes());
        }
        body
    }

    fn close_body(name: &str) -> Vec<u8> {
        let mut body = vec![b'S'];
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body
    }

    fn query_body(sql: &str) -> Vec<u8> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        body
    }

    fn tag_body(tag: &str) -> Vec<u8> {
        query_body(tag)
    }

    fn names(p: &Prepared) -> Vec<&str> {
        p.kept_names()
            .into_iter()
            .map(|n| core::str::from_utf8(n).unwrap())
            .collect()
    }

    /// Parse `name` and Sync, answered with ParseComplete and ReadyForQuery.
    fn prepare(p: &mut Prepared, name: &str) {
        p.client_message(b'P', Some(&parse_body(name, "SELECT 1", &[])), 0);
        p.server_message(b'1', &[]);
        p.server_message(b'Z', b"I");
    }

    #[test]
    fn parse_and_close_are_kept_once_the_server_confirms_them() {
        let mut p = Prepared::new(true, 1 << 20);
        p.client_message(b'P', Some(&parse_body("s0", "SELECT $1", &[23])), 0);
        assert!(p.replay().is_err(), "not confirmed yet");
        p.server_message(b'1', &[]);
        p.server_message(b'Z', b"I");
        assert_eq!(names(&p), ["s0"]);
        let replay = p.replay().unwrap().unwrap();
        assert_eq!(replay.statements, 1);
        let mut expected = vec![b'P'];
        let body = parse_body("s0", "SELECT $1", &[23]);
        expected.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        assert_eq!(&replay.bytes[..], &expected[..]);

        p.client_message(b'C', Some(&close_body("s0")), 0);
        p.server_message(b'3', &[]);
        p.server_message(b'Z', b"I");
        assert!(names(&p).is_empty());
        assert!(p.replay().unwrap().is_none());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn an_error_drops_the_rest_of_its_batch_only() {
        let mut p = Prepared::new(true, 1 << 20);
        // Batch 1: a, then a failing b, then c (skipped). Batch 2: d.
        p.client_message(b'P', Some(&parse_body("a", "SELECT 1", &[])), 0);
        p.client_message(b'P', Some(&parse_body("b", "SELEC", &[])), 0);
        p.client_message(b'P', Some(&parse_body("c", "SELECT 3", &[])), 0);
        p.client_message(b'P', Some(&parse_body("d", "SELECT 4", &[])), 1);
        p.server_message(b'1', &[]);
        p.server_message(b'E', b"");
        p.server_message(b'Z', b"I");
        p.server_message(b'1', &[]);
        p.server_message(b'Z', b"I");
        assert_eq!(names(&p), ["a", "d"]);
    }

    #[test]
    fn a_parse_without_an_answer_before_its_ready_for_query_failed() {
        let mut p = Prepared::new(true, 1 << 20);
        p.client_message(b'P', Some(&parse_body("a", "SELECT 1", &[])), 0);
        p.server_message(b'Z', b"I");
        assert!(names(&p).is_empty());
        assert!(p.replay().unwrap().is_none());
    }

    #[test]
    fn deallocate_and_discard_forget_statements() {
        let mut p = Prepared::new(true, 1 << 20);
        for name in ["a", "b", "Mixed"] {
            prepare(&mut p, name);
        }
        p.client_message(b'Q', Some(&query_body("  deallocate PREPARE a ;  ")), 0);
        p.server_message(b'C', &tag_body("DEALLOCATE"));
        p.server_message(b'Z', b"I");
        assert_eq!(names(&p), ["Mixed", "b"]);
        p.client_message(b'Q', Some(&query_body("DEALLOCATE \"Mixed\"")), 0);
        p.server_message(b'C', &tag_body("DEALLOCATE"));
        p.server_message(b'Z', b"I");
        assert_eq!(names(&p), ["b"]);
        // A failed DEALLOCATE forgets nothing.
        p.client_message(b'Q', Some(&query_body("DEALLOCATE b")), 0);
        p.server_message(b'E', b"");
        p.server_message(b'Z', b"E");
        assert_eq!(names(&p), ["b"]);
        p.server_message(b'C', &tag_body("DISCARD ALL"));
        assert!(names(&p).is_empty());
        assert_eq!(p.len(), 0);
        prepare(&mut p, "c");
        p.server_message(b'C', &tag_body("DEALLOCATE ALL"));
        assert!(names(&p).is_empty());
    }

    #[test]
    fn a_deallocate_that_cannot_be_told_refuses_moves_until_discard_all() {
        let mut p = Prepared::new(true, 1 << 20);
        prepare(&mut p, "a");
        p.client_message(b'Q', Some(&query_body("DEALLOCATE a; SELECT 1")), 0);
        p.server_message(b'C', &tag_body("DEALLOCATE"));
        p.server_message(b'C', &tag_body("SELECT 1"));
        p.server_message(b'Z', b"I");
        assert!(matches!(
            p.replay(),
            Err(Failure::PreparedStatementsUnknown(_))
        ));
        prepare(&mut p, "b");
        assert!(p.replay().is_err(), "still lost");
        p.server_message(b'C', &tag_body("DISCARD ALL"));
        assert!(p.replay().unwrap().is_none());
        prepare(&mut p, "c");
        assert_eq!(names(&p), ["c"]);
    }

    #[test]
    fn a_deallocate_with_nothing_kept_changes_nothing() {
        let mut p = Prepared::new(true, 1 << 20);
        p.server_message(b'C', &tag_body("DEALLOCATE"));
        assert!(p.replay().unwrap().is_none());
    }

    #[test]
    fn the_limit_refuses_moves() {
        let mut p = Prepared::new(true, 300);
        prepare(&mut p, "a");
        assert!(p.replay().unwrap().is_some());
        let long = "x".repeat(200);
        p.client_message(b'P', Some(&parse_body("b", &long, &[])), 0);
        assert_eq!(
            p.replay().unwrap_err(),
            Failure::PreparedStatementsOverLimit { limit: 300 }
        );
        assert_eq!(p.len(), 0);
        // A long unnamed Parse streamed in pieces costs nothing.
        let mut p = Prepared::new(true, 300);
        p.client_message(b'P', None, 0);
        p.client_part(b"\0SELECT");
        p.server_message(b'1', &[]);
        p.server_message(b'Z', b"I");
        assert!(p.replay().unwrap().is_none());
        // A long named one is over the limit.
        p.client_message(b'P', None, 0);
        p.client_part(b"s1\0SELECT");
        assert!(p.replay().is_err());
    }

    #[test]
    fn long_messages_are_read_alike_whole_or_in_pieces() {
        // A DEALLOCATE padded past the length read whole is not told, however it arrived.
        let padded = format!("DEALLOCATE a{}", " ".repeat(600));
        for body in [Some(query_body(&padded)), None] {
            let mut p = Prepared::new(true, 1 << 20);
            prepare(&mut p, "a");
            p.client_message(b'Q', body.as_deref(), 0);
            p.server_message(b'C', &tag_body("DEALLOCATE"));
            p.server_message(b'Z', b"I");
            assert!(matches!(
                p.replay(),
                Err(Failure::PreparedStatementsUnknown(_))
            ));
        }
        // So is a Close too long to read.
        let long = close_body(&"c".repeat(2000));
        for body in [Some(long), None] {
            let mut p = Prepared::new(true, 1 << 20);
            p.client_message(b'C', body.as_deref(), 0);
            assert!(p.replay().is_err());
        }
    }

    #[test]
    fn unmatched_answers_are_not_guessed() {
        let mut p = Prepared::new(true, 1 << 20);
        p.server_message(b'1', &[]);
        assert!(p.replay().is_err());
        let mut p = Prepared::new(true, 1 << 20);
        p.client_message(b'P', Some(&parse_body("a", "SELECT 1", &[])), 0);
        p.server_message(b'3', &[]);
        assert!(p.replay().is_err());
    }

    #[test]
    fn names_are_keyed_as_postgresql_keys_them() {
        let mut p = Prepared::new(true, 1 << 20);
        let long = "n".repeat(70);
        prepare(&mut p, &long);
        let other = format!("{}{}", "n".repeat(63), "zz");
        p.client_message(b'C', Some(&close_body(&other)), 0);
        p.server_message(b'3', &[]);
        p.server_message(b'Z', b"I");
        assert!(names(&p).is_empty());
    }

    #[test]
    fn a_disabled_tracker_keeps_nothing() {
        let mut p = Prepared::new(false, 1 << 20);
        prepare(&mut p, "a");
        p.server_message(b'3', &[]);
        assert!(p.replay().unwrap().is_none());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn deallocate_text_is_read_strictly() {
        let name =
            |sql: &str| deallocate_name(&query_body(sql)).map(|n| String::from_utf8(n).unwrap());
        assert_eq!(name("DEALLOCATE s0").as_deref(), Some("s0"));
        assert_eq!(name("Deallocate Prepare S0;").as_deref(), Some("s0"));
        assert_eq!(name("DEALLOCATE prepare").as_deref(), Some("prepare"));
        assert_eq!(name("DEALLOCATE \"a\"\"b\";\n").as_deref(), Some("a\"b"));
        assert_eq!(name("DEALLOCATE \"ALL\"").as_deref(), Some("ALL"));
        for sql in [
            "DEALLOCATE ALL",
            "DEALLOCATE PREPARE ALL",
            "DEALLOCATE a; SELECT 1",
            "DEALLOCATE a b",
            "DEALLOCATE /* c */ a",
            "DEALLOCATE",
            "DEALLOCATEa",
            "SELECT 1",
            "DEALLOCATE \"unterminated",
        ] {
            assert_eq!(name(sql), None, "{sql}");
        }
    }
}
