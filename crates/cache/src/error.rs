//! The crate's one error type.

use std::sync::Arc;

/// A boxed error from caller code (loaders, stores, write-behind sinks).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error: the same loader failure is handed to every coalesced waiter.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a cache call can fail with.
///
/// Redis trouble is never an error: the cache degrades to pass-through and counts it in
/// metrics. Only configuration mistakes and failures of the caller's own code surface here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The builder was given an unusable setting (bad namespace, bad Redis URL, no runtime).
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// The loader of `get_or_load` failed; every waiter coalesced on that load gets it.
    #[error("loading the value failed: {0}")]
    Load(#[source] SharedError),
    /// The store of a write-through or a write-behind flush rejected the write.
    #[error("writing to the store failed: {0}")]
    Store(#[source] SharedError),
    /// The write-behind buffer was shut down.
    #[error("the write-behind buffer is shut down")]
    Closed,
}

impl Error {
    pub(crate) fn load(e: impl Into<BoxError>) -> Self {
        Self::Load(Arc::from(e.into()))
    }

    pub(crate) fn store(e: impl Into<BoxError>) -> Self {
        Self::Store(Arc::from(e.into()))
    }
}
