//! Errors of the frontier module.

/// Why a frontier call was refused. A call that returns an error changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierError {
    /// A span whose start equals its end covers no key.
    #[error("empty span: start equals end")]
    EmptySpan,
    /// A span whose start sorts after its end.
    #[error("inverted span: start sorts after end")]
    InvertedSpan,
    /// A prefix of only `0xff` bytes (or no bytes) has no finite end key.
    #[error("prefix has no finite end key")]
    UnboundedPrefix,
    /// The call would take the frontier past its configured number of entries.
    #[error("frontier would exceed {limit} entries")]
    TooManyEntries {
        /// The configured [`FrontierConfig::max_entries`](super::FrontierConfig::max_entries).
        limit: usize,
    },
}

impl crate::error::Kind for FrontierError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            FrontierError::EmptySpan
            | FrontierError::InvertedSpan
            | FrontierError::UnboundedPrefix => ErrorKind::Usage,
            FrontierError::TooManyEntries { .. } => ErrorKind::Limit,
        }
    }
}
