//! The Go-recorded DRPC transcripts (`tests/vectors/drpc/transcripts.json`) and helpers to read
//! them: see `tests/vectors/drpc/README.md` for where they come from.

use std::path::PathBuf;

use bytes::Bytes;
use serde::Deserialize;
use weir::mux::wire::{parse_frame, Metadata};

/// One recorded conversation between a Go DRPC client and server.
#[derive(Debug, Deserialize)]
pub struct Transcript {
    /// The scenario's name, unique in the file.
    pub name: String,
    /// Every byte the client wrote, as hex.
    pub client_to_server_hex: String,
    /// Every byte the server wrote, as hex.
    pub server_to_client_hex: String,
    /// The calls the client made, in order.
    pub client_steps: Vec<Step>,
    /// Whether the recording pinned the unary race (the client's Close after the reply).
    pub ordering_gate: bool,
}

/// One client call and what it returned.
#[derive(Debug, Deserialize)]
pub struct Step {
    /// `Invoke <rpc>`, `NewStream <rpc>`, `MsgSend`, `MsgRecv`, `CloseSend` or `Close`.
    pub op: String,
    /// What the call sent.
    pub input: Option<BytesInfo>,
    /// What the call received.
    pub response: Option<BytesInfo>,
    /// The error text the call returned.
    pub error: Option<String>,
    /// The error's code, as a decimal string.
    pub error_code: Option<String>,
}

/// A payload: its hex when short, else only its length (every long payload follows [`pattern`]).
#[derive(Debug, Deserialize)]
pub struct BytesInfo {
    /// Its length.
    pub len: usize,
    /// Its bytes as hex, for payloads of up to 256 bytes.
    pub hex: Option<String>,
}

impl BytesInfo {
    /// The payload's bytes.
    pub fn bytes(&self) -> Bytes {
        match &self.hex {
            Some(h) => hex(h).into(),
            None => pattern(self.len),
        }
    }
}

/// Every transcript in the vectors.
pub fn transcripts() -> Vec<Transcript> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/drpc/transcripts.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Vec<Transcript> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 13, "the vectors hold 13 conversations");
    all
}

/// Lowercase hex to bytes.
pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex length: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The vectors' data pattern: byte `i` is `(i*7 + 3) mod 256`.
pub fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 + 3) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// Wire bytes cut into whole frames, to feed one at a time.
pub fn frames(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = wire;
    let mut out = Vec::new();
    while let Some((_, used)) = parse_frame(rest).expect("the Go bytes parse") {
        out.push(rest[..used].to_vec());
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "a partial frame at the end");
    out
}

/// The metadata the Go client sent in each scenario (only scenario b has any).
pub fn metadata_for(name: &str) -> Metadata {
    if name == "b_unary_metadata" {
        Metadata::from_iter([("k", "v")])
    } else {
        Metadata::new()
    }
}
