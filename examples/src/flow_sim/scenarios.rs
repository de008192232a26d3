//! The scenarios, after CockroachDB's flow simulator (`kvflowsimulator/testdata`), with the same
//! parameters where it has them.

use std::time::Duration;

use weir::flow::{Class, Config, StreamId};

use super::engine::{Action, Scenario, Workload};

/// One mebibyte, in bytes.
pub const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

/// The stream to store `n` of tenant 1.
pub fn store(n: u64) -> StreamId {
    StreamId::new(1, n)
}

/// A configuration that lets requests wait as long as CockroachDB's did (it had no deadline).
fn patient() -> Config {
    let mut config = Config::default();
    config.max_wait = Duration::from_secs(60);
    config
}

fn writes(
    class: Class,
    from: f64,
    until: f64,
    per_sec: f64,
    bytes: u64,
    targets: &[StreamId],
) -> Workload {
    Workload {
        class,
        from,
        until,
        per_sec,
        bytes,
        targets: targets.to_vec(),
        must_have: None,
    }
}

/// Two streams; writes outpace returns until 20 s: elastic tokens run out first (regular work
/// draws on them too), then regular; returns then refill both.
pub fn overview() -> Scenario {
    let (s1, s2) = (store(1), store(2));
    Scenario {
        name: "overview",
        title: "two streams: elastic tokens run out before regular, both refill",
        config: patient(),
        streams: vec![(s1, 0.0), (s2, 0.0)],
        workloads: vec![
            writes(Class::Regular, 0.0, 30.0, 10.0, MIB / 10, &[s1]),
            writes(Class::Regular, 0.0, 30.0, 10.0, MIB / 10, &[s2]),
            writes(Class::Elastic, 0.0, 30.0, 10.0, MIB / 10, &[s1, s2]),
        ],
        timeline: vec![
            (20.0, Action::ReceiverRate(s1, 4.0 * MIB as f64)),
            (20.0, Action::ReceiverRate(s2, 4.0 * MIB as f64)),
        ],
        bind_delay: 0.0,
        duration: 45.0,
    }
}

/// Bytes per request in the over-admission scenario: 4 MiB/s at 10 requests per second.
pub const OVER_ADMISSION_REQUEST: u64 = 4 * MIB / 10;

/// CockroachDB's over-admission scenario: all 16 MiB taken, 100 requests of 0.4 MiB queue up
/// (10/s for 10 s, each with a 2 s delay between admission and log position), then a single
/// 1 KiB return at 30 s. CockroachDB admitted all 100, 40 MiB over.
pub fn over_admission() -> Scenario {
    let s1 = store(1);
    Scenario {
        name: "over_admission",
        title: "one 1 KiB return with 100 requests waiting",
        config: patient(),
        streams: vec![(s1, 0.0)],
        workloads: vec![writes(
            Class::Regular,
            10.0,
            20.0,
            10.0,
            OVER_ADMISSION_REQUEST,
            &[s1],
        )],
        timeline: vec![
            (0.0, Action::Take(s1, KIB)),
            (0.0, Action::Take(s1, 16 * MIB - KIB)),
            (30.0, Action::ReceiverBurst(s1, KIB)),
        ],
        bind_delay: 2.0,
        duration: 40.0,
    }
}

/// One stream, regular and elastic writes of 2 MiB/s each against a receiver that admits
/// 3 MiB/s: regular work keeps its full rate, elastic gets what is left until regular stops.
pub fn prioritization() -> Scenario {
    let s1 = store(1);
    Scenario {
        name: "prioritization",
        title: "regular over elastic on one stream admitting 3 MiB/s",
        config: patient(),
        streams: vec![(s1, 3.0 * MIB as f64)],
        workloads: vec![
            writes(Class::Regular, 0.0, 30.0, 20.0, MIB / 10, &[s1]),
            writes(Class::Elastic, 0.0, 45.0, 20.0, MIB / 10, &[s1]),
        ],
        timeline: vec![],
        bind_delay: 0.0,
        duration: 60.0,
    }
}

/// Regular writes of 1 MiB/s (10/s) to three replicas; receivers admit 1 MiB/s, except the
/// third when `slow` (0.5 MiB/s), as in CockroachDB's `handle_single_slow_stream`.
pub fn single_slow_stream(slow: bool) -> Scenario {
    let (s1, s2, s3) = (store(1), store(2), store(3));
    let rate = MIB as f64;
    Scenario {
        name: if slow {
            "single_slow_stream"
        } else {
            "no_slow_stream"
        },
        title: if slow {
            "three replicas, one admitting at half speed"
        } else {
            "three replicas at full speed (the baseline)"
        },
        config: patient(),
        streams: vec![
            (s1, rate),
            (s2, rate),
            (s3, if slow { rate / 2.0 } else { rate }),
        ],
        workloads: vec![writes(
            Class::Regular,
            0.0,
            50.0,
            10.0,
            MIB / 10,
            &[s1, s2, s3],
        )],
        timeline: vec![],
        bind_delay: 0.0,
        duration: 50.0,
    }
}

/// Three replicas; the third stops admitting, so elastic work (which waits for every
/// replicating target) blocks on it. It disconnects at 15 s, which returns its tokens and
/// releases the waiters, and reconnects at 25 s with a healthy receiver.
pub fn disconnect_reconnect() -> Scenario {
    let (s1, s2, s3) = (store(1), store(2), store(3));
    let rate = 3.0 * MIB as f64;
    Scenario {
        name: "disconnect_reconnect",
        title: "a stalled stream disconnects at 15 s and reconnects at 25 s",
        config: patient(),
        streams: vec![(s1, rate), (s2, rate), (s3, 0.0)],
        workloads: vec![
            writes(Class::Regular, 0.0, 35.0, 10.0, MIB / 10, &[s1, s2, s3]),
            writes(Class::Elastic, 0.0, 35.0, 10.0, MIB / 10, &[s1, s2, s3]),
        ],
        timeline: vec![
            (15.0, Action::Disconnect(s3)),
            (25.0, Action::ReceiverRate(s3, rate)),
            (25.0, Action::Connect(s3)),
        ],
        bind_delay: 0.0,
        duration: 40.0,
    }
}

/// Heartbeats per second in the heartbeat-flood scenario.
pub const HEARTBEATS_PER_SEC: f64 = 1000.0;

/// Writes at twice what three receivers admit, so the queue fills to its bound and rejects,
/// while 1,000 heartbeats per second go through.
pub fn heartbeat_flood() -> Scenario {
    let (s1, s2, s3) = (store(1), store(2), store(3));
    let rate = 2.0 * MIB as f64;
    let mut config = patient();
    config.max_waiting = 256;
    let mut heartbeats = writes(
        Class::Control,
        0.0,
        30.0,
        HEARTBEATS_PER_SEC,
        64,
        &[s1, s2, s3],
    );
    heartbeats.must_have = Some(s1);
    Scenario {
        name: "heartbeat_flood",
        title: "overload at twice the admission rate, with 1,000 heartbeats/s",
        config,
        streams: vec![(s1, rate), (s2, rate), (s3, rate)],
        workloads: vec![
            writes(Class::Regular, 0.0, 30.0, 40.0, MIB / 10, &[s1, s2, s3]),
            heartbeats,
        ],
        timeline: vec![],
        bind_delay: 0.0,
        duration: 30.0,
    }
}

/// Every scenario, in the order the simulator runs them.
pub fn all() -> Vec<Scenario> {
    vec![
        overview(),
        over_admission(),
        prioritization(),
        single_slow_stream(false),
        single_slow_stream(true),
        disconnect_reconnect(),
        heartbeat_flood(),
    ]
}
