//! Fixed window counter: one counter per aligned window `[k·period, (k+1)·period)`.
//!
//! **Memory per key:** 16 bytes (window number and count); in Redis one string `"window count"`.
//!
//! **Accuracy at window edges:** within each aligned window at most `limit` units pass,
//! but a client can spend a full quota at the end of one window and another at the start
//! of the next: up to **2 × limit** in a period that straddles the boundary (the
//! "boundary problem", shown in `tests/algorithms.rs`).

use super::{Decision, Policy};
use crate::clock::Nanos;

/// State of one fixed-window counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    window: u64,
    count: u64,
}

impl FixedWindowState {
    pub(super) fn check(&mut self, p: &Policy, now: Nanos, cost: u64, apply: bool) -> Decision {
        let period = p.period_nanos();
        // A clock read a hair behind the last one must not reopen an older window.
        let window = (now / period).max(self.window);
        if window != self.window {
            *self = Self { window, count: 0 };
        }
        let reset = ((window + 1) * period).saturating_sub(now);
        if self.count.saturating_add(cost) <= p.limit() {
            if apply {
                self.count += cost;
            }
            Decision::allowed(p.limit(), p.limit() - self.count, reset)
        } else {
            let retry = if cost > p.limit() { period } else { reset };
            Decision::denied(p.limit(), p.limit() - self.count, reset, retry)
        }
    }

    pub(super) fn idle_at(&self, p: &Policy) -> Nanos {
        (self.window + 1).saturating_mul(p.period_nanos())
    }
}
