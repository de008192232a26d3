//! Every branch of the transfer protocol, with scripted server byte streams.

mod transfer_support;

use std::time::Duration;

use bytes::Bytes;
use transfer_support::*;
use weir::transfer::message::build_query;
use weir::transfer::{
    CloseReason, Config, Dialect, Failure, Output, ServerId, TransferError, TransferResult,
    STATE_COLUMNS,
};

const KEY: &str = "key-1";

fn state_query() -> Vec<u8> {
    build_query("SHOW TRANSFER STATE WITH 'key-1'")
        .unwrap()
        .to_vec()
}

#[test]
fn success_moves_the_session_and_its_cancel_key() {
    let mut h = Harness::new();
    h.client(&query("SET x = 1"));
    h.server(&[command_complete("SET"), ready(b'I')].concat());
    h.request(KEY);
    assert!(h.servers[0].ends_with(&state_query()));

    h.advance(Duration::from_millis(3));
    h.server(&state_response(KEY));
    let params = h.events.iter().find_map(|e| match e {
        Output::DialNewServer { server, params } if *server == ServerId(1) => Some(params.clone()),
        _ => None,
    });
    let expected: Vec<(String, String)> = vec![
        ("user".into(), "alice".into()),
        ("database".into(), "db".into()),
        ("crdb:session_revival_token_base64".into(), TOKEN.into()),
    ];
    assert_eq!(params, Some(expected));
    assert!(h.m.is_transferring());

    h.connected();
    assert!(contains(
        &h.new_server,
        b"crdb:session_revival_token_base64\0dG9rZW4=\0"
    ));
    h.new_server_bytes(&greeting(9));
    let deserialize =
        build_query("SELECT crdb_internal.deserialize_session(decode('c3RhdGU=', 'base64'))")
            .unwrap();
    assert!(h.new_server.ends_with(&deserialize));
    h.advance(Duration::from_millis(2));
    h.new_server_bytes(&deserialize_response(b"t"));

    let outcome = h.outcomes()[0].clone();
    assert_eq!(outcome.result, TransferResult::Success);
    assert_eq!(outcome.key, KEY);
    assert_eq!(outcome.latency, Duration::from_millis(5));
    assert_eq!(outcome.suspended, Duration::from_millis(5));
    assert!(h.events.contains(&Output::CloseOldServer(ServerId(0))));
    // The old server got a polite Terminate after the state query.
    assert!(h.servers[0].ends_with(b"X\0\0\0\x04"));
    assert!(!h.m.is_transferring());
    assert_eq!(h.m.poll_timeout(), None);

    let keys = h.m.cancel_keys();
    assert_eq!(keys.client.map(|k| k.process_id), Some(7));
    assert_eq!(keys.server.map(|k| k.process_id), Some(9));

    // The session goes on with the new server; the client saw nothing of the transfer.
    assert!(h.to_client.ends_with(&ready(b'I')));
    let to_client_before = h.to_client.len();
    h.client(&query("SELECT 2"));
    assert_eq!(h.servers[1].len() - h.servers[1].len(), 0);
    assert!(h.servers[1].ends_with(&query("SELECT 2")));
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    assert_eq!(h.to_client.len() - to_client_before, 6 + 14);
    h.assert_client_stream_intact();

    let m = h.m.metrics();
    assert_eq!(
        (m.attempted, m.success, m.error_fatal, m.error_recoverable),
        (1, 1, 0, 0)
    );
    assert_eq!(m.latency_ns.count, 1);
    assert_eq!(m.response_bytes.count, 1);
    assert!(h.m.at_safe_point());
}

#[test]
fn error_column_is_recoverable() {
    let mut h = Harness::new();
    h.request(KEY);
    h.client(&query("SELECT 1"));
    let response = [
        row_description(&STATE_COLUMNS),
        data_row(&[
            Some(b"cannot serialize: temp tables"),
            None,
            None,
            Some(KEY.as_bytes()),
        ]),
        command_complete("SHOW TRANSFER STATE 1"),
        ready(b'I'),
    ]
    .concat();
    h.server(&response);
    assert_eq!(
        h.recoverable(),
        Some(Failure::StateError("cannot serialize: temp tables".into()))
    );
    // The held query reaches the old server after the state query, once.
    assert!(h.servers[0].ends_with(&query("SELECT 1")));
    h.assert_client_stream_intact();
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Output::DialNewServer { .. })));
    assert_eq!(h.m.metrics().error_recoverable, 1);
    // The state response never reached the client.
    assert!(h.to_client.is_empty());
}

#[test]
fn error_response_while_waiting_is_fatal() {
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&[error_response("boom"), ready(b'I')].concat());
    assert_eq!(
        h.fatal(),
        Some(Failure::AmbiguousError("ERROR XX000: boom".into()))
    );
    assert!(h.events.iter().any(|e| matches!(
        e,
        Output::Closed(CloseReason::TransferFatal(Failure::AmbiguousError(_)))
    )));
    assert!(h.m.is_closed());
    assert_eq!(
        h.m.handle_client_input(h.now, Bytes::from_static(b"x")),
        Err(TransferError::Closed)
    );
    assert_eq!(h.m.metrics().error_fatal, 1);
}

#[test]
fn wrong_key_is_fatal() {
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&state_response("someone-else"));
    assert_eq!(h.fatal(), Some(Failure::WrongKey));
}

#[test]
fn wrong_tag_is_fatal() {
    let mut h = Harness::new();
    h.request(KEY);
    let mut response = state_response(KEY);
    let good = command_complete("SHOW TRANSFER STATE 1");
    let at = response
        .windows(good.len())
        .position(|w| w == good)
        .unwrap();
    response.splice(
        at..at + good.len(),
        command_complete("SHOW TRANSFER STATE 2"),
    );
    h.server(&response);
    assert_eq!(
        h.fatal(),
        Some(Failure::WrongTag("SHOW TRANSFER STATE 2".into()))
    );
}

#[test]
fn unrelated_messages_before_the_row_description_reach_the_client() {
    let mut h = Harness::new();
    h.request(KEY);
    let before = [notice("hello"), row_description(&["other"])].concat();
    h.server(&[before.clone(), state_response(KEY)].concat());
    assert_eq!(h.to_client, before);
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Output::DialNewServer { .. })));
}

#[test]
fn a_large_message_before_the_row_description_passes_in_pieces() {
    let mut h = Harness::new();
    h.request(KEY);
    let big = msg(b'A', &vec![b'n'; 100_000]);
    for chunk in big.chunks(4096) {
        h.server(chunk);
    }
    assert!(h.m.buffered_len() < 4096);
    h.server(&state_response(KEY));
    assert_eq!(h.to_client, big);
}

#[test]
fn an_oversized_state_row_is_fatal() {
    let config = Config {
        max_transfer_response_len: 64,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.request(KEY);
    let state = "A".repeat(100);
    let response = [
        row_description(&STATE_COLUMNS),
        data_row(&[
            None,
            Some(state.as_bytes()),
            Some(b"dG9r"),
            Some(KEY.as_bytes()),
        ]),
    ]
    .concat();
    for chunk in response.chunks(10) {
        if !h.m.is_closed() {
            h.server(chunk);
        }
    }
    assert_eq!(
        h.fatal(),
        Some(Failure::ResponseTooLarge {
            len: 4 + 2 + 4 + 4 + 100 + 4 + 4 + 4 + 5
        })
    );
}

#[test]
fn dial_failure_is_recoverable() {
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&state_response(KEY));
    h.client(&query("SELECT 1"));
    h.m.handle_new_server_failed(h.now, ServerId(1), "connection refused")
        .unwrap();
    h.drain();
    assert_eq!(
        h.recoverable(),
        Some(Failure::DialFailed("connection refused".into()))
    );
    assert!(h.events.contains(&Output::CloseNewServer(ServerId(1))));
    assert!(h.servers[0].ends_with(&query("SELECT 1")));
    h.assert_client_stream_intact();
    assert_eq!(
        h.m.handle_new_server_connected(h.now, ServerId(1)),
        Err(TransferError::NoNewServer)
    );
}

#[test]
fn token_rejection_is_recoverable() {
    for rejection in [
        [auth(0), error_response("invalid token")].concat(),
        auth(5).into_iter().chain([1, 2, 3, 4]).collect::<Vec<_>>(),
    ] {
        let mut h = Harness::new();
        h.request(KEY);
        h.server(&state_response(KEY));
        h.connected();
        let rejection = if rejection[0] == b'R' && rejection.len() == 9 + 4 {
            msg(b'R', &[0, 0, 0, 5, 1, 2, 3, 4])
        } else {
            rejection
        };
        h.new_server_bytes(&rejection);
        assert!(
            matches!(h.recoverable(), Some(Failure::TokenRejected(_))),
            "{:?}",
            h.last_result()
        );
        assert!(h.events.contains(&Output::CloseNewServer(ServerId(1))));
        assert_eq!(h.m.cancel_keys().server.map(|k| k.process_id), Some(7));
        // The session continues on the old server.
        h.client(&query("SELECT 1"));
        assert!(h.servers[0].ends_with(&query("SELECT 1")));
    }
}

#[test]
fn deserialize_false_is_recoverable() {
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&state_response(KEY));
    h.connected();
    h.new_server_bytes(&greeting(9));
    h.new_server_bytes(&deserialize_response(b"f"));
    assert_eq!(h.recoverable(), Some(Failure::DeserializeFalse));
    assert_eq!(h.m.cancel_keys().server.map(|k| k.process_id), Some(7));
}

#[test]
fn deadline_while_waiting_for_a_safe_point_is_recoverable() {
    let mut h = Harness::new();
    h.client(&query("BEGIN"));
    h.server(&[command_complete("BEGIN"), ready(b'T')].concat());
    let sent = h.servers[0].len();
    h.request(KEY);
    assert_eq!(h.m.poll_timeout(), Some(h.now + Duration::from_secs(15)));
    h.advance(Duration::from_secs(14));
    h.timeout();
    assert!(h.outcomes().is_empty());
    h.advance(Duration::from_secs(1));
    h.timeout();
    assert_eq!(h.recoverable(), Some(Failure::NoSafePoint));
    assert_eq!(h.servers[0].len(), sent, "nothing was sent to the server");
    assert_eq!(h.outcomes()[0].latency, Duration::from_secs(15));
}

#[test]
fn deadline_inside_the_non_recoverable_window_is_fatal() {
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&row_description(&STATE_COLUMNS));
    h.advance(Duration::from_secs(15));
    h.timeout();
    assert_eq!(h.fatal(), Some(Failure::Timeout));
    assert!(h.m.is_closed());
}

#[test]
fn deadline_after_the_state_response_is_recoverable() {
    for connected in [false, true] {
        let mut h = Harness::new();
        h.request(KEY);
        h.server(&state_response(KEY));
        if connected {
            h.connected();
            h.new_server_bytes(&auth(0));
        }
        h.advance(Duration::from_secs(15));
        h.timeout();
        assert_eq!(h.recoverable(), Some(Failure::Timeout));
        assert!(h.events.contains(&Output::CloseNewServer(ServerId(1))));
    }
}

#[test]
fn inside_a_transaction_waits_for_commit() {
    let mut h = Harness::new();
    h.client(&query("BEGIN"));
    h.server(&[command_complete("BEGIN"), ready(b'T')].concat());
    h.request(KEY);
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
    h.advance(Duration::from_millis(40));
    h.client(&query("COMMIT"));
    h.server(&command_complete("COMMIT"));
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
    h.server(&ready(b'I'));
    assert!(h.servers[0].ends_with(&state_query()));
    // The session is held only from the safe point on; the latency counts the wait too.
    h.advance(Duration::from_millis(2));
    h.server(&state_response(KEY));
    h.connected();
    h.new_server_bytes(&greeting(9));
    h.new_server_bytes(&deserialize_response(b"t"));
    let outcome = h.outcomes()[0].clone();
    assert_eq!(outcome.result, TransferResult::Success);
    assert_eq!(outcome.latency, Duration::from_millis(42));
    assert_eq!(outcome.suspended, Duration::from_millis(2));
    // A failed transaction is not idle either.
    let mut h = Harness::new();
    h.client(&query("BEGIN; SELECT 1/0"));
    h.server(&[error_response("division by zero"), ready(b'E')].concat());
    h.request(KEY);
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
}

#[test]
fn during_copy_waits_for_its_end() {
    let mut h = Harness::new();
    h.client(&query("COPY t FROM STDIN"));
    h.server(&msg(b'G', &[0, 0, 0]));
    h.request(KEY);
    h.client(&msg(b'd', b"1\n"));
    h.client(&msg(b'c', b""));
    h.server(&command_complete("COPY 1"));
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
    h.server(&ready(b'I'));
    assert!(h.servers[0].ends_with(&state_query()));
    h.assert_client_stream_intact();

    // Copy-out: the server streams until CopyDone and ReadyForQuery.
    let mut h = Harness::new();
    h.client(&query("COPY t TO STDOUT"));
    h.server(&[msg(b'H', &[0, 0, 0]), msg(b'd', b"1\n")].concat());
    h.request(KEY);
    h.server(&[msg(b'c', b""), command_complete("COPY 1")].concat());
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
    h.server(&ready(b'I'));
    assert!(h.servers[0].ends_with(&state_query()));
}

#[test]
fn inside_a_pipelined_extended_batch_waits_for_every_sync() {
    let mut h = Harness::new();
    let parse = msg(b'P', b"\0SELECT 1\0\0\0");
    let bind = msg(b'B', b"\0\0\0\0\0\0\0\0");
    let execute = msg(b'E', b"\0\0\0\0\0");
    let sync = msg(b'S', b"");
    // Two batches; the second is not synced yet.
    h.client(&[parse.clone(), bind.clone(), execute.clone(), sync.clone()].concat());
    h.client(&[parse.clone(), bind.clone(), execute.clone()].concat());
    h.request(KEY);
    let first = [
        msg(b'1', b""),
        msg(b'2', b""),
        data_row(&[Some(b"1")]),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]
    .concat();
    h.server(&first);
    assert!(
        !contains(&h.servers[0], b"SHOW TRANSFER"),
        "second batch unsynced"
    );
    h.client(&sync);
    h.server(&first);
    assert!(h.servers[0].ends_with(&state_query()));
    assert_eq!(h.to_client, [first.clone(), first].concat());

    // Pipelined simple queries: one ReadyForQuery per query.
    let mut h = Harness::new();
    h.client(&[query("SELECT 1"), query("SELECT 2")].concat());
    h.request(KEY);
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    assert!(h.servers[0].ends_with(&state_query()));
}

#[test]
fn a_client_halfway_through_a_message_is_not_at_a_safe_point() {
    let mut h = Harness::new();
    let q = query("SELECT 1");
    h.client(&q[..3]);
    h.request(KEY);
    assert!(!contains(&h.servers[0], b"SHOW TRANSFER"));
    h.client(&q[3..]);
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    assert!(h.servers[0].ends_with(&state_query()));
    // The state query follows the whole client query, never splits it.
    assert!(contains(&h.servers[0], &[q, state_query()].concat()));
}

#[test]
fn safe_point_inside_a_server_buffer_starts_the_transfer_there() {
    let mut h = Harness::new();
    h.client(&query("SELECT 1"));
    h.request(KEY);
    // ReadyForQuery, a notice, and the state response arrive together.
    let input = [
        command_complete("SELECT 1"),
        ready(b'I'),
        notice("late"),
        state_response(KEY),
    ]
    .concat();
    // The state response cannot be in the buffer before the query was sent, but the notice can:
    // feed the first part, then the rest.
    let split = command_complete("SELECT 1").len() + ready(b'I').len() + notice("late").len();
    h.server(&input[..split]);
    assert!(h.servers[0].ends_with(&state_query()));
    h.server(&input[split..]);
    assert_eq!(h.to_client, input[..split].to_vec());
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Output::DialNewServer { .. })));
}

/// The phases a transfer passes through, for sending client bytes in each.
const PHASES: usize = 6;

fn run_to_phase(h: &mut Harness, phase: usize, send: &mut dyn FnMut(&mut Harness)) {
    let q = query("SELECT 1");
    let answer = [command_complete("SELECT 1"), ready(b'I')].concat();
    // Before the safe point client bytes go straight through and need their own answer.
    let answers = if phase == 0 { 2 } else { 1 };
    let steps: [&dyn Fn(&mut Harness); PHASES] = [
        &|h: &mut Harness| {
            h.client(&q);
            h.request(KEY);
        },
        &|h: &mut Harness| h.server(&answer.repeat(answers)),
        &|h: &mut Harness| h.server(&state_response(KEY)[..40]),
        &|h: &mut Harness| h.server(&state_response(KEY)[40..]),
        &|h: &mut Harness| h.connected(),
        &|h: &mut Harness| h.new_server_bytes(&greeting(9)),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(h);
        if i == phase {
            send(h);
        }
    }
}

#[test]
fn client_bytes_in_every_phase_arrive_once_in_order() {
    for phase in 0..PHASES {
        for succeed in [true, false] {
            let mut h = Harness::new();
            let mut n = 0;
            run_to_phase(&mut h, phase, &mut |h| {
                n += 1;
                h.client(&query(&format!("SELECT 'phase {phase}'")));
                if phase > 0 {
                    h.client(&query("SELECT 'again'")[..4]);
                }
            });
            if succeed {
                h.new_server_bytes(&deserialize_response(b"t"));
                assert_eq!(
                    h.last_result(),
                    Some(TransferResult::Success),
                    "phase {phase}"
                );
            } else {
                h.new_server_bytes(&deserialize_response(b"f"));
                assert_eq!(h.recoverable(), Some(Failure::DeserializeFalse));
            }
            if phase == 0 {
                h.client(&query("SELECT 'again'")[..4]);
            }
            h.client(&query("SELECT 'again'")[4..]);
            h.assert_client_stream_intact();
            // Bytes sent before the safe point went to the old server; the rest to where the
            // session ended.
            let end = if succeed {
                h.servers.last().unwrap()
            } else {
                &h.servers[0]
            };
            assert!(
                end.ends_with(&query("SELECT 'again'")),
                "phase {phase} {succeed}"
            );
            let sent = query(&format!("SELECT 'phase {phase}'"));
            let target = if phase == 0 || !succeed {
                &h.servers[0]
            } else {
                &h.servers[1]
            };
            assert!(contains(target, &sent), "phase {phase} {succeed}");
            if phase > 0 {
                // Held bytes come after the state query, never before it.
                let at = |s: &[u8], n: &[u8]| s.windows(n.len()).position(|w| w == n);
                let state = at(&h.servers[0], b"SHOW TRANSFER").unwrap();
                if let Some(i) = at(&h.servers[0], &sent) {
                    assert!(i > state);
                }
            }
            assert_eq!(n, 1);
        }
    }
}

#[test]
fn held_client_bytes_are_bounded() {
    let config = Config {
        max_held_client_bytes: 32,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.request(KEY);
    h.client(&[b'Q'; 20]);
    let err =
        h.m.handle_client_input(h.now, Bytes::from_static(&[b'x'; 20]))
            .unwrap_err();
    assert_eq!(
        err,
        TransferError::HeldClientBytesFull {
            held: 20,
            offered: 20,
            limit: 32
        }
    );
    h.client(&[b'y'; 12]);
    assert_eq!(h.m.buffered_len(), 32);
}

#[test]
fn late_old_server_bytes_during_the_dial() {
    // Recoverable: they reach the client after all.
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&state_response(KEY));
    h.server(&notice("late"));
    assert!(h.to_client.is_empty());
    h.m.handle_new_server_failed(h.now, ServerId(1), "down")
        .unwrap();
    h.drain();
    assert_eq!(h.to_client, notice("late"));

    // Success: they die with the old connection, counted.
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&state_response(KEY));
    h.server(&notice("late"));
    h.connected();
    h.new_server_bytes(&greeting(9));
    h.new_server_bytes(&deserialize_response(b"t"));
    assert!(h.to_client.is_empty());
    assert_eq!(
        h.m.metrics().discarded_old_server_bytes,
        notice("late").len() as u64
    );

    // Too many of them: the transfer gives up, recoverably.
    let config = Config {
        max_held_server_bytes: 16,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.request(KEY);
    h.server(&state_response(KEY));
    h.server(&notice("a long notice that passes the limit"));
    assert_eq!(h.recoverable(), Some(Failure::HeldServerBytesFull));
    assert_eq!(h.to_client, notice("a long notice that passes the limit"));
}

#[test]
fn misuse_is_refused_without_effect() {
    let mut h = Harness::new();
    assert_eq!(
        h.m.request_transfer(h.now, "bad'key", ServerId(1)),
        Err(TransferError::InvalidTransferKey { max: 128 })
    );
    assert_eq!(
        h.m.request_transfer(h.now, "", ServerId(1)),
        Err(TransferError::InvalidTransferKey { max: 128 })
    );
    assert_eq!(
        h.m.handle_new_server_connected(h.now, ServerId(1)),
        Err(TransferError::NoNewServer)
    );
    assert_eq!(
        h.m.handle_server_input(h.now, ServerId(1), Bytes::new()),
        Err(TransferError::UnknownServer(ServerId(1)))
    );
    assert_eq!(
        h.m.request_transfer(h.now, KEY, ServerId(0)),
        Err(TransferError::UnknownServer(ServerId(0)))
    );
    h.request(KEY);
    assert_eq!(
        h.m.request_transfer(h.now, KEY, ServerId(1)),
        Err(TransferError::TransferInProgress)
    );
    h.server(&state_response(KEY));
    assert_eq!(
        h.m.handle_server_input(h.now, ServerId(1), Bytes::new()),
        Err(TransferError::NewServerNotConnected)
    );
    assert_eq!(
        h.m.handle_server_input(h.now, ServerId(2), Bytes::new()),
        Err(TransferError::UnknownServer(ServerId(2)))
    );
    h.connected();
    assert_eq!(
        h.m.handle_new_server_connected(h.now, ServerId(1)),
        Err(TransferError::NewServerAlreadyConnected)
    );
    assert_eq!(h.m.metrics().attempted, 1);
}

#[test]
fn startup_phase_cases() {
    // CancelRequest: reported for routing, never forwarded.
    let mut m = weir::transfer::Machine::new(Config::default(), ServerId(0));
    let cancel = [0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 7, 0, 0, 0, 42];
    m.handle_client_input(weir::time::Instant::ZERO, Bytes::copy_from_slice(&cancel))
        .unwrap();
    let outputs: Vec<_> = std::iter::from_fn(|| m.poll_output()).collect();
    assert!(matches!(&outputs[0], Output::CancelRequest(k) if k.process_id == 7));
    assert_eq!(outputs[1], Output::Closed(CloseReason::CancelRequest));

    // SSLRequest answered N passes through; answered S closes (encryption is the adapter's).
    for (answer, closes) in [(b'N', false), (b'S', true)] {
        let mut m = weir::transfer::Machine::new(Config::default(), ServerId(0));
        let ssl = [0, 0, 0, 8, 4, 210, 22, 47];
        let now = weir::time::Instant::ZERO;
        m.handle_client_input(now, Bytes::copy_from_slice(&ssl))
            .unwrap();
        m.handle_server_input(now, ServerId(0), Bytes::copy_from_slice(&[answer]))
            .unwrap();
        let outputs: Vec<_> = std::iter::from_fn(|| m.poll_output()).collect();
        assert_eq!(m.is_closed(), closes);
        if !closes {
            assert_eq!(outputs.len(), 2);
        }
    }

    // A client that brings its own revival token is refused.
    let mut m = weir::transfer::Machine::new(Config::default(), ServerId(0));
    let startup = weir::transfer::message::build_startup_message(
        [
            ("user", "mallory"),
            ("crdb:session_revival_token_base64", "x"),
        ],
        10_000,
    )
    .unwrap();
    m.handle_client_input(weir::time::Instant::ZERO, startup)
        .unwrap();
    assert_eq!(
        m.poll_output(),
        Some(Output::Closed(CloseReason::ClientSentRevivalToken))
    );

    // A transfer requested during startup waits for the first ReadyForQuery.
    let mut h = Harness::new();
    let mut m = weir::transfer::Machine::new(Config::default(), ServerId(0));
    let startup =
        weir::transfer::message::build_startup_message([("user", "alice")], 10_000).unwrap();
    m.handle_client_input(h.now, startup).unwrap();
    m.request_transfer(h.now, KEY, ServerId(1)).unwrap();
    m.handle_server_input(h.now, ServerId(0), Bytes::from(auth(0)))
        .unwrap();
    while m.poll_output().is_some() {}
    m.handle_server_input(h.now, ServerId(0), Bytes::from(ready(b'I')))
        .unwrap();
    let outputs: Vec<_> = std::iter::from_fn(|| m.poll_output()).collect();
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Transmit(t) if t.data[..] == state_query()[..])));
    h.drain();
}

#[test]
fn protocol_violations_close_the_client() {
    let mut h = Harness::new();
    h.server(&[b'Z', 0, 0, 0, 5, b'?']);
    assert!(h.m.is_closed());
    let mut h = Harness::new();
    h.client(&[b'Q', 0, 0, 0, 1]);
    assert!(h.m.is_closed());
    // During a transfer, the transfer ends fatally with the session.
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&[b'T', 0, 0, 0, 2]);
    assert!(matches!(h.fatal(), Some(Failure::Protocol(_))));
}

#[test]
fn postgres_dialect_round_trip() {
    let mut h = Harness::with_config(Config::with_dialect(Dialect::postgres()));
    h.request(KEY);
    assert!(contains(
        &h.servers[0],
        b"SELECT * FROM weir.show_transfer_state('key-1')"
    ));
    let response = [
        row_description(&STATE_COLUMNS),
        // PostgreSQL's encode() breaks base64 lines; the machine removes the breaks.
        data_row(&[
            None,
            Some(b"c3Rh\ndGU="),
            Some(TOKEN.as_bytes()),
            Some(KEY.as_bytes()),
        ]),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]
    .concat();
    h.server(&response);
    h.connected();
    assert!(contains(
        &h.new_server,
        b"weir.session_revival_token\0dG9rZW4=\0"
    ));
    h.new_server_bytes(&greeting(9));
    assert!(contains(
        &h.new_server,
        b"SELECT weir.deserialize_session(decode('c3RhdGU=', 'base64'))"
    ));
    let response = [
        row_description(&["deserialize_session"]),
        parameter_status("DateStyle", "German, DMY"),
        data_row(&[Some(b"t")]),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]
    .concat();
    h.new_server_bytes(&response);
    assert_eq!(h.last_result(), Some(TransferResult::Success));
}

#[test]
fn a_second_transfer_after_the_first() {
    let mut h = Harness::new();
    h.transfer_successfully("first");
    h.client(&query("SELECT 1"));
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    h.transfer_successfully("second");
    assert_eq!(h.servers.len(), 3);
    assert_eq!(h.m.metrics().success, 2);
    h.assert_client_stream_intact();
}

/// CockroachDB's dialect with a query that carries the token to an already started server.
fn reuse_config() -> Config {
    let mut dialect = Dialect::cockroachdb();
    dialect.started_server_query_template = Some("SELECT resume('{state}', '{token}')".into());
    Config {
        reuse_old_server: true,
        ..Config::with_dialect(dialect)
    }
}

#[test]
fn started_server_gets_the_token_in_its_query_and_the_old_server_is_released() {
    let mut h = Harness::with_config(reuse_config());
    h.request(KEY);
    h.server(&state_response(KEY));
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Output::DialNewServer { .. })));

    h.started(11);
    // No startup packet: the deserialize query is the first thing the server gets.
    let resume = build_query("SELECT resume('c3RhdGU=', 'dG9rZW4=')").unwrap();
    assert_eq!(h.new_server, resume.to_vec());
    h.new_server_bytes(&deserialize_response(b"t"));

    assert_eq!(h.last_result(), Some(TransferResult::Success));
    let released = h.events.iter().find_map(|e| match e {
        Output::ReleaseOldServer { server, key } if *server == ServerId(0) => Some(key.clone()),
        _ => None,
    });
    assert_eq!(released.flatten().map(|k| k.process_id), Some(7));
    assert!(!h.events.contains(&Output::CloseOldServer(ServerId(0))));
    // No Terminate: the state query is the last thing the old server got.
    assert!(h.servers[0].ends_with(&state_query()));
    assert_eq!(h.m.cancel_keys().server.map(|k| k.process_id), Some(11));

    h.client(&query("SELECT 2"));
    assert!(h.servers[1].ends_with(&query("SELECT 2")));
    h.assert_client_stream_intact();
}

#[test]
fn started_server_is_refused_without_a_query_for_it() {
    let mut h = Harness::new();
    h.request(KEY);
    h.server(&state_response(KEY));
    let key = weir::transfer::message::BackendKey {
        process_id: 11,
        secret: vec![1, 2, 3, 4],
    };
    assert_eq!(
        h.m.handle_new_server_started(h.now, ServerId(1), Some(key)),
        Err(TransferError::NoStartedServerQuery)
    );
    // Unchanged: a dialled server still completes the transfer.
    assert!(h.new_server.is_empty());
    h.connected();
    h.new_server_bytes(&greeting(9));
    h.new_server_bytes(&deserialize_response(b"t"));
    assert_eq!(h.last_result(), Some(TransferResult::Success));
}

#[test]
fn started_server_after_a_dial_is_refused() {
    let mut h = Harness::with_config(reuse_config());
    h.request(KEY);
    h.server(&state_response(KEY));
    h.connected();
    assert_eq!(
        h.m.handle_new_server_started(h.now, ServerId(1), None),
        Err(TransferError::NewServerAlreadyConnected)
    );
}

#[test]
fn old_server_that_spoke_after_the_state_query_is_closed_not_released() {
    let mut h = Harness::with_config(reuse_config());
    h.request(KEY);
    h.server(&state_response(KEY));
    h.server(&notice("late"));
    h.started(11);
    h.new_server_bytes(&deserialize_response(b"t"));
    assert_eq!(h.last_result(), Some(TransferResult::Success));
    assert!(h.events.contains(&Output::CloseOldServer(ServerId(0))));
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Output::ReleaseOldServer { .. })));
    assert!(h.servers[0].ends_with(b"X\0\0\0\x04"));
}

#[test]
fn reuse_is_off_by_default() {
    let mut h = Harness::new();
    h.transfer_successfully(KEY);
    assert!(h.events.contains(&Output::CloseOldServer(ServerId(0))));
}

/// CockroachDB's statements, with the machine creating prepared statements again itself (as
/// it does for PostgreSQL), so the scripted responses above still fit.
fn replaying(max_prepared_statement_bytes: usize) -> Harness {
    let dialect = Dialect {
        replay_prepared_statements: true,
        ..Dialect::cockroachdb()
    };
    Harness::with_config(Config {
        max_prepared_statement_bytes,
        ..Config::with_dialect(dialect)
    })
}

/// Prepare `name` through the extended protocol, answered by the current server.
fn prepare(h: &mut Harness, name: &str, sql: &str, oids: &[u32]) {
    h.client(&[parse(name, sql, oids), sync()].concat());
    h.server(&[parse_complete(), ready(b'I')].concat());
}

/// Request a move and answer it up to the deserialize query's response.
fn move_to_replay(h: &mut Harness) {
    h.request(KEY);
    h.server(&state_response(KEY));
    h.connected();
    h.new_server_bytes(&greeting(9));
    h.new_server_bytes(&deserialize_response(b"t"));
}

#[test]
fn prepared_statements_are_created_again_before_the_held_bytes() {
    let mut h = replaying(1 << 20);
    prepare(&mut h, "s1", "SELECT $1", &[23]);
    prepare(&mut h, "begin", "BEGIN", &[]);
    prepare(&mut h, "gone", "SELECT 2", &[]);
    prepare(&mut h, "", "SELECT 3", &[]);
    h.client(&[close_statement("gone"), sync()].concat());
    h.server(&[close_complete(), ready(b'I')].concat());
    let to_client_before = h.to_client.len();

    h.request(KEY);
    h.client(&query("SELECT 'held'"));
    h.server(&state_response(KEY));
    h.connected();
    h.new_server_bytes(&greeting(9));
    let deserialize_at = h.new_server.len();
    h.new_server_bytes(&deserialize_response(b"t"));
    // Kept statements in name order, then a Sync; not the closed or the unnamed one.
    let replay = [
        parse("begin", "BEGIN", &[]),
        parse("s1", "SELECT $1", &[23]),
        sync(),
    ]
    .concat();
    assert_eq!(&h.new_server[deserialize_at..], &replay[..]);
    assert_eq!(h.last_result(), None, "the move waits for the statements");
    assert!(!contains(&h.new_server, b"SELECT 'held'"));

    h.new_server_bytes(&[parse_complete(), parse_complete(), ready(b'I')].concat());
    assert_eq!(h.last_result(), Some(TransferResult::Success));
    assert_eq!(
        h.to_client.len(),
        to_client_before,
        "the client sees none of it"
    );
    assert!(h.servers[1].ends_with(&query("SELECT 'held'")));
    assert_eq!(h.m.metrics().prepared_statements_replayed, 2);
    h.assert_client_stream_intact();

    // The statements stay kept for the next move.
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    move_to_replay(&mut h);
    assert!(h.new_server.ends_with(&replay));
}

#[test]
fn a_statement_the_new_server_refuses_fails_the_move_recoverably() {
    let mut h = replaying(1 << 20);
    prepare(&mut h, "s1", "SELECT * FROM only_on_the_old_server", &[]);
    move_to_replay(&mut h);
    h.client(&query("SELECT 'after'"));
    h.new_server_bytes(
        &[
            error_response("relation \"only_on_the_old_server\" does not exist"),
            ready(b'I'),
        ]
        .concat(),
    );
    match h.recoverable() {
        Some(Failure::PrepareFailed(why)) => assert!(why.contains("does not exist"), "{why}"),
        other => panic!("expected a recoverable failure, got {other:?}"),
    }
    assert!(h.events.contains(&Output::CloseNewServer(h.new_id())));
    assert_eq!(h.m.server(), ServerId(0));
    assert!(h.servers[0].ends_with(&query("SELECT 'after'")));
    assert!(!contains(&h.to_client, b"only_on_the_old_server"));
}

#[test]
fn statements_over_the_limit_keep_the_session_where_it_is() {
    let mut h = replaying(256);
    prepare(&mut h, "small", "SELECT 1", &[]);
    prepare(&mut h, "large", &"SELECT 1 ".repeat(40), &[]);
    let sent = h.servers[0].len();
    h.request(KEY);
    assert_eq!(
        h.recoverable(),
        Some(Failure::PreparedStatementsOverLimit { limit: 256 })
    );
    assert_eq!(h.servers[0].len(), sent, "no server was asked anything");
    assert!(!h.m.is_transferring());
    h.client(&query("SELECT 'still here'"));
    assert!(h.servers[0].ends_with(&query("SELECT 'still here'")));

    // DISCARD ALL drops every statement, and with them the excess.
    h.server(&[command_complete("SELECT 1"), ready(b'I')].concat());
    h.client(&query("DISCARD ALL"));
    h.server(&[command_complete("DISCARD ALL"), ready(b'I')].concat());
    h.transfer_successfully("again");
}

#[test]
fn a_parse_split_across_inputs_is_kept_whole() {
    let mut h = replaying(1 << 20);
    let message = [parse("split", "SELECT 'a long statement'", &[25]), sync()].concat();
    for byte in &message {
        h.client(std::slice::from_ref(byte));
    }
    h.server(&[parse_complete(), ready(b'I')].concat());
    move_to_replay(&mut h);
    assert!(h.new_server.ends_with(&message));
}

#[test]
fn cockroachdb_carries_prepared_statements_itself() {
    let mut h = Harness::new();
    prepare(&mut h, "s1", "SELECT 1", &[]);
    h.transfer_successfully(KEY);
    assert!(!contains(&h.new_server, b"SELECT 1\0"));
    assert!(!contains(&h.servers[1], &parse("s1", "SELECT 1", &[])));
    assert_eq!(h.m.metrics().prepared_statements_replayed, 0);
}
