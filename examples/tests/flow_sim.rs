//! The flow simulator's scenarios, and the properties each must show.

use weir::flow::{Class, Config};
use weir_examples::flow_sim::{figures, ratio, run, scenarios, Run};

const MIB: u64 = scenarios::MIB;

fn clean(name: &str, r: &Run) {
    assert!(r.violations.is_empty(), "{name}: {:?}", r.violations);
}

/// Every pool is back at its limit.
fn all_returned(r: &Run) {
    let c = Config::default();
    for (stream, &(regular, elastic)) in &r.final_tokens {
        assert_eq!(
            regular, c.regular_tokens as i64,
            "{}: {stream:?} regular",
            r.name
        );
        assert_eq!(
            elastic, c.elastic_tokens as i64,
            "{}: {stream:?} elastic",
            r.name
        );
    }
}

#[test]
fn every_scenario_keeps_the_books_and_is_deterministic() {
    for scenario in scenarios::all() {
        let a = run(&scenario);
        clean(scenario.name, &a);
        let b = run(&scenario);
        assert_eq!(
            a.samples, b.samples,
            "{} is not deterministic",
            scenario.name
        );
    }
}

#[test]
fn overview_elastic_runs_out_before_regular_and_both_refill() {
    let r = run(&scenarios::overview());
    clean("overview", &r);
    let elastic = r
        .first(|s| s.elastic_blocked > 0)
        .expect("elastic never blocked")
        .t;
    let regular = r
        .first(|s| s.regular_blocked > 0)
        .expect("regular never blocked")
        .t;
    assert!(
        elastic + 5.0 < regular,
        "elastic blocked at {elastic}s, regular at {regular}s"
    );
    let last = r.samples.last().unwrap();
    assert_eq!((last.regular_waiting, last.elastic_waiting), (0, 0));
    all_returned(&r);
}

#[test]
fn one_small_return_admits_one_request_not_a_hundred() {
    let r = run(&scenarios::over_admission());
    clean("over_admission", &r);
    assert_eq!(r.at(29.9).unwrap().regular_waiting, 100);
    let admitted_after_return = r.rate(Class::Regular, 30.0, 40.0) * 10.0;
    assert_eq!(admitted_after_return.round(), 1.0);
    assert_eq!(r.samples.last().unwrap().regular_waiting, 99);
    // At most one request's bytes of debt, against CockroachDB's 40 MiB.
    assert!(r.max_regular_debt < scenarios::OVER_ADMISSION_REQUEST);
    assert!(r.max_regular_debt > 0);
    assert!(r.max_regular_debt < 4 * MIB);
}

#[test]
fn regular_work_keeps_its_rate_over_elastic() {
    let r = run(&scenarios::prioritization());
    clean("prioritization", &r);
    // Regular asks for 20/s of 0.1 MiB; the receiver admits 3 MiB/s, 30 requests per second.
    assert!(r.rate(Class::Regular, 10.0, 30.0) >= 19.5);
    let elastic = r.rate(Class::Elastic, 10.0, 30.0);
    assert!((8.0..=11.0).contains(&elastic), "elastic got {elastic}/s");
    assert!(r.samples.iter().all(|s| s.regular_waiting == 0));
    assert!(r.at(29.0).unwrap().elastic_waiting > 100);
    // Once regular work stops, elastic gets the whole stream and catches up.
    assert!(r.rate(Class::Elastic, 32.0, 45.0) >= 28.0);
    all_returned(&r);
}

#[test]
fn one_slow_replica_does_not_pace_the_quorum() {
    let slow = run(&scenarios::single_slow_stream(true));
    let baseline = run(&scenarios::single_slow_stream(false));
    clean("single_slow_stream", &slow);
    clean("no_slow_stream", &baseline);
    let ratio = ratio(
        slow.rate(Class::Regular, 10.0, 50.0),
        baseline.rate(Class::Regular, 10.0, 50.0),
    )
    .expect("the run with none slow admits regular work");
    assert!(ratio >= 0.9, "ratio {ratio}");
    // The slow stream's pool bottoms out within one request of zero instead of sinking: what
    // it cannot take yet waits with the leader, in log order.
    assert!(slow.max_regular_debt < MIB / 10);
    assert!(slow.samples.last().unwrap().send_queue_bytes > 5 * MIB);
    assert!(baseline.samples.iter().all(|s| s.send_queue_bytes == 0));
    let f = figures(&scenarios::all().iter().map(run).collect::<Vec<_>>()).unwrap();
    assert_eq!(f.slow_stream_regular_rate_ratio, Some(ratio));
}

#[test]
fn disconnecting_a_stalled_stream_releases_its_waiters() {
    let r = run(&scenarios::disconnect_reconnect());
    clean("disconnect_reconnect", &r);
    // Elastic work waits for every replicating replica, so the stalled one blocks it ...
    assert_eq!(r.rate(Class::Elastic, 8.0, 15.0), 0.0);
    assert!(r.at(14.9).unwrap().elastic_waiting > 50);
    // ... until it disconnects, which returns its tokens and lets the waiters through.
    assert!(r.bypassed > 0);
    assert_eq!(r.at(20.0).unwrap().elastic_waiting, 0);
    // Regular work went at the quorum's pace throughout.
    assert!(r.rate(Class::Regular, 1.0, 35.0) >= 9.9);
    // After reconnecting, the stream takes part again and everything comes back at the end.
    assert!(r.at(30.0).unwrap().regular_tokens > r.at(20.0).unwrap().regular_tokens);
    all_returned(&r);
}

#[test]
fn heartbeats_never_wait_during_overload() {
    let scenario = scenarios::heartbeat_flood();
    let r = run(&scenario);
    clean("heartbeat_flood", &r);
    assert_eq!(r.heartbeats_queued, 0);
    let heartbeats = r.rate(Class::Control, 0.0, 30.0) * 30.0;
    assert_eq!(heartbeats.round(), scenarios::HEARTBEATS_PER_SEC * 30.0);
    // The queue fills to its bound and then rejects, with a reason, instead of growing.
    let bound = scenario.config.max_waiting as u64;
    assert!(r.samples.iter().all(|s| s.regular_waiting <= bound));
    // (A sample may fall between a departure and the next arrival.)
    assert!(r.samples.last().unwrap().regular_waiting >= bound - 1);
    assert!(r.rejections.get("queue_full").copied().unwrap_or(0) > 100);
    assert_eq!(r.rejections.len(), 1);
    // Meanwhile regular work flows at what the receivers admit: 2 MiB/s, 20 requests/s.
    let rate = r.rate(Class::Regular, 15.0, 30.0);
    assert!((19.0..=21.0).contains(&rate), "regular {rate}/s");
}

#[test]
fn a_ratio_to_a_zero_baseline_is_no_figure() {
    assert_eq!(ratio(5.0, 0.0), None);
    assert_eq!(ratio(0.0, 0.0), None);
    assert_eq!(ratio(3.0, 2.0), Some(1.5));
    assert_eq!(figures(&[]), None);
}
