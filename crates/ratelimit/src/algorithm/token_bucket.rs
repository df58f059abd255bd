//! Token bucket: `limit` tokens, refilled continuously at `limit` tokens per period.
//!
//! **Memory per key:** 32 bytes (a 128-bit token level, the last refill time, padding).
//!
//! **Accuracy at window edges:** there are no windows; a full bucket admits a burst of
//! `limit` at once and then `limit` per period. In any interval of length `d` it admits
//! at most `limit + d × limit / period` units, so ≤ 2 × limit in any one period: the
//! burst is a feature, not an edge effect.
//!
//! Tokens are kept in fixed point (one token = `period` units, refill = `limit` units per
//! nanosecond) so the arithmetic is exact: no floating point, no drift.

use super::{Decision, Policy, div, div_ceil};
use crate::clock::Nanos;

/// State of one token bucket. A fresh bucket is full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBucketState {
    /// Tokens × period (fixed point); meaningful only once `started`.
    level: u128,
    /// When `level` was last brought up to date.
    last: Nanos,
    started: bool,
}

impl TokenBucketState {
    /// The bucket that will be full again at `full_at`, as seen at `now`: the inverse of
    /// [`Self::idle_at`]. Exact when `limit` divides the period, because the missing
    /// level is then always a whole number of nanoseconds of refill (see `word.rs`).
    pub(super) fn from_full_at(p: &Policy, full_at: Nanos, now: Nanos) -> Self {
        let limit = u128::from(p.limit());
        let capacity = limit * u128::from(p.period_nanos());
        let missing = u128::from(full_at.saturating_sub(now)) * limit;
        Self {
            level: capacity.saturating_sub(missing),
            last: now,
            started: true,
        }
    }

    pub(super) fn check(&mut self, p: &Policy, now: Nanos, cost: u64, apply: bool) -> Decision {
        let limit = u128::from(p.limit());
        let period = u128::from(p.period_nanos());
        let capacity = limit * period;
        if !self.started {
            *self = Self {
                level: capacity,
                last: now,
                started: true,
            };
        }
        let elapsed = u128::from(now.saturating_sub(self.last));
        self.level = capacity.min(self.level + elapsed * limit);
        self.last = self.last.max(now);

        let need = u128::from(cost) * period;
        let allowed = cost <= p.limit() && need <= self.level;
        if allowed && apply {
            self.level -= need;
        }
        let after = self.level;
        let remaining = to_u64(div(after, period));
        let reset = to_u64(div_ceil(capacity - after, limit));
        if allowed {
            Decision::allowed(p.limit(), remaining, reset)
        } else if cost > p.limit() {
            Decision::denied(p.limit(), remaining, reset, p.period_nanos())
        } else {
            let retry = to_u64(div_ceil(need - self.level, limit));
            Decision::denied(p.limit(), remaining, reset, retry)
        }
    }

    pub(super) fn idle_at(&self, p: &Policy) -> Nanos {
        let capacity = u128::from(p.limit()) * u128::from(p.period_nanos());
        let missing = capacity.saturating_sub(self.level);
        self.last
            .saturating_add(to_u64(div_ceil(missing, u128::from(p.limit()))))
    }
}

fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}
