//! The socket section of the tour, at a small scale: every call answers correctly and the
//! numbers it prints are the ones it measured.

use weir_examples::tour::socket::{run, Scale};

#[test]
fn the_socket_section_runs_and_reports_what_it_saw() {
    let scale = Scale {
        streams: 16,
        rounds: 4,
        bulk_bytes: 4 << 20,
        small_calls: 50,
    };
    let mut story = Vec::new();
    let summary = run(&mut story, scale).unwrap();
    let story = String::from_utf8(story).unwrap();

    assert_eq!(summary.unary_reply, "hello, weir");
    assert_eq!(summary.streamed, 3);
    assert_eq!(summary.echoed, 3);
    assert_eq!(summary.streams_ok, 16);
    assert_eq!(summary.bulk_received, 4 << 20);
    assert!(summary.calls_with_bulk >= 1);
    assert!(summary.alone.0 <= summary.alone.1);
    assert!(summary.with_bulk.0 <= summary.with_bulk.1);

    assert!(
        story.contains("message 1 of 3, message 2 of 3, message 3 of 3"),
        "{story}"
    );
    assert!(story.contains("16 of 16 all correct"), "{story}");
    assert!(
        story.contains(&format!("the server counted {} bytes", 4 << 20)),
        "{story}"
    );
}
