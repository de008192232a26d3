//! The moving run's mover: every tick, ask every live session to move to the other backend.
//!
//! By default (`Pattern::Pairs`) the sessions go in pairs, one from each backend, the two of a
//! pair at the same instant and the pairs spread evenly over the tick (with 8 sessions and
//! 100 ms, a pair every 25 ms): every session still moves once per tick, and the backends keep
//! the same number of sessions, so the run measures the moves and not a placement that swings
//! between 4 and 4 and 3 and 5 (at pgbench's scale 1 every transaction of a server updates its
//! one branch row, so one session more on a server costs more than the move). With
//! `WEIR_BENCH_MOVES=staggered`, each session moves on its own at i/n of the tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use weir::transfer::{TransferOutcome, TransferResult};
use weir_tokio::proxy::{BackendId, MoveError, Proxy, SessionInfo};

/// How a tick's moves are laid out over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// One session from each backend at a time, the pairs spread over the tick.
    Pairs,
    /// One session at a time, spread over the tick.
    Staggered,
}

impl Pattern {
    /// `WEIR_BENCH_MOVES`: `pairs` (the default) or `staggered`.
    pub fn from_env() -> Result<Pattern, String> {
        match std::env::var("WEIR_BENCH_MOVES").as_deref() {
            Err(_) | Ok("pairs") => Ok(Pattern::Pairs),
            Ok("staggered") => Ok(Pattern::Staggered),
            Ok(other) => Err(format!(
                "WEIR_BENCH_MOVES must be pairs or staggered, not {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Pairs => "pairs",
            Pattern::Staggered => "staggered",
        }
    }

    /// The tick's sessions in groups that move together, in order.
    fn groups(self, sessions: Vec<SessionInfo>) -> Vec<Vec<SessionInfo>> {
        match self {
            Pattern::Staggered => sessions.into_iter().map(|s| vec![s]).collect(),
            Pattern::Pairs => {
                let (mut on_first, mut others): (Vec<_>, Vec<_>) = sessions
                    .into_iter()
                    .partition(|s| s.backend == BackendId(0));
                let slots = on_first.len().max(others.len());
                let (mut a, mut b) = (on_first.drain(..), others.drain(..));
                (0..slots)
                    .map(|_| a.next().into_iter().chain(b.next()).collect())
                    .collect()
            }
        }
    }
}

/// What the requested moves came to.
#[derive(Debug, Default)]
pub struct Moves {
    /// Latency of each successful move (its last attempt's [`TransferOutcome::latency`]).
    pub latencies_ms: Vec<f64>,
    /// How long each successful move held its session ([`TransferOutcome::suspended`]).
    pub suspended_ms: Vec<f64>,
    /// Moves whose last attempt failed, recoverably or fatally, or that the proxy refused
    /// for a reason other than the two below; each with what it said.
    pub failed: Vec<String>,
    /// Requests for a session whose previous move had not finished yet.
    pub in_progress: u64,
    /// Moves still waiting for a safe point when their session ended (pgbench disconnects at
    /// the end of the run).
    pub cut_by_session_end: u64,
}

impl Moves {
    /// Moves that ran to an outcome.
    pub fn total(&self) -> usize {
        self.latencies_ms.len() + self.failed.len()
    }

    fn record(&mut self, result: Result<TransferOutcome, MoveError>) {
        match result {
            Ok(TransferOutcome {
                result: TransferResult::Success,
                latency,
                suspended,
                ..
            }) => {
                self.latencies_ms.push(latency.as_secs_f64() * 1e3);
                self.suspended_ms.push(suspended.as_secs_f64() * 1e3);
            }
            Ok(TransferOutcome {
                result: TransferResult::Recoverable(f),
                ..
            }) => self.failed.push(format!("recoverable: {f}")),
            Ok(TransferOutcome {
                result: TransferResult::Fatal(f),
                ..
            }) => self.failed.push(format!("fatal: {f}")),
            Err(MoveError::InProgress) => self.in_progress += 1,
            Err(MoveError::SessionClosed) | Err(MoveError::UnknownSession(_)) => {
                self.cut_by_session_end += 1
            }
            Err(e) => self.failed.push(e.to_string()),
        }
    }
}

/// Move every session every `every`, laid out as `pattern` says, until `stop` fires, then wait
/// for the moves under way (moves of the last tick not started yet when `stop` fires are
/// dropped).
pub async fn run(
    proxy: Arc<Proxy>,
    every: Duration,
    pattern: Pattern,
    mut stop: oneshot::Receiver<()>,
) -> Moves {
    let mut moves = Moves::default();
    let mut running = JoinSet::new();
    let stopped = Arc::new(AtomicBool::new(false));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(done) = running.join_next() => {
                if let Some(result) = done.expect("a move task panicked") {
                    moves.record(result);
                }
            }
            _ = ticks.tick() => {
                let groups = pattern.groups(proxy.sessions());
                let n = groups.len() as u32;
                for (i, group) in (0u32..).zip(groups) {
                    let delay = every * i / n.max(1);
                    for session in group {
                        let proxy = proxy.clone();
                        let stopped = stopped.clone();
                        running.spawn(async move {
                            tokio::time::sleep(delay).await;
                            if stopped.load(Ordering::Relaxed) {
                                return None;
                            }
                            Some(proxy.move_session(session.id, None).await)
                        });
                    }
                }
            }
        }
    }
    stopped.store(true, Ordering::Relaxed);
    let drain = async {
        while let Some(done) = running.join_next().await {
            if let Some(result) = done.expect("a move task panicked") {
                moves.record(result);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        let stuck = running.len();
        moves
            .failed
            .extend((0..stuck).map(|_| "no outcome 10 s after the run ended".to_owned()));
    }
    moves
}
