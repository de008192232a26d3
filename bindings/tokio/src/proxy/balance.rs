//! Where sessions go: the least-loaded backend for a new one, and the rebalancer's moves.

use super::{BackendId, SessionId};

/// What placement knows of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// No new sessions go here, and the rebalancer moves the existing ones away.
    pub draining: bool,
    /// Sessions on it now, moving ones included.
    pub sessions: usize,
}

/// The backend with the fewest sessions that is neither draining nor in `except`; ties go to
/// the lowest id.
pub(crate) fn least_loaded(loads: &[Load], except: &[BackendId]) -> Option<BackendId> {
    loads
        .iter()
        .enumerate()
        .filter(|&(i, load)| !load.draining && !except.contains(&BackendId(i)))
        .min_by_key(|&(i, load)| (load.sessions, i))
        .map(|(i, _)| BackendId(i))
}

/// At most `max` moves that empty draining backends first and then even out the others, so
/// that their session counts differ by at most one. `movable` lists the sessions not already
/// moving, with the backend each is on.
pub(crate) fn plan(
    loads: &[Load],
    movable: &[(SessionId, BackendId)],
    max: usize,
) -> Vec<(SessionId, BackendId)> {
    let mut loads = loads.to_vec();
    let mut moves = Vec::new();
    let mut left: Vec<(SessionId, BackendId)> = movable.to_vec();
    for from in (0..loads.len()).map(BackendId) {
        while moves.len() < max && loads[from.0].draining {
            let Some(to) = least_loaded(&loads, &[]) else {
                return moves;
            };
            match take(&mut loads, &mut left, from, to) {
                Some(m) => moves.push(m),
                None => break,
            }
        }
    }
    while moves.len() < max {
        let Some(to) = least_loaded(&loads, &[]) else {
            break;
        };
        // The fullest backend that still has a session to give.
        let from = loads
            .iter()
            .enumerate()
            .filter(|&(i, load)| !load.draining && left.iter().any(|&(_, b)| b.0 == i))
            .max_by_key(|&(i, load)| (load.sessions, usize::MAX - i))
            .map(|(i, _)| BackendId(i));
        let Some(from) = from else { break };
        if loads[from.0].sessions <= loads[to.0].sessions + 1 {
            break;
        }
        match take(&mut loads, &mut left, from, to) {
            Some(m) => moves.push(m),
            None => break,
        }
    }
    moves
}

/// Move one of `from`'s movable sessions to `to`, if it has one.
fn take(
    loads: &mut [Load],
    left: &mut Vec<(SessionId, BackendId)>,
    from: BackendId,
    to: BackendId,
) -> Option<(SessionId, BackendId)> {
    let i = left.iter().position(|&(_, b)| b == from)?;
    let (session, _) = left.swap_remove(i);
    loads[from.0].sessions -= 1;
    loads[to.0].sessions += 1;
    Some((session, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(counts: &[usize], draining: &[usize]) -> Vec<Load> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &sessions)| Load {
                draining: draining.contains(&i),
                sessions,
            })
            .collect()
    }

    fn sessions(on: &[usize]) -> Vec<(SessionId, BackendId)> {
        on.iter()
            .enumerate()
            .map(|(i, &b)| (SessionId(i as u64), BackendId(b)))
            .collect()
    }

    /// The counts after applying `moves`.
    fn after(
        mut loads: Vec<Load>,
        movable: &[(SessionId, BackendId)],
        moves: &[(SessionId, BackendId)],
    ) -> Vec<usize> {
        for (session, to) in moves {
            let from = movable.iter().find(|(s, _)| s == session).unwrap().1;
            loads[from.0].sessions -= 1;
            loads[to.0].sessions += 1;
        }
        loads.iter().map(|l| l.sessions).collect()
    }

    #[test]
    fn new_sessions_go_to_the_emptiest_live_backend() {
        assert_eq!(
            least_loaded(&loads(&[3, 1, 1], &[]), &[]),
            Some(BackendId(1))
        );
        assert_eq!(
            least_loaded(&loads(&[3, 1, 0], &[2]), &[]),
            Some(BackendId(1))
        );
        assert_eq!(
            least_loaded(&loads(&[3, 1, 0], &[2]), &[BackendId(1)]),
            Some(BackendId(0))
        );
        assert_eq!(least_loaded(&loads(&[0, 0], &[0, 1]), &[]), None);
    }

    #[test]
    fn evens_out_to_within_one() {
        let l = loads(&[7, 0, 1], &[]);
        let s = sessions(&[0, 0, 0, 0, 0, 0, 0, 2]);
        let moves = plan(&l, &s, 100);
        let mut counts = after(l, &s, &moves);
        counts.sort();
        assert_eq!(counts, vec![2, 3, 3]);
        assert_eq!(moves.len(), 4, "no session moves twice");
    }

    #[test]
    fn balanced_backends_are_left_alone() {
        let l = loads(&[2, 1, 2], &[]);
        let s = sessions(&[0, 0, 1, 2, 2]);
        assert!(plan(&l, &s, 100).is_empty());
    }

    #[test]
    fn draining_backends_are_emptied_first() {
        let l = loads(&[2, 3, 0], &[1]);
        let s = sessions(&[0, 0, 1, 1, 1]);
        let moves = plan(&l, &s, 100);
        assert!(moves.iter().all(|&(_, to)| to != BackendId(1)));
        let counts = after(l, &s, &moves);
        assert_eq!(counts[1], 0);
        assert_eq!(counts[0] + counts[2], 5);
        assert!(counts[0].abs_diff(counts[2]) <= 1);
    }

    #[test]
    fn moving_sessions_are_not_planned_and_max_is_kept() {
        // Four sessions on backend 0, but only one of them may move.
        let l = loads(&[4, 0], &[]);
        let s = sessions(&[0]);
        assert_eq!(plan(&l, &s, 100), vec![(SessionId(0), BackendId(1))]);
        let s = sessions(&[0, 0, 0, 0]);
        assert_eq!(plan(&l, &s, 1).len(), 1);
    }

    #[test]
    fn all_draining_moves_nothing() {
        let l = loads(&[2, 2], &[0, 1]);
        let s = sessions(&[0, 0, 1, 1]);
        assert!(plan(&l, &s, 100).is_empty());
    }
}
