//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy that cannot be enforced (zero period, more units than nanoseconds…).
    #[error("invalid rate-limit policy: {0}")]
    InvalidPolicy(String),

    /// The rule file does not parse or names something impossible.
    #[error("rate-limit configuration, line {line}: {reason}")]
    Config {
        /// 1-based line in the file (0 when the problem is not tied to a line).
        line: usize,
        /// What is wrong, for a human.
        reason: String,
    },

    /// The rule file could not be read.
    #[error("cannot read rate-limit configuration {path}: {source}")]
    ReadConfig {
        /// The file's path.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// The store did not answer within the decision timeout.
    #[error("rate-limit store did not answer within {0:?}")]
    Timeout(Duration),

    /// The Redis store was created outside a Tokio runtime.
    #[error("the Redis rate-limit store must be created inside a Tokio runtime")]
    NoRuntime,

    /// Too many decisions are already waiting for the store.
    #[error("rate-limit store is overloaded")]
    Overloaded,

    /// The store answered something this crate did not expect.
    #[error("unexpected answer from the rate-limit store: {0}")]
    Protocol(String),

    /// A rule name that the limiter does not know.
    #[error("unknown rate-limit rule {0:?}")]
    UnknownRule(String),
}
