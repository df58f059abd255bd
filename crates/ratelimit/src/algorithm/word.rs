//! One-word states, so a store can update a key with a single compare-and-swap.
//!
//! GCRA's state already is one timestamp (the theoretical arrival time). A token bucket
//! is too whenever `limit` divides the period in nanoseconds: a token is then exactly
//! `period / limit` ns of refill, the missing level is a whole number of nanoseconds
//! of refill, and the bucket is fully described by the instant it will be full again
//! (its [`Policy::idle_at`]). Decoding that instant at `now` gives back the reference
//! state with `last = now`, which refills to the same level as the original for every
//! `now` not earlier than the original's `last`; decisions are computed by the same
//! reference functions, so they are exactly the reference's (`tests/it/lockfree.rs`).
//!
//! Token buckets whose limit does not divide the period (7 per second) would need a
//! remainder as well; they, and the other three algorithms, keep a locked state.
//!
//! The two top bits are the store's: [`LOCKED`] while a multi-rule check holds the key,
//! [`DEAD`] once the key was dropped from its map. Timestamps stay far below them:
//! periods are capped at 2^60 ns (36 years) and the clock counts from process start.

use super::gcra::GcraState;
use super::token_bucket::TokenBucketState;
use super::{Algorithm, Decision, Policy};
use crate::clock::Nanos;

/// Set while a multi-rule check holds the key (the value below it is the state).
pub(crate) const LOCKED: u64 = 1 << 63;
/// The whole word of a key removed from its map: whoever reads it looks the key up again.
pub(crate) const DEAD: u64 = 1 << 62;
/// Longest period kept in one word, so a timestamp never reaches the flag bits.
const MAX_PERIOD: Nanos = 1 << 60;

/// Whether `algorithm` with this quota keeps its state in one word.
pub(super) fn fits(algorithm: Algorithm, limit: u64, period: Nanos) -> bool {
    period < MAX_PERIOD
        && match algorithm {
            Algorithm::Gcra => true,
            Algorithm::TokenBucket => period.is_multiple_of(limit),
            _ => false,
        }
}

impl Policy {
    /// Whether a key under this policy keeps its state in one word.
    #[inline]
    pub(crate) fn one_word(&self) -> bool {
        self.one_word
    }

    /// [`Policy::check`] on the one-word form of a state (`0` for a fresh key): the
    /// decision and the word to store when it was allowed and applied. Only for policies
    /// whose [`Policy::one_word`] holds.
    #[inline]
    pub(crate) fn check_word(
        &self,
        word: u64,
        now: Nanos,
        cost: u64,
        apply: bool,
    ) -> (Decision, u64) {
        match self.algorithm {
            Algorithm::Gcra => {
                let mut state = GcraState::from_tat(word);
                let decision = state.check(self, now, cost, apply);
                (decision, state.idle_at())
            }
            _ => {
                let mut state = TokenBucketState::from_full_at(self, word, now);
                let decision = state.check(self, now, cost, apply);
                (decision, state.idle_at(self))
            }
        }
    }
}
