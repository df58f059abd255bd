//! Sliding window counter: the current and previous fixed-window counts, with the
//! previous one weighted by how much of it the sliding window still covers
//! (the approximation Cloudflare measured at 0.003% wrong decisions).
//!
//! A request of cost `c` at position `e` (nanoseconds into the current window) passes
//! when `current + c + previous × (period − e) / period ≤ limit`, evaluated exactly in
//! integers.
//!
//! **Memory per key:** 24 bytes (window number and two counts); in Redis one string of the three.
//!
//! **Accuracy at window edges:** it assumes the previous window's requests were spread
//! evenly. In the window `(t − period, t]`, with `t` a fraction `f` into its fixed window,
//! at most `limit + previous × f ≤ limit × (1 + f)` units pass. Right after a boundary
//! (`f ≈ 0`) that is ≈ limit, so the fixed window's 2× burst is refused; the error grows
//! only when traffic is very uneven *and* late in a window. `benches/accuracy.rs`
//! measures it against the exact log.

use super::{Decision, Policy, div};
use crate::clock::Nanos;

/// State of one sliding window counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingCounterState {
    window: u64,
    current: u64,
    previous: u64,
}

impl SlidingCounterState {
    pub(super) fn check(&mut self, p: &Policy, now: Nanos, cost: u64, apply: bool) -> Decision {
        let period = p.period_nanos();
        // A clock read a hair behind the last one must not reopen an older window.
        let window = (now / period).max(self.window);
        let now = now.max(window * period);
        if window == self.window + 1 {
            *self = Self {
                window,
                current: 0,
                previous: self.current,
            };
        } else if window != self.window {
            *self = Self {
                window,
                current: 0,
                previous: 0,
            };
        }
        let elapsed = now - window * period;
        // Everything below is scaled by `period` so it stays exact.
        let (limit, per) = (u128::from(p.limit()), u128::from(period));
        let weighted_prev = u128::from(self.previous) * (per - u128::from(elapsed));
        let used = |current: u64| u128::from(current) * per + weighted_prev;
        let allowed = used(self.current.saturating_add(cost)) <= limit * per;
        if allowed && apply {
            self.current += cost;
        }
        let free = div((limit * per).saturating_sub(used(self.current)), per);
        let remaining = u64::try_from(free).unwrap_or(u64::MAX);
        let reset = self.reset(p, now);
        if allowed {
            return Decision::allowed(p.limit(), remaining, reset);
        }
        Decision::denied(p.limit(), remaining, reset, self.retry(p, now, cost))
    }

    /// Time until `cost` would pass if nothing else arrives.
    fn retry(&self, p: &Policy, now: Nanos, cost: u64) -> Nanos {
        let period = p.period_nanos();
        if cost > p.limit() {
            return period;
        }
        let window_start = self.window * period;
        // Smallest position `e` in a window where `count·(period − e) ≤ room·period`.
        let position = |count: u64, room: u64| -> Nanos {
            if count == 0 {
                0
            } else {
                let reach = div(u128::from(room) * u128::from(period), u128::from(count));
                period - u64::try_from(reach).unwrap_or(u64::MAX).min(period)
            }
        };
        if self.current + cost <= p.limit() {
            let e = position(self.previous, p.limit() - self.current - cost);
            (window_start + e).saturating_sub(now).max(1)
        } else {
            let e = position(self.current, p.limit() - cost);
            window_start + period + e - now
        }
    }

    fn reset(&self, p: &Policy, now: Nanos) -> Nanos {
        let period = p.period_nanos();
        if self.current > 0 {
            (self.window + 2) * period - now
        } else if self.previous > 0 {
            (self.window + 1) * period - now
        } else {
            0
        }
    }

    pub(super) fn idle_at(&self, p: &Policy) -> Nanos {
        (self.window + 2).saturating_mul(p.period_nanos())
    }
}
