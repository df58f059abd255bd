//! The five algorithms, as pure functions of `(policy, state, now, cost)`.
//!
//! | algorithm | state per key | worst case in any window of one period |
//! |---|---|---|
//! | [`Algorithm::TokenBucket`] | 32 bytes | `limit` burst, then `limit` per period: ≤ 2 × limit |
//! | [`Algorithm::Gcra`] | 8 bytes | the same as the token bucket (it is the same shape) |
//! | [`Algorithm::FixedWindow`] | 16 bytes | 2 × limit across a window boundary |
//! | [`Algorithm::SlidingLog`] | 16 bytes per admitted request (≤ limit) | exactly limit |
//! | [`Algorithm::SlidingWindow`] | 24 bytes | limit × (1 + f), f = position in the fixed window |
//!
//! Each module documents its bound precisely; `tests/bounds.rs` checks them on random
//! traces. A decision never sleeps or reads a clock: the caller passes `now`.

mod fixed_window;
mod gcra;
mod sliding_counter;
mod sliding_log;
mod token_bucket;
mod word;

use std::num::NonZeroU64;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::{Nanos, to_nanos};
use crate::error::Error;

pub use fixed_window::FixedWindowState;
pub use gcra::GcraState;
pub use sliding_counter::SlidingCounterState;
pub use sliding_log::SlidingLogState;
pub use token_bucket::TokenBucketState;
pub(crate) use word::{DEAD, LOCKED};

/// Which algorithm a [`Policy`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// A bucket of `limit` tokens refilled continuously at `limit` per period.
    TokenBucket,
    /// The generic cell rate algorithm: a token bucket stored as one timestamp.
    Gcra,
    /// A counter per aligned window of one period.
    FixedWindow,
    /// Every admitted request's timestamp, for an exact sliding window.
    SlidingLog,
    /// Two fixed-window counters, the previous one weighted by its overlap (Cloudflare's).
    SlidingWindow,
}

impl Algorithm {
    /// All five, in the order of the docs.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::TokenBucket,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
    ];

    /// The stable snake_case name used in configuration and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }
}

/// An algorithm with its quota: `limit` units per `period`. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    algorithm: Algorithm,
    limit: u64,
    period: Nanos,
    /// GCRA's emission interval `period / limit`, computed once (a division per check
    /// is a measurable share of a 20 ns decision).
    emission: Nanos,
    /// Whether a key's state fits in one machine word (see [`word`]).
    one_word: bool,
}

impl Policy {
    /// A policy admitting `limit` units per `period` with `algorithm`.
    ///
    /// Fails when the period is shorter than a microsecond (the Redis store's resolution)
    /// or `limit` exceeds the period in nanoseconds (GCRA needs one nanosecond per unit).
    pub fn new(algorithm: Algorithm, limit: NonZeroU64, period: Duration) -> Result<Self, Error> {
        let period = to_nanos(period);
        if period < 1_000 {
            return Err(Error::InvalidPolicy(
                "the period must be at least 1µs".into(),
            ));
        }
        if limit.get() > period {
            return Err(Error::InvalidPolicy(
                "the limit must not exceed the period in nanoseconds".into(),
            ));
        }
        Ok(Self {
            algorithm,
            limit: limit.get(),
            period,
            emission: (period / limit.get()).max(1),
            one_word: word::fits(algorithm, limit.get(), period),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Units admitted per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period)
    }

    pub(crate) fn period_nanos(&self) -> Nanos {
        self.period
    }

    pub(crate) fn emission_nanos(&self) -> Nanos {
        self.emission
    }

    /// The state of a key that has never been seen.
    pub fn new_state(&self) -> State {
        match self.algorithm {
            Algorithm::TokenBucket => State::TokenBucket(TokenBucketState::default()),
            Algorithm::Gcra => State::Gcra(GcraState::default()),
            Algorithm::FixedWindow => State::FixedWindow(FixedWindowState::default()),
            Algorithm::SlidingLog => State::SlidingLog(SlidingLogState::default()),
            Algorithm::SlidingWindow => State::SlidingWindow(SlidingCounterState::default()),
        }
    }

    /// Decides whether `cost` units may pass at `now`, and consumes them when they may
    /// and `apply` is true. With `apply == false` the answer is the same but nothing is
    /// consumed (used to check several rules before committing any).
    ///
    /// A state of another algorithm (a policy changed between runs) is reset first.
    pub fn check(&self, state: &mut State, now: Nanos, cost: u64, apply: bool) -> Decision {
        if state.algorithm() != self.algorithm {
            *state = self.new_state();
        }
        match state {
            State::TokenBucket(s) => s.check(self, now, cost, apply),
            State::Gcra(s) => s.check(self, now, cost, apply),
            State::FixedWindow(s) => s.check(self, now, cost, apply),
            State::SlidingLog(s) => s.check(self, now, cost, apply),
            State::SlidingWindow(s) => s.check(self, now, cost, apply),
        }
    }

    /// The instant from which `state` behaves exactly like a fresh key, so the store may
    /// drop it.
    pub fn idle_at(&self, state: &State) -> Nanos {
        match state {
            State::TokenBucket(s) => s.idle_at(self),
            State::Gcra(s) => s.idle_at(),
            State::FixedWindow(s) => s.idle_at(self),
            State::SlidingLog(s) => s.idle_at(self),
            State::SlidingWindow(s) => s.idle_at(self),
        }
    }
}

/// The per-key state of one algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// See [`TokenBucketState`].
    TokenBucket(TokenBucketState),
    /// See [`GcraState`].
    Gcra(GcraState),
    /// See [`FixedWindowState`].
    FixedWindow(FixedWindowState),
    /// See [`SlidingLogState`].
    SlidingLog(SlidingLogState),
    /// See [`SlidingCounterState`].
    SlidingWindow(SlidingCounterState),
}

impl State {
    fn algorithm(&self) -> Algorithm {
        match self {
            State::TokenBucket(_) => Algorithm::TokenBucket,
            State::Gcra(_) => Algorithm::Gcra,
            State::FixedWindow(_) => Algorithm::FixedWindow,
            State::SlidingLog(_) => Algorithm::SlidingLog,
            State::SlidingWindow(_) => Algorithm::SlidingWindow,
        }
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// The policy's limit (units per period).
    pub limit: u64,
    /// Units still available right after this decision.
    pub remaining: u64,
    /// Time until the key is back to its full quota if nothing else arrives.
    pub reset_after: Duration,
    /// When denied, the time until the same cost would be admitted; zero when allowed.
    pub retry_after: Duration,
}

impl Decision {
    pub(crate) fn allowed(limit: u64, remaining: u64, reset_after: Nanos) -> Self {
        Self {
            allowed: true,
            limit,
            remaining,
            reset_after: Duration::from_nanos(reset_after),
            retry_after: Duration::ZERO,
        }
    }

    pub(crate) fn denied(limit: u64, remaining: u64, reset_after: Nanos, retry: Nanos) -> Self {
        Self {
            allowed: false,
            limit,
            remaining,
            reset_after: Duration::from_nanos(reset_after),
            retry_after: Duration::from_nanos(retry.max(1)),
        }
    }
}

/// `a / b` in 128 bits, through the much cheaper 64-bit division when both fit (they do
/// for every ordinary quota; 128 bits only guard against overflow).
#[inline]
pub(crate) fn div(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a / b),
        _ => a / b,
    }
}

/// `a / b` rounded up, like [`div`].
#[inline]
pub(crate) fn div_ceil(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a.div_ceil(b)),
        _ => a.div_ceil(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_sizes_match_the_docs() {
        assert_eq!(size_of::<TokenBucketState>(), 32);
        assert_eq!(size_of::<GcraState>(), 8);
        assert_eq!(size_of::<FixedWindowState>(), 16);
        assert_eq!(size_of::<SlidingCounterState>(), 24);
        // The log's fixed part; each admitted request adds a 16-byte entry.
        assert_eq!(size_of::<(Nanos, u64)>(), 16);
    }
}
