//! Flow control: admit + bind + return cycles over 1,000 streams with three-replica quorums.
//!
//! One cycle admits a 4 KiB regular write to three streams (deducting at once), binds it to the
//! next log position, and has each of the three receivers report that position admitted. The
//! over-admission and slow-stream figures, and the check that no heartbeat is ever queued, come
//! from the simulator (`cargo run -p weir-examples --bin flow_sim`), which `make bench-flow` runs
//! after this.

mod support;

use std::hint::black_box;

use weir::flow::{Class, Config, FlowControl, LogPosition, Output, RequestId, StreamId, Targets};
use weir::time::Instant;

const STREAMS: u64 = 1_000;

struct Cycle {
    fc: FlowControl,
    targets: Vec<Targets>,
    next: u64,
}

impl Cycle {
    fn new() -> Cycle {
        let mut fc = FlowControl::new(Config::default());
        let streams: Vec<StreamId> = (0..STREAMS).map(|n| StreamId::new(1, n)).collect();
        for &s in &streams {
            fc.connect_stream(Instant::ZERO, s, LogPosition::new(1, 0))
                .expect("connect");
        }
        let targets = (0..STREAMS as usize)
            .map(|i| {
                let trio = [0, 1, 2].map(|k| streams[(i + k * 333) % streams.len()]);
                Targets::majority(&trio).with_must_have(trio[0])
            })
            .collect();
        Cycle {
            fc,
            targets,
            next: 0,
        }
    }

    fn run(&mut self) {
        self.next += 1;
        let now = Instant::from_nanos(self.next);
        let id = RequestId(self.next);
        let targets = &self.targets[(self.next % STREAMS) as usize];
        let position = LogPosition::new(1, self.next);
        self.fc
            .admit(now, id, Class::Regular, 4096, targets)
            .expect("admit");
        assert!(matches!(
            self.fc.poll_output(),
            Some(Output::Admitted { .. })
        ));
        self.fc.bind(now, id, position).expect("bind");
        for t in targets.replicas() {
            let returned = self
                .fc
                .handle_admitted(now, t.stream, Class::Regular, position);
            black_box(returned.expect("admitted"));
        }
    }
}

fn main() {
    let mut c = support::criterion();
    let figures = support::Figures::default();
    let mut cycle = Cycle::new();
    c.bench_function("flow/admit_bind_return_3_of_1000", |b| {
        figures.time(b, "cycle", || cycle.run());
    });
    cycle
        .fc
        .check_invariants()
        .expect("books balance after the benchmark");
    c.final_summary();
    support::figure("admit_cycle_ns", figures.ns_per_iter("cycle"));
}
