//! The nouns of flow control: streams, requests, work classes, log positions and targets.

use alloc::vec::Vec;

/// One destination of replication traffic: a (tenant, store) pair.
///
/// Tokens are kept per stream, so one slow store slows only the work that must wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StreamId {
    /// The tenant whose traffic this stream carries.
    pub tenant: u64,
    /// The store (disk) the traffic goes to.
    pub store: u64,
}

impl StreamId {
    /// The stream of `tenant`'s traffic to `store`.
    pub const fn new(tenant: u64, store: u64) -> StreamId {
        StreamId { tenant, store }
    }
}

/// A caller-chosen name for one request, unique among the requests the controller still knows
/// about (waiting, or admitted and not yet bound to a log position or released).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RequestId(pub u64);

/// What kind of work a request is, which decides the pools it draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Class {
    /// Heartbeats, votes, acknowledgements: never queued, never deducted.
    ///
    /// Control traffic is what tells a sender that the receiver is alive and catching up; pacing
    /// it behind data would turn a slow receiver into a dead one.
    Control,
    /// Foreground writes. Deducts from the regular and the elastic pools, waits only on the
    /// regular pool of a quorum plus the must-have replicas.
    Regular,
    /// Background writes (bulk loads, backfills). Deducts from and waits on the elastic pool of
    /// every target that is replicating.
    Elastic,
}

impl Class {
    /// The two classes that own token pools, in the order waiters are served.
    pub const TOKEN_CLASSES: [Class; 2] = [Class::Regular, Class::Elastic];

    /// Index of this class's pool, or `None` for control traffic.
    pub(crate) const fn pool(self) -> Option<usize> {
        match self {
            Class::Control => None,
            Class::Regular => Some(REGULAR),
            Class::Elastic => Some(ELASTIC),
        }
    }
}

/// Index of the regular pool in per-class arrays.
pub(crate) const REGULAR: usize = 0;
/// Index of the elastic pool in per-class arrays.
pub(crate) const ELASTIC: usize = 1;

/// A position in the replicated log: ordered by term, then index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LogPosition {
    /// The leader term that wrote the entry.
    pub term: u64,
    /// The entry's index in the log.
    pub index: u64,
}

impl LogPosition {
    /// The position `(term, index)`.
    pub const fn new(term: u64, index: u64) -> LogPosition {
        LogPosition { term, index }
    }
}

/// One replica a write goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Target {
    /// The stream that carries the write to this replica.
    pub stream: StreamId,
    /// Whether regular work must have tokens on this replica (the leader, the leaseholder)
    /// whatever the rest of the quorum looks like.
    pub must_have: bool,
}

/// The replicas a write goes to, and how many of them form a quorum.
///
/// ```
/// use weir::flow::{StreamId, Targets};
///
/// let (a, b, c) = (StreamId::new(1, 1), StreamId::new(1, 2), StreamId::new(1, 3));
/// let targets = Targets::majority(&[a, b, c]).with_must_have(a);
/// assert_eq!(targets.quorum(), 2);
/// assert_eq!(targets.replicas().len(), 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Targets {
    replicas: Vec<Target>,
    quorum: usize,
}

impl Targets {
    /// No replicas yet, and a quorum of `quorum` replicas.
    pub fn new(quorum: usize) -> Targets {
        Targets {
            replicas: Vec::new(),
            quorum,
        }
    }

    /// `streams` as ordinary replicas, with a simple-majority quorum.
    pub fn majority(streams: &[StreamId]) -> Targets {
        Targets {
            replicas: streams
                .iter()
                .map(|&stream| Target {
                    stream,
                    must_have: false,
                })
                .collect(),
            quorum: streams.len() / 2 + 1,
        }
    }

    /// Adds an ordinary replica.
    pub fn with_replica(mut self, stream: StreamId) -> Targets {
        self.replicas.push(Target {
            stream,
            must_have: false,
        });
        self
    }

    /// Marks `stream` as a must-have replica, adding it if it is not there yet.
    pub fn with_must_have(mut self, stream: StreamId) -> Targets {
        match self.replicas.iter_mut().find(|t| t.stream == stream) {
            Some(target) => target.must_have = true,
            None => self.replicas.push(Target {
                stream,
                must_have: true,
            }),
        }
        self
    }

    /// The replicas, in the order they were added.
    pub fn replicas(&self) -> &[Target] {
        &self.replicas
    }

    /// How many replicas form a quorum.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Whether `stream` is one of the replicas.
    pub fn contains(&self, stream: StreamId) -> bool {
        self.replicas.iter().any(|t| t.stream == stream)
    }
}
