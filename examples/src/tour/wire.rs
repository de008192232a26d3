//! The wire codec section: real DRPC conversations recorded from the Go implementation, decoded
//! packet by packet the way a protocol inspector shows them, then re-encoded byte for byte.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use weir::mux::wire::{ErrorBody, Kind, Metadata, Packet, PacketLimit, PacketReader, SplitSize};

/// The Go-recorded transcripts shipped with the tests.
const TRANSCRIPTS: &str = include_str!("../../../tests/vectors/drpc/transcripts.json");

/// The conversations the tour shows: their name in the transcripts file, and a title.
const SHOWN: [(&str, &str); 4] = [
    ("b_unary_metadata", "a unary call carrying metadata"),
    ("c_unary_error", "a call that fails with error code 7"),
    ("e_server_stream", "a server stream of three messages"),
    (
        "h_unary_large",
        "a 150,000-byte message, split into 64 KiB frames",
    ),
];

#[derive(Deserialize)]
struct Transcript {
    name: String,
    client_to_server_hex: String,
    server_to_client_hex: String,
}

/// Everything the section found, for the caller to check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Conversations shown.
    pub conversations: usize,
    /// Packets decoded in both directions.
    pub packets: usize,
    /// Bytes decoded and re-encoded identically.
    pub bytes: usize,
}

/// Decode the shown transcripts and write the story to `out`.
pub fn run(out: &mut String) -> Result<Summary, String> {
    let transcripts: Vec<Transcript> =
        serde_json::from_str(TRANSCRIPTS).map_err(|e| format!("transcripts.json: {e}"))?;
    let mut summary = Summary::default();
    for (name, title) in SHOWN {
        let t = transcripts
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("no transcript named {name}"))?;
        let _ = writeln!(out, "\n   {title}:");
        for (arrow, wire_hex) in [
            ("client → server", &t.client_to_server_hex),
            ("server → client", &t.server_to_client_hex),
        ] {
            let wire = hex(wire_hex)?;
            let packets = decode(&wire)?;
            let mut reencoded = Vec::new();
            for packet in &packets {
                let _ = writeln!(out, "     {arrow}  {}", describe(packet));
                packet
                    .encode(SplitSize::DEFAULT, &mut reencoded)
                    .map_err(|e| e.to_string())?;
            }
            if reencoded != wire {
                return Err(format!(
                    "{name} {arrow}: re-encoding differs from the Go bytes"
                ));
            }
            summary.packets += packets.len();
            summary.bytes += wire.len();
        }
        summary.conversations += 1;
    }
    Ok(summary)
}

fn decode(wire: &[u8]) -> Result<Vec<Packet>, String> {
    let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
    let mut buf = BytesMut::from(wire);
    let mut packets = Vec::new();
    while let Some(packet) = reader.read(&mut buf).map_err(|e| e.to_string())? {
        packets.push(packet);
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes left over", buf.len()));
    }
    Ok(packets)
}

/// One line per packet: id, kind and what its data means.
fn describe(packet: &Packet) -> String {
    let id = format!("s{} m{}", packet.id.stream, packet.id.message);
    let what = match packet.kind {
        Kind::INVOKE => format!("rpc {}", text(&packet.data)),
        Kind::INVOKE_METADATA => match Metadata::decode(&packet.data) {
            Ok(metadata) => {
                let pairs: Vec<String> = metadata
                    .iter()
                    .map(|(k, v)| format!("{}={}", text(k), text(v)))
                    .collect();
                format!("metadata {{{}}}", pairs.join(", "))
            }
            Err(e) => format!("metadata that does not decode: {e}"),
        },
        Kind::ERROR => {
            let body = ErrorBody::decode(packet.data.clone());
            format!("code {}, {}", body.code, text(&body.message))
        }
        _ if packet.data.is_empty() => String::new(),
        _ => text(&packet.data),
    };
    let frames = packet.frames(SplitSize::DEFAULT).count();
    let split = if frames > 1 {
        format!(", in {frames} frames")
    } else {
        String::new()
    };
    let line = format!("{id:<7} {:<14} {what}{split}", packet.kind.to_string());
    line.trim_end().to_owned()
}

/// Printable data as quoted text, anything else as its size and first bytes.
fn text(data: &Bytes) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if s.len() <= 48 && !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => {
            let head: Vec<String> = data.iter().take(6).map(|b| format!("{b:02x}")).collect();
            format!("{} bytes ({} ...)", data.len(), head.join(" "))
        }
    }
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex at {i}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wire_section_decodes_and_reencodes_every_shown_conversation() {
        let mut out = String::new();
        let summary = super::run(&mut out).unwrap();
        assert_eq!(summary.conversations, 4);
        assert!(out.contains("rpc \"/echo.Echo/Unary\""), "{out}");
        assert!(out.contains("metadata {\"k\"=\"v\"}"), "{out}");
        assert!(out.contains("code 7, \"boom\""), "{out}");
        assert!(
            out.contains("150000 bytes (03 0a 11 18 1f 26 ...), in 3 frames"),
            "{out}"
        );
    }
}
