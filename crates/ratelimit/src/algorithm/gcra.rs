//! GCRA, the generic cell rate algorithm (what governor and redis-cell implement).
//!
//! Each unit "costs" an emission interval `T = period / limit`; the state is the
//! theoretical arrival time (TAT) of the next request. A request of cost `c` passes when
//! `max(TAT, now) + c·T − now ≤ limit·T`, i.e. the bucket has room for a burst of `limit`.
//!
//! **Memory per key:** 8 bytes (one timestamp) — the smallest of the five.
//!
//! **Accuracy at window edges:** no windows; the same shape as a token bucket of
//! `limit` tokens. In any interval of length `d` it admits at most `limit + d / T` units.
//! `T` is rounded down to a whole nanosecond, so the rate is exact whenever `limit`
//! divides the period in nanoseconds and otherwise at most one nanosecond per unit fast.

use super::{Decision, Policy};
use crate::clock::Nanos;

/// State of one GCRA key: the theoretical arrival time. Zero means fresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcraState {
    tat: Nanos,
}

impl GcraState {
    /// The state whose theoretical arrival time is `tat` (its one-word form).
    pub(super) fn from_tat(tat: Nanos) -> Self {
        Self { tat }
    }

    #[inline]
    pub(super) fn check(&mut self, p: &Policy, now: Nanos, cost: u64, apply: bool) -> Decision {
        let t = p.emission_nanos();
        let tau = t * p.limit();
        let tat = self.tat.max(now);
        let new_tat = tat.saturating_add(cost.saturating_mul(t));
        if new_tat - now <= tau {
            if apply {
                self.tat = new_tat;
            }
            let after = if apply { new_tat } else { tat };
            let remaining = (tau - (after - now)) / t;
            Decision::allowed(p.limit(), remaining, after - now)
        } else {
            let remaining = (tau - (tat - now)) / t;
            let retry = if cost > p.limit() {
                p.period_nanos()
            } else {
                new_tat - tau - now
            };
            Decision::denied(p.limit(), remaining, tat - now, retry)
        }
    }

    pub(super) fn idle_at(&self) -> Nanos {
        self.tat
    }
}
